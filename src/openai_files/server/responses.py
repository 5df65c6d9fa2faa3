"""A file's bytes as an HTTP answer: a single Range (206, 416), ETag and `If-None-Match`
(304), `If-Range`, HEAD, a `Content-Disposition` for any name, and, where the HTTP server
offers it, the whole file sent by its path (`pathsend`). A file made of an upload's parts
(a manifest, `stores/_manifest.py`) is streamed across its parts, ranges too.
`GET /v1/files/{id}/content` and the console's download links answer the same, through
`content_response`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from email.utils import formatdate
from pathlib import Path
from urllib.parse import quote

import anyio
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ._forms import clean_content_type
from .errors import RangeNotSatisfiable, no_such_file
from .service import FilesService
from .stores import Chunk, FileRecord


def _is_position(text: str) -> bool:
    """Empty, or a byte position in ASCII digits (20 at most: no file is that large)."""
    return text == "" or (text.isascii() and text.isdigit() and len(text) <= 20)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`[start, end)` of a single `bytes=` range; None to send the whole file.

    Several ranges, or a header we do not understand, get the whole file (as RFC 9110
    allows); a well-formed range that lies wholly past the end is a 416.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = (part.strip() for part in spec.strip().partition("-"))
    if not sep or not all(_is_position(p) for p in (first, last)):
        return None  # not ASCII digits (a sign, `_`, another script): not a range we know
    if first == "":
        if last == "":
            return None
        # A suffix of an empty file, or of length 0, selects no byte: 416 (RFC 9110 14.1.2).
        suffix = int(last)
        if suffix <= 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size
    start = int(first)
    end = int(last) + 1 if last else max(size, start + 1)
    if end <= start:
        return None  # malformed (last before first): ignored, as RFC 9110 says
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, min(end, size)


def content_disposition(filename: str) -> str:
    """`attachment`, with a plain ASCII `filename` for clients that know no other (curl -OJ)
    and the exact name as `filename*` (RFC 6266)."""
    fallback = "".join(ch if " " <= ch <= "~" and ch not in '"\\' else "_" for ch in filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def etag_matches(header: str, etag: str) -> bool:
    """Whether `If-None-Match` names `etag`: `*`, or a list of tags compared weakly
    (`W/"x"` matches `"x"`), as RFC 9110 13.1.2 says."""
    opaque = etag.removeprefix("W/")
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == opaque:
            return True
    return False


def _download_headers(record: FileRecord) -> dict[str, str]:
    return {
        # Checked again here: a row written before the check was added may hold any type.
        "content-type": clean_content_type(record.mime_type),
        "content-disposition": content_disposition(record.filename),
        "x-content-type-options": "nosniff",
        "etag": f'"{record.id}"',  # the bytes of a file id never change
        "last-modified": formatdate(record.created_at, usegmt=True),
        "accept-ranges": "bytes",
        "cache-control": "private, max-age=0",
    }


async def content_response(request: Request, service: FilesService, record: FileRecord) -> Response:
    """The bytes of a file the request may download (ranges, `If-None-Match`, HEAD), as
    `GET /v1/files/{id}/content` answers; the console's download links answer the same."""
    headers = _download_headers(record)
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, headers["etag"]):
        return Response(status_code=304, headers={k: headers[k] for k in ("etag", "last-modified")})
    range_header = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range and if_range not in (headers["etag"], headers["last-modified"]):
        range_header = None
    size = record.bytes
    span = parse_range(range_header, size)
    status = 200
    start, end = 0, size
    if span is not None:
        start, end = span
        status = 206
        headers["content-range"] = f"bytes {start}-{end - 1}/{size}"
    headers["content-length"] = str(end - start)
    if request.method == "HEAD":
        return Response(status_code=status, headers=headers)
    local_path = getattr(service.blobs, "local_path", None)
    if status == 200 and local_path and PATHSEND in request.scope.get("extensions", {}):
        path = local_path(record.blob_key)
        try:
            await anyio.to_thread.run_sync(os.stat, path)
        except FileNotFoundError:
            # A file made of an upload's parts (a manifest), or one deleted since its row
            # was read: streamed below, which tells the two apart (a 404).
            pass
        else:
            return PathSendResponse(path, headers)
    body = service.blobs.read(record.blob_key, start, end)
    # Open the object before the status line goes out, so that storage errors still get
    # a proper answer (a 503) instead of a cut connection.
    try:
        first = await anext(body, b"")
    except FileNotFoundError:
        # The row was read, then a delete or an expiry took the bytes: the file is gone.
        raise no_such_file(record.id) from None

    async def stream() -> AsyncIterator[Chunk]:
        if first:
            yield first
        async for chunk in body:
            yield chunk

    return StreamingResponse(stream(), status_code=status, headers=headers)


#: The ASGI extension with which the HTTP server sends a file by its path (granian offers
#: it, uvicorn does not): the bytes then never pass through Python.
PATHSEND = "http.response.pathsend"


class PathSendResponse(Response):
    """A whole file of the local folder, handed to the HTTP server by path.

    Used only where the server offers `http.response.pathsend`, for a whole-file GET (a
    Range is streamed as elsewhere). Unlike Starlette's FileResponse, it keeps the headers
    `content_response` made (ETag, Content-Disposition, no Range logic of its own).
    """

    def __init__(self, path: Path, headers: dict[str, str]) -> None:
        super().__init__(status_code=200, headers=headers)
        self.path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        await send({"type": PATHSEND, "path": str(self.path)})
