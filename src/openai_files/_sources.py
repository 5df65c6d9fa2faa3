"""Upload sources: what an upload reads its bytes from, and the multipart body that streams them.

A body never holds a whole file. An upload from a path reopens the file on each attempt and
one from a seekable file object seeks back to where it started, so both can be retried; an
iterator or a pipe is read once, and a request that has started reading it is not retried.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO

import httpx

from ._config import CHUNK_SIZE
from ._types import FileData, ProgressCallback


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


class RangeSource(_Source):
    """`length` bytes of the file at `path` from `offset`: one part of an upload in parts.

    Reopened (and sought) on each attempt, read in chunks: a part is never held whole.
    """

    def __init__(self, path: Path, offset: int, length: int) -> None:
        super().__init__()
        self._path = path
        self._offset = offset
        self.size = length
        self._left: int | None = length
        self.name = path.name
        self._file: IO[bytes] | None = None

    def open(self) -> None:
        super().open()
        self.close()
        self._file = self._path.open("rb")
        if self._offset:
            self._file.seek(self._offset)
        self._left = self._limit()

    def _limit(self) -> int | None:
        """The most bytes an attempt reads (None: up to the end of the file)."""
        return self.size or 0

    def read(self, n: int) -> bytes:
        assert self._file is not None
        if self._left is None:
            return self._file.read(n)
        chunk = self._file.read(min(n, self._left))
        self._left -= len(chunk)
        return chunk

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _PathSource(RangeSource):
    """A whole file, read to its end (its size, known up front, is the body's length)."""

    def __init__(self, path: Path) -> None:
        size = path.stat().st_size  # also: a missing file fails before any request
        if not path.is_file():
            raise IsADirectoryError(f"not a regular file: {path}")
        super().__init__(path, 0, size)

    def _limit(self) -> int | None:
        return None


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


def guess_name(source: _Source, given: str | None) -> str:
    """The file part's name: as given, else the path's or file object's, else `file`."""
    return given or source.name or "file"


def guess_type(filename: str, given: str | None) -> str:
    if given:
        return given
    import mimetypes

    return mimetypes.guess_type(filename)[0] or "application/octet-stream"
