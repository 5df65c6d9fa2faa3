"""What the rules make of state: the file record of a finished body, and the status a
client sees of an upload. Both upload paths (POST /v1/files, an upload's completion) and
the rendering of an upload (`objects.py`) read them here, so that each is written once.
"""

from __future__ import annotations

import time

from .purposes import default_expires_in
from .stores import FileRecord, UploadRecord


def file_record(
    *,
    key: str,
    org_id: str,
    project_id: str,
    size: int,
    filename: str,
    purpose: str,
    mime_type: str,
    expires_in: int | None,
) -> FileRecord:
    """The record of a file whose bytes are committed under `key` (also its id), created
    now: it expires `expires_in` seconds from now when asked, else as its purpose says
    (`purposes.default_expires_in`)."""
    now = int(time.time())
    expires_in = default_expires_in(purpose, expires_in)
    return FileRecord(
        id=key,
        org_id=org_id,
        project_id=project_id,
        bytes=size,
        created_at=now,
        expires_at=None if expires_in is None else now + expires_in,
        filename=filename,
        purpose=purpose,
        mime_type=mime_type,
        blob_key=key,
    )


def shown_status(record: UploadRecord, now: int) -> str:
    """The status clients see of an upload: one being completed (ours, "completing") shows
    as "pending", and a pending one past its `expires_at` as "expired" (the sweeper has
    not reached it yet)."""
    if record.status == "completing":
        return "pending"
    if record.status == "pending" and record.expires_at <= now:
        return "expired"
    return record.status
