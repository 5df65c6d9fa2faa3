from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataStoreConformance


class TestSQLiteMetadata(MetadataStoreConformance):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()


@pytest.mark.anyio
async def test_upgrades_a_version_1_database(tmp_path: Path) -> None:
    import sqlite3

    from openai_files.server.stores import sqlite as module

    path = tmp_path / "files.sqlite3"
    with sqlite3.connect(path) as db:  # a database as version 1 left it
        db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        db.executescript(module._MIGRATIONS[1])
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
    store = SQLiteMetadataStore(path)
    await store.open()
    try:
        assert await store.schema_version() == 1
        assert await store.migrate() == module.SCHEMA_VERSION == 2
        assert await store.schema_version() == 2
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "files_org_expiry" in names
