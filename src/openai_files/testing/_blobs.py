"""The blob store contract, as tests: subclass and provide a `blobs` fixture."""

from __future__ import annotations

import os
import secrets
import time

import pytest

from ..server.stores import BlobStore

MiB = 1024 * 1024


def _key() -> str:
    return "file-" + secrets.token_hex(12)


async def _read(blobs: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key, start, end)])


async def _write(blobs: BlobStore, key: str, data: bytes, chunk: int = 64 * 1024) -> None:
    writer = blobs.writer(key)
    for i in range(0, len(data), chunk):
        await writer.write(data[i : i + chunk])
    await writer.commit()


@pytest.mark.anyio
class BlobStoreConformance:
    """Every blob store passes these. Provide `blobs`: an opened store with no objects."""

    async def test_round_trip_sizes(self, blobs: BlobStore) -> None:
        for size in (0, 1, 1000, 3 * MiB + 17):
            key, data = _key(), os.urandom(size)
            await _write(blobs, key, data)
            assert await _read(blobs, key) == data

    async def test_large_object_in_parts(self, blobs: BlobStore) -> None:
        key, data = _key(), os.urandom(21 * MiB + 5)
        await _write(blobs, key, data, chunk=1 * MiB)
        assert await _read(blobs, key) == data

    async def test_ranges(self, blobs: BlobStore) -> None:
        key, data = _key(), bytes(range(256)) * 100
        await _write(blobs, key, data)
        assert await _read(blobs, key, 10, 20) == data[10:20]
        assert await _read(blobs, key, 25_000) == data[25_000:]
        assert await _read(blobs, key, 0, 1) == data[:1]

    async def test_nothing_visible_before_commit(self, blobs: BlobStore) -> None:
        key = _key()
        writer = blobs.writer(key)
        await writer.write(b"x" * 1000)
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)
        assert key not in [k async for k in blobs.list_object_keys(time.time() + 3600)]
        await writer.commit()
        assert await _read(blobs, key) == b"x" * 1000

    async def test_abort_leaves_nothing(self, blobs: BlobStore) -> None:
        for size in (10, 20 * MiB):
            key = _key()
            writer = blobs.writer(key)
            for _ in range(0, size, MiB):
                await writer.write(b"y" * min(MiB, size))
            await writer.abort()
            await writer.abort()  # twice is fine
            with pytest.raises(FileNotFoundError):
                await _read(blobs, key)
            assert key not in [k async for k in blobs.list_object_keys(time.time() + 3600)]

    async def test_missing_and_delete(self, blobs: BlobStore) -> None:
        with pytest.raises(FileNotFoundError):
            await _read(blobs, _key())
        key = _key()
        await _write(blobs, key, b"bye")
        await blobs.delete(key)
        await blobs.delete(key)  # already gone: no error
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)

    async def test_list_object_keys_by_age(self, blobs: BlobStore) -> None:
        keys = [_key() for _ in range(3)]
        for key in keys:
            await _write(blobs, key, b"k")
        later = {k async for k in blobs.list_object_keys(time.time() + 3600)}
        assert set(keys) <= later
        earlier = {k async for k in blobs.list_object_keys(time.time() - 3600)}
        assert not set(keys) & earlier

    async def test_unsafe_keys_are_refused(self, blobs: BlobStore) -> None:
        for key in ("../x", "a/b", ""):
            with pytest.raises(ValueError):
                blobs.writer(key)
