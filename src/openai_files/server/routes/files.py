"""The five Files routes: parse the request, call the service, render the answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from .. import settings as S
from .._forms import read_upload_form
from .._multipart import boundary_of, iter_parts
from ..objects import deleted_object, file_list, file_object, parse_list_query
from ..responses import content_response
from ._common import (
    announced_length,
    caller_of,
    owner_of,
    route_table,
    service_of,
    upload_slot,
)


async def create_file(request: Request) -> Response:
    owner, actor = await caller_of(request)
    service = service_of(request)
    boundary = boundary_of(request.headers.get("content-type"))
    length = announced_length(request, service.settings.max_file_bytes)
    with upload_slot(request):
        async with service.upload(owner, length, actor=actor) as upload:
            parts = iter_parts(boundary, request.stream(), service.settings.max_form_parts)
            form = await read_upload_form(parts, upload)
            record = await upload.finish(form.expires_in)
    return JSONResponse(file_object(record))


async def list_files(request: Request) -> Response:
    owner = await owner_of(request)
    query = parse_list_query(dict(request.query_params))
    batches = service_of(request).list_batches(owner, query)
    # The first batch is read before the answer starts: a bad cursor is still a 404.
    records, more = await anext(batches)
    if query.limit <= S.LIST_BATCH or not more:
        return JSONResponse(file_list(records, more))

    async def body() -> AsyncIterator[bytes]:
        # The same JSON as `file_list` renders, written batch by batch as they are read.
        yield b'{"object":"list","data":[' + _json([file_object(r) for r in records])[1:-1]
        last, has_more = records[-1], bool(more)
        async for batch, more_after in batches:
            if batch:
                yield b"," + _json([file_object(r) for r in batch])[1:-1]
                last = batch[-1]
            has_more = more_after
        ends = {"first_id": records[0].id, "last_id": last.id, "has_more": has_more}
        yield b"]," + _json(ends)[1:]

    return StreamingResponse(body(), media_type="application/json")


def _json(value: object) -> bytes:
    """JSON as Starlette's JSONResponse writes it."""
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


async def retrieve_file(request: Request) -> Response:
    owner = await owner_of(request)
    record = await service_of(request).get(owner, request.path_params["file_id"])
    return JSONResponse(file_object(record))


async def delete_file(request: Request) -> Response:
    owner, actor = await caller_of(request)
    record = await service_of(request).delete(owner, request.path_params["file_id"], actor=actor)
    return JSONResponse(deleted_object(record.id))


async def file_content(request: Request) -> Response:
    owner = await owner_of(request)
    service = service_of(request)
    record = await service.for_download(owner, request.path_params["file_id"])
    return await content_response(request, service, record)


routes = route_table(
    {
        "/v1/files": {"POST": create_file, "GET": list_files},
        "/v1/files/{file_id}": {"GET": retrieve_file, "DELETE": delete_file},
        "/v1/files/{file_id}/content": {"GET": file_content, "HEAD": file_content},
    }
)
