"""The blob store contract, as tests: subclass and provide a `blobs` fixture."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from ..server.stores import BlobStore
from ..server.stores._manifest import part_key

MiB = 1024 * 1024


def _key() -> str:
    return "file-" + secrets.token_hex(12)


async def _read(blobs: BlobStore, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in blobs.read(key, start, end)])


async def _write(
    blobs: BlobStore,
    key: str,
    data: bytes,
    chunk: int = 64 * 1024,
    buffer_bytes: int | None = None,
) -> None:
    writer = blobs.writer(key, buffer_bytes=buffer_bytes)
    for i in range(0, len(data), chunk):
        await writer.write(data[i : i + chunk])
    await writer.commit()


def _status(field: str) -> int:
    """A size field of this process's /proc status (VmRSS, VmHWM), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise LookupError(field)


async def _compose_and_check(blobs: BlobStore, sizes: Sequence[int]) -> None:
    """Compose sources of `sizes` (random bytes) and check the result byte for byte, and
    that the sources are still there."""
    sources = [(_key(), os.urandom(size)) for size in sizes]
    for name, data in sources:
        await _write(blobs, name, data, chunk=MiB)
    key = _key()
    await blobs.compose(key, [(name, len(data)) for name, data in sources])
    assert await _read(blobs, key) == b"".join(data for _, data in sources), sizes
    for name, data in sources:
        assert await _read(blobs, name) == data


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

    async def test_a_writer_sized_by_its_caller_writes_the_same_bytes(
        self, blobs: BlobStore
    ) -> None:
        """`buffer_bytes` bounds what a writer holds; what it writes is the same."""
        for buffer_bytes in (1, 10 * MiB, 1024 * MiB):
            key, data = _key(), os.urandom(12 * MiB + 3)
            await _write(blobs, key, data, chunk=MiB, buffer_bytes=buffer_bytes)
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

    async def test_ping_answers_and_leaves_nothing(self, blobs: BlobStore) -> None:
        later = time.time() + 3600
        before = [key async for key in blobs.list_object_keys(later)]
        for _ in range(3):
            await blobs.ping()
        assert [key async for key in blobs.list_object_keys(later)] == before
        assert await blobs.remove_stale_temp(later) == 0  # no temp file left either

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

    # -- compose --
    async def test_compose_sources_in_order(self, blobs: BlobStore) -> None:
        await _compose_and_check(blobs, [1, 1000, 3 * MiB + 7, 0, 1])
        await _compose_and_check(blobs, [1])
        await _compose_and_check(blobs, [])  # no sources: an empty object

    async def test_compose_around_the_s3_part_minimum(self, blobs: BlobStore) -> None:
        """S3 refuses parts under 5 MiB but the last: small sources merge, big ones are
        copied, a short run takes the head of the next big one; the last part may be
        1 byte."""
        for sizes in (
            [4 * MiB, 1 * MiB, 6 * MiB, 1],
            [6 * MiB, 1],
            [1, 6 * MiB],
            [1 * MiB, 11 * MiB, 1],
            [5 * MiB - 1, 5 * MiB, 5 * MiB + 1, 1],
            [1, 1, 5 * MiB, 2],
        ):
            await _compose_and_check(blobs, sizes)

    async def test_compose_many_small_sources(self, blobs: BlobStore) -> None:
        await _compose_and_check(blobs, [700 * 1024 + i for i in range(12)])

    async def test_compose_with_a_missing_source_makes_nothing(self, blobs: BlobStore) -> None:
        for size in (10, 6 * MiB):  # one PUT, and a multipart upload
            there = _key()
            await _write(blobs, there, b"s" * size, chunk=MiB)
            key, gone = _key(), _key()
            with pytest.raises(FileNotFoundError):
                await blobs.compose(key, [(there, size), (gone, size)])
            with pytest.raises(FileNotFoundError):
                await _read(blobs, key)
            assert key not in [k async for k in blobs.list_object_keys(time.time() + 3600)]

    async def test_compose_with_a_wrong_size_makes_nothing(self, blobs: BlobStore) -> None:
        for size in (10, 6 * MiB):
            first, second = _key(), _key()
            await _write(blobs, first, b"a" * size, chunk=MiB)
            await _write(blobs, second, b"b" * size, chunk=MiB)
            key = _key()
            with pytest.raises(ValueError):
                await blobs.compose(key, [(first, size), (second, size + 1)])
            with pytest.raises(FileNotFoundError):
                await _read(blobs, key)

    async def test_compose_replaces_an_existing_object(self, blobs: BlobStore) -> None:
        """Composing onto a key that exists replaces it whole, as a writer's commit does."""
        key, source = _key(), _key()
        await _write(blobs, key, b"old object")
        data = os.urandom(6 * MiB + 3)
        await _write(blobs, source, data, chunk=MiB)
        await blobs.compose(key, [(source, len(data))])
        assert await _read(blobs, key) == data

    async def test_compose_refuses_unsafe_keys(self, blobs: BlobStore) -> None:
        source = _key()
        await _write(blobs, source, b"x")
        with pytest.raises(ValueError):
            await blobs.compose("../x", [(source, 1)])
        with pytest.raises(ValueError):
            await blobs.compose(_key(), [("a/b", 1)])

    # -- a manifest: an upload's parts (`<key>.<part id>`) become `key`, none copied --
    async def _parts(self, blobs: BlobStore, key: str, sizes: Sequence[int]) -> list[bytes]:
        pieces = [os.urandom(size) for size in sizes]
        names = [part_key(key, f"part_{i:04d}") for i in range(len(sizes))]
        for name, data in zip(names, pieces, strict=True):
            await _write(blobs, name, data, chunk=MiB)
        assert await blobs.compose(key, list(zip(names, sizes, strict=True)))
        return pieces

    async def test_compose_of_parts_writes_a_manifest_and_reads_across_them(
        self, blobs: BlobStore
    ) -> None:
        key = _key()
        sizes = [3, 0, 70_000, 1, MiB + 5, 2]
        whole = b"".join(await self._parts(blobs, key, sizes))
        names = [part_key(key, f"part_{i:04d}") for i in range(len(sizes))]
        assert await blobs.parts_of(key) == list(zip(names, sizes, strict=True))
        assert await _read(blobs, key) == whole
        edges = [0]
        for size in sizes:
            edges.append(edges[-1] + size)
        for start in edges:
            for end in edges:
                for a, b in ((start, end), (max(0, start - 1), end + 1), (start + 1, end)):
                    b = min(b, len(whole))
                    if a <= b:
                        assert await _read(blobs, key, a, b) == whole[a:b], (a, b)
        assert await _read(blobs, key, 5) == whole[5:]
        listed = {k async for k in blobs.list_object_keys(time.time() + 3600)}
        assert {key, *names} <= listed
        # A plain object is not composed; a missing one is neither.
        plain = _key()
        await _write(blobs, plain, b"plain")
        assert await blobs.parts_of(plain) is None
        assert await blobs.parts_of(_key()) is None

    async def test_deleting_a_composed_object_deletes_its_parts(self, blobs: BlobStore) -> None:
        key = _key()
        await self._parts(blobs, key, [10, 20, 30])
        names = [name for name, _ in await blobs.parts_of(key) or []]
        # Without its parts (a completion undone): the parts stay, the object goes.
        await blobs.delete(key, parts=False)
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)
        for name in names:
            assert len(await _read(blobs, name)) > 0
        assert await blobs.compose(key, [(n, s) for n, s in zip(names, [10, 20, 30], strict=True)])
        await blobs.delete(key)
        for name in [key, *names]:
            with pytest.raises(FileNotFoundError):
                await _read(blobs, name)
        listed = {k async for k in blobs.list_object_keys(time.time() + 3600)}
        assert not listed & {key, *names}
        await blobs.delete(key)  # again: nothing to do

    async def test_compose_of_parts_checks_them_and_makes_nothing_when_wrong(
        self, blobs: BlobStore
    ) -> None:
        key = _key()
        there, gone = part_key(key, "part_a"), part_key(key, "part_b")
        await _write(blobs, there, b"x" * 10)
        with pytest.raises(FileNotFoundError):
            await blobs.compose(key, [(there, 10), (gone, 10)])
        with pytest.raises(ValueError):
            await blobs.compose(key, [(there, 11)])
        with pytest.raises(FileNotFoundError):
            await _read(blobs, key)
        assert await blobs.parts_of(key) is None

    async def test_a_manifest_replaces_an_object_composed_by_copy(self, blobs: BlobStore) -> None:
        """A completion taken over may find a copy under the key; the manifest replaces it."""
        key = _key()
        await _write(blobs, key, b"an older copy")
        pieces = await self._parts(blobs, key, [4, 4])
        assert await _read(blobs, key) == b"".join(pieces)

    @pytest.mark.slow
    async def test_compose_of_300_mb_keeps_peak_rss_growth_under_32_mb(
        self, blobs: BlobStore
    ) -> None:
        """Five 60 MiB sources composed: the bytes are copied by the kernel or by S3, not
        held here (peak RSS, VmHWM, reset to the RSS before the compose)."""
        size = 60 * MiB
        block = os.urandom(MiB)
        sources = []
        for n in range(5):
            name = _key()
            writer = blobs.writer(name)
            for i in range(size // MiB):
                await writer.write(n.to_bytes(2, "big") + i.to_bytes(4, "big") + block[6:])
            await writer.commit()
            sources.append((name, size))
        key = _key()
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM back to VmRSS (Linux)
        before = _status("VmRSS")
        await blobs.compose(key, sources)
        growth = _status("VmHWM") - before
        assert growth < 32 * MiB, f"peak RSS grew by {growth / MiB:.1f} MiB"
        seen = 0
        async for chunk in blobs.read(key):
            seen += len(chunk)
        assert seen == 5 * size
        first = await _read(blobs, key, 0, 6)
        last = await _read(blobs, key, 5 * size - MiB, 5 * size - MiB + 6)
        assert first == bytes(6) and last == (4).to_bytes(2, "big") + (59).to_bytes(4, "big")
