import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import pytest

from openai_files.server.stores import FileRecord, MetadataStore, Owner
from openai_files.server.stores.cached import FileRowCache
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataStoreConformance
from openai_files.testing._records import file_row


class TestCachedSQLiteMetadata(MetadataStoreConformance):
    """The row cache keeps the whole metadata contract."""

    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield cast(MetadataStore, FileRowCache(store))
        await store.close()

    @pytest.fixture
    async def empty_meta(self, tmp_path: Path) -> AsyncIterator[MetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "empty" / "files.sqlite3")
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
        record = file_row(owner, created_at=1000, expires_at=2000)
        await store.insert_file(record, None, 10**6)
        assert await cache.get_file(owner, record.id, 1500) == record  # fills the cache
        assert await cache.get_file(Owner("org-a", "proj_b"), record.id, 1500) is None
        assert await cache.get_file(Owner("org-b", "proj_a"), record.id, 1500) is None
        await store.close()  # from here on, only the cache can answer
        assert await cache.get_file(owner, record.id, 1500) == record
        assert await cache.get_file(owner, record.id, 2000) is None  # expired
    finally:
        await store.close()


class CountingStore:
    """A metadata store that counts the lookups by id that reach it."""

    def __init__(self, inner: MetadataStore) -> None:
        self.inner = inner
        self.lookups: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        self.lookups.append(file_id)
        return await self.inner.get_file(owner, file_id, now)


@pytest.mark.anyio
async def test_a_foreign_id_takes_the_path_of_a_missing_one(tmp_path: Path) -> None:
    """Another tenant's lookup of a cached id goes to the store, as a missing id does: the
    cache answering it at once made that 404 measurably faster, telling the id exists."""
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    await store.migrate()
    try:
        counting = CountingStore(store)
        cache = FileRowCache(cast(MetadataStore, counting))
        owner, stranger = Owner("org-a", "proj_a"), Owner("org-b", "proj_b")
        record = file_row(owner, created_at=1000)
        await store.insert_file(record, None, 10**6)
        assert await cache.get_file(owner, record.id, 1500) == record  # the owner reads it
        assert await cache.get_file(owner, record.id, 1500) == record  # now a cache hit
        assert counting.lookups == [record.id]

        missing = "file-" + "0" * 24
        for _ in range(3):
            assert await cache.get_file(stranger, record.id, 1500) is None
            assert await cache.get_file(stranger, missing, 1500) is None
        # Each foreign lookup and each missing one reached the store: the same path.
        assert counting.lookups == [record.id] + [record.id, missing] * 3
        # The stranger's lookups neither evicted nor replaced the owner's row.
        assert await cache.get_file(owner, record.id, 1500) == record
        assert counting.lookups.count(record.id) == 4
    finally:
        await store.close()


@pytest.mark.anyio
async def test_a_foreign_id_is_not_answered_faster_than_a_missing_one(tmp_path: Path) -> None:
    """The timing the code path above implies: lookups alternate, medians compared with a
    wide margin (the cache answered a foreign id about a hundred times faster)."""
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    await store.migrate()
    try:
        cache = FileRowCache(store)
        owner, stranger = Owner("org-a", "proj_a"), Owner("org-b", "proj_b")
        record = file_row(owner, created_at=1000)
        await store.insert_file(record, None, 10**6)
        assert await cache.get_file(owner, record.id, 1500) == record
        missing = "file-" + "0" * 24
        foreign_times: list[float] = []
        missing_times: list[float] = []
        for _ in range(200):
            for file_id, times in ((record.id, foreign_times), (missing, missing_times)):
                started = time.perf_counter()
                assert await cache.get_file(stranger, file_id, 1500) is None
                times.append(time.perf_counter() - started)
        ratio = statistics.median(foreign_times) / statistics.median(missing_times)
        assert ratio > 0.5, f"a foreign id answered {1 / ratio:.1f}x faster than a missing one"
    finally:
        await store.close()
