"""The HTTP connection layer: uvicorn's httptools protocol with the bounds it lacks.

uvicorn's own protocol reads a request head of any size, waits forever for a head or a
body, and once a response is sent reads and discards the rest of a body it refused. Here:

- the request line and headers are bounded (`--max-header-bytes`): a longer URL is a 414,
  longer headers a 431, both answered before the rest is read;
- a client has `--header-timeout-seconds` from connecting, or from a request's first byte,
  to send the whole head (then a 408, or a plain close for a connection that sent nothing);
- an idle keep-alive connection is closed after `--keep-alive-timeout-seconds` (uvicorn's);
- at most `--max-connections` connections are open at once: the next one is answered 503
  and closed at once, so idle sockets cannot exhaust the process's file descriptors;
- a response sent before the request body was read whole (an early 413, a 401, a 408)
  closes the connection: the server sends its answer and end-of-stream, discards what is
  already on its way for at most a second (so that the client can read the answer before
  the close resets the connection), then closes, instead of reading a large body to its end;
- errors of HTTP framing (a bad Content-Length, chunked plus Content-Length, a bad chunk
  size) are answered in OpenAI's error envelope rather than uvicorn's plain text;
- a client that pipelines requests without reading the answers queues at most
  MAX_PIPELINED of them: past that the connection is not read until answers go out
  (uvicorn parses all it receives, and took 650 MB for one such connection). Heads are
  parsed a slice at a time, a body up to where its request may end (its Content-Length,
  or the next line that may be a chunked body's last chunk), so that a body cannot carry
  thousands of requests behind it into the parser at once;
- response header names go out in their canonical spelling (`Content-Type`, `ETag`,
  `X-Request-Id`), as nginx and OpenAI's edge write them on HTTP/1.1, where uvicorn
  lower-cases them: names are case-insensitive, but some clients look them up as spelled
  (Java's `HttpURLConnection.getHeaderFields()` is a case-sensitive map).

The body idle timeout lives at the ASGI layer (`_timeouts.py`). Every error answered here
closes the connection; it carries `X-Request-Id` and `Openai-Version` as the app's do.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import re
import resource
import secrets
from typing import Any, ClassVar

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT, FlowControl
from uvicorn.protocols.http.httptools_impl import (
    STATUS_LINE,
    HttpToolsProtocol,
    RequestResponseCycle,
)
from uvicorn.server import ServerState

from . import settings as S
from .settings import Settings

log = logging.getLogger("openai_files.server")

#: After an early answer, what the client already sent is discarded for at most this long
#: and this many bytes before the connection is closed.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024
#: File descriptors kept beside the connections (the database, temp files, logs).
SPARE_FDS = 256
#: Requests one connection may have received and not yet answered, the one being answered
#: included: past it, the server reads no more of that connection until an answer goes out
#: (nginx and h11-based servers read one request at a time).
MAX_PIPELINED = 8
#: Request heads are parsed this much at a time, so that one read of small pipelined
#: requests cannot queue more than a few dozen past the bound.
PIPELINED_SLICE = 1024
NEWLINE = ord("\n")
#: What may start a chunked body's last chunk: zeros, then the end of the size (or of the
#: data at hand).
LAST_CHUNK = re.compile(rb"0+(?:[\r\n;\t ]|\Z)")


#: Header names whose canonical spelling is not plain Title-Case (RFC 9110, 3230, 1864).
SPELLINGS = {
    b"etag": b"ETag",
    b"www-authenticate": b"WWW-Authenticate",
    b"content-md5": b"Content-MD5",
    b"x-xss-protection": b"X-XSS-Protection",
}


@functools.lru_cache(maxsize=1024)
def canonical_name(name: bytes) -> bytes:
    """A header name as HTTP/1.1 servers spell it: `content-type` -> `Content-Type`,
    `etag` -> `ETag`, `openai-version` -> `Openai-Version`."""
    lower = name.lower()
    spelled = SPELLINGS.get(lower)
    if spelled is not None:
        return spelled
    return b"-".join(word[:1].upper() + word[1:] for word in lower.split(b"-"))


def canonical_head(head: bytes) -> bytes:
    """A response head (status line, header lines, blank line) with every header name in
    its canonical spelling; values are left as they are."""
    lines = head.split(b"\r\n")
    for i in range(1, len(lines)):
        name, colon, rest = lines[i].partition(b":")
        if colon:
            lines[i] = canonical_name(name) + colon + rest
    return b"\r\n".join(lines)


@dataclasses.dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    max_connections: int

    @classmethod
    def of(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout_seconds,
            max_connections=settings.max_connections,
        )


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    error_type: str = "invalid_request_error",
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> bytes:
    """A whole HTTP/1.1 response with OpenAI's error envelope, closing the connection."""
    body = json.dumps(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}
    ).encode()
    lines = [STATUS_LINE[status]]
    for name, value in (
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"x-request-id", ("req_" + secrets.token_hex(16)).encode()),
        (b"openai-version", S.OPENAI_VERSION.encode()),
    ):
        lines += [canonical_name(name), b": ", value, b"\r\n"]
    lines += [b"\r\n", body]
    return b"".join(lines)


class _HeadTooLarge(Exception):
    """Raised from a parser callback to stop reading a head over the limit."""


class _CycleTransport:
    """The transport as one request-response cycle sees it. uvicorn writes a response's
    status line and headers in one `write()`, names lower-cased: the write that follows
    `head_next` is given canonical names. With `linger_on_close`, `close()` is a lingering
    close (see `LimitedHttpToolsProtocol.linger`)."""

    def __init__(self, protocol: LimitedHttpToolsProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self.head_next = False
        self.linger_on_close = False

    def write(self, data: bytes) -> None:
        # `receive()` may write an interim `100 Continue` meanwhile: it has no headers.
        if self.head_next and not data.startswith(b"HTTP/1.1 100 "):
            self.head_next = False
            data = canonical_head(data)
        self._transport.write(data)

    def close(self) -> None:
        if self.linger_on_close:
            self._protocol.linger()
        else:
            self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: Body chunks under this size are gathered into one bytearray (see `_BodyChunks`).
SMALL_BODY_CHUNK = 16 * 1024


class _BodyChunks:
    """A request body's buffer that keeps the parser's chunks as they came.

    uvicorn appends each chunk to a bytearray (`cycle.body += chunk`) and hands the app
    `bytes(cycle.body)`: two copies of every body byte. This buffer takes its place: the
    same `+=`, `len()` and `bytes()`, and a single chunk (the usual case: the app reads as
    fast as the socket) is handed over as is. On 512 MiB uploads, 7 rounds alternating
    between two servers: the server's CPU 1.01 s against 1.14 s, the upload 1.37 s
    against 1.51 s.

    Chunks under SMALL_BODY_CHUNK are gathered into one bytearray, as uvicorn would:
    uvicorn pauses the socket on the bytes buffered, not on their count, and a chunked
    body of 2-byte chunks would otherwise hold an object per chunk.
    """

    __slots__ = ("_tail", "chunks", "size")

    def __init__(self) -> None:
        self.chunks: list[bytes | bytearray] = []
        self.size = 0
        self._tail: bytearray | None = None

    def __iadd__(self, chunk: bytes) -> _BodyChunks:
        if len(chunk) < SMALL_BODY_CHUNK:
            if self._tail is None:
                self._tail = bytearray()
                self.chunks.append(self._tail)
            self._tail += chunk
        else:
            self._tail = None
            self.chunks.append(chunk)
        self.size += len(chunk)
        return self

    def __len__(self) -> int:
        return self.size

    def __bytes__(self) -> bytes:
        if len(self.chunks) == 1 and type(self.chunks[0]) is bytes:
            return self.chunks[0]  # as is, no copy
        return b"".join(self.chunks)


class _PipelineFlowControl(FlowControl):
    """uvicorn's flow control, except that reading stays paused while the connection holds
    its quota of unanswered requests: uvicorn resumes reading whenever a response ends or
    the app asks for the body, which let pipelined requests pile up without bound."""

    def __init__(self, transport: asyncio.Transport, protocol: LimitedHttpToolsProtocol) -> None:
        super().__init__(transport)
        self._protocol = protocol

    def resume_reading(self) -> None:
        if not self._protocol.pipeline_full():
            super().resume_reading()


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the head, timeouts and a connection cap."""

    limits: ClassVar[ConnectionLimits]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.url = b""
        #: Reading a request head (and how much of it has come, and of its headers).
        self.reading_head = True
        self.head_bytes = 0
        self.header_bytes = 0
        self.header_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.lingering = False
        self.discarded = 0
        #: Bytes received past the pipelined requests' bound, parsed once answers go out.
        self.held = bytearray()
        #: What is left of the body being read, when it has a Content-Length; whether it
        #: is chunked; the last byte parsed (see `piece_end`).
        self.body_left: int | None = None
        self.chunked = False
        self.last_byte = 0

    # -- connection --
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.flow = _PipelineFlowControl(transport, self)
        if len(self.connections) > self.limits.max_connections:
            log.warning(
                "refused a connection: %d open, at most %d (--max-connections)",
                len(self.connections) - 1,
                self.limits.max_connections,
            )
            self.refuse(
                self.error_response(
                    503,
                    "The server has too many open connections. Please retry shortly.",
                    error_type="server_error",
                    code="too_many_connections",
                    headers=((b"retry-after", b"1"),),
                ),
            )
            return
        self.arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.header_timer, self.linger_timer):
            if timer is not None:
                timer.cancel()
        self.header_timer = self.linger_timer = None
        super().connection_lost(exc)
        # What was queued goes with the connection.
        self.pipeline.clear()
        self.held = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.lingering:
            self.discarded += len(data)
            if self.discarded > LINGER_BYTES:
                self.transport.close()
            return
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()
        if self.held:  # behind bytes not parsed yet
            self.held += data
            self.flow.pause_reading()
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Parse `data` a piece at a time, so that the parser never reaches the end of more
        than a slice's worth of requests at once (one read may hold thousands of small
        requests); what lies past the bound on pipelined requests is held."""
        offset = 0
        while offset < len(data) and not self.transport.is_closing():
            if self.lingering:  # what is left is discarded
                self.discarded += len(data) - offset
                return
            if self.pipeline_full():
                self.held = bytearray(memoryview(data)[offset:])
                self.flow.pause_reading()
                # The wait is the server's now: the head's clock restarts when it is parsed.
                if self.header_timer is not None:
                    self.header_timer.cancel()
                    self.header_timer = None
                return
            end = min(self.piece_end(data, offset), len(data))
            if not self.feed_piece(memoryview(data)[offset:end]):
                return
            self.last_byte = data[end - 1]
            offset = end

    def piece_end(self, data: bytes, offset: int) -> int:
        """Where the next piece of `data` from `offset` ends: a body is given whole up to
        where its request may end (an upload goes to the app in large chunks), heads and
        what may end a request a slice at a time."""
        if self.reading_head:
            return offset + PIPELINED_SLICE
        if self.body_left is not None:  # a Content-Length: the request ends right there
            return offset + max(self.body_left, 1)
        if self.chunked:
            # A chunked body ends with its last chunk, a line of zeros (then `\r\n` or an
            # extension): none can end before the next such line start, though a chunk's
            # data may hold one as well.
            if self.last_byte == NEWLINE and LAST_CHUNK.match(data, offset):
                return offset + PIPELINED_SLICE
            found = data.find(b"\n0", offset)
            while found >= 0 and not LAST_CHUNK.match(data, found + 1):
                found = data.find(b"\n0", found + 2)
            return len(data) if found < 0 else found + 1
        return offset + PIPELINED_SLICE

    def feed_piece(self, data: bytes | memoryview) -> bool:
        """Parse `data`; False when the connection was refused or upgraded."""
        if self.reading_head:
            self.arm_header_timer()
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:  # as uvicorn does
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return False
        except httptools.HttpParserError as exc:
            cause = exc.__cause__ or exc.__context__
            if isinstance(cause, _HeadTooLarge):
                self.refuse_head()
            else:
                why = str(cause or exc).rstrip(".") or type(exc).__name__
                self.send_400_response(f"Invalid HTTP request: {why}.")
            return False
        if self.reading_head and self.head_bytes > self.limits.max_header_bytes:
            self.refuse_head()
            return False
        return True

    # -- pipelined requests --
    def pipeline_full(self) -> bool:
        """Whether this connection holds its quota of unanswered requests (or a queued
        request's body is buffered to uvicorn's high-water mark), so that reading waits."""
        if self.lingering or self.transport.is_closing():
            return False
        if self.held or len(self.pipeline) + 1 >= MAX_PIPELINED:
            return True
        return bool(self.pipeline) and len(self.cycle.body) > HIGH_WATER_LIMIT

    def feed_held(self) -> None:
        """Parse the held bytes once an answer went out, then read again if room is left."""
        if not self.held or self.transport.is_closing() or self.lingering:
            return
        data, self.held = bytes(self.held), bytearray()
        self._unset_keepalive_if_required()
        self.feed(data)
        self.flow.resume_reading()

    # -- the head --
    def arm_header_timer(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(
                self.limits.header_timeout, self.header_timeout
            )

    def header_timeout(self) -> None:
        self.header_timer = None
        if self.transport.is_closing() or not self.reading_head:
            return
        if self.head_bytes == 0:
            self.transport.close()  # nothing was asked: nothing to answer
            return
        log.info(
            "closed a connection whose request head took over %.0fs (--header-timeout-seconds)",
            self.limits.header_timeout,
        )
        seconds = S.shown_float(self.limits.header_timeout)
        self.refuse(
            self.error_response(
                408,
                f"The request line and headers took over {seconds} seconds to arrive. "
                "Send the request again.",
                code="request_timeout",
            )
        )

    def refuse_head(self) -> None:
        limit = self.limits.max_header_bytes
        if len(self.url) > limit or (self.header_bytes == 0 and self.head_bytes > limit):
            log.info("refused a URL over %d bytes (--max-header-bytes)", limit)
            response = self.error_response(
                414, f"The request URL is too long: at most {limit} bytes.", code="uri_too_long"
            )
        else:
            log.info("refused request headers over %d bytes (--max-header-bytes)", limit)
            response = self.error_response(
                431,
                f"The request line and headers are too large: at most {limit} bytes together.",
                code="request_header_fields_too_large",
            )
        self.refuse(response)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.header_bytes = 0

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > self.limits.max_header_bytes:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if len(self.url) + self.header_bytes > self.limits.max_header_bytes:
            raise _HeadTooLarge
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.reading_head = False
        self.body_left, self.chunked = None, False
        for name, value in self.headers:
            if name == b"content-length":  # the parser refuses a bad one, or two
                self.body_left = int(value)
            elif name == b"transfer-encoding":
                self.chunked = True
        if self.chunked:  # the parser refuses chunked with a Content-Length
            self.body_left = None
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        super().on_headers_complete()
        if self.cycle is not None and self.cycle.scope is self.scope:
            self.watch(self.cycle)

    def on_body(self, body: bytes) -> None:
        if self.body_left is not None:
            self.body_left -= len(body)
        cycle = self.cycle
        if cycle is not None and type(cycle.body) is bytearray:  # a new one at each receive
            chunks = _BodyChunks()
            if cycle.body:  # never so far: uvicorn fills its buffer only here
                chunks += bytes(cycle.body)
            cycle.body = chunks  # type: ignore[assignment]
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        self.body_left, self.chunked = None, False

    # -- early answers --
    def watch(self, cycle: RequestResponseCycle) -> None:
        """Give the response head canonical header names, and make a response that starts
        before the request body was read whole close the connection (lingering) rather
        than read the rest of the body."""
        send = cycle.send
        transport = _CycleTransport(self)
        cycle.transport = transport  # type: ignore[assignment]

        async def send_then_close(message: Any) -> None:
            if message["type"] != "http.response.start" or cycle.response_started:
                await send(message)
                return
            if cycle.more_body and not cycle.disconnected and not self.transport.is_closing():
                cycle.keep_alive = False
                transport.linger_on_close = True
            transport.head_next = True
            try:
                await send(message)
            finally:
                transport.head_next = False

        cycle.send = send_then_close  # type: ignore[method-assign]

    def linger(self) -> None:
        """Send end-of-stream, discard what comes for a moment, then close: closing with
        unread bytes resets the connection, and the client may lose the answer."""
        if self.lingering or self.transport.is_closing():
            return
        self.lingering = True
        self.reading_head = False
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None
        self._unset_keepalive_if_required()
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except OSError:
            self.transport.close()
            return
        self.flow.resume_reading()
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def on_response_complete(self) -> None:
        if self.lingering:
            self.server_state.total_requests += 1
            return
        super().on_response_complete()
        if self.held and not self.transport.is_closing():
            # Not from inside the app's `send`: a held request may be refused at once.
            self.loop.call_soon(self.feed_held)

    def refuse(self, response: bytes) -> None:
        """Answer `response` outside any app, and close the connection (lingering)."""
        if self.lingering or self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # The app is running this request: it sees a disconnect, and unwinds.
            started = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
            if started:
                self.transport.close()
                return
        self.transport.write(response)
        self.linger()

    def error_response(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        error_type: str = "invalid_request_error",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> bytes:
        return error_response(
            status,
            message,
            code=code,
            error_type=error_type,
            headers=(*self.server_state.default_headers, *headers),
        )

    def send_400_response(self, msg: str) -> None:
        log.info("refused a malformed request: %s", msg)
        self.refuse(self.error_response(400, msg, code="invalid_http_request"))


def protocol_class(settings: Settings) -> type[asyncio.Protocol]:
    """The protocol class uvicorn runs, with the limits of `settings`."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": ConnectionLimits.of(settings)},
    )


def raise_fd_limit(settings: Settings) -> None:
    """Raise the soft limit on open files so that `max_connections` fit, or say it cannot."""
    needed = settings.max_connections + SPARE_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
    if target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):  # macOS refuses some values under an unlimited hard
            target = soft
    if target < needed:
        log.warning(
            "the open-file limit (%d) leaves room for %d connections, not the %d of "
            "--max-connections: raise it (ulimit -n) or lower --max-connections",
            target,
            max(0, target - SPARE_FDS),
            settings.max_connections,
        )
