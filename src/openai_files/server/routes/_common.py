"""What the routes share: the service and the owner of a request, an upload's slot, the
checked length of a body, and a JSON body with its parameters checked in OpenAI's words.
The console's routes use them too."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import _json
from .. import settings as S
from .._framing import largest_form_bytes
from .._upload_slots import UploadSlots
from ..audit import Actor
from ..auth import authenticate_admin_key, authenticate_key
from ..errors import FileTooLarge, InvalidRequest
from ..service import FilesService
from ..stores import AdminKeyRecord, KeyRecord, Owner

JSON_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
    "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
    "sent was not valid JSON.)"
)
_TYPE_NAMES = {str: "a string", int: "an integer", list: "an array", dict: "an object"}
JSON_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "a boolean",
    list: "an array",
    dict: "an object",
    type(None): "null",
}


#: A route's function: the request in, the answer out.
Endpoint = Callable[[Request], Awaitable[Response]]


def route_table(table: dict[str, dict[str, Endpoint]]) -> list[Route]:
    """A resource's routes, from each path's endpoint for each method, in order (a function
    named for several methods of a path, as GET and HEAD, is one route)."""
    routes: list[Route] = []
    for path, by_method in table.items():
        methods: dict[Endpoint, list[str]] = {}
        for method, endpoint in by_method.items():
            methods.setdefault(endpoint, []).append(method)
        routes.extend(Route(path, endpoint, methods=m) for endpoint, m in methods.items())
    return routes


def service_of(request: Request) -> FilesService:
    service: FilesService = request.app.state.service
    return service


#: Methods that only read: a call by one of them needs a key's `.read` scope.
_READS = frozenset({"GET", "HEAD"})


def data_scope(method: str, path: str) -> str:
    """The scope of OpenAI's restricted keys that a call of a data route needs, as its
    refusal of an admin key names it: `api.batch.read` / `.write` for batches,
    `api.files.read` / `.write` for files and uploads (and the console's routes, which
    read)."""
    kind = "api.batch" if path.startswith("/v1/batches") else "api.files"
    reads = method in _READS or not path.startswith("/v1/")
    return f"{kind}.{'read' if reads else 'write'}"


def admin_scope(method: str) -> str:
    """The scope of OpenAI's admin keys that an Administration API call needs."""
    return "api.management.read" if method in _READS else "api.management.write"


def _remember_key(request: Request, org_id: str, key_id: str) -> None:
    # Read by the request-context middleware for the `openai-organization` header, and by
    # `upload_slot`.
    state = request.scope.setdefault("state", {})
    state["org_id"] = org_id
    state["key_id"] = key_id


async def request_key(request: Request) -> KeyRecord:
    """The request's active project key (Bearer key or Basic password, optional
    OpenAI-Organization and OpenAI-Project headers that must match it); Unauthorized in
    OpenAI's words otherwise (an admin key: a key without the route's scope)."""
    key = await authenticate_key(
        service_of(request).meta,
        request.headers.get("authorization"),
        request.headers.get("openai-organization"),
        request.headers.get("openai-project"),
        request.app.state.key_cache,
        scope=data_scope(request.method, request.url.path),
    )
    _remember_key(request, key.org_id, key.id)
    return key


async def request_admin_key(request: Request) -> AdminKeyRecord:
    """The request's admin key (active, and of the organization an OpenAI-Organization
    header names); a project's key is a 403, anything else a 401, in OpenAI's words."""
    key = await authenticate_admin_key(
        service_of(request).meta,
        request.headers.get("authorization"),
        request.headers.get("openai-organization"),
        request.app.state.key_cache,
        scope=admin_scope(request.method),
    )
    _remember_key(request, key.org_id, key.id)
    return key


async def owner_of(request: Request) -> Owner:
    key = await request_key(request)
    return Owner(key.org_id, key.project_id)


async def caller_of(request: Request) -> tuple[Owner, Actor]:
    """The request's owner and, for the audit log, the key that acts (a route that changes
    something names it as the actor of its event)."""
    key = await request_key(request)
    return Owner(key.org_id, key.project_id), Actor.of(key)


def upload_slot(request: Request) -> AbstractContextManager[None]:
    """One of the authenticated key's concurrent uploads, held while the body streams (a
    429 when the key has none free: `--max-uploads-per-key`)."""
    slots: UploadSlots = request.app.state.upload_slots
    return slots.hold(request.scope["state"]["key_id"])


def announced_length(
    request: Request, limit: int, what: str = "File", param: str = "file"
) -> int | None:
    """The body's announced length (Content-Length), None when it announces none; a
    multipart body longer than a file of `limit` bytes and its form
    (`MULTIPART_OVERHEAD_BYTES`) is refused before a byte of it is read."""
    raw = request.headers.get("content-length")
    if raw is None or not (raw.isascii() and raw.isdigit()):
        return None
    length = int(raw)
    if length > largest_form_bytes(limit):
        raise FileTooLarge(limit, what, param=param)
    return length


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object, read up to `MAX_JSON_BYTES`: JSON only (no `NaN`), and
    text only (no lone surrogate), refused here for every route that reads one."""
    raw = bytearray()
    async for chunk in request.stream():
        raw.extend(chunk)
        if len(raw) > S.MAX_JSON_BYTES:
            raise InvalidRequest(
                f"The JSON body is too large: at most {S.MAX_JSON_BYTES} bytes are accepted."
            )
    try:
        body = _json.loads(bytes(raw))
    except (ValueError, RecursionError):
        raise InvalidRequest(JSON_PARSE_ERROR) from None
    if not isinstance(body, dict):
        raise InvalidRequest(JSON_PARSE_ERROR)
    if refused := _json.lone_surrogate(body):
        message, param = refused
        raise InvalidRequest(message, param=param)
    return body


def params(
    body: dict[str, Any], required: dict[str, type], optional: dict[str, type]
) -> dict[str, Any]:
    """The body's parameters, each of its JSON type; a missing one, an unknown one or one of
    another type is a 400 in OpenAI's words."""
    for name in body:
        if name not in required and name not in optional:
            raise InvalidRequest(f"Unknown parameter: '{name}'.", param=name)
    for name in required:
        if name not in body:
            raise InvalidRequest(f"Missing required parameter: '{name}'.", param=name)
    for name, value in body.items():
        kind = required.get(name) or optional[name]
        if value is None and name in optional:
            continue
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            got = JSON_TYPE_NAMES.get(type(value), "another type")
            raise InvalidRequest(
                f"Invalid type for '{name}': expected {_TYPE_NAMES[kind]}, but got {got} instead.",
                param=name,
            )
    return body
