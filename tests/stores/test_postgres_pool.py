"""The PostgreSQL store's pool gives a connection back without a reset round trip (asyncpg's
default sends RESET ALL, CLOSE ALL, UNLISTEN * and an advisory unlock after every
request), and still leaves no transaction open on a connection given back."""

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from openai_files.server.stores import Owner
from openai_files.server.stores.postgres import PostgresMetadataStore

from .._services import PostgresCluster

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(postgres: PostgresCluster) -> AsyncIterator[PostgresMetadataStore]:
    meta = PostgresMetadataStore(postgres.create_database(), pool_min_size=1, pool_max_size=1)
    await meta.open()
    await meta.migrate()
    yield meta
    await meta.close()


async def test_a_read_sends_its_query_and_no_reset(store: PostgresMetadataStore) -> None:
    sent: list[str] = []
    assert store._pool is not None
    async with store._pool.acquire() as conn:  # the pool's only connection
        conn.add_query_logger(lambda record: sent.append(record.query))
    owner, now = Owner("org-pool", "proj_pool"), int(time.time())
    assert await store.get_file(owner, "file-nothing", now) is None
    await store.list_files(owner, purpose=None, limit=10, order="desc", after=None, now=now)
    assert len(sent) == 2, sent
    assert not any("RESET" in q or "UNLISTEN" in q or "advisory" in q for q in sent), sent


async def test_a_transaction_left_open_is_rolled_back(store: PostgresMetadataStore) -> None:
    assert store._pool is not None
    conn: Any
    async with store._pool.acquire() as conn:
        await conn.execute("BEGIN")
        await conn.execute("CREATE TABLE left_open (x INTEGER)")
    async with store._pool.acquire() as conn:
        assert not conn.is_in_transaction()
        assert await conn.fetchval("SELECT to_regclass('left_open')") is None
