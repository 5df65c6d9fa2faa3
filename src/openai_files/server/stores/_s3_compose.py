"""The S3 store's `compose`: an upload's parts joined into one object without pulling big
objects through this process.

A multipart upload for the new key in which each source of at least S3_MIN_PART_BYTES
becomes an UploadPartCopy (S3 copies it), and runs of smaller sources are read and sent as
one UploadPart of at least S3_MIN_PART_BYTES (taking the head of the next big source when a
run falls short; `_s3_parts.py` plans them), so at most one such part, under
2 x S3_MIN_PART_BYTES, is held at a time. A whole under S3_MIN_PART_BYTES is one PUT.
obstore has no UploadPartCopy, so these requests are made with `_s3_api.py`; with
credentials it cannot sign with (web identity, container, instance role) compose streams
the sources through a writer. A failed compose aborts its multipart upload; one a killed
replica leaves is a file id's upload like any other, for the reconciler.
"""

from __future__ import annotations

import asyncio
import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import anyio
import httpx

# obstore is there: s3.py, the only importer, checked first.
import obstore
from obstore.exceptions import GenericError, NotFoundError
from obstore.store import S3Store

from ..settings import IO_CHUNK_BYTES, S3_MAX_PARTS, S3_MIN_PART_BYTES, MiB
from ._errors import StoreUnavailable
from ._s3_api import S3Api, S3Refused, children, text
from ._s3_errors import log, unavailable
from ._s3_parts import Part, plan_parts
from .base import BlobWriter

#: Sources whose size `compose` checks at once (HEAD requests in flight).
_CONCURRENT_HEADS = 8
#: Timeouts of compose's own requests: an UploadPartCopy of a big part takes a while.
_COMPOSE_TIMEOUT = httpx.Timeout(600.0, connect=5.0)


@dataclasses.dataclass
class Composer:
    """Composes objects of the bucket `bucket` (obstore's `store`; `api` for the requests
    obstore lacks, None when they cannot be signed), `concurrent_parts` copies at a time.
    `path_of` turns a key into its path in the bucket, `writer` opens a writer for a key."""

    store: S3Store
    api: S3Api | None
    bucket: str
    path_of: Callable[[str], str]
    writer: Callable[[str], BlobWriter]
    concurrent_parts: int
    #: Bytes `compose` has read through this process (sources too small to copy
    #: server-side); a big source's bytes never count here.
    relayed_bytes: int = 0

    async def compose(self, key: str, sources: Sequence[tuple[str, int]]) -> None:
        path = self.path_of(key)
        for name, _ in sources:
            self.path_of(name)  # an unsafe key is refused before any request
        await self.check_sizes(sources)
        total = sum(size for _, size in sources)
        if total < S3_MIN_PART_BYTES:  # one small PUT
            chunks = [chunk for name, size in sources for chunk in await self._get(name, 0, size)]
            try:
                await obstore.put_async(self.store, path, b"".join(chunks))
            except (GenericError, OSError) as exc:
                raise unavailable(exc) from None
            return
        api = self.api
        if api is None:
            await self._compose_through(key, sources)
            return
        parts = plan_parts(sources)
        if len(parts) > S3_MAX_PARTS:
            raise ValueError(
                f"composing {len(sources)} objects takes {len(parts)} parts; "
                f"S3 allows {S3_MAX_PARTS}"
            )
        async with httpx.AsyncClient(timeout=_COMPOSE_TIMEOUT, trust_env=False) as http:
            try:
                created = await api.send(http, "POST", path, {"uploads": ""})
            except httpx.HTTPError as exc:
                raise unavailable(exc) from None
            upload_id = text(ET.fromstring(created.content), "UploadId")
            try:
                etags = await self._send_parts(api, http, path, upload_id, parts)
                body = "".join(
                    f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
                    for n, etag in enumerate(etags, 1)
                )
                await api.send(
                    http,
                    "POST",
                    path,
                    {"uploadId": upload_id},
                    content=f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode(),
                )
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._abort_upload(api, http, path, upload_id)
                if isinstance(exc, httpx.HTTPError):
                    raise unavailable(exc) from None
                raise
            await self._abort_earlier_attempts(api, http, key, upload_id)

    async def _abort_earlier_attempts(
        self, api: S3Api, http: httpx.AsyncClient, key: str, upload_id: str
    ) -> None:
        """Abort the other multipart uploads of `key`: those of a compose whose server died
        (its completion taken over since). The reconciler cannot: a reservation, then the
        file row, name the key. Failures are left to the bucket's lifecycle rule."""
        path = self.path_of(key)
        try:
            page = await api.uploads_page(http, path)
            for upload in children(page, "Upload"):
                if text(upload, "Key") == path and text(upload, "UploadId") != upload_id:
                    await self._abort_upload(api, http, path, text(upload, "UploadId"))
        except (httpx.HTTPError, ET.ParseError, ValueError, StoreUnavailable) as exc:
            log.warning("could not list the unfinished S3 uploads of %s: %s", path, exc)

    async def check_sizes(self, sources: Sequence[tuple[str, int]]) -> None:
        """FileNotFoundError for a missing source, ValueError for a size not the one given."""
        gate = asyncio.Semaphore(_CONCURRENT_HEADS)

        async def check(name: str, size: int) -> None:
            async with gate:
                try:
                    meta = await obstore.head_async(self.store, self.path_of(name))
                except (NotFoundError, FileNotFoundError):
                    raise FileNotFoundError(name) from None
                except (GenericError, OSError) as exc:
                    raise unavailable(exc) from None
            if meta["size"] != size:
                raise ValueError(f"source {name} has {meta['size']} bytes, not {size}")

        await first_error([check(name, size) for name, size in sources])

    async def _get(self, name: str, start: int, end: int) -> list[bytes]:
        """Bytes `[start, end)` of `name`, as obstore's chunks (counted as relayed)."""
        if end <= start:
            return []
        try:
            result = await obstore.get_async(
                self.store,
                self.path_of(name),
                options={"range": (start, end)},
            )
            chunks = [bytes(chunk) async for chunk in result.stream(min_chunk_size=MiB)]
        except (NotFoundError, FileNotFoundError):
            raise FileNotFoundError(name) from None
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None
        got = sum(len(chunk) for chunk in chunks)
        self.relayed_bytes += got
        if got != end - start:
            raise ValueError(f"source {name} changed while being read")
        return chunks

    async def _compose_through(self, key: str, sources: Sequence[tuple[str, int]]) -> None:
        """compose without signed requests: the sources streamed through a writer, read a
        range of IO_CHUNK_BYTES at a time (a whole-object stream reads ahead of the writer,
        growing memory by tens of MiB; measured)."""
        writer = self.writer(key)
        try:
            for name, size in sources:
                for at in range(0, size, IO_CHUNK_BYTES):
                    for chunk in await self._get(name, at, min(at + IO_CHUNK_BYTES, size)):
                        await writer.write(chunk)
            await writer.commit()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await writer.abort()
            raise

    async def _send_parts(
        self,
        api: S3Api,
        http: httpx.AsyncClient,
        path: str,
        upload_id: str,
        parts: Sequence[Part],
    ) -> list[str]:
        """Send every part (copies `concurrent_parts` at a time, one read part at a time so
        that memory holds at most one); their ETags in order."""
        gate = asyncio.Semaphore(self.concurrent_parts)
        one_sent = asyncio.Lock()

        async def send(number: int, part: Part) -> str:
            query = {"partNumber": str(number), "uploadId": upload_id}
            async with gate:
                if part.copy:
                    (piece,) = part.pieces
                    source = f"/{self.bucket}/{quote(self.path_of(piece.key), safe='/-_.~')}"
                    headers = {
                        "x-amz-copy-source": source,
                        "x-amz-copy-source-range": f"bytes={piece.start}-{piece.end - 1}",
                    }
                    try:
                        response = await api.send(http, "PUT", path, query, headers=headers)
                    except S3Refused as exc:
                        if exc.code in ("NoSuchKey", "InvalidRange"):
                            raise FileNotFoundError(piece.key) from None
                        raise
                    return text(ET.fromstring(response.content), "ETag")
                async with one_sent:
                    chunks = [
                        chunk
                        for piece in part.pieces
                        for chunk in await self._get(piece.key, piece.start, piece.end)
                    ]
                    response = await api.send(http, "PUT", path, query, content=chunks)
                    return response.headers["etag"]

        return await first_error([send(n, part) for n, part in enumerate(parts, 1)])

    async def _abort_upload(
        self, api: S3Api, http: httpx.AsyncClient, path: str, upload_id: str
    ) -> None:
        try:
            await api.send(http, "DELETE", path, {"uploadId": upload_id})
        except (httpx.HTTPError, StoreUnavailable) as exc:
            log.warning(
                "could not abort the S3 multipart upload of %s (the reconciler will): %s",
                path,
                exc,
            )


async def first_error(steps: Sequence[Awaitable[Any]]) -> list[Any]:
    """Run `steps` at once; their results in order, or the first error raised (the
    others cancelled), not an exception group."""
    tasks = [asyncio.ensure_future(step) for step in steps]
    try:
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(*tasks, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]
    return [task.result() for task in tasks]
