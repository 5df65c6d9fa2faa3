"""The service's rules, driven in process with plain values (no HTTP) over real stores: a
SQLite database and a local folder in a temporary directory."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server import settings as S
from openai_files.server._forms import read_upload_form
from openai_files.server._multipart import Event, PartData, PartEnd, PartStart
from openai_files.server.errors import (
    FileTooLarge,
    InvalidRequest,
    NotFound,
    StorageLimitExceeded,
)
from openai_files.server.service import FilesService, ListQuery
from openai_files.server.settings import Settings
from openai_files.server.stores import (
    FileRecord,
    Owner,
    ensure_schema,
    open_blob_store,
    open_metadata_store,
)

pytestmark = pytest.mark.anyio
ALICE = Owner("org-alice", "proj-a")
BOB = Owner("org-bob", "proj-b")
Part = tuple[str, str | None, bytes]


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[FilesService]:
    settings = Settings(
        data_dir=tmp_path, org_quota_bytes=150_000, max_file_bytes=200_000, max_batch_file_bytes=300
    )
    meta = open_metadata_store(settings.database_url)
    blobs = open_blob_store(settings.storage_url)
    await meta.open()
    await ensure_schema(meta)
    await blobs.open()
    try:
        yield FilesService(settings, meta, blobs)
    finally:
        await blobs.close()
        await meta.close()


async def _events(
    parts: list[Part], chunk: int = 100, seen: list[int] | None = None
) -> AsyncIterator[Event]:
    for name, filename, data in parts:
        yield PartStart(name=name, filename=filename, content_type="application/jsonl")
        for i in range(0, len(data), chunk):
            if seen is not None and name == "file":
                seen.append(i)
            yield PartData(data[i : i + chunk])
        yield PartEnd()


async def _upload(
    service: FilesService, owner: Owner, parts: list[Part], length: int | None = None
) -> FileRecord:
    async with service.upload(owner, length) as upload:
        form = await read_upload_form(_events(parts), upload)
        return await upload.finish(form.expires_in)


async def _stored_keys(service: FilesService) -> list[str]:
    return [key async for key in service.blobs.list_object_keys(time.time() + 60)]


async def test_an_upload_returns_its_record_and_a_batch_file_expires_in_30_days(
    service: FilesService,
) -> None:
    data = b'{"a": 1}\n' * 10
    record = await _upload(service, ALICE, [("purpose", None, b"batch"), ("file", "d.jsonl", data)])
    assert (record.purpose, record.bytes, record.filename) == ("batch", len(data), "d.jsonl")
    assert record.mime_type == "application/jsonl"
    assert record.expires_at == record.created_at + S.BATCH_DEFAULT_EXPIRES_SECONDS
    assert await service.get(ALICE, record.id) == record
    assert (
        b"".join([bytes(c) async for c in service.blobs.read(record.blob_key, 0, len(data))])
        == data
    )


async def test_another_tenants_file_is_reported_exactly_like_a_missing_one(
    service: FilesService,
) -> None:
    record = await _upload(service, ALICE, [("purpose", None, b"vision"), ("file", "a.png", b"x")])
    missing = "file-" + "A" * 24
    for file_id in (record.id, missing):
        for call in (service.get, service.for_download, service.delete):
            with pytest.raises(NotFound) as caught:
                await call(BOB, file_id)
            assert (
                caught.value.body()
                == NotFound(f"No such File object: {file_id}", param="id").body()
            )
        with pytest.raises(InvalidRequest) as refused:
            await service.list_files(BOB, ListQuery(None, 10, "desc", file_id))
        assert (refused.value.param, refused.value.message) == (
            "after",
            f"No such File object: {file_id}",
        )
    assert await service.list_files(BOB, ListQuery(None, 10, "desc", None)) == (
        [],
        False,
    )
    assert await service.get(ALICE, record.id) == record  # Bob's delete took nothing


async def test_assistants_files_are_not_downloaded_but_are_read_and_listed(
    service: FilesService,
) -> None:
    record = await _upload(
        service, ALICE, [("purpose", None, b"assistants"), ("file", "n.txt", b"x")]
    )
    with pytest.raises(
        InvalidRequest, match="Not allowed to download files of purpose: assistants"
    ):
        await service.for_download(ALICE, record.id)
    assert await service.get(ALICE, record.id) == record
    files, has_more = await service.list_files(ALICE, ListQuery("assistants", 10, "asc", None))
    assert (files, has_more) == ([record], False)


async def test_a_refused_upload_keeps_neither_bytes_nor_quota(service: FilesService) -> None:
    # The file comes first, then a purpose its name does not fit: refused once both are known.
    parts: list[Part] = [("file", "notes.txt", b"x" * 1000), ("purpose", None, b"fine-tune")]
    with pytest.raises(InvalidRequest, match="Invalid file format for Fine-Tuning API"):
        await _upload(service, ALICE, parts, length=140_000)
    assert await _stored_keys(service) == []
    # The 140 000 bytes reserved for it (of 150 000) were given back: they can be held again.
    vision: list[Part] = [("purpose", None, b"vision"), ("file", "a.png", b"y")]
    record = await _upload(service, ALICE, vision, length=140_000)
    assert await _stored_keys(service) == [record.blob_key]


async def test_the_quota_refuses_what_the_organization_cannot_hold(service: FilesService) -> None:
    def parts(name: str) -> list[Part]:
        return [("purpose", None, b"vision"), ("file", name, b"v" * 60_000)]

    kept = [await _upload(service, ALICE, parts(name)) for name in ("a", "b")]
    with pytest.raises(StorageLimitExceeded) as refused:
        await _upload(service, ALICE, parts("c"))  # no length: the insert decides
    assert refused.value.code == "storage_limit_exceeded"
    with pytest.raises(StorageLimitExceeded):
        await _upload(service, ALICE, parts("d"), length=140_000)  # refused before reading
    listed, _ = await service.list_files(ALICE, ListQuery(None, 10, "asc", None))
    assert sorted(listed, key=lambda r: r.id) == sorted(kept, key=lambda r: r.id)
    assert sorted(await _stored_keys(service)) == sorted(r.blob_key for r in kept)
    assert await _upload(service, BOB, parts("e"))  # another organization has its own quota


async def test_a_batch_file_too_large_is_refused_at_its_first_chunk_too_many(
    service: FilesService,
) -> None:
    seen: list[int] = []
    parts: list[Part] = [("purpose", None, b"batch"), ("file", "d.jsonl", b"z" * 1000)]
    with pytest.raises(FileTooLarge, match=r"Batch file is too large\. The maximum size is 300 "):
        async with service.upload(ALICE, None) as upload:
            await read_upload_form(_events(parts, seen=seen), upload)
    assert seen == [0, 100, 200, 300]  # 400 bytes of 1000 read: not the whole body
    assert await _stored_keys(service) == []


def test_the_service_loads_without_the_http_framework() -> None:
    code = (
        "import sys, openai_files.server.service\n"
        "http = {'starlette', 'python_multipart', 'uvicorn'}\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & http))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
