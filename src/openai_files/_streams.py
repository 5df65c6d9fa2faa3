"""Bodies that stream: a multipart upload read chunk by chunk, a download written the same way.

Neither ever holds a whole file. An upload from a path reopens the file on each attempt and
one from a seekable file object seeks back to where it started, so both can be retried; an
iterator or a pipe is read once, and a request that has started reading it is not retried.
A download goes to a temporary file beside its target, renamed only once complete.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from pathlib import Path
from typing import IO

import httpx

from ._config import CHUNK_SIZE

#: `progress(done, total)`: bytes sent or received so far, and the total when known.
ProgressCallback = Callable[[int, "int | None"], None]

#: What an upload accepts: bytes, a path, a binary file object or an iterable of bytes.
FileData = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | Iterable[bytes]


class StreamConsumedError(RuntimeError):
    """A one-shot body was asked for a second time."""


class _Source:
    """The bytes of the file part: opened once per attempt, read in chunks, closed."""

    size: int | None = None
    resendable = True
    name: str | None = None

    def __init__(self) -> None:
        self.started = False

    def open(self) -> None:
        self.started = True

    def read(self, n: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass


class _BytesSource(_Source):
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        super().__init__()
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)
        self._pos = 0

    def open(self) -> None:
        super().open()
        self._pos = 0

    def read(self, n: int) -> bytes:
        chunk = bytes(self._view[self._pos : self._pos + n])
        self._pos += len(chunk)
        return chunk


class _PathSource(_Source):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self._path = path
        self.size = path.stat().st_size  # also: a missing file fails before any request
        if not path.is_file():
            raise IsADirectoryError(f"not a regular file: {path}")
        self.name = path.name
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        super().open()
        self.close()
        self._file = self._path.open("rb")

    def read(self, n: int) -> bytes:
        assert self._file is not None
        return self._file.read(n)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class RangeSource(_Source):
    """`length` bytes of the file at `path` from `offset`: one part of an upload in parts.

    Reopened (and sought) on each attempt, read in chunks: a part is never held whole.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._path = path
        self._offset = offset
        self.size = length
        self._left = length
        self.name = path.name
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        super().open()
        self.close()
        self._file = self._path.open("rb")
        self._file.seek(self._offset)
        self._left = self.size or 0

    def read(self, n: int) -> bytes:
        assert self._file is not None
        chunk = self._file.read(min(n, self._left))
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _FileObjectSource(_Source):
    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self._file = file
        raw_name = getattr(file, "name", None)
        self.name = Path(raw_name).name if isinstance(raw_name, str) and raw_name else None
        self._start: int | None = None
        seekable = getattr(file, "seekable", None)
        if seekable is not None and seekable():
            self._start = file.tell()
            end = file.seek(0, os.SEEK_END)
            file.seek(self._start)
            self.size = end - self._start
        else:
            self.resendable = False

    def open(self) -> None:
        if self._start is not None:
            self._file.seek(self._start)  # rewind: the body can be sent again
        elif self.started:
            raise StreamConsumedError("a non-seekable file object can be sent only once")
        super().open()

    def read(self, n: int) -> bytes:
        return self._file.read(n)


class _IterableSource(_Source):
    resendable = False

    def __init__(self, chunks: Iterable[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._iter: Iterator[bytes] | None = None
        self._buffer = b""

    def open(self) -> None:
        if self.started:
            raise StreamConsumedError("an iterator of bytes can be sent only once")
        super().open()
        self._iter = iter(self._chunks)

    def read(self, n: int) -> bytes:
        # The chunks are passed on as they come (n is a hint), never joined.
        assert self._iter is not None
        for chunk in self._iter:
            if chunk:
                return bytes(chunk)
        return b""


def make_source(data: FileData) -> _Source:
    """The source for what the caller gave; a path is checked here (before any request)."""
    if isinstance(data, bytes | bytearray | memoryview):
        return _BytesSource(data)
    if isinstance(data, str | os.PathLike):
        return _PathSource(Path(os.fspath(data)))
    if hasattr(data, "read"):
        return _FileObjectSource(data)  # type: ignore[arg-type]
    if isinstance(data, Iterable):
        return _IterableSource(data)
    raise TypeError(
        f"file data must be bytes, a path, a binary file object or an iterable of bytes, "
        f"not {type(data).__name__}"
    )


def _quote(value: str) -> str:
    # As browsers (and httpx) do for form-data names: the header stays one line.
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A `multipart/form-data` body: the fields, then the file part read chunk by chunk.

    Works for `httpx.Client` and `httpx.AsyncClient` alike; the async side reads the file
    in a worker thread so the event loop never blocks on the disk.
    """

    def __init__(
        self,
        fields: list[tuple[str, str]],
        source: _Source,
        filename: str,
        content_type: str,
        progress: ProgressCallback | None = None,
        field: str = "file",
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.boundary = secrets.token_hex(16)
        self.chunk_size = chunk_size
        self.source = source
        self.progress = progress
        head = bytearray()
        for name, value in fields:
            head += (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"'
            ).encode()
            head += b"\r\n\r\n" + value.encode("utf-8") + b"\r\n"
        ctype = content_type.replace("\r", "").replace("\n", "")
        head += (
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(field)}"; '
            f'filename="{_quote(filename)}"\r\nContent-Type: {ctype}\r\n\r\n'
        ).encode()
        self.preamble = bytes(head)
        self.epilogue = f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    @property
    def content_length(self) -> int | None:
        """The exact length of the body, when the file's size is known."""
        if self.source.size is None:
            return None
        return len(self.preamble) + self.source.size + len(self.epilogue)

    def can_resend(self) -> bool:
        """True when another attempt can send the whole body again."""
        return self.source.resendable or not self.source.started

    def _report(self, done: int) -> None:
        if self.progress is not None:
            self.progress(done, self.source.size)

    def __iter__(self) -> Iterator[bytes]:
        self.source.open()
        try:
            yield self.preamble
            done = 0
            self._report(done)
            while chunk := self.source.read(self.chunk_size):
                done += len(chunk)
                yield chunk
                self._report(done)
            yield self.epilogue
        finally:
            self.source.close()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        from anyio.to_thread import run_sync  # httpx's own dependency; imported when used

        await run_sync(self.source.open)
        try:
            yield self.preamble
            done = 0
            self._report(done)
            while chunk := await run_sync(self.source.read, self.chunk_size):
                done += len(chunk)
                yield chunk
                self._report(done)
            yield self.epilogue
        finally:
            await run_sync(self.source.close)


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


def guess_name(source: _Source, given: str | None) -> str:
    """The file part's name: as given, else the path's or file object's, else `file`."""
    return given or source.name or "file"


def guess_type(filename: str, given: str | None) -> str:
    if given:
        return given
    import mimetypes

    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
