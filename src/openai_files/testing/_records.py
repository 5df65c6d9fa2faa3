"""The rows the metadata store suites write, made alike: owners, files, keys, projects,
service accounts, admin keys, uploads, parts, batches and their requests."""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

from ..server.stores import (
    AdminKeyRecord,
    BatchRecord,
    BatchRequestRecord,
    FileRecord,
    KeyRecord,
    MetadataStore,
    Owner,
    PartRecord,
    ProjectRecord,
    QuotaExceeded,
    ServiceAccountRecord,
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


def key_row(created_at: int | None = None, owner: Owner | None = None, **kw: Any) -> KeyRecord:
    """A new active key of `owner` (default `org-k`/`proj_k`), a random id and hash."""
    owner = owner or Owner("org-k", "proj_k")
    return KeyRecord(
        "key_" + secrets.token_hex(6),
        owner.org_id,
        owner.project_id,
        secrets.token_hex(32),
        "sk-abc****wxyz",
        int(time.time()) if created_at is None else created_at,
        None,
        **kw,
    )


def project_row(org_id: str | None = None, *, created_at: int | None = None) -> ProjectRecord:
    """A new active project (of a new organization unless `org_id` is given)."""
    project_id = "proj_" + secrets.token_hex(8)
    return ProjectRecord(
        org_id or "org-" + secrets.token_hex(4),
        project_id,
        f"Project {project_id[-4:]}",
        int(time.time()) if created_at is None else created_at,
    )


def service_account_row(
    project: ProjectRecord, *, created_at: int | None = None, role: str = "member"
) -> ServiceAccountRecord:
    """A new service account of the project."""
    return ServiceAccountRecord(
        "svc_acct_" + secrets.token_hex(8),
        project.org_id,
        project.id,
        "bot",
        role,
        int(time.time()) if created_at is None else created_at,
    )


def admin_key_row(org_id: str, *, created_at: int | None = None, **kw: Any) -> AdminKeyRecord:
    """A new active admin key of the organization (a random id and hash)."""
    values: dict[str, Any] = {
        "id": "key_" + secrets.token_hex(8),
        "org_id": org_id,
        "key_hash": secrets.token_hex(32),
        "hint": "sk-admi****wxyz",
        "name": "admin",
        "created_at": int(time.time()) if created_at is None else created_at,
        "expires_at": None,
        "revoked_at": None,
    }
    values.update(kw)
    return AdminKeyRecord(**values)


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


def batch_row(input_file: FileRecord, *, now: int, **kw: Any) -> BatchRecord:
    """A new validating batch of the input file's owner, created at `now`, ending in 24 h."""
    values: dict[str, Any] = {
        "id": "batch_" + secrets.token_hex(12),
        "org_id": input_file.org_id,
        "project_id": input_file.project_id,
        "endpoint": "/v1/chat/completions",
        "input_file_id": input_file.id,
        "input_blob_key": input_file.blob_key,
        "completion_window": "24h",
        "status": "validating",
        "created_at": now,
        "expires_at": now + 86_400,
    }
    values.update(kw)
    return BatchRecord(**values)


async def start_batch(
    meta: MetadataStore, owner: Owner, *, now: int, max_active: int = 1000, **kw: Any
) -> BatchRecord:
    """Store an input file of the owner and a new batch of it, as the service does."""
    input_file = file_row(owner, created_at=now, purpose="batch", filename="in.jsonl")
    await meta.insert_file(input_file, None, QUOTA)
    record = batch_row(input_file, now=now, **kw)
    await meta.create_batch(record, now, max_active)
    return record


def request_rows(batch_id: str, lines: Iterable[int]) -> list[BatchRequestRecord]:
    """Queued requests of the batch, one per line, each with a body span of its own."""
    return [
        BatchRequestRecord(batch_id, line, f"req-{line}", 100 * line, 50 + line % 7, "m")
        for line in lines
    ]


async def running_batch(
    meta: MetadataStore, owner: Owner, *, now: int, lines: int, worker: str, **kw: Any
) -> BatchRecord:
    """A batch of `lines` queued requests, validated by `worker` (whose lease it keeps) and
    moved to "in_progress"; its record."""
    batch = await start_batch(meta, owner, now=now, **kw)
    leased = await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",))
    assert leased is not None
    await meta.add_batch_requests(batch.id, worker, request_rows(batch.id, range(1, lines + 1)))
    changes = {"status": "in_progress", "in_progress_at": now, "total": lines}
    return await meta.update_batch(batch.id, worker, ("validating",), changes)
