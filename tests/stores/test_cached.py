from collections.abc import AsyncIterator
from pathlib import Path
from typing import cast

import pytest

from openai_files.server.stores import MetadataStore, Owner
from openai_files.server.stores.cached import FileRowCache
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataStoreConformance
from openai_files.testing._metadata import _file


class TestCachedSQLiteMetadata(MetadataStoreConformance):
    """The row cache keeps the whole metadata contract."""

    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield cast(MetadataStore, FileRowCache(store))
        await store.close()


@pytest.mark.anyio
async def test_cache_hits_skip_the_database_and_respect_owner_and_expiry(tmp_path: Path) -> None:
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    await store.migrate()
    try:
        cache = FileRowCache(store, max_rows=2)
        owner = Owner("org-a", "proj_a")
        record = _file(owner, created_at=1000, expires_at=2000)
        await store.insert_file(record, None, 10**6)
        assert await cache.get_file(owner, record.id, 1500) == record  # fills the cache
        await store.close()  # from here on, only the cache can answer
        assert await cache.get_file(owner, record.id, 1500) == record
        assert await cache.get_file(Owner("org-a", "proj_b"), record.id, 1500) is None
        assert await cache.get_file(Owner("org-b", "proj_a"), record.id, 1500) is None
        assert await cache.get_file(owner, record.id, 2000) is None  # expired
    finally:
        await store.close()
