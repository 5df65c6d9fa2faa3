"""Whether a deployment has one writer, from its stores: only then may a start drop every
reservation (a shared database holds other servers' uploads in flight)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from openai_files.server.stores import MetadataStore, one_writer
from openai_files.server.stores.cached import FileRowCache
from openai_files.server.stores.local import LocalBlobStore
from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.server.stores.s3 import S3BlobStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore

from .._services import PostgresCluster


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    yield store
    await store.close()


@pytest.fixture
def folder(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "data")


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> S3BlobStore:
    """An S3 store (never asked anything here: building it makes no request)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    return S3BlobStore("s3://files?endpoint=http://127.0.0.1:9&region=us-east-1")


@pytest.mark.anyio
async def test_sqlite_and_a_held_folder_have_one_writer(
    sqlite: SQLiteMetadataStore, folder: LocalBlobStore
) -> None:
    assert not one_writer(sqlite, folder)  # the folder is not held yet
    release = folder.lock_exclusive()
    try:
        assert one_writer(sqlite, folder)
        assert one_writer(cast(MetadataStore, FileRowCache(sqlite)), folder)
    finally:
        release()
    assert not one_writer(sqlite, folder)


@pytest.mark.anyio
async def test_postgresql_is_shared_even_with_a_held_folder(
    postgres: PostgresCluster, folder: LocalBlobStore
) -> None:
    meta = PostgresMetadataStore(postgres.create_database())
    assert meta.shared
    release = folder.lock_exclusive()
    try:
        assert not one_writer(meta, folder)
    finally:
        release()


@pytest.mark.anyio
async def test_s3_is_shared_and_holds_nothing(
    sqlite: SQLiteMetadataStore, bucket: S3BlobStore
) -> None:
    release = bucket.lock_exclusive()
    assert bucket.shared
    assert not one_writer(sqlite, bucket)
    release()
    assert bucket.shared
