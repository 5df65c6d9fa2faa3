"""The errors of the Uploads API, in OpenAI's words where it has them, else ours: an
upload that is not there, one no longer pending, one past a project's limits, one full."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from . import settings as S
from . import stores
from .errors import APIError, InvalidRequest, NotFound, StorageLimitExceeded
from .stores import Owner, UploadRecord


def no_such_upload(upload_id: str) -> APIError:
    """The 404 for an upload that does not exist *or* belongs to someone else."""
    return NotFound(f"No such Upload object: {upload_id}", param="upload_id")


def not_pending(record: UploadRecord, doing: str) -> APIError:
    """The 400 for an operation on an upload that is no longer pending: what it is now."""
    upload_id, status = record.id, record.status
    if status == "completing":
        return InvalidRequest(
            f"Upload {upload_id} is already being completed: wait for that completion to "
            f"answer instead of trying to {doing} (a completion whose server stopped is "
            f"taken over by a new one {S.COMPLETION_TAKEOVER_SECONDS // 60} minutes after it "
            "was last heard from).",
            param="upload_id",
        )
    if status == "expired":
        return InvalidRequest(
            f"Upload {upload_id} has expired (an upload must be completed within an hour of "
            "its creation): create a new upload.",
            param="upload_id",
        )
    hint = {
        "completed": "its file is ready",
        "cancelled": "create a new upload to send this file",
    }.get(status, "create a new upload")
    return InvalidRequest(
        f"Upload {upload_id} is already {status}, so you cannot {doing}: {hint}.",
        param="upload_id",
    )


def too_many_pending(owner: Owner, exc: stores.PendingUploadsExceeded) -> APIError:
    """The 400 for a new upload past a limit on its project's pending uploads."""
    then = (
        "complete or cancel one of them (GET /v1/uploads lists them), or wait for them to "
        "expire (an hour after their creation)"
    )
    if exc.what == "uploads":
        return InvalidRequest(
            f"Project {owner.project_id} has {exc.held} pending uploads, the most it may "
            f"have at once: {then}.",
            code="too_many_pending_uploads",
        )
    if exc.requested > exc.limit:  # no wait makes room for it
        return InvalidRequest(
            f"An upload of {exc.requested} bytes is more than the {exc.limit} bytes a "
            "project's pending uploads may reserve together (the server's "
            "--max-pending-upload-bytes, by default half its --org-quota-bytes): create a "
            "smaller upload, or ask the server's operator to raise that limit.",
            param="bytes",
            code="pending_upload_bytes_exceeded",
        )
    return InvalidRequest(
        f"The pending uploads of project {owner.project_id} reserve {exc.held} bytes; "
        f"{exc.requested} more would pass the {exc.limit} bytes a project's pending uploads "
        f"may reserve together: {then}; an expired upload gives its bytes back when the "
        "sweeper removes it, about ten minutes after it expires.",
        param="bytes",
        code="pending_upload_bytes_exceeded",
    )


def upload_full(record: UploadRecord) -> APIError:
    """The 400 for a part that would take an upload's parts past its declared bytes."""
    return InvalidRequest(
        f"The parts of upload {record.id} would hold more than the {record.bytes} bytes it "
        "was created with: complete it with the parts it has, or create a new upload.",
        param="data",
    )


@contextlib.contextmanager
def answered(upload_id: str, doing: str) -> Iterator[None]:
    """Turn what a store refuses about upload `upload_id`, while `doing` something to it,
    into the API's answer: missing (or another tenant's), no longer pending, full, or past
    the organization's quota."""
    try:
        yield
    except stores.UploadNotFound:
        raise no_such_upload(upload_id) from None
    except stores.UploadNotPending as exc:
        raise not_pending(exc.record, doing) from None
    except stores.UploadFull as exc:  # parts racing this one took the room
        raise upload_full(exc.record) from None
    except stores.QuotaExceeded as exc:
        raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
