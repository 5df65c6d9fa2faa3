"""BlobStore.compose beyond the conformance suite: S3's part plan, the proof that big
sources are copied by S3 and not read here, an aborted compose leaving no multipart upload,
and the local folder's copy when copy_file_range is refused."""

from __future__ import annotations

import errno
import os
import random
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest

from openai_files.server.stores._s3_parts import plan_parts
from openai_files.server.stores.local import LocalBlobStore
from openai_files.server.stores.s3 import S3BlobStore

from .._services import SeaweedS3

MiB = 1024 * 1024
BUCKET = "conformance"


def _key() -> str:
    return "file-" + secrets.token_hex(12)


async def _write(blobs: LocalBlobStore | S3BlobStore, key: str, data: bytes) -> None:
    writer = blobs.writer(key)
    for i in range(0, len(data), MiB):
        await writer.write(data[i : i + MiB])
    await writer.commit()


async def _read(blobs: LocalBlobStore | S3BlobStore, key: str) -> bytes:
    return b"".join([bytes(chunk) async for chunk in blobs.read(key)])


# -- the S3 part plan --
def _check_plan(sizes: Sequence[int], low: int, high: int) -> None:
    sources = [(f"s{i}", size) for i, size in enumerate(sizes)]
    parts = plan_parts(sources, low, high)
    # The pieces, in order, are the sources' bytes, each once.
    covered: list[tuple[str, int, int]] = []
    for part in parts:
        for piece in part.pieces:
            if covered and covered[-1][0] == piece.key and covered[-1][2] == piece.start:
                covered[-1] = (piece.key, covered[-1][1], piece.end)
            else:
                covered.append((piece.key, piece.start, piece.end))
    assert covered == [(key, 0, size) for key, size in sources if size], (sizes, parts)
    for n, part in enumerate(parts):
        assert part.size <= high, (sizes, part)
        if n < len(parts) - 1:
            assert part.size >= low, (sizes, n, part)  # only the last may be small
        if part.copy:
            assert len(part.pieces) == 1
        else:
            assert part.size < 2 * low, (sizes, part)  # what memory holds at once


def test_plan_parts_covers_the_sources_within_s3_limits() -> None:
    rng = random.Random(11)
    for _ in range(3000):
        sizes = [rng.choice([0, 1, 2, 4, 5, 6, 9, 10, 11, 49, 50, 51, 120]) for _ in range(8)]
        sizes = sizes[: rng.randint(1, 8)]
        if sum(sizes) >= 5:  # under the minimum, compose sends one PUT, not a plan
            _check_plan(sizes, low=5, high=50)


def test_plan_parts_copies_big_sources_and_merges_small_ones() -> None:
    parts = plan_parts([("a", 6 * MiB), ("b", 1 * MiB), ("c", 11 * MiB), ("d", 1)])
    shape = [(p.copy, [(x.key, x.start, x.end) for x in p.pieces]) for p in parts]
    assert shape == [
        (True, [("a", 0, 6 * MiB)]),
        (False, [("b", 0, MiB), ("c", 0, 4 * MiB)]),  # the head of the next big source
        (True, [("c", 4 * MiB, 11 * MiB)]),
        (False, [("d", 0, 1)]),  # a last part of 1 byte
    ]
    # A source over S3's 5 GiB part limit is copied in near-equal parts.
    huge = plan_parts([("h", 12 * 1024 * MiB)])
    assert [p.size for p in huge] == [4 * 1024 * MiB] * 3


# -- S3 --
@pytest.fixture
async def s3_blobs(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[S3BlobStore]:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    store = S3BlobStore(s3.url(BUCKET, prefix=secrets.token_hex(4)))
    await store.open()
    yield store
    await store.close()


def _open_uploads(s3: SeaweedS3, store: S3BlobStore) -> list[dict[str, Any]]:
    listed = s3.client().list_multipart_uploads(Bucket=BUCKET, Prefix=store.prefix + "/")
    uploads: list[dict[str, Any]] = listed.get("Uploads", [])
    return uploads


@pytest.mark.anyio
async def test_s3_copies_big_sources_server_side(s3_blobs: S3BlobStore) -> None:
    """Sources of 5 MiB or more never pass through this process; small ones do, merged."""
    big = [(_key(), os.urandom(size)) for size in (5 * MiB, 7 * MiB, 11 * MiB + 1)]
    for name, data in big:
        await _write(s3_blobs, name, data)
    key = _key()
    await s3_blobs.compose(key, [(name, len(data)) for name, data in big])
    assert s3_blobs.relayed_bytes == 0
    assert await _read(s3_blobs, key) == b"".join(data for _, data in big)

    mixed = [big[0], (_key(), os.urandom(MiB)), big[2], (_key(), b"!")]
    for name, data in mixed[1::2]:
        await _write(s3_blobs, name, data)
    sources = [(name, len(data)) for name, data in mixed]
    key = _key()
    await s3_blobs.compose(key, sources)
    sent = sum(part.size for part in plan_parts(sources) if not part.copy)
    assert s3_blobs.relayed_bytes == sent == MiB + 4 * MiB + 1  # with 4 MiB of the 11 MiB
    assert await _read(s3_blobs, key) == b"".join(data for _, data in mixed)


@pytest.mark.anyio
async def test_s3_cancelled_compose_leaves_no_upload_nor_object(
    s3_blobs: S3BlobStore, s3: SeaweedS3
) -> None:
    """A compose cancelled mid-way (a client gone, a replica stopping) aborts its multipart
    upload: no object appears, and no upload stays open."""
    sources = []
    for _ in range(40):  # small sources: sent through this process, a part at a time
        name = _key()
        await _write(s3_blobs, name, os.urandom(MiB))
        sources.append((name, MiB))
    key = _key()
    seen_open = False
    with anyio.move_on_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(s3_blobs.compose, key, sources)
            while not seen_open:
                seen_open = bool(await anyio.to_thread.run_sync(_open_uploads, s3, s3_blobs))
            tg.cancel_scope.cancel()
    assert seen_open
    assert _open_uploads(s3, s3_blobs) == []
    with pytest.raises(FileNotFoundError):
        await _read(s3_blobs, key)


@pytest.mark.anyio
async def test_s3_leftover_compose_upload_is_for_the_reconciler(
    s3_blobs: S3BlobStore, s3: SeaweedS3
) -> None:
    """A compose's multipart upload that a killed replica left open is under the file id
    the upload reserved, so the reconciler aborts it once no reservation names the key."""
    key = _key()
    s3.client().create_multipart_upload(Bucket=BUCKET, Key=s3_blobs.path_of(key))
    assert [u["Key"] for u in _open_uploads(s3, s3_blobs)] == [s3_blobs.path_of(key)]

    async def named_all(keys: Sequence[str]) -> set[str]:
        return set(keys)

    async def named_none(keys: Sequence[str]) -> set[str]:
        return set()

    later = time.time() + 3600
    assert await s3_blobs.abort_stale_uploads(later, named_all) == 0  # a live upload's
    assert await s3_blobs.abort_stale_uploads(later, named_none) == 1
    assert _open_uploads(s3, s3_blobs) == []


@pytest.mark.anyio
async def test_s3_compose_aborts_the_upload_of_a_dead_earlier_attempt(
    s3_blobs: S3BlobStore, s3: SeaweedS3
) -> None:
    """A completion taken over from a dead server composes the same key again: the dead
    attempt's multipart upload (named by the file, so never the reconciler's) goes too."""
    key = _key()
    s3.client().create_multipart_upload(Bucket=BUCKET, Key=s3_blobs.path_of(key))
    sources = [(_key(), os.urandom(size)) for size in (5 * MiB, 1)]
    for name, data in sources:
        await _write(s3_blobs, name, data)
    await s3_blobs.compose(key, [(name, len(data)) for name, data in sources])
    assert _open_uploads(s3, s3_blobs) == []
    assert await _read(s3_blobs, key) == b"".join(data for _, data in sources)


@pytest.mark.anyio
async def test_s3_compose_without_signing_keys_streams_through_a_writer(
    s3_blobs: S3BlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With credentials the store cannot sign its own requests with (web identity,
    container, instance role), compose still works, streaming the sources."""
    # As a store with such credentials is built (obstore still holds the test's keys).
    monkeypatch.setattr(s3_blobs._composer, "api", None)
    sources = [(_key(), os.urandom(size)) for size in (6 * MiB, 1)]
    for name, data in sources:
        await _write(s3_blobs, name, data)
    key = _key()
    await s3_blobs.compose(key, [(name, len(data)) for name, data in sources])
    assert await _read(s3_blobs, key) == b"".join(data for _, data in sources)
    assert s3_blobs.relayed_bytes == 6 * MiB + 1


# -- the local folder --
@pytest.fixture
async def local_blobs(tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
    store = LocalBlobStore(tmp_path / "data")
    await store.open()
    yield store
    await store.close()


@pytest.mark.anyio
@pytest.mark.parametrize(
    "refusal", [errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL, None]
)
async def test_local_copies_in_chunks_where_copy_file_range_is_refused(
    local_blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch, refusal: int | None
) -> None:
    """Another file system (EXDEV), an old kernel (ENOSYS), a file system without it
    (EOPNOTSUPP, EINVAL) or no such call at all (macOS): the bytes are copied in chunks."""
    if refusal is None:
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    else:

        def refused(*args: Any) -> int:
            raise OSError(refusal, os.strerror(refusal))

        monkeypatch.setattr(os, "copy_file_range", refused)
    sources = [(_key(), os.urandom(size)) for size in (3 * MiB + 5, 1, 0, 2 * MiB)]
    for name, data in sources:
        await _write(local_blobs, name, data)
    key = _key()
    await local_blobs.compose(key, [(name, len(data)) for name, data in sources])
    assert await _read(local_blobs, key) == b"".join(data for _, data in sources)
    assert list(local_blobs.tmp_dir.iterdir()) == []


@pytest.mark.anyio
async def test_local_compose_on_a_full_disk_releases_the_reserve(
    local_blobs: LocalBlobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills up mid-copy: the compose fails with the disk's error, leaves no temp
    file nor object, and gives back the reserve so that deletes can still run."""
    source = _key()
    await _write(local_blobs, source, os.urandom(2 * MiB))

    def full(*args: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "copy_file_range", full)
    key = _key()
    assert local_blobs.reserve_path.exists()
    with pytest.raises(OSError) as caught:
        await local_blobs.compose(key, [(source, 2 * MiB)])
    assert caught.value.errno == errno.ENOSPC
    assert not local_blobs.reserve_path.exists()
    assert list(local_blobs.tmp_dir.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        await _read(local_blobs, key)
