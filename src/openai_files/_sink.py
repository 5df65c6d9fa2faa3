"""The download sink: a body written chunk by chunk beside its target, renamed once complete.

It never holds a whole file. `receive` (blocking) and `areceive` (for `httpx.AsyncClient`)
move a streamed response's body into a `DownloadSink`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
from pathlib import Path

import httpx

from ._types import ProgressCallback


class ShortDownloadError(OSError):
    """The body had fewer (or more) bytes than announced."""

    def __init__(self, received: int, expected: int) -> None:
        super().__init__(f"received {received} of {expected} bytes")
        self.received = received
        self.expected = expected


class DownloadSink:
    """Writes a download beside `path` and renames it there once complete and checked.

    Nobody ever sees a partial file at `path`: the bytes go to a hidden temporary file in the
    same folder (so the rename is atomic), which is removed on any failure. With `durable`,
    the file's bytes are fsynced before the rename and the folder after it, so the file
    survives a power loss once the download returns; without it (the default), they reach
    the disk when the operating system writes them back, as with `curl -o`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        progress: ProgressCallback | None,
        durable: bool = False,
    ) -> None:
        self.path = Path(os.fspath(path))
        self.progress = progress
        self.durable = durable
        self.expected: int | None = None
        self.received = 0
        self._tmp: Path | None = None
        self._fd: int | None = None

    def open(self) -> None:
        self.received = 0
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC, 0o666)
        if self.progress is not None:
            self.progress(0, self.expected)

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        """Write all of `chunk` (unbuffered: straight to the file, no copy kept)."""
        assert self._fd is not None
        view = memoryview(chunk)
        size = len(view)
        done = os.write(self._fd, view)
        while done < size:
            done += os.write(self._fd, view[done:])
        self.received += size
        if self.progress is not None:
            self.progress(self.received, self.expected)

    def commit(self) -> None:
        """Check the length, then move the bytes into place (durably when asked)."""
        assert self._fd is not None and self._tmp is not None
        if self.expected is not None and self.received != self.expected:
            raise ShortDownloadError(self.received, self.expected)
        if self.durable:
            os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None
        os.replace(self._tmp, self.path)
        self._tmp = None
        if self.durable:
            _fsync_folder(self.path.parent)

    def discard(self) -> None:
        """Remove what an unfinished download left (nothing after `commit`)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                self._tmp.unlink()
            self._tmp = None


_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def _fsync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (where the system allows opening a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY | _O_CLOEXEC)
    except OSError:  # pragma: no cover - Windows cannot open a folder
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


#: The socket reads of the direct read path (`receive`), and the smallest body it is used for:
#: below it, keeping the connection for the next request is worth more than the copies saved.
RECEIVE_BUFFER = 1024 * 1024
DIRECT_MIN_BYTES = 8 * 1024 * 1024


def _direct_socket(response: httpx.Response) -> socket.socket | None:
    """The socket that carries `response`'s body as it is, or None when there is none.

    httpcore names the connection's stream in the documented `network_stream` extension. Its
    socket carries the body as sent only for HTTP/1.x over plain TCP, or over TLS done by
    the socket itself (`ssl.SSLSocket`); TLS through a proxy tunnel (a memory `SSLObject`
    over the proxy's socket) and other streams are left to httpx.
    """
    if response.http_version not in ("HTTP/1.1", "HTTP/1.0"):
        return None
    stream = response.extensions.get("network_stream")
    get_extra_info = getattr(stream, "get_extra_info", None)
    if get_extra_info is None:
        return None
    try:
        sock = get_extra_info("socket")
        tls = get_extra_info("ssl_object")
    except Exception:  # a stream of another library: not ours to guess
        return None
    if not isinstance(sock, socket.socket) or isinstance(tls, ssl.SSLObject):
        return None
    if (tls is None) != (not isinstance(sock, ssl.SSLSocket)):
        return None
    return sock


def _decoded(response: httpx.Response) -> bool:
    """True when the body must go through httpx's decoding: a content coding, or a body
    already read (a response made in memory), which only the decoded iterator gives again."""
    coding = response.headers.get("content-encoding", "identity")
    return coding != "identity" or response.is_stream_consumed


def receive(response: httpx.Response, sink: DownloadSink) -> None:
    """Write the body of a streamed `response` into the opened `sink` (blocking).

    A large body of known length and no content coding is read straight from the socket
    into one reused buffer and written from it: no object per chunk, no copy through the
    HTTP parser. httpx parses the headers and hands over the first bytes it already holds;
    the rest is read here, never past the announced length. The connection is then closed
    rather than reused (its parser never saw the body end). Anything else, or a transport
    without a socket, goes through httpx's raw stream.
    """
    encoded = _decoded(response)
    chunks = response.iter_bytes() if encoded else response.iter_raw()
    if encoded or sink.expected is None or sink.expected < DIRECT_MIN_BYTES:
        for chunk in chunks:
            sink.write(chunk)
        return
    sock = _direct_socket(response)
    if sock is None:
        for chunk in chunks:
            sink.write(chunk)
        return
    # The first chunk empties what the parser had buffered after the headers (a body of
    # known length is handed out whole from its buffer), so the socket holds the rest.
    first = next(chunks, b"")
    sink.write(first)
    timeout = response.request.extensions.get("timeout", {}).get("read")
    buffer = memoryview(bytearray(RECEIVE_BUFFER))
    left = sink.expected - sink.received
    sock.settimeout(timeout)
    ended = False
    while left > 0 and not ended:
        # Reads fill the buffer before it is written: one write a megabyte, however little
        # each read brings (over TLS, one record of 16 KiB at most).
        want, filled = min(left, RECEIVE_BUFFER), 0
        while filled < want:
            try:
                n = sock.recv_into(buffer[filled:], want - filled)
            except TimeoutError as exc:
                raise httpx.ReadTimeout(str(exc) or "timed out", request=response.request) from exc
            except OSError as exc:
                raise httpx.ReadError(str(exc), request=response.request) from exc
            if not n:
                ended = True  # closed early: the sink's commit reports the shortfall
                break
            filled += n
        if filled:
            sink.write(buffer[:filled])
            left -= filled


async def areceive(response: httpx.Response, sink: DownloadSink) -> None:
    """As `receive`, for a response of `httpx.AsyncClient`: the body through httpx, written
    in a worker thread about a megabyte at a time (one thread hop per write, not per chunk)."""
    from anyio.to_thread import run_sync  # httpx's own dependency; imported when used

    encoded = _decoded(response)
    chunks = response.aiter_bytes() if encoded else response.aiter_raw()
    pending: list[bytes] = []
    size = 0
    async for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= RECEIVE_BUFFER:
            await run_sync(sink.write, pending[0] if len(pending) == 1 else b"".join(pending))
            pending, size = [], 0
    if pending:
        await run_sync(sink.write, b"".join(pending))
