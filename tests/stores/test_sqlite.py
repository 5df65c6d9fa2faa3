from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataCopyConformance, MetadataStoreConformance


class TestSQLiteMetadata(MetadataStoreConformance):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()

    @pytest.fixture
    async def empty_meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "empty" / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()


class TestSQLiteCopy(MetadataCopyConformance):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()

    @pytest.fixture
    async def empty_meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "empty" / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()
