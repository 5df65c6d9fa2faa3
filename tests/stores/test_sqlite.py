import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

import pytest

from openai_files.server.stores._sql_dialect import SQLITE, Dialect
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataCopyConformance, MetadataStoreConformance
from openai_files.testing._metadata_batches import BatchRowsConformance


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


class _OldSQLiteStore(SQLiteMetadataStore):
    """The store as it runs on a SQLite older than 3.33 (no `UPDATE ... FROM`)."""

    DIALECT: ClassVar[Dialect] = dataclasses.replace(SQLITE, update_from=False)


class TestOldSQLiteBatchRows(BatchRowsConformance):
    """Batch results are recorded one statement each where SQLite cannot group them."""

    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = _OldSQLiteStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()
