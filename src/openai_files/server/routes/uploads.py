"""The four Uploads routes: parse the request, call the uploads service, render the answer.

`POST /v1/uploads` and `/complete` take a JSON body (checked here with OpenAI's words for a
body it cannot parse, a missing or unknown parameter, a wrong type), `/parts` a multipart
form whose `data` field streams to storage, `/cancel` nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import settings as S
from .._forms import ascii_int, clean_content_type, clean_filename
from .._framing import check_other_fields
from .._multipart import PartData, PartStart, boundary_of, iter_parts
from ..errors import InvalidRequest
from ..objects import part_object, upload_list, upload_object
from ..uploads import UploadsService
from ._common import (
    JSON_TYPE_NAMES,
    announced_length,
    caller_of,
    json_body,
    owner_of,
    params,
    route_table,
    service_of,
    upload_slot,
)


def _uploads(request: Request) -> UploadsService:
    return service_of(request).uploads


def _expires_after(value: dict[str, Any] | None) -> int | None:
    """The completed file's `expires_after` (OpenAI's FileExpirationAfter: `anchor`
    "created_at", `seconds` within 3600..2592000) in seconds, or None when not given."""
    if value is None:
        return None
    given = params(
        {f"expires_after.{k}": v for k, v in value.items()},
        {"expires_after.anchor": str, "expires_after.seconds": int},
        {},
    )
    anchor = given["expires_after.anchor"]
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value for 'expires_after.anchor': {anchor[:100]!r}. "
            "Supported values are: 'created_at'.",
            param="expires_after.anchor",
        )
    seconds: int = given["expires_after.seconds"]
    lo, hi = S.EXPIRES_AFTER_MIN_SECONDS, S.EXPIRES_AFTER_MAX_SECONDS
    if not lo <= seconds <= hi:
        raise InvalidRequest(
            f"Invalid 'expires_after.seconds': expected an integer between {lo} and {hi}, "
            f"got {seconds}.",
            param="expires_after.seconds",
        )
    return seconds


async def create_upload(request: Request) -> Response:
    owner, actor = await caller_of(request)
    body = params(
        await json_body(request),
        {"filename": str, "purpose": str, "bytes": int, "mime_type": str},
        {"expires_after": dict},
    )
    expires_after = _expires_after(body.get("expires_after"))
    filename: str = body["filename"]
    if not filename or len(filename) > S.MAX_FILENAME_LENGTH:
        raise InvalidRequest(
            f"Invalid 'filename': expected a file name of 1 to {S.MAX_FILENAME_LENGTH} characters.",
            param="filename",
        )
    mime_type = body["mime_type"].strip(" \t")
    if not mime_type or clean_content_type(mime_type) != mime_type:
        raise InvalidRequest(
            f"Invalid 'mime_type': {body['mime_type'][:100]!r} is not a MIME type; expected "
            "'type/subtype', such as 'application/jsonl' or 'application/pdf'.",
            param="mime_type",
        )
    record = await _uploads(request).create(
        owner,
        filename=clean_filename(filename),
        purpose=body["purpose"],
        nbytes=body["bytes"],
        mime_type=mime_type,
        file_expires_after=expires_after,
        actor=actor,
    )
    return JSONResponse(upload_object(record, now=int(time.time())))


#: The statuses a listing may ask for; "all" lists every status.
LIST_STATUSES = ("pending", "completed", "cancelled", "expired", "all")


async def list_uploads(request: Request) -> Response:
    """The key's project's uploads, newest first: pending ones unless `status` says
    otherwise (ours: OpenAI has no listing of uploads)."""
    owner = await owner_of(request)
    status = request.query_params.get("status") or "pending"
    if status not in LIST_STATUSES:
        raise InvalidRequest(
            f"Invalid value for 'status': {status[:100]!r}. Supported values are: "
            + ", ".join(f"'{s}'" for s in LIST_STATUSES)
            + ".",
            param="status",
        )
    raw_limit = request.query_params.get("limit")
    limit = S.UPLOAD_LIST_LIMIT_DEFAULT
    if raw_limit is not None:
        limit = ascii_int(raw_limit, 6) or 0
        if not 1 <= limit <= S.UPLOAD_LIST_LIMIT_MAX:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer between 1 and {S.UPLOAD_LIST_LIMIT_MAX}, "
                f"got {raw_limit[:100]!r}.",
                param="limit",
            )
    records, has_more = await _uploads(request).list_uploads(
        owner, None if status == "all" else status, limit
    )
    return JSONResponse(upload_list(records, has_more, now=int(time.time())))


async def _data_field(request: Request, boundary: bytes, max_parts: int) -> AsyncIterator[bytes]:
    """The bytes of the form's one `data` field, as they arrive; other fields are skipped
    (bounded together by the multipart overhead), a form without `data` is a 400."""
    in_data = seen = False
    other = 0
    async for event in iter_parts(boundary, request.stream(), max_parts):
        if isinstance(event, PartStart):
            in_data = event.name == "data"
            if in_data and seen:
                raise InvalidRequest("Only one 'data' part may be sent.", param="data")
            seen = seen or in_data
        elif isinstance(event, PartData):
            if in_data:
                yield event.data
            else:
                other += len(event.data)
                check_other_fields(other, "data")
        else:
            in_data = False
    if not seen:
        raise InvalidRequest("'data' is a required property", param="data")


async def add_part(request: Request) -> Response:
    owner = await owner_of(request)
    uploads = _uploads(request)
    boundary = boundary_of(request.headers.get("content-type"))
    limit = uploads.settings.max_part_bytes
    announced_length(request, limit, "Part", param="data")
    with upload_slot(request):
        data = _data_field(request, boundary, uploads.settings.max_form_parts)
        part = await uploads.add_part(owner, request.path_params["upload_id"], data)
    return JSONResponse(part_object(part))


async def complete_upload(request: Request) -> Response:
    owner, actor = await caller_of(request)
    body = params(await json_body(request), {"part_ids": list}, {"md5": str})
    part_ids = body["part_ids"]
    for index, item in enumerate(part_ids):
        if not isinstance(item, str):
            got = JSON_TYPE_NAMES.get(type(item), "another type")
            raise InvalidRequest(
                f"Invalid type for 'part_ids[{index}]': expected a string, but got {got} instead.",
                param=f"part_ids[{index}]",
            )
    md5 = body.get("md5") or None
    record, file = await _uploads(request).complete(
        owner, request.path_params["upload_id"], part_ids, md5, actor=actor
    )
    return JSONResponse(upload_object(record, file, now=int(time.time())))


async def cancel_upload(request: Request) -> Response:
    owner, actor = await caller_of(request)
    record = await _uploads(request).cancel(owner, request.path_params["upload_id"], actor=actor)
    return JSONResponse(upload_object(record, now=int(time.time())))


routes = route_table(
    {
        "/v1/uploads": {"POST": create_upload, "GET": list_uploads},
        "/v1/uploads/{upload_id}/parts": {"POST": add_part},
        "/v1/uploads/{upload_id}/complete": {"POST": complete_upload},
        "/v1/uploads/{upload_id}/cancel": {"POST": cancel_upload},
    }
)
