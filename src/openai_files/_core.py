"""The client's logic, written once and with no I/O: requests, retries, answers, errors.

Each operation is a generator that *yields effects* (send this request, read that body,
save that body into a file, sleep) and receives their results; `Client` and `AsyncClient`
only perform the effects, one with blocking calls and one with `await`. So the retry
policy, the error mapping and the parsing below exist once, and both drivers behave alike
by construction.

    def upload(...) -> Op[FileObject]:
        data = yield from json_call(config, spec)   # retries, errors, parsing
        return FileObject.from_dict(data)

Effects a driver must perform:

- `Send(request)`  -> the `httpx.Response`, opened in streaming mode (body unread)
- `Read(response)` -> the body as bytes
- `Save(response, sink)` -> None: the body written into the `DownloadSink`, then committed
- `Sleep(seconds)` -> None
- `Call(function)` -> what `function()` returns: blocking work (hashing a file), run in a
  worker thread by the async driver
- `Gather(ops, limit, on_done)` -> the results of `ops` in their order, at most `limit` of
  them running at once (threads or tasks); `on_done(index, result)` is called in the
  driver's own thread as each one finishes; the first error stops the others from starting
  and is raised once the running ones have ended

An exception raised while performing an effect is thrown into the generator at that point.
"""

from __future__ import annotations

import dataclasses
import email.utils
import json
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx

from ._config import INITIAL_RETRY_DELAY as _INITIAL_DELAY
from ._config import (
    MAX_RETRY_AFTER,
    MAX_RETRY_DELAY,
    PAGE_SIZE,
    Config,
    is_retryable_status,
    mask_key,
)
from ._config import USER_AGENT as _USER_AGENT
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    IncompleteDownloadError,
    ResponseNotOKError,
    status_error_class,
)
from ._models import APIResponse, FileDeleted, FileList, FileObject
from ._sink import DownloadSink, ShortDownloadError
from ._sources import MultipartStream, guess_name, guess_type, make_source
from ._types import FileData, ProgressCallback, UploadArgs
from ._version import __version__

T = TypeVar("T")

Order = Literal["asc", "desc"]


# --- effects -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Send:
    request: httpx.Request


@dataclasses.dataclass(frozen=True)
class Read:
    response: httpx.Response


@dataclasses.dataclass(frozen=True)
class Save:
    response: httpx.Response
    sink: DownloadSink


@dataclasses.dataclass(frozen=True)
class Sleep:
    seconds: float


@dataclasses.dataclass(frozen=True)
class Call:
    function: Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class Gather:
    ops: Sequence[Generator[Any, Any, Any]]
    limit: int
    on_done: Callable[[int, Any], None] | None = None


Effect = Send | Read | Save | Sleep | Call | Gather
#: An operation: yields effects, receives their results, returns a `T`.
Op = Generator[Effect, Any, T]


# --- requests ----------------------------------------------------------------------------


@dataclasses.dataclass
class RequestSpec:
    """One API call, before it is turned into (one request per) attempt."""

    method: str
    path: str
    params: dict[str, str] = dataclasses.field(default_factory=dict)
    accept: str = "application/json"
    body: MultipartStream | None = None
    json: Any = None

    def can_resend(self) -> bool:
        return self.body is None or self.body.can_resend()


def build_request(config: Config, spec: RequestSpec, retries: int = 0) -> httpx.Request:
    """The `httpx.Request` of one attempt; every header is set here (none by httpx)."""
    url = httpx.URL(config.base_url + spec.path, params=spec.params or None)
    headers: dict[str, str] = {
        "Host": url.netloc.decode("ascii"),
        "Accept": spec.accept,
        "User-Agent": f"{_USER_AGENT}/{__version__}",
        "Authorization": f"Bearer {config.api_key}",
    }
    if config.organization:
        headers["OpenAI-Organization"] = config.organization
    if config.project:
        headers["OpenAI-Project"] = config.project
    if retries:
        headers["X-Stainless-Retry-Count"] = str(retries)  # as the official SDK tells servers
    headers.update(config.headers)
    stream: httpx.SyncByteStream | httpx.AsyncByteStream
    if spec.body is not None:
        headers["Content-Type"] = spec.body.content_type
        length = spec.body.content_length
        if length is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(length)
        stream = spec.body
    elif spec.json is not None:
        encoded = json.dumps(spec.json).encode("utf-8")
        headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(encoded))
        stream = httpx.ByteStream(encoded)
    else:
        stream = httpx.ByteStream(b"")
        if spec.method in ("POST", "PUT", "PATCH"):
            headers["Content-Length"] = "0"
    return httpx.Request(
        spec.method,
        url,
        headers=headers,
        stream=stream,
        extensions={"timeout": httpx.Timeout(config.timeout).as_dict()},
    )


def resource_path(collection: str, object_id: str, suffix: str = "") -> str:
    """`/{collection}/{id}{suffix}`, the id checked and percent-encoded (`collection` is
    `files`, `uploads` or `batches`)."""
    if not isinstance(object_id, str) or not object_id.strip():
        what = {"files": "a file", "uploads": "an upload", "batches": "a batch"}.get(
            collection, collection
        )
        raise ValueError(f"{what} id is a non-empty string, got {object_id!r}")
    return f"/{collection}/{quote(object_id.strip(), safe='')}{suffix}"


def _file_path(file_id: str, suffix: str = "") -> str:
    return resource_path("files", file_id, suffix)


def upload_spec(file: FileData, args: UploadArgs) -> RequestSpec:
    """`POST /files`: the fields first, so a server can refuse before the bytes arrive."""
    source = make_source(file)
    name = guess_name(source, args.filename)
    fields = [("purpose", args.purpose)]
    if args.expires_after is not None:
        fields += [
            ("expires_after[anchor]", "created_at"),
            ("expires_after[seconds]", str(int(args.expires_after))),
        ]
    body = MultipartStream(fields, source, name, guess_type(name, args.mime_type), args.progress)
    return RequestSpec("POST", "/files", body=body)


def list_spec(
    purpose: str | None = None,
    *,
    limit: int | None = None,
    order: Order | None = None,
    after: str | None = None,
) -> RequestSpec:
    """`GET /files`: a blank or missing purpose sends no `purpose` at all (the seed's rule)."""
    params: dict[str, str] = {}
    if purpose is not None and purpose.strip():
        params["purpose"] = purpose.strip()
    if limit is not None:
        params["limit"] = str(limit)
    if order is not None:
        params["order"] = order
    if after:
        params["after"] = after
    return RequestSpec("GET", "/files", params=params)


def retrieve_spec(file_id: str) -> RequestSpec:
    return RequestSpec("GET", _file_path(file_id))


def delete_spec(file_id: str) -> RequestSpec:
    return RequestSpec("DELETE", _file_path(file_id))


def content_spec(file_id: str) -> RequestSpec:
    # What the official SDK sends for file content.
    return RequestSpec("GET", _file_path(file_id, "/content"), accept="application/binary")


# --- retries -----------------------------------------------------------------------------


def should_retry(response: httpx.Response) -> bool:
    """The status says try again (a server may decide with `x-should-retry`, as OpenAI's)."""
    hint: str | None = response.headers.get("x-should-retry")
    if hint in ("true", "false"):
        return hint == "true"
    return is_retryable_status(response.status_code)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asked us to wait (`retry-after-ms`, `retry-after`), if sensible."""
    seconds: float | None = None
    raw_ms = headers.get("retry-after-ms")
    raw = headers.get("retry-after")
    try:
        if raw_ms is not None:
            seconds = float(raw_ms) / 1000
    except ValueError:
        seconds = None
    if seconds is None and raw is not None:
        try:
            seconds = float(raw)
        except ValueError:
            when = email.utils.parsedate_tz(raw)
            if when is not None:
                seconds = email.utils.mktime_tz(when) - (time.time() if now is None else now)
    if seconds is None or not 0 <= seconds <= MAX_RETRY_AFTER:
        return None
    return seconds


def retry_delay(
    retries_done: int, headers: Mapping[str, str] | None = None, rand: float | None = None
) -> float:
    """How long to wait before retry number `retries_done + 1`.

    The server's word when it gives a sensible one; else exponential backoff from
    INITIAL_RETRY_DELAY, capped at MAX_RETRY_DELAY, minus up to 25% of jitter so that
    clients refused together do not come back together.
    """
    asked = retry_after(headers or {})
    if asked is not None:
        return asked
    base = min(_INITIAL_DELAY * 2.0**retries_done, MAX_RETRY_DELAY)
    return base * (1 - 0.25 * (random.random() if rand is None else rand))


def _connection_error(request: httpx.Request, exc: httpx.TransportError) -> APIConnectionError:
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(request)
    detail = str(exc) or type(exc).__name__
    return APIConnectionError(request, f"Connection error: {detail}")


def _retryable_transport_error(exc: Exception) -> bool:
    # Not LocalProtocolError (our request was malformed) nor UnsupportedProtocol (bad URL).
    return isinstance(exc, httpx.TimeoutException | httpx.NetworkError | httpx.RemoteProtocolError)


# --- sending -----------------------------------------------------------------------------


def send(
    config: Config, spec: RequestSpec, *, stream: bool = False
) -> Op[tuple[httpx.Response, bytes | None]]:
    """Send with retries; returns the last response and its body.

    The body is read unless `stream` is set and the status is 200 (then the caller reads
    it). Retries follow the policy above, and only while the body can be sent again.
    """
    retries = 0
    while True:
        request = build_request(config, spec, retries)
        _debug_request(config, request)
        try:
            response: httpx.Response = yield Send(request)
            body: bytes | None = None
            if not (stream and response.status_code == 200):
                body = yield Read(response)
        except httpx.TransportError as exc:
            if (
                retries < config.max_retries
                and _retryable_transport_error(exc)
                and spec.can_resend()
            ):
                yield Sleep(retry_delay(retries))
                retries += 1
                continue
            raise _connection_error(request, exc) from exc
        _debug_response(config, response, body)
        if retries < config.max_retries and should_retry(response) and spec.can_resend():
            yield Sleep(retry_delay(retries, response.headers))
            retries += 1
            continue
        return response, body


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _mimetype(response: httpx.Response) -> str | None:
    value = response.headers.get("content-type")
    return value.split(";", 1)[0].strip().lower() or None if value else None


def _is_json(mimetype: str | None) -> bool:
    return mimetype is not None and (mimetype == "application/json" or mimetype.endswith("+json"))


def status_error(response: httpx.Response, body: bytes) -> APIStatusError:
    """The typed error for a status other than 200, message from the error body."""
    parsed = _parse_json(body) if _is_json(_mimetype(response)) else None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str) or not message:
        message = body.decode("utf-8", "replace").strip() or response.reason_phrase
    cls = status_error_class(response.status_code)
    return cls(f"Error code: {response.status_code} - {message}", response=response, body=parsed)


def json_call(config: Config, spec: RequestSpec) -> Op[Any]:
    """A call whose answer is JSON; a status other than 200 raises its typed error."""
    response, body = yield from send(config, spec)
    assert body is not None
    if response.status_code != 200:
        raise status_error(response, body)
    data = _parse_json(body)
    if data is None:
        raise APIStatusError(
            f"Expected JSON, got {_mimetype(response)!r} ({len(body)} bytes)",
            response=response,
            body=None,
        )
    return data


# --- the seed's response -------------------------------------------------------------------


def seed_call(config: Config, spec: RequestSpec, *, binary: bool = False) -> Op[APIResponse]:
    """A call as the seed makes it: any status is an answer (only the network raises)."""
    response, body = yield from send(config, spec)
    assert body is not None
    return to_api_response(response, body, binary=binary)


def to_api_response(response: httpx.Response, body: bytes, *, binary: bool = False) -> APIResponse:
    """The seed's map: status, mimetype, headers (name -> values) and data."""
    headers: dict[str, list[str]] = {}
    for name, value in response.headers.multi_items():
        headers.setdefault(name.lower(), []).append(value)
    mimetype = _mimetype(response)
    error: Any = None
    data: Any
    if response.status_code == 200:
        data = body if binary else _parse_json(body)
        if data is None and not binary:
            data = body.decode("utf-8", "replace")
    else:
        data = body.decode("utf-8", "replace")
        error = _parse_json(body) if _is_json(mimetype) else None
    return APIResponse(response.status_code, mimetype, headers, data, error)


def response_not_ok(response: APIResponse) -> ResponseNotOKError | None:
    """The seed's `assert-response-http-ok`: None on 200, else the error to raise."""
    if response.status == 200:
        return None
    parsed = response.error if response.error is not None else None
    if parsed is None and _is_json(response.mimetype) and isinstance(response.data, str):
        parsed = _parse_json(response.data.encode("utf-8"))
    if parsed is not None:
        shown = json.dumps(parsed, indent=2, ensure_ascii=False)
    elif isinstance(response.data, bytes):
        shown = response.data.decode("utf-8", "replace")
    else:
        shown = str(response.data)
    message = (
        "HTTP response is not HTTP_OK!\n\n"
        f"HTTP Status: {response.status}\n"
        f"Mimetype:    {response.mimetype or ''}\n\n"
        f"Response:\n{shown}"
    )
    return ResponseNotOKError(message, response)


# --- operations of Client and AsyncClient -------------------------------------------------


def upload(config: Config, file: FileData, args: UploadArgs) -> Op[FileObject]:
    return FileObject.from_dict((yield from json_call(config, upload_spec(file, args))))


def list_page(config: Config, purpose: str | None = None, **kwargs: Any) -> Op[FileList]:
    return FileList.from_dict((yield from json_call(config, list_spec(purpose, **kwargs))))


def retrieve(config: Config, file_id: str) -> Op[FileObject]:
    return FileObject.from_dict((yield from json_call(config, retrieve_spec(file_id))))


def delete(config: Config, file_id: str) -> Op[FileDeleted]:
    return FileDeleted.from_dict((yield from json_call(config, delete_spec(file_id))))


def content(config: Config, file_id: str) -> Op[bytes]:
    response, body = yield from send(config, content_spec(file_id))
    assert body is not None
    if response.status_code != 200:
        raise status_error(response, body)
    return body


def download(
    config: Config,
    file_id: str,
    path: str | Any,
    progress: ProgressCallback | None = None,
    durable: bool = False,
) -> Op[int]:
    """Stream a file's content into `path` (atomically, and fsynced with `durable`); returns
    the number of bytes."""
    spec = content_spec(file_id)
    response, body = yield from send(config, spec, stream=True)
    if body is not None:
        raise status_error(response, body)
    sink = DownloadSink(path, progress, durable)
    length = response.headers.get("content-length")
    encoded = response.headers.get("content-encoding", "identity") != "identity"
    if length is not None and length.isdigit() and not encoded:
        sink.expected = int(length)
    try:
        yield Save(response, sink)
    except ShortDownloadError as exc:
        raise IncompleteDownloadError(
            response.request, f"Incomplete download: {exc}; nothing was written to {path}"
        ) from exc
    except httpx.TransportError as exc:
        raise _connection_error(response.request, exc) from exc
    return sink.received


class Pager:
    """Follows `after` through the pages of a listing, and stops on a repeated page.

    A server that ignores `after` (or pages wrongly) would otherwise be asked forever;
    a page whose last id was already used as a cursor ends the iteration.
    """

    def __init__(
        self, purpose: str | None, order: Order | None = None, page_size: int = PAGE_SIZE
    ) -> None:
        self.purpose = purpose
        self.order = order
        self.page_size = page_size
        self.after: str | None = None
        self.done = False
        self._cursors: set[str] = set()

    def next_page(self, config: Config) -> Op[FileList] | None:
        """The operation fetching the next page, or None when there is none."""
        if self.done:
            return None
        return list_page(
            config, self.purpose, limit=self.page_size, order=self.order, after=self.after
        )

    def take(self, page: FileList) -> list[FileObject]:
        """The files of `page` to hand out; moves the cursor on."""
        if page.last_id is not None and page.last_id in self._cursors:
            self.done = True  # the server repeated a page: what it holds was handed out
            return []
        if not page.has_more or not page.data or page.last_id is None:
            self.done = True
        else:
            self.after = page.last_id
            self._cursors.add(page.last_id)
        return page.data


# --- debug -------------------------------------------------------------------------------


def _debug(config: Config, lines: list[str]) -> None:
    print("\n".join(lines), file=config.debug_stream(), flush=True)


def _shown_headers(config: Config, headers: httpx.Headers) -> list[str]:
    lines = []
    for name, value in headers.multi_items():
        if name.lower() == "authorization":
            scheme, _, token = value.partition(" ")
            value = f"{scheme} {mask_key(token)}"
        lines.append(f"  {name}: {value}")
    return lines


def _debug_request(config: Config, request: httpx.Request) -> None:
    if not config.debug:
        return
    length = request.headers.get("content-length")
    size = f"{length} bytes" if length is not None else "streamed, length unknown"
    _debug(
        config,
        [
            f"> {request.method} {request.url}",
            *_shown_headers(config, request.headers),
            f"  (body: {size})",
        ],
    )


def _debug_response(config: Config, response: httpx.Response, body: bytes | None) -> None:
    if not config.debug:
        return
    size = len(body) if body is not None else response.headers.get("content-length", "?")
    _debug(
        config,
        [
            f"< {response.status_code} {response.reason_phrase} "
            f"(mimetype: {_mimetype(response)}, body: {size} bytes)",
            *_shown_headers(config, response.headers),
        ],
    )
