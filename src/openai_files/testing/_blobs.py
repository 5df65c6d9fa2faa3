"""The blob store contract, as tests: subclass and provide a `blobs` fixture."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence

import anyio
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
            with pytest.raises(ValueError):
                await _read(blobs, key)
            with pytest.raises(ValueError):
                await blobs.delete(key)

    async def test_empty_range(self, blobs: BlobStore) -> None:
        key = _key()
        await _write(blobs, key, b"0123456789")
        assert await _read(blobs, key, 5, 5) == b""
        assert await _read(blobs, key, 0, 10) == b"0123456789"
        with pytest.raises(FileNotFoundError):  # a missing object, even for no bytes
            await _read(blobs, _key(), 0, 0)

    async def test_a_closed_writer_takes_no_bytes(self, blobs: BlobStore) -> None:
        committed = blobs.writer(_key())
        await committed.write(b"a")
        await committed.commit()
        aborted = blobs.writer(_key())
        await aborted.write(b"b")
        await aborted.abort()
        for writer in (committed, aborted):
            with pytest.raises(RuntimeError):
                await writer.write(b"more")

    async def test_racing_deletes_all_succeed(self, blobs: BlobStore) -> None:
        key = _key()
        await _write(blobs, key, b"twice")
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(blobs.delete, key)
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)

    async def test_the_sweep_spares_an_open_writer(self, blobs: BlobStore) -> None:
        """A writer of this process still open, however old, survives both cleanups when
        its key is named (as a live upload's reservation names it)."""
        key, data = _key(), os.urandom(9 * MiB)  # past one S3 part: a multipart upload
        writer = blobs.writer(key)
        await writer.write(data[: 9 * MiB - 1])
        later = time.time() + 3600

        async def named(keys: Sequence[str]) -> set[str]:
            return set(keys)

        assert await blobs.remove_stale_temp(later) >= 0
        assert await blobs.abort_stale_uploads(later, named) == 0
        await writer.write(data[9 * MiB - 1 :])
        await writer.commit()
        assert await _read(blobs, key) == data

    async def test_release_reserve_any_time(self, blobs: BlobStore) -> None:
        """Giving the disk's reserve back (the app does it when a write finds the disk
        full) is safe at any time: with room on the disk, the store works on."""
        assert isinstance(blobs.release_reserve(), bool)
        assert blobs.release_reserve() is False  # nothing left to give
        key = _key()
        await _write(blobs, key, b"after")
        assert await _read(blobs, key) == b"after"
        await blobs.remove_stale_temp(time.time() - 3600)  # the sweep takes it again

    async def test_close_twice(self, blobs: BlobStore) -> None:
        await blobs.close()  # and the fixture closes it again

    async def test_check_passes(self, blobs: BlobStore) -> None:
        await blobs.check()

    async def test_lock_exclusive_nests_and_lets_go(self, blobs: BlobStore) -> None:
        before = blobs.shared
        outer = blobs.lock_exclusive()
        inner = blobs.lock_exclusive()  # again in the same process: nested
        held = blobs.shared
        key = _key()
        await _write(blobs, key, b"held")  # the store works while held
        assert await _read(blobs, key) == b"held"
        inner()
        assert blobs.shared == held  # still held by the outer hold
        outer()
        assert blobs.shared == before
