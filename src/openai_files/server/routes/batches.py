"""The Batch API's routes: parse the request, call the rules (`batches.py`), render."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import settings as S
from .._forms import ascii_int
from ..batches import BatchesService, batch_list, batch_object
from ..errors import InvalidRequest
from ._common import caller_of, json_body, owner_of, params, route_table


def batches_of(request: Request) -> BatchesService:
    service: BatchesService = request.app.state.batches
    return service


async def create_batch(request: Request) -> Response:
    owner, actor = await caller_of(request)
    body = params(
        await json_body(request),
        required={"input_file_id": str, "endpoint": str, "completion_window": str},
        optional={"metadata": dict, "output_expires_after": dict},
    )
    record = await batches_of(request).create(owner, body, actor=actor)
    runner = request.app.state.batch_runner
    if runner is not None:  # validated at once here, not at the worker's next look
        runner.look_now()
    return JSONResponse(batch_object(record))


async def retrieve_batch(request: Request) -> Response:
    owner = await owner_of(request)
    record = await batches_of(request).get(owner, request.path_params["batch_id"])
    return JSONResponse(batch_object(record))


async def cancel_batch(request: Request) -> Response:
    owner, actor = await caller_of(request)
    record = await batches_of(request).cancel(owner, request.path_params["batch_id"], actor=actor)
    runner = request.app.state.batch_runner
    if runner is not None:  # this process's worker sends none of it from now on
        runner.cancelled(record.id)
    return JSONResponse(batch_object(record))


async def list_batches(request: Request) -> Response:
    owner = await owner_of(request)
    query = request.query_params
    limit = S.BATCH_LIST_LIMIT_DEFAULT
    raw = query.get("limit")
    if raw is not None:
        limit = ascii_int(raw, 4) or -1
        if not 1 <= limit <= S.BATCH_LIST_LIMIT_MAX:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer between 1 and {S.BATCH_LIST_LIMIT_MAX}, "
                f"got {raw!r}.",
                param="limit",
            )
    records, more = await batches_of(request).list(owner, query.get("after") or None, limit)
    return JSONResponse(batch_list(records, more))


routes = route_table(
    {
        "/v1/batches": {"POST": create_batch, "GET": list_batches},
        "/v1/batches/{batch_id}": {"GET": retrieve_batch},
        "/v1/batches/{batch_id}/cancel": {"POST": cancel_batch},
    }
)
