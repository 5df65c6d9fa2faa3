"""The API's objects as JSON (a file, a list of files, a deletion, an upload and its part)
and the query of a listing.

The service returns records; the routes turn them into these objects, as OpenAI writes them.
"""

from __future__ import annotations

from typing import Any

from . import settings as S
from ._forms import ascii_int
from .errors import InvalidRequest
from .purposes import check_listed_purpose
from .records import shown_status
from .service import ListQuery
from .stores import FileRecord, PartRecord, UploadRecord


def _described(record: FileRecord | UploadRecord, kind: str, status: str) -> dict[str, Any]:
    """The keys a file object and an upload object share, in OpenAI's order (one dict
    built at once: a listing renders 10,000 of them)."""
    return {
        "id": record.id,
        "object": kind,
        "bytes": record.bytes,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": status,
    }


def file_object(record: FileRecord) -> dict[str, Any]:
    """The OpenAI file object, every key always present."""
    described = _described(record, "file", "processed")
    described["status_details"] = None
    return described


def page_of(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    """A page of a listing, as OpenAI writes one: its objects, the ids at both ends, and
    whether more follow."""
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def file_list(records: list[FileRecord], has_more: bool) -> dict[str, Any]:
    """A page of a listing of files."""
    return page_of([file_object(r) for r in records], has_more)


def upload_object(
    record: UploadRecord, file: FileRecord | None = None, *, now: int
) -> dict[str, Any]:
    """OpenAI's Upload object, every key always present, with the status clients see
    (`records.shown_status`); `file` is the file object once completed."""
    status = shown_status(record, now)
    described = _described(record, "upload", status)
    described["file"] = file_object(file) if file is not None and status == "completed" else None
    return described


def upload_list(
    uploads: list[tuple[UploadRecord, FileRecord | None]], has_more: bool, *, now: int
) -> dict[str, Any]:
    """A page of `GET /v1/uploads` (ours): the upload objects (each with its file once
    completed) and whether more follow."""
    return {
        "object": "list",
        "data": [upload_object(r, f, now=now) for r, f in uploads],
        "has_more": has_more,
    }


def part_object(record: PartRecord) -> dict[str, Any]:
    """OpenAI's UploadPart object."""
    return {
        "id": record.id,
        "object": "upload.part",
        "created_at": record.created_at,
        "upload_id": record.upload_id,
    }


def deleted_object(file_id: str) -> dict[str, Any]:
    """The answer to a delete."""
    return {"id": file_id, "object": "file", "deleted": True}


def parse_list_query(query: dict[str, str]) -> ListQuery:
    """`purpose`, `limit`, `order`, `after` of a listing, each checked in that order."""
    purpose = query.get("purpose") or None
    if purpose is not None:
        check_listed_purpose(purpose)
    raw_limit = query.get("limit")
    limit = S.LIST_LIMIT_DEFAULT
    if raw_limit is not None:
        limit = ascii_int(raw_limit, 6) or -1
        if not S.LIST_LIMIT_MIN <= limit <= S.LIST_LIMIT_MAX:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer between {S.LIST_LIMIT_MIN} and "
                f"{S.LIST_LIMIT_MAX}, got {raw_limit!r}.",
                param="limit",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value for 'order': {order!r}. Supported values are: 'asc' and 'desc'.",
            param="order",
        )
    after = query.get("after") or None
    return ListQuery(purpose, limit, order, after)  # type: ignore[arg-type]
