"""What the HTTP connection layer (`_http.py`) puts on the wire, and the transport it hands
uvicorn: response heads with canonical header names, answers in OpenAI's error envelope
written outside any app, and a connection's reads held or its close made lingering.

uvicorn sees the socket only through `ConnectionTransport`, an `asyncio.Transport` like any
other: the seam is asyncio's documented transport interface, not uvicorn's internals.
"""

from __future__ import annotations

import asyncio
import functools
import http
import json
import secrets
from collections.abc import Callable
from typing import Any

from . import settings as S

#: After an early answer, what the client already sent is discarded for at most this long
#: and this many bytes before the connection is closed.
LINGER_SECONDS = 1.0
LINGER_BYTES = 1024 * 1024

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
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, http.HTTPStatus(status).phrase.encode())]
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


class ConnectionTransport(asyncio.Transport):
    """The socket's transport as uvicorn sees it.

    - Reading: uvicorn pauses and resumes reading as it needs; the socket is read only
      when uvicorn wants it read and `hold()` (the connection layer's bounds: pipelined
      requests, a body's buffer) says nothing holds it.
    - Writing: the write that follows `head_next` is a response head (uvicorn writes the
      status line and headers in one `write()`, names lower-cased): it goes out with
      canonical names.
    - Closing: with `linger_on_close`, `close()` is a lingering close (see `linger`).
    """

    def __init__(
        self,
        transport: asyncio.Transport,
        loop: asyncio.AbstractEventLoop,
        hold: Callable[[], bool],
    ) -> None:
        super().__init__()
        self.transport = transport
        self.loop = loop
        self.hold = hold
        #: Whether uvicorn paused reading; whether the socket is being read.
        self.paused = False
        self.reading = True
        self.head_next = False
        self.linger_on_close = False
        self.lingering = False
        self.discarded = 0
        self.linger_timer: asyncio.TimerHandle | None = None

    # -- reading --
    def pause_reading(self) -> None:
        self.paused = True
        self.update_reading()

    def resume_reading(self) -> None:
        self.paused = False
        self.update_reading()

    def update_reading(self) -> None:
        """Read the socket, or stop, as uvicorn and `hold()` now say (a lingering
        connection is read, to discard what comes)."""
        if self.transport.is_closing():
            return
        reading = self.lingering or not (self.paused or self.hold())
        if reading != self.reading:
            self.reading = reading
            if reading:
                self.transport.resume_reading()
            else:
                self.transport.pause_reading()

    def is_reading(self) -> bool:
        return self.transport.is_reading()

    # -- writing --
    def write(self, data: bytes | bytearray | memoryview[Any]) -> None:
        if self.lingering:  # end-of-stream is sent: what an app still writes is dropped
            return
        # `receive()` may write an interim `100 Continue` meanwhile: it has no headers.
        if self.head_next and bytes(data[:13]) != b"HTTP/1.1 100 ":
            self.head_next = False
            data = canonical_head(bytes(data))
        self.transport.write(data)

    def can_write_eof(self) -> bool:
        return self.transport.can_write_eof()

    def write_eof(self) -> None:
        self.transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self.transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self.transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.transport.set_write_buffer_limits(high, low)

    # -- closing --
    def is_closing(self) -> bool:
        return self.lingering or self.transport.is_closing()

    def close(self) -> None:
        if self.lingering:  # closed by the linger's own end
            return
        if self.linger_on_close:
            self.linger()
        else:
            self.transport.close()

    def abort(self) -> None:
        self.transport.abort()

    def linger(self) -> None:
        """Send end-of-stream, discard what comes for a moment, then close: closing with
        unread bytes resets the connection, and the client may lose the answer."""
        if self.lingering or self.transport.is_closing():
            return
        self.lingering = True
        try:
            if self.transport.can_write_eof():
                self.transport.write_eof()
        except OSError:
            self.transport.close()
            return
        self.update_reading()
        self.linger_timer = self.loop.call_later(LINGER_SECONDS, self.transport.close)

    def discard(self, size: int) -> None:
        """`size` bytes came while lingering: dropped, up to LINGER_BYTES in all."""
        self.discarded += size
        if self.discarded > LINGER_BYTES:
            self.transport.close()

    def lost(self) -> None:
        """The connection is gone: no timer of its own outlives it."""
        if self.linger_timer is not None:
            self.linger_timer.cancel()
            self.linger_timer = None

    # -- the rest, as the socket's transport --
    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self.transport.get_protocol()
