"""The store settings reach the stores the registry builds, and do what they say: the
PostgreSQL pool's sizes and connect timeout, the S3 part size, parts in flight and start
check timeout."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from openai_files.server.settings import UPLOAD_PART_BUFFER_BYTES, MiB, Settings
from openai_files.server.stores import (
    StoreUnavailable,
    open_blob_store,
    open_metadata_store,
)
from openai_files.server.stores.s3 import S3BlobStore

from .._services import LOOPBACK, PostgresCluster, SeaweedS3

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP port that accepts connections and never answers: a server that hangs."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        server.close()
        await server.wait_closed()


# -- PostgreSQL --


async def test_pool_sizes_reach_the_postgres_pool(postgres: PostgresCluster) -> None:
    settings = Settings(database_pool_min_size=2, database_pool_max_size=3)
    store: Any = open_metadata_store(postgres.create_database(), settings)
    await store.open()
    try:
        pool = store._pool
        assert (pool.get_min_size(), pool.get_max_size()) == (2, 3)
        # The minimum is open from the start: two sessions on this database.
        sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
        assert await pool.fetchval(sessions) == 2
        # The maximum bounds it: with three connections taken, a fourth waits.
        taken = [await pool.acquire() for _ in range(3)]
        with pytest.raises(TimeoutError):
            await pool.acquire(timeout=0.3)
        for conn in taken:
            await pool.release(conn)
    finally:
        await store.close()


async def test_connect_timeout_bounds_the_wait_for_a_hanging_postgres() -> None:
    settings = Settings(database_connect_timeout_seconds=0.5)
    async with silent_server() as port:
        store = open_metadata_store(f"postgresql://files@{LOOPBACK}:{port}/files", settings)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"no answer in 0\.5 s"):
            await store.open()
        assert time.monotonic() - started < 3  # the default would wait 10 s


# -- S3 --


@dataclass
class PartCounter:
    """What a proxy in front of S3 saw of multipart uploads."""

    parts: int = 0
    in_flight: int = 0
    most_in_flight: int = 0


@contextlib.asynccontextmanager
async def counting_proxy(
    upstream_port: int, delay: float
) -> AsyncIterator[tuple[int, PartCounter]]:
    """A TCP proxy to the S3 server that counts the part uploads (UploadPart requests) it
    passes and how many were in flight at once; each part's answer is held for `delay`
    seconds, so that parts sent together overlap."""
    seen = PartCounter()
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def handle(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        writers.append(c_writer)
        u_reader, u_writer = await asyncio.open_connection(LOOPBACK, upstream_port)
        writers.append(u_writer)
        # One request at a time on a connection (HTTP/1.1 without pipelining): a request
        # starts with the client's first bytes and ends with the server's first bytes.
        state = {"busy": False, "part": False}

        async def requests() -> None:
            while data := await c_reader.read(65536):
                if not state["busy"]:
                    state["busy"] = True
                    state["part"] = b"partNumber=" in data.split(b"\r\n", 1)[0]
                    if state["part"]:
                        seen.parts += 1
                        seen.in_flight += 1
                        seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
                u_writer.write(data)
                await u_writer.drain()
            u_writer.close()

        async def answers() -> None:
            while data := await u_reader.read(65536):
                if state["busy"]:
                    if state["part"]:
                        await asyncio.sleep(delay)
                        seen.in_flight -= 1
                    state["busy"] = False
                c_writer.write(data)
                await c_writer.drain()
            c_writer.close()

        with contextlib.suppress(OSError):
            await asyncio.gather(requests(), answers())

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(handle(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, LOOPBACK, 0)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await server.wait_closed()


async def _upload_through_proxy(
    s3: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    settings: Settings,
    size: int,
    key: str = "",
    buffer_bytes: int | None = None,
) -> PartCounter:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    async with counting_proxy(s3.port, delay=0.3) as (port, seen):
        url = s3.url("conformance", prefix=secrets.token_hex(4)).replace(
            s3.endpoint, f"http://{LOOPBACK}:{port}"
        )
        blobs = open_blob_store(url, settings)
        key = key or "file-" + secrets.token_hex(8)
        writer = blobs.writer(key, buffer_bytes=buffer_bytes)
        for _ in range(size // MiB):
            await writer.write(b"p" * MiB)
        await writer.commit()
        got = b"".join([bytes(chunk) async for chunk in blobs.read(key)])
        assert got == b"p" * size
        return seen


async def test_part_size_sets_how_a_file_is_cut(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 MiB: three parts of at most 5 MiB, two of the default 8 MiB."""
    five = await _upload_through_proxy(
        s3, monkeypatch, Settings(storage_part_bytes=5 * MiB), 12 * MiB
    )
    assert five.parts == 3
    default = await _upload_through_proxy(s3, monkeypatch, Settings(), 12 * MiB)
    assert default.parts == 2


async def test_the_caller_sizes_a_writer_not_the_keys_shape(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12 MiB: two parts of the store's 8 MiB whatever the key (an Uploads API part's id
    too); three of S3's smallest, one at a time, when the caller gives a 10 MiB buffer."""
    part_key = "part_" + secrets.token_hex(8)
    by_store = await _upload_through_proxy(s3, monkeypatch, Settings(), 12 * MiB, part_key)
    assert (by_store.parts, by_store.most_in_flight) == (2, 2)
    by_caller = await _upload_through_proxy(
        s3, monkeypatch, Settings(), 12 * MiB, buffer_bytes=UPLOAD_PART_BUFFER_BYTES
    )
    assert (by_caller.parts, by_caller.most_in_flight) == (3, 1)


async def test_concurrent_parts_bound_the_parts_in_flight(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Five parts, each answered late: one at a time with 1, three at once with 3."""
    for concurrent, expected in ((1, 1), (3, 3)):
        settings = Settings(storage_part_bytes=5 * MiB, storage_concurrent_parts=concurrent)
        seen = await _upload_through_proxy(s3, monkeypatch, settings, 25 * MiB)
        assert (seen.parts, seen.most_in_flight) == (5, expected), concurrent


def test_a_part_size_outside_s3s_limits_is_refused() -> None:
    """S3 refuses parts under 5 MiB (but the last) and over 5 GiB: the store does too, at
    once, rather than on the first large upload."""
    url = "s3://files?endpoint=http://127.0.0.1:9&region=us-east-1&credentials=instance"
    for part_bytes in (5 * MiB - 1, 5 * 1024 * MiB + 1):
        with pytest.raises(ValueError, match="outside S3's limits: 5242880 \\(5 MB\\) to"):
            S3BlobStore(url, part_bytes=part_bytes)
    with pytest.raises(ValueError, match="it must be at least 1"):
        S3BlobStore(url, concurrent_parts=0)
    assert S3BlobStore(url, part_bytes=5 * MiB).part_bytes == 5 * MiB


async def test_check_timeout_bounds_the_start_check_of_a_hanging_endpoint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    async with silent_server() as port:
        url = f"s3://files?endpoint=http://{LOOPBACK}:{port}&region=us-east-1"
        store: Any = open_blob_store(url, Settings(storage_check_timeout_seconds=0.3))
        assert store.check_timeout == 0.3
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="cannot reach the S3 endpoint"):
            await store.check()
        assert time.monotonic() - started < 4  # one default attempt alone waits 5 s
