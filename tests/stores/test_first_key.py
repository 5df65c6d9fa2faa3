"""The first key of a new database is stored once, when several stores (as several server
processes do) race to store one, each from connections of its own."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from openai_files.server.stores import KeyRecord, MetadataStore
from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing._records import admin_key_row, key_row

from .._services import PostgresCluster

pytestmark = pytest.mark.anyio

#: Stores on one database (as many server processes), and attempts racing in each.
STORES = 4
ATTEMPTS = 5


async def _race(stores: list[MetadataStore]) -> list[KeyRecord]:
    """Every store tries ATTEMPTS first keys at once; the keys that were stored."""
    stored: list[KeyRecord] = []

    async def attempt(store: MetadataStore) -> None:
        record = key_row()
        if await store.add_first_api_key(record):
            stored.append(record)

    async with anyio.create_task_group() as tg:
        for store in stores:
            for _ in range(ATTEMPTS):
                tg.start_soon(attempt, store)
    return stored


async def _check(stores: list[MetadataStore]) -> None:
    for store in stores:
        await store.open()
    try:
        await stores[0].migrate()
        assert await stores[0].list_api_keys() == []
        stored = await _race(stores)
        assert len(stored) == 1
        assert await stores[0].list_api_keys() == stored
        # Once a key exists, no store adds another.
        assert await _race(stores) == []
        assert await stores[-1].list_api_keys() == stored
    finally:
        for store in stores:
            await store.close()


async def test_on_postgresql(postgres: PostgresCluster) -> None:
    url = postgres.create_database()
    await _check([PostgresMetadataStore(url, pool_max_size=ATTEMPTS) for _ in range(STORES)])


async def test_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "files.sqlite3"
    await _check([SQLiteMetadataStore(path) for _ in range(STORES)])


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_an_admin_key_alone_holds_the_first_key_back(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """A database that holds only an admin key (made before the first start, with `keys
    create --admin --init`) gets no first key: its holder makes projects and keys over
    HTTP. The first key of an empty one makes its project."""
    stores: list[MetadataStore] = []
    for _ in range(2):
        if kind == "sqlite":
            stores.append(SQLiteMetadataStore(tmp_path / f"{len(stores)}.sqlite3"))
        else:
            cluster: PostgresCluster = request.getfixturevalue("postgres")
            stores.append(PostgresMetadataStore(cluster.create_database()))
    with_admin, empty = stores
    for store in stores:
        await store.open()
        await store.migrate()
    try:
        await with_admin.add_admin_key(admin_key_row("org-a"))
        assert not await with_admin.add_first_api_key(key_row())
        assert await with_admin.list_api_keys() == []
        first = key_row()
        assert await empty.add_first_api_key(first)
        project = await empty.get_project(first.org_id, first.project_id)
        assert project is not None and project.created_at == first.created_at
    finally:
        for store in stores:
            await store.close()
