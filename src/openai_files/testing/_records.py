"""The rows the metadata store suites write, made alike: owners, files, keys, uploads, parts."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio

from ..server.stores import (
    FileRecord,
    KeyRecord,
    MetadataStore,
    Owner,
    PartRecord,
    QuotaExceeded,
    UploadRecord,
)

QUOTA = 10_000


def file_row(owner: Owner, *, created_at: int, nbytes: int = 10, **kw: Any) -> FileRecord:
    file_id = kw.pop("id", None) or "file-" + secrets.token_hex(12)
    values: dict[str, Any] = {
        "id": file_id,
        "org_id": owner.org_id,
        "project_id": owner.project_id,
        "bytes": nbytes,
        "created_at": created_at,
        "expires_at": None,
        "filename": "a.txt",
        "purpose": "vision",
        "mime_type": "text/plain",
        "blob_key": file_id,
    }
    values.update(kw)
    return FileRecord(**values)


def new_owner() -> Owner:
    return Owner("org-" + secrets.token_hex(4), "proj_" + secrets.token_hex(4))


def key_row(created_at: int | None = None) -> KeyRecord:
    """A new active key of `org-k`/`proj_k` (a random id and hash)."""
    return KeyRecord(
        "key_" + secrets.token_hex(6),
        "org-k",
        "proj_k",
        secrets.token_hex(32),
        "sk-abc****wxyz",
        int(time.time()) if created_at is None else created_at,
        None,
    )


def upload_row(owner: Owner, *, now: int, nbytes: int = 100, **kw: Any) -> UploadRecord:
    """A new pending upload of the owner, created at `now`, expiring an hour later."""
    values: dict[str, Any] = {
        "id": "upload_" + secrets.token_hex(12),
        "org_id": owner.org_id,
        "project_id": owner.project_id,
        "filename": "big.jsonl",
        "purpose": "batch",
        "bytes": nbytes,
        "mime_type": "application/jsonl",
        "created_at": now,
        "expires_at": now + 3600,
        "status": "pending",
        "file_id": None,
        "file_key": "file-" + secrets.token_hex(12),
    }
    values.update(kw)
    return UploadRecord(**values)


async def start_upload(
    meta: MetadataStore, owner: Owner, *, now: int, nbytes: int = 100, **kw: Any
) -> UploadRecord:
    """Reserve the upload's bytes and store it, as the service does."""
    record = upload_row(owner, now=now, nbytes=nbytes, **kw)
    await meta.reserve(
        record.id, owner.org_id, record.bytes, QUOTA, record.expires_at, record.file_key
    )
    await meta.insert_upload(record)
    return record


async def fresh_upload(meta: MetadataStore) -> tuple[Owner, int, UploadRecord]:
    """A new owner, the time now, and an upload of theirs just started."""
    owner, now = new_owner(), int(time.time())
    return owner, now, await start_upload(meta, owner, now=now)


def part_row(upload: UploadRecord, *, now: int, nbytes: int = 10) -> PartRecord:
    part_id = "part_" + secrets.token_hex(12)
    return PartRecord(part_id, upload.id, nbytes, now, part_id)


def upload_file_row(upload: UploadRecord, *, now: int, nbytes: int | None = None) -> FileRecord:
    """The file a completion of `upload` makes (named by its `file_key`)."""
    owner = Owner(upload.org_id, upload.project_id)
    size = upload.bytes if nbytes is None else nbytes
    return file_row(owner, created_at=now, nbytes=size, id=upload.file_key, purpose=upload.purpose)


async def fills_quota(meta: MetadataStore, org_id: str, nbytes: int) -> bool:
    """Whether a reservation of `nbytes` more would pass the quota (it is given back)."""
    rid = "rsv_probe_" + secrets.token_hex(6)
    try:
        await meta.reserve(rid, org_id, nbytes, QUOTA, int(time.time()) + 60, "k-" + rid)
    except QuotaExceeded:
        return True
    await meta.release(rid)
    return False


T = TypeVar("T")


async def drain_racing(pop: Callable[[], Awaitable[list[T]]], sweepers: int = 4) -> list[T]:
    """What `sweepers` tasks at once got by calling `pop` until it gave nothing."""
    popped: list[T] = []

    async def sweeper() -> None:
        while batch := await pop():
            popped.extend(batch)

    async with anyio.create_task_group() as tg:
        for _ in range(sweepers):
            tg.start_soon(sweeper)
    return popped
