"""S3-compatible blob store (`s3://bucket/prefix?endpoint=...&region=...`), for many replicas.

obstore (Rust's object_store) does the I/O: its async API runs on its own Tokio threads, so
no call blocks the event loop, and it streams both ways. Writes buffer at most one part: a
file smaller than a part is one PUT; a larger one is a multipart upload with a bounded number
of parts in flight, which obstore aborts when the stream feeding it fails (our `abort`).
An S3 object is invisible until its upload completes, so objects go straight to their final
key. Credentials come from the usual AWS variables (`AWS_ACCESS_KEY_ID`, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:
    import obstore
    from obstore.exceptions import GenericError, NotFoundError
    from obstore.store import S3Store
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the S3 store needs obstore: pip install 'openai-files[s3]'", name=exc.name
    ) from exc

from ..settings import MiB
from .base import Chunk, StoreUnavailable

#: Size of one multipart part, and of the buffer that decides between PUT and multipart.
PART_BYTES = 8 * MiB
#: Parts uploaded at once; with the buffer this bounds memory per upload (~32 MiB).
PARTS_IN_FLIGHT = 3
#: Chunks handed to the response while downloading.
READ_CHUNK_BYTES = 4 * MiB
_QUEUE_DEPTH = 4


class _Abort(Exception):
    """Raised inside the stream that feeds a multipart upload, so obstore aborts it."""


def _unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"object storage is unreachable: {exc}")


class S3BlobWriter:
    def __init__(self, blobs: S3BlobStore, key: str) -> None:
        self._blobs = blobs
        self._path = blobs.path_of(key)
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
            if self._head_bytes < PART_BYTES:
                return
            # Larger than a part: start a multipart upload fed by a bounded queue.
            self._queue = asyncio.Queue(_QUEUE_DEPTH)
            self._upload = asyncio.ensure_future(
                obstore.put_async(
                    self._blobs.store,
                    self._path,
                    self._feed(),
                    use_multipart=True,
                    chunk_size=PART_BYTES,
                    max_concurrency=PARTS_IN_FLIGHT,
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
                raise _unavailable(exc) from exc
            raise RuntimeError("upload ended before its data")

    async def commit(self) -> None:
        try:
            if self._queue is None:
                await obstore.put_async(self._blobs.store, self._path, b"".join(self._head))
            else:
                await self._put(None)
                assert self._upload is not None
                await self._upload
        except (GenericError, OSError) as exc:
            await self.abort()
            raise _unavailable(exc) from exc
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


class S3BlobStore:
    """Objects in an S3 bucket under an optional key prefix."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        if not parts.netloc:
            raise ValueError(f"no bucket in storage URL {url!r}")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        config: dict[str, Any] = {"virtual_hosted_style_request": False}
        endpoint = query.pop("endpoint", None)
        if endpoint:
            config["endpoint"] = endpoint
        region = query.pop("region", None)
        if region:
            config["region"] = region
        if query:
            raise ValueError(f"unknown storage URL options: {', '.join(sorted(query))}")
        client: dict[str, Any] = {
            "connect_timeout": datetime.timedelta(seconds=5),
            "timeout": datetime.timedelta(minutes=10),
        }
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        self.store = S3Store(self.bucket, config=config, client_options=client)  # type: ignore[arg-type]

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def path_of(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"unsafe blob key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> S3BlobWriter:
        return S3BlobWriter(self, key)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        if end is not None and end <= start:
            # S3 has no empty range; still, a missing object is an error here too.
            await self._head(key)
            return
        options: dict[str, Any] = {}
        if start or end is not None:
            options["range"] = (start, end) if end is not None else {"offset": start}
        try:
            result = await obstore.get_async(self.store, self.path_of(key), options=options)  # type: ignore[arg-type]
        except (NotFoundError, FileNotFoundError) as exc:
            raise FileNotFoundError(key) from exc
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from exc
        async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
            yield memoryview(chunk)  # obstore's buffer, passed on without a copy

    async def _head(self, key: str) -> None:
        try:
            await obstore.head_async(self.store, self.path_of(key))
        except (NotFoundError, FileNotFoundError) as exc:
            raise FileNotFoundError(key) from exc
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.store, self.path_of(key))
        except (NotFoundError, FileNotFoundError):
            return
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def list_keys(self, older_than: float) -> AsyncIterator[str]:
        cutoff = datetime.datetime.fromtimestamp(older_than, tz=datetime.UTC)
        prefix = f"{self.prefix}/" if self.prefix else None
        try:
            async for batch in obstore.list(self.store, prefix, chunk_size=1000):
                for meta in batch:
                    path = str(meta["path"])
                    key = path[len(prefix) :] if prefix else path
                    if "/" not in key and meta["last_modified"] < cutoff:
                        yield key
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from exc

    async def remove_stale_temp(self, older_than: float) -> int:
        # Nothing to do: an unfinished S3 upload is never an object. Multipart uploads that
        # a killed replica left open are cleared by the bucket's lifecycle rule (docs).
        return 0
