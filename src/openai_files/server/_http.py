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

The seam on uvicorn. These rules live in the parser callbacks of uvicorn's protocol class
(each calls uvicorn's own), in an ASGI wrapper of the app, and in the transport uvicorn is
given (`_http_wire.ConnectionTransport`): no method of uvicorn is copied, no attribute of it
whose name starts with `_` is used, and uvicorn's state (its cycle, pipeline, connection
set, flow control) is neither read nor replaced. What is used, besides the callbacks:
`self.app` (wrapped for each connection before any request starts), `self.loop`, and
`server_state.default_headers` (the `Date` and `Server` of the answers written here). One
method is replaced rather than extended: `send_400_response`, uvicorn's answer to a request
the parser refused, so that the answer is in OpenAI's envelope with the parser's reason
(the exception uvicorn is handling when it calls it). tests/server/test_uvicorn_seam.py
checks each of these on the uvicorn installed, and `make test-uvicorn-newest` (run by CI)
runs the connection tests on the newest uvicorn as well (UVICORN_NEWEST in the Makefile).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import re
import resource
import sys
from typing import Any, ClassVar, cast

import httptools
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from . import settings as S
from ._http_wire import ConnectionTransport, error_response
from .settings import Settings

log = logging.getLogger("openai_files.server")

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
#: The body buffered past which reading pauses until the app asks for more (uvicorn's
#: high-water mark).
HIGH_WATER = 64 * 1024


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


#: Body chunks under this size are gathered into one bytearray (see `_BodyChunks`).
SMALL_BODY_CHUNK = 16 * 1024


class _BodyChunks:
    """A request body's buffer that keeps the parser's chunks as they came.

    uvicorn appends each chunk to a bytearray and hands the app a copy of it: two copies of
    every body byte. The body goes to this buffer instead (uvicorn's stays empty), and a
    single chunk (the usual case: the app reads as fast as the socket) is handed over as
    is. On 512 MiB uploads, 7 rounds alternating between two servers: the server's CPU
    1.01 s against 1.14 s, the upload 1.37 s against 1.51 s.

    Chunks under SMALL_BODY_CHUNK are gathered into one bytearray, as uvicorn would:
    reading pauses on the bytes buffered (HIGH_WATER), not on their count, and a chunked
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

    def take(self) -> bytes:
        """The bytes buffered, which leave the buffer."""
        data = bytes(self)
        self.chunks = []
        self.size = 0
        self._tail = None
        return data


class _Request:
    """A request of the connection from its head to its answer: its body as it comes, and
    where the two stand."""

    __slots__ = ("answering", "body", "full", "whole")

    def __init__(self) -> None:
        self.body = _BodyChunks()
        #: The body buffered is past HIGH_WATER: reading waits until the app asks for more.
        self.full = False
        #: The whole body was parsed; the answer has started.
        self.whole = False
        self.answering = False


class _ConnectionApp:
    """The app as one connection runs it: each request's body is handed over from its
    `_Request`, and an answer that starts before the request body was read whole closes
    the connection (lingering), rather than read the rest of the body."""

    __slots__ = ("app", "protocol")

    def __init__(self, app: ASGIApp, protocol: LimitedHttpToolsProtocol) -> None:
        self.app = app
        self.protocol = protocol

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        protocol = self.protocol
        if scope["type"] != "http" or not protocol.unanswered:
            await self.app(scope, receive, send)
            return
        # uvicorn starts a request's app once the one before it is answered: the oldest
        # request not answered is this one.
        request = protocol.unanswered[0]
        wire = protocol.wire

        async def receive_body() -> Message:
            if request.full:  # the app asks for more: reading resumes
                request.full = False
                wire.update_reading()
            message = await receive()
            if message["type"] != "http.request":
                return message
            return {
                "type": "http.request",
                "body": request.body.take(),
                "more_body": message.get("more_body", False),
            }

        async def send_answer(message: Message) -> None:
            if message["type"] != "http.response.start" or request.answering:
                await send(message)
                return
            request.answering = True
            if not request.whole and not wire.is_closing():
                wire.linger_on_close = True
                message = _closing(message)
            wire.head_next = True
            try:
                await send(message)
            finally:
                wire.head_next = False

        await self.app(scope, receive_body, send_answer)


def _closing(start: Message) -> Message:
    """A response start that closes the connection (uvicorn then closes it once sent)."""
    headers = list(start.get("headers", ()))
    for name, value in headers:
        if name.lower() == b"connection" and b"close" in value.lower():
            return start
    return {**start, "headers": [*headers, (b"connection", b"close")]}


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounds on the head, timeouts and a connection cap."""

    limits: ClassVar[ConnectionLimits]
    #: The connections open (made by `protocol_class`, one set per server).
    open: ClassVar[set[LimitedHttpToolsProtocol]]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.app = cast(Any, _ConnectionApp(self.app, self))
        self.wire: ConnectionTransport = cast(ConnectionTransport, None)
        #: Reading a request head (and how much of it has come, of its URL, of its
        #: headers); the head is over the limit (the parser's callbacks then do nothing).
        self.reading_head = True
        self.head_bytes = 0
        self.url_bytes = 0
        self.header_bytes = 0
        self.head_too_large = False
        self.header_timer: asyncio.TimerHandle | None = None
        #: The requests received and not answered yet, oldest first; the one whose body
        #: is being parsed.
        self.unanswered: collections.deque[_Request] = collections.deque()
        self.parsing: _Request | None = None
        #: Bytes received past the pipelined requests' bound, parsed once answers go out.
        self.held = bytearray()
        #: The body's Content-Length as sent; what is left of it; whether the body is
        #: chunked; the last byte parsed (see `piece_end`).
        self.content_length = b""
        self.body_left: int | None = None
        self.chunked = False
        self.last_byte = 0

    # -- connection --
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.wire = ConnectionTransport(transport, self.loop, self.reading_held)
        super().connection_made(self.wire)
        self.open.add(self)
        if len(self.open) > self.limits.max_connections:
            log.warning(
                "refused a connection: %d open, at most %d (--max-connections)",
                len(self.open) - 1,
                self.limits.max_connections,
            )
            self.refuse(
                503,
                "The server has too many open connections. Please retry shortly.",
                error_type="server_error",
                code="too_many_connections",
                headers=((b"retry-after", b"1"),),
            )
            return
        self.arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.open.discard(self)
        self.cancel_header_timer()
        self.wire.lost()
        super().connection_lost(exc)
        # What was queued goes with the connection.
        self.unanswered.clear()
        self.held = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.wire.lingering:
            self.wire.discard(len(data))
            return
        if self.wire.is_closing():
            return
        if self.held:  # behind bytes not parsed yet
            self.held += data
            self.wire.update_reading()
            return
        self.feed(data)

    def feed(self, data: bytes) -> None:
        """Hand uvicorn `data` a piece at a time, so that the parser never reaches the end
        of more than a slice's worth of requests at once (one read may hold thousands of
        small requests); what lies past the bound on pipelined requests is held."""
        offset = 0
        while offset < len(data):
            if self.wire.is_closing():
                if self.wire.lingering:  # what is left is discarded
                    self.wire.discard(len(data) - offset)
                return
            if self.pipeline_full():
                self.held = bytearray(memoryview(data)[offset:])
                self.wire.update_reading()
                # The wait is the server's now: the head's clock restarts when it is parsed.
                self.cancel_header_timer()
                return
            end = min(self.piece_end(data, offset), len(data))
            if self.reading_head:
                self.arm_header_timer()
                self.head_bytes += end - offset
            # uvicorn's own data_received parses the piece (a memoryview: no copy).
            whole = offset == 0 and end == len(data)
            super().data_received(data if whole else cast(bytes, memoryview(data)[offset:end]))
            if self.head_too_large or (
                self.reading_head and self.head_bytes > self.limits.max_header_bytes
            ):
                self.refuse_head()
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

    # -- pipelined requests --
    def pipeline_full(self) -> bool:
        """Whether this connection holds its quota of unanswered requests (or a queued
        request's body is buffered past HIGH_WATER), so that parsing waits."""
        if self.wire.is_closing():
            return False
        unanswered = self.unanswered
        if self.held or len(unanswered) >= MAX_PIPELINED:
            return True
        return len(unanswered) > 1 and len(unanswered[-1].body) > HIGH_WATER

    def reading_held(self) -> bool:
        """Whether the socket must not be read: parsing waits, or the body being read is
        buffered past HIGH_WATER until the app asks for more."""
        if self.pipeline_full():
            return True
        return bool(self.unanswered) and self.unanswered[-1].full

    def feed_held(self) -> None:
        """Parse the held bytes once an answer went out, then read again if room is left."""
        if not self.held or self.wire.is_closing():
            return
        data, self.held = bytes(self.held), bytearray()
        self.feed(data)
        self.wire.update_reading()

    def on_response_complete(self) -> None:
        if self.unanswered:
            self.unanswered.popleft()
        super().on_response_complete()
        if self.wire.is_closing():
            return
        if self.held:
            # Not from inside the app's `send`: a held request may be refused at once.
            self.loop.call_soon(self.feed_held)
        else:  # what the answered request held (its body's buffer) holds no more
            self.wire.update_reading()

    # -- the head --
    def arm_header_timer(self) -> None:
        if self.header_timer is None:
            self.header_timer = self.loop.call_later(
                self.limits.header_timeout, self.header_timeout
            )

    def cancel_header_timer(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def header_timeout(self) -> None:
        self.header_timer = None
        if self.wire.is_closing() or not self.reading_head:
            return
        if self.head_bytes == 0:
            self.wire.transport.close()  # nothing was asked: nothing to answer
            return
        log.info(
            "closed a connection whose request head took over %.0fs (--header-timeout-seconds)",
            self.limits.header_timeout,
        )
        seconds = S.shown_float(self.limits.header_timeout)
        self.refuse(
            408,
            f"The request line and headers took over {seconds} seconds to arrive. "
            "Send the request again.",
            code="request_timeout",
        )

    def refuse_head(self) -> None:
        limit = self.limits.max_header_bytes
        if self.url_bytes > limit or (self.header_bytes == 0 and self.head_bytes > limit):
            log.info("refused a URL over %d bytes (--max-header-bytes)", limit)
            self.refuse(
                414, f"The request URL is too long: at most {limit} bytes.", code="uri_too_long"
            )
        else:
            log.info("refused request headers over %d bytes (--max-header-bytes)", limit)
            self.refuse(
                431,
                f"The request line and headers are too large: at most {limit} bytes together.",
                code="request_header_fields_too_large",
            )

    # -- the parser's callbacks: each passes on to uvicorn's, unless the head is too large
    def on_message_begin(self) -> None:
        if self.head_too_large:
            return
        super().on_message_begin()
        self.url_bytes = self.header_bytes = 0
        self.content_length = b""
        self.body_left, self.chunked = None, False

    def on_url(self, url: bytes) -> None:
        self.url_bytes += len(url)
        if self.head_too_large or self.url_bytes > self.limits.max_header_bytes:
            self.head_too_large = True
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value) + 4
        if self.head_too_large or self.url_bytes + self.header_bytes > self.limits.max_header_bytes:
            self.head_too_large = True
            return
        if len(name) == 14 and name.lower() == b"content-length":
            self.content_length = value
        elif len(name) == 17 and name.lower() == b"transfer-encoding":
            self.chunked = True
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self.head_too_large:
            return
        self.reading_head = False
        self.cancel_header_timer()
        # The parser refuses a bad Content-Length, two of them, and one beside chunked.
        self.body_left = (
            None if self.chunked or not self.content_length else int(self.content_length)
        )
        self.parsing = _Request()
        self.unanswered.append(self.parsing)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        request = self.parsing
        if self.head_too_large or request is None:
            return
        if self.body_left is not None:
            self.body_left -= len(body)
        request.body += body
        # uvicorn's buffer stays empty: the call wakes the app, which takes the body from
        # `request` (see _ConnectionApp).
        super().on_body(b"")
        if not request.full and len(request.body) > HIGH_WATER:
            request.full = True
            self.wire.update_reading()

    def on_message_complete(self) -> None:
        if self.head_too_large:
            return
        if self.parsing is not None:
            self.parsing.whole = True
            self.parsing = None
        super().on_message_complete()
        self.reading_head = True
        self.head_bytes = 0
        self.body_left, self.chunked = None, False

    def send_400_response(self, msg: str) -> None:
        # Replaced, not extended (see the module's docstring): uvicorn calls it from the
        # `except httptools.HttpParserError` of its data_received, so the parser's error is
        # the exception being handled.
        exc = sys.exception()
        if isinstance(exc, httptools.HttpParserError):
            cause = exc.__cause__ or exc.__context__
            why = str(cause or exc).rstrip(".") or type(exc).__name__
            msg = f"Invalid HTTP request: {why}."
        log.info("refused a malformed request: %s", msg)
        self.refuse(400, msg, code="invalid_http_request")

    # -- answers written here --
    def refuse(
        self,
        status: int,
        message: str,
        *,
        code: str,
        error_type: str = "invalid_request_error",
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        """Answer outside any app with an error in OpenAI's envelope, and close the
        connection (lingering). An app still answering an earlier request on it has its
        answer dropped, and sees the client leave once the connection closes."""
        wire = self.wire
        if wire.is_closing():
            return
        if self.unanswered and self.unanswered[0].answering:
            wire.transport.close()  # an answer is on its way: ours cannot follow it
            return
        defaults = tuple(self.server_state.default_headers)
        wire.transport.write(
            error_response(
                status, message, code=code, error_type=error_type, headers=(*defaults, *headers)
            )
        )
        wire.linger()


def protocol_class(settings: Settings) -> type[LimitedHttpToolsProtocol]:
    """The protocol class uvicorn runs, with the limits of `settings`; its `open` is the
    set of connections open."""
    return type(
        "LimitedHttpToolsProtocol",
        (LimitedHttpToolsProtocol,),
        {"limits": ConnectionLimits.of(settings), "open": set()},
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
