"""The md5 of an upload, computed as its parts arrive one after the other, so that a
completion with an md5 does not read the file back; parts sent at once, or out of order,
make completion read the composed bytes once. Driven in process over real stores (SQLite and
a local folder); the blob store is wrapped only to count the reads it serves."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from openai_files.server.errors import InvalidRequest
from openai_files.server.service import FilesService
from openai_files.server.settings import Settings
from openai_files.server.stores import (
    Chunk,
    Owner,
    ensure_schema,
    open_blob_store,
    open_metadata_store,
)

pytestmark = pytest.mark.anyio
ALICE = Owner("org-alice", "proj-a")
PARTS = [bytes([65 + i]) * (10_000 + i) for i in range(4)]
WHOLE = b"".join(PARTS)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FilesService]:
    settings = Settings(data_dir=tmp_path)
    meta = open_metadata_store(settings.database_url)
    blobs = open_blob_store(settings.storage_url)
    await meta.open()
    await ensure_schema(meta)
    await blobs.open()
    reads: list[str] = []
    real_read = blobs.read

    def counting_read(key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        reads.append(key)
        return real_read(key, start, end)

    blobs.read = counting_read  # type: ignore[method-assign]  # the test counts the reads
    service = FilesService(settings, meta, blobs)
    service.reads = reads  # type: ignore[attr-defined]
    try:
        yield service
    finally:
        await blobs.close()
        await meta.close()


async def _chunks(data: bytes, gate: anyio.Event | None = None) -> AsyncIterator[bytes]:
    yield data[:1000]
    if gate is not None:
        await gate.wait()
    for i in range(1000, len(data), 4096):
        yield data[i : i + 4096]


async def _create(service: FilesService) -> str:
    upload = await service.uploads.create(
        ALICE, filename="a.bin", purpose="assistants", nbytes=len(WHOLE), mime_type="x/y"
    )
    return upload.id


async def test_parts_in_order_complete_without_reading(service: FilesService) -> None:
    uploads, reads = service.uploads, service.reads  # type: ignore[attr-defined]
    upload_id = await _create(service)
    ids = [(await uploads.add_part(ALICE, upload_id, _chunks(p))).id for p in PARTS]
    # A wrong md5 is still refused, from the md5 computed as the parts arrived...
    with pytest.raises(InvalidRequest, match="does not match"):
        await uploads.complete(ALICE, upload_id, ids, hashlib.md5(b"x").hexdigest())
    assert reads == []
    # ... and the right one completes the upload, with no byte read back.
    _, file = await uploads.complete(ALICE, upload_id, ids, hashlib.md5(WHOLE).hexdigest())
    assert reads == []
    assert file.bytes == len(WHOLE)
    got = b"".join([bytes(c) async for c in service.blobs.read(file.blob_key)])
    assert got == WHOLE


async def test_parts_in_another_order_are_read_once(service: FilesService) -> None:
    uploads, reads = service.uploads, service.reads  # type: ignore[attr-defined]
    upload_id = await _create(service)
    # Sent last part first: the running md5 is of another order than the file's.
    ids = {
        i: (await uploads.add_part(ALICE, upload_id, _chunks(PARTS[i]))).id for i in (3, 0, 1, 2)
    }
    ordered = [ids[i] for i in range(4)]
    _, file = await uploads.complete(ALICE, upload_id, ordered, hashlib.md5(WHOLE).hexdigest())
    assert reads == [file.blob_key]


async def test_parts_at_once_are_read_once(service: FilesService) -> None:
    uploads, reads = service.uploads, service.reads  # type: ignore[attr-defined]
    upload_id = await _create(service)
    ids: dict[int, str] = {}
    first = await uploads.add_part(ALICE, upload_id, _chunks(PARTS[0]))
    ids[0] = first.id
    gate = anyio.Event()

    async def send(i: int, gate: anyio.Event | None) -> None:
        ids[i] = (await uploads.add_part(ALICE, upload_id, _chunks(PARTS[i], gate))).id

    async with anyio.create_task_group() as tg:
        # Part 1 is still streaming when part 2 begins: neither can continue the md5.
        tg.start_soon(send, 1, gate)
        await anyio.sleep(0.05)
        tg.start_soon(send, 2, None)
        await anyio.sleep(0.05)
        gate.set()
    ids[3] = (await uploads.add_part(ALICE, upload_id, _chunks(PARTS[3]))).id
    ordered = [ids[i] for i in range(4)]
    with pytest.raises(InvalidRequest, match="does not match"):
        await uploads.complete(ALICE, upload_id, ordered, hashlib.md5(b"x").hexdigest())
    _, file = await uploads.complete(ALICE, upload_id, ordered, hashlib.md5(WHOLE).hexdigest())
    assert reads == [file.blob_key, file.blob_key]  # once per completion asked


async def test_a_refused_part_leaves_the_running_md5_as_it_was(service: FilesService) -> None:
    uploads, reads = service.uploads, service.reads  # type: ignore[attr-defined]
    upload_id = await _create(service)
    ids = [(await uploads.add_part(ALICE, upload_id, _chunks(PARTS[0]))).id]

    async def broken() -> AsyncIterator[bytes]:
        yield b"garbage that never becomes a part"
        raise OSError("client gone")

    with pytest.raises(OSError):
        await uploads.add_part(ALICE, upload_id, broken())
    ids += [(await uploads.add_part(ALICE, upload_id, _chunks(p))).id for p in PARTS[1:]]
    await uploads.complete(ALICE, upload_id, ids, hashlib.md5(WHOLE).hexdigest())
    assert reads == []
