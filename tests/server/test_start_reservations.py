"""What a server's start does with quota reservations it finds in its database: a database
that other servers share holds their uploads in flight, and a start must leave them be."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from openai_files.server.stores import QuotaExceeded
from openai_files.server.stores.postgres import PostgresMetadataStore

from .._server import ServerProcess, openai_files_cli
from .._services import PostgresCluster

QUOTA = 10_000


def test_a_start_on_a_shared_database_keeps_other_servers_reservations(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    """A server on PostgreSQL and a local folder is not its database's only writer: the
    reservation of an upload that another process has in flight survives its start, and
    still holds its bytes of the quota."""
    url = postgres.create_database()
    done = openai_files_cli("migrate", "--database", url)
    assert done.returncode == 0, done.stderr
    org, key = "org-" + secrets.token_hex(4), "file-" + secrets.token_hex(12)
    now = int(time.time())

    async def reserve_in_flight() -> None:
        meta = PostgresMetadataStore(url)
        await meta.open()
        try:
            await meta.reserve("rsv_" + secrets.token_hex(8), org, QUOTA, QUOTA, now + 3600, key)
        finally:
            await meta.close()

    async def still_reserved() -> None:
        meta = PostgresMetadataStore(url)
        await meta.open()
        try:
            assert await meta.named_blob_keys([key]) == {key}
            with pytest.raises(QuotaExceeded):  # its bytes still count
                await meta.reserve("rsv_" + secrets.token_hex(8), org, 1, QUOTA, now + 3600, "k")
        finally:
            await meta.close()

    asyncio.run(reserve_in_flight())
    server = ServerProcess(tmp_path / "data", "--database", url).start()  # start done
    try:
        asyncio.run(still_reserved())
    finally:
        server.stop()
