"""The S3 store's writer: one PUT for an object smaller than a part, else a multipart
upload that obstore streams, a bounded number of parts in flight."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

# obstore is there: s3.py, the only importer, checked first.
import obstore
from obstore.exceptions import GenericError
from obstore.store import S3Store

from ..settings import S3_MIN_PART_BYTES
from ._s3_errors import unavailable

#: Chunks queued between the writer and the multipart upload it feeds.
_QUEUE_DEPTH = 4


class _Abort(Exception):
    """Raised inside the stream that feeds a multipart upload, so obstore aborts it."""


def part_sizes(buffer_bytes: int | None, part_bytes: int, concurrent_parts: int) -> tuple[int, int]:
    """The part size and parts in flight of a writer that may hold about `buffer_bytes`
    (None: `part_bytes` and `concurrent_parts`, the store's own). A writer holds about one
    part more than it has in flight (the one it fills), so it takes half the buffer for a
    part (never under S3's smallest, nor over the store's own part) and as many in flight
    as the rest holds (at least one, at most the store's own)."""
    if buffer_bytes is None:
        return part_bytes, concurrent_parts
    part = min(max(buffer_bytes // 2, S3_MIN_PART_BYTES), part_bytes)
    return part, min(max(buffer_bytes // part - 1, 1), concurrent_parts)


class S3BlobWriter:
    """Writes the object `path` of `store` in parts of `part_bytes`, `concurrent_parts`
    of them in flight; nothing is visible under `path` before `commit`."""

    def __init__(self, store: S3Store, path: str, part_bytes: int, concurrent_parts: int) -> None:
        self._store = store
        self._path = path
        self._part_bytes = part_bytes
        self._concurrent_parts = concurrent_parts
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._queue: asyncio.Queue[bytes | BaseException | None] | None = None
        self._upload: asyncio.Future[Any] | None = None
        self._done = False

    async def _feed(self) -> AsyncIterator[bytes]:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        if self._queue is None:
            self._head.append(chunk)
            self._head_bytes += len(chunk)
            if self._head_bytes < self._part_bytes:
                return
            # Larger than a part: start a multipart upload fed by a bounded queue.
            self._queue = asyncio.Queue(_QUEUE_DEPTH)
            self._upload = asyncio.ensure_future(
                obstore.put_async(
                    self._store,
                    self._path,
                    self._feed(),
                    use_multipart=True,
                    chunk_size=self._part_bytes,
                    max_concurrency=self._concurrent_parts,
                )
            )
            head, self._head = b"".join(self._head), []
            await self._put(head)
        else:
            await self._put(chunk)

    async def _put(self, item: bytes | BaseException | None) -> None:
        assert self._queue is not None and self._upload is not None
        put = asyncio.ensure_future(self._queue.put(item))
        # Wait for room in the queue, or for the upload to fail (then say why).
        await asyncio.wait({put, self._upload}, return_when=asyncio.FIRST_COMPLETED)
        if not put.done():
            put.cancel()
            try:
                self._upload.result()  # raises the upload's error
            except (GenericError, OSError) as exc:
                raise unavailable(exc) from None
            raise RuntimeError("upload ended before its data")

    async def commit(self) -> None:
        try:
            if self._queue is None:
                await obstore.put_async(self._store, self._path, b"".join(self._head))
            else:
                await self._put(None)
                assert self._upload is not None
                await self._upload
        except (GenericError, OSError) as exc:
            await self.abort()
            raise unavailable(exc) from None
        except BaseException:
            await self.abort()
            raise
        self._done = True

    async def abort(self) -> None:
        self._done = True
        self._head = []
        if self._upload is not None and not self._upload.done():
            assert self._queue is not None
            # Not cancel: a failing stream is what makes obstore abort the multipart upload.
            while not self._upload.done():
                try:
                    self._queue.put_nowait(_Abort())
                except asyncio.QueueFull:
                    await asyncio.sleep(0.01)
                    continue
                break
        if self._upload is not None:
            with contextlib.suppress(Exception):  # the abort we asked for, or an earlier error
                await self._upload
