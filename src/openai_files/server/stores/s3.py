"""S3-compatible blob store (`s3://bucket/prefix?endpoint=...&region=...`), for many replicas.

obstore (Rust's object_store) does the I/O: its async API runs on its own Tokio threads, so
no call blocks the event loop, and it streams both ways. Writes buffer at most one part: a
file smaller than a part is one PUT; a larger one is a multipart upload with a bounded number
of parts in flight, which obstore aborts when the stream feeding it fails (our `abort`).
An S3 object is invisible until its upload completes, so objects go straight to their final
key.

Credentials: the store is built only when the environment names where its credentials come
from, so the client never asks a cloud's instance metadata service (169.254.169.254) on its
own. Any of these, in the order the client tries them:

- `AWS_SKIP_SIGNATURE=true`: unsigned requests (a public bucket);
- `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` (with `AWS_SESSION_TOKEN` if temporary);
- `AWS_WEB_IDENTITY_TOKEN_FILE` and `AWS_ROLE_ARN` (Kubernetes service accounts on EKS);
- `AWS_CONTAINER_CREDENTIALS_FULL_URI` or `..._RELATIVE_URI` (ECS tasks, EKS Pod Identity);
- `credentials=instance` in the storage URL: the machine's instance role, fetched from the
  instance metadata service (an EC2 instance profile). Only this option lets the client ask
  that service, and only when none of the above is set.

`compose` (an upload's parts into one file) never pulls big objects through this process:
a multipart upload for the new key in which each source of at least S3_MIN_PART_BYTES
becomes an UploadPartCopy (S3 copies it), and runs of smaller sources are read and sent as
one UploadPart of at least S3_MIN_PART_BYTES (taking the head of the next big source when a
run falls short), so at most one such part, under 2 x S3_MIN_PART_BYTES, is held at a time.
A whole under S3_MIN_PART_BYTES is one PUT. obstore has no UploadPartCopy, so these
requests are signed here (SigV4, below); with credentials this module cannot sign with
(web identity, container, instance role) compose streams the sources through a writer.
A failed compose aborts its multipart upload; one a killed replica leaves is a file id's
upload like any other, for the reconciler below.

With none of them, opening the store fails at once with a line naming the variables.

`check()` makes one cheap request (a listing under a prefix that holds nothing) so that
`openai-files serve` refuses to start, with one line, when the credentials are refused, the
bucket does not exist or the endpoint does not answer.

Unfinished multipart uploads (a replica killed mid-upload) are not objects, and obstore can
neither list nor abort them by id. The reconciler (`abort_stale_uploads`) does it with two
plain S3 requests signed here (SigV4): ListMultipartUploads under the prefix, then
AbortMultipartUpload for each one older than the grace whose key no row or live
reservation names. It can sign only with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or
unsigned); with other credentials it leaves them to the bucket's lifecycle rule
(`AbortIncompleteMultipartUpload`, docs/deploy.md), which every bucket should have anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import hashlib
import hmac
import logging
import os
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit
from xml.sax.saxutils import escape

import anyio
import httpx

try:
    import obstore
    from obstore.exceptions import BaseError, GenericError, NotFoundError
    from obstore.store import S3Store
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the S3 store needs obstore: pip install 'openai-files[s3]'", name=exc.name
    ) from exc

from ..ids import is_file_id
from ..settings import (
    DEFAULT_S3_CHECK_TIMEOUT_SECONDS,
    DEFAULT_S3_CONCURRENT_PARTS,
    DEFAULT_S3_PART_BYTES,
    IO_CHUNK_BYTES,
    S3_MAX_PART_BYTES,
    S3_MAX_PARTS,
    S3_MIN_PART_BYTES,
    MiB,
    shown_bytes,
)
from .base import Chunk, StoreUnavailable

#: Chunks handed to the response while downloading.
READ_CHUNK_BYTES = 4 * MiB
_QUEUE_DEPTH = 4


#: Retries of the start check: a refused connection is retried twice (well under a second);
#: an endpoint that does not answer fails once its timeout has passed.
_CHECK_RETRY: dict[str, Any] = {"max_retries": 2, "retry_timeout": datetime.timedelta(seconds=3)}
#: Where the start check lists: a prefix no object is ever stored under (keys never start
#: with a dot), so the listing is one request with an empty answer.
_CHECK_PREFIX = ".openai-files-start-check"
#: The URL option that lets the client take the machine's instance role.
INSTANCE_CREDENTIALS = "instance"
#: S3 error codes that mean the credentials themselves were refused.
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "Unauthorized",
    }
)
#: S3 error codes that mean the bucket is in another region than the one we sign for.
_WRONG_REGION = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect"})

#: Sources whose size `compose` checks at once (HEAD requests in flight).
_CONCURRENT_HEADS = 8
#: Timeouts of compose's own requests: an UploadPartCopy of a big part takes a while.
_COMPOSE_TIMEOUT = httpx.Timeout(600.0, connect=5.0)

#: The key of an Uploads API part (its id): a part streams to S3 like a file.
_PART_KEY = re.compile(r"part_[A-Za-z0-9]{1,64}")
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Piece:
    """Bytes `[start, end)` of the object `key`."""

    key: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a composed object: a server-side copy of one piece (`copy`), or pieces
    read and sent as one body."""

    copy: bool
    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        return sum(piece.end - piece.start for piece in self.pieces)


def plan_parts(
    sources: Sequence[tuple[str, int]],
    min_part: int = S3_MIN_PART_BYTES,
    max_part: int = S3_MAX_PART_BYTES,
) -> list[Part]:
    """The parts of a multipart upload that concatenates `sources` (key, size), in order.

    A source of at least `min_part` is copied server-side (split into near-equal copies
    when over `max_part`); runs of smaller sources are merged into sent parts of at least
    `min_part`; a run that falls short takes the head of the next big source (or all of it
    when what is left of it would fall short). A sent part is under 2 x `min_part`; only the
    last part may be under `min_part`."""
    parts: list[Part] = []
    pending: list[Piece] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending_bytes
        parts.append(Part(False, tuple(pending)))
        pending.clear()
        pending_bytes = 0

    for key, size in sources:
        if size <= 0:
            continue
        start = 0
        if size >= min_part and pending_bytes:
            need = min_part - pending_bytes
            if size - need < min_part:
                pending.append(Piece(key, 0, size))
                flush()
                continue
            pending.append(Piece(key, 0, need))
            flush()
            start = need
        left = size - start
        if left >= min_part:
            count = -(-left // max_part)
            step = -(-left // count)
            for at in range(start, size, step):
                parts.append(Part(True, (Piece(key, at, min(at + step, size)),)))
        else:
            pending.append(Piece(key, start, size))
            pending_bytes += left
            if pending_bytes >= min_part:
                flush()
    if pending:
        flush()
    return parts


class _Abort(Exception):
    """Raised inside the stream that feeds a multipart upload, so obstore aborts it."""


def _first_line(exc: BaseException) -> str:
    """obstore's message without the Rust `Debug source:` dump that follows it (~30 lines)."""
    text = str(exc)
    return text.split("\n", 1)[0].strip() or type(exc).__name__


def _unavailable(exc: BaseException) -> StoreUnavailable:
    """The error to raise (`from None`): its first line; the whole text, with the client's
    internals, only in the debug log."""
    log.debug("object storage error: %s", exc)
    return StoreUnavailable(f"object storage is unreachable: {_first_line(exc)}")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def credential_source(environ: Mapping[str, str], instance: bool) -> tuple[str, str]:
    """Where the S3 client will take its credentials from, in its own order: a kind
    (`anonymous`, `keys`, `web-identity`, `container` or `instance`) and words for messages.
    A ValueError naming the variables to set when nothing gives them (the client would then
    ask the instance metadata service, which only `instance` allows)."""

    def has(name: str) -> bool:
        return bool(environ.get(name, "").strip())

    if _truthy(environ.get("AWS_SKIP_SIGNATURE")):
        return "anonymous", "no credentials (AWS_SKIP_SIGNATURE)"
    key, secret = has("AWS_ACCESS_KEY_ID"), has("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return "keys", "the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if key or secret:
        given, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if key
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        raise ValueError(f"S3 credentials: {given} is set but {missing} is not; set both")
    if has("AWS_WEB_IDENTITY_TOKEN_FILE") and has("AWS_ROLE_ARN"):
        return "web-identity", "the web identity in AWS_WEB_IDENTITY_TOKEN_FILE / AWS_ROLE_ARN"
    if has("AWS_CONTAINER_CREDENTIALS_FULL_URI") or has("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "container", "the container credentials (AWS_CONTAINER_CREDENTIALS_*)"
    if instance:
        return "instance", "the instance role (credentials=instance)"
    raise ValueError(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add "
        "credentials=instance to the storage URL to use this machine's instance role"
    )


def _connect_reason(text: str) -> str:
    """Why a connection failed, in a few words, from obstore's error text."""
    lowered = text.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("dns error", "host name not found"),
        ("invalidcontenttype", "TLS handshake failed: is it http://?"),
        ("certificate", "TLS certificate refused"),
        ("tls", "TLS handshake failed"),
        ("timed out", "no answer"),
        ("kind: timeout", "no answer"),
    ):
        if needle in lowered:
            return reason
    return "cannot connect"


class S3BlobWriter:
    def __init__(
        self, blobs: S3BlobStore, key: str, part_bytes: int, concurrent_parts: int
    ) -> None:
        self._blobs = blobs
        self._path = blobs.path_of(key)
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
                    self._blobs.store,
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
                raise _unavailable(exc) from None
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
            raise _unavailable(exc) from None
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
    """Objects in an S3 bucket under an optional key prefix.

    `part_bytes`: size of one multipart part, and of the buffer that decides between one
    PUT and a multipart upload (S3 takes 5 MiB to 5 GiB); `concurrent_parts`: parts of one
    upload sent at once (with the buffer, they bound memory per upload);
    `check_timeout`: seconds the start check waits for its request.
    """

    def __init__(
        self,
        url: str,
        *,
        part_bytes: int = DEFAULT_S3_PART_BYTES,
        concurrent_parts: int = DEFAULT_S3_CONCURRENT_PARTS,
        check_timeout: float = DEFAULT_S3_CHECK_TIMEOUT_SECONDS,
    ) -> None:
        if not S3_MIN_PART_BYTES <= part_bytes <= S3_MAX_PART_BYTES:
            raise ValueError(
                f"S3 part size {part_bytes} is outside S3's limits: "
                f"{shown_bytes(S3_MIN_PART_BYTES)} to {shown_bytes(S3_MAX_PART_BYTES)}"
            )
        if concurrent_parts < 1:
            raise ValueError(f"S3 concurrent parts {concurrent_parts}: it must be at least 1")
        self.part_bytes = part_bytes
        self.concurrent_parts = concurrent_parts
        self.check_timeout = check_timeout
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
        credentials = query.pop("credentials", None)
        if credentials not in (None, INSTANCE_CREDENTIALS):
            raise ValueError(
                f"unknown credentials={credentials} in the storage URL "
                f"(known: credentials={INSTANCE_CREDENTIALS})"
            )
        if query:
            raise ValueError(f"unknown storage URL options: {', '.join(sorted(query))}")
        env = os.environ  # which the client reads too
        #: Where the credentials come from: a kind, and words for messages (module doc).
        self.credential_kind, self.credentials = credential_source(
            env, credentials == INSTANCE_CREDENTIALS
        )
        region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.region = region
        self._said_lifecycle = False
        #: Whether the reconciler aborts unfinished multipart uploads (it signs with keys).
        self.aborts_stale_uploads = self.credential_kind in ("keys", "anonymous")
        #: The endpoint the client talks to, for messages.
        self.endpoint = (
            endpoint
            or env.get("AWS_ENDPOINT_URL_S3")
            or env.get("AWS_ENDPOINT_URL")
            or env.get("AWS_ENDPOINT")
            or f"https://s3.{region}.amazonaws.com"
        )
        client: dict[str, Any] = {
            "connect_timeout": datetime.timedelta(seconds=5),
            "timeout": datetime.timedelta(minutes=10),
        }
        #: The bucket's URL for the requests obstore cannot make, path-style as obstore's.
        self._bucket_url = f"{self.endpoint.rstrip('/')}/{self.bucket}"
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        self._config = config
        self._client_options = client
        #: Bytes `compose` has read through this process (sources too small to copy
        #: server-side); a big source's bytes never count here.
        self.relayed_bytes = 0
        self.store = S3Store(self.bucket, config=config, client_options=client)  # type: ignore[arg-type]

    async def check(self) -> None:
        """Prove, with one cheap request, that the bucket exists and takes our credentials:
        a listing under a prefix that holds nothing. A StoreUnavailable of one line naming
        what to fix (the credentials, the bucket or the endpoint) otherwise."""
        probe = S3Store(
            self.bucket,
            config=self._config,  # type: ignore[arg-type]
            client_options={  # type: ignore[arg-type]
                **self._client_options,
                "timeout": datetime.timedelta(seconds=self.check_timeout),
            },
            retry_config=_CHECK_RETRY,  # type: ignore[arg-type]
        )
        prefix = f"{self.prefix}/{_CHECK_PREFIX}" if self.prefix else _CHECK_PREFIX

        def first_page() -> None:
            for _batch in obstore.list(probe, prefix, chunk_size=1):
                break

        try:
            # The blocking call, in a thread: a process that exits right after an async
            # obstore call sometimes aborts (its runtime still hands objects back to Python).
            await asyncio.to_thread(first_page)
        except (BaseError, OSError) as exc:
            log.debug("S3 start check failed: %s", exc)
            raise StoreUnavailable(self._explain(exc)) from None

    def _explain(self, exc: BaseException) -> str:
        """One line for a failed start check: what is wrong and what to fix."""
        text = str(exc)
        first = _first_line(exc).removeprefix("Generic S3 error: ")
        found = re.search(r"<Code>([^<]+)</Code>", text)
        code = found.group(1) if found else ""
        status_found = re.search(r"status code: (\d{3})", first)
        status = int(status_found.group(1)) if status_found else 0
        bucket, endpoint, source = self.bucket, self.endpoint, self.credentials
        if "list request" not in first:
            # The failing request was not ours but the one that fetches the credentials.
            return f"cannot get S3 credentials from {source}: {first}"
        if code == "NoSuchBucket":
            return (
                f"the S3 bucket {bucket!r} does not exist at {endpoint}: create it, or fix "
                "the bucket name in the storage URL"
            )
        if code in _BAD_CREDENTIALS or status == 401:
            return f"the S3 endpoint {endpoint} refused {source} ({code or status}): check them"
        if code in _WRONG_REGION:
            return (
                f"the S3 bucket {bucket!r} is in another region ({code}): set region= in "
                "the storage URL"
            )
        if code == "AccessDenied" or status == 403:
            return (
                f"the S3 endpoint {endpoint} denied access to bucket {bucket!r} with {source} "
                f"({code or status}): check the credentials and the bucket's policy"
            )
        if "error sending request" in first or isinstance(exc, OSError):
            return (
                f"cannot reach the S3 endpoint {endpoint} ({_connect_reason(text)}): check "
                "endpoint= in the storage URL and that the server runs"
            )
        return f"the S3 bucket {bucket!r} at {endpoint} failed the start check: {first}"

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    @property
    def shared(self) -> bool:
        """True: a bucket is made for many replicas; nothing tells who else writes to it."""
        return True

    def lock_exclusive(self) -> Callable[[], None]:
        """Holds nothing (a bucket cannot be held): the store stays `shared`."""
        return _hold_nothing

    def release_reserve(self) -> bool:
        """No disk of ours to keep room on: nothing to give back."""
        return False

    def path_of(self, key: str) -> str:
        if not key or "/" in key or key.startswith("."):
            raise ValueError(f"unsafe blob key: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def writer(self, key: str) -> S3BlobWriter:
        if _PART_KEY.fullmatch(key):
            # A part of the Uploads API (64 MiB at most) arrives beside the other parts of
            # its upload: S3's smallest parts, one at a time, keep each stream to ~10 MiB,
            # so that 4 parts at once stay well under 64 MiB of memory.
            return S3BlobWriter(self, key, S3_MIN_PART_BYTES, 1)
        return S3BlobWriter(self, key, self.part_bytes, self.concurrent_parts)

    # -- compose --
    async def compose(self, key: str, sources: Sequence[tuple[str, int]]) -> None:
        path = self.path_of(key)
        for name, _ in sources:
            self.path_of(name)  # an unsafe key is refused before any request
        await self._check_sizes(sources)
        total = sum(size for _, size in sources)
        if total < S3_MIN_PART_BYTES:  # one small PUT
            chunks = [chunk for name, size in sources for chunk in await self._get(name, 0, size)]
            try:
                await obstore.put_async(self.store, path, b"".join(chunks))
            except (GenericError, OSError) as exc:
                raise _unavailable(exc) from None
            return
        if self.credential_kind not in ("keys", "anonymous"):
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
                created = await self._send(http, "POST", path, {"uploads": ""})
            except httpx.HTTPError as exc:
                raise _unavailable(exc) from None
            upload_id = _text(ET.fromstring(created.content), "UploadId")
            try:
                etags = await self._send_parts(http, path, upload_id, parts)
                body = "".join(
                    f"<Part><PartNumber>{n}</PartNumber><ETag>{escape(etag)}</ETag></Part>"
                    for n, etag in enumerate(etags, 1)
                )
                await self._send(
                    http,
                    "POST",
                    path,
                    {"uploadId": upload_id},
                    content=f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode(),
                )
            except BaseException as exc:
                with anyio.CancelScope(shield=True):
                    await self._abort_upload(http, path, upload_id)
                if isinstance(exc, httpx.HTTPError):
                    raise _unavailable(exc) from None
                raise
            await self._abort_earlier_attempts(http, key, upload_id)

    async def _abort_earlier_attempts(
        self, http: httpx.AsyncClient, key: str, upload_id: str
    ) -> None:
        """Abort the other multipart uploads of `key`: those of a compose whose server died
        (its completion taken over since). The reconciler cannot: a reservation, then the
        file row, name the key. Failures are left to the bucket's lifecycle rule."""
        path = self.path_of(key)
        try:
            page = ET.fromstring(
                (await self._request(http, "GET", "", {"uploads": "", "prefix": path})).content
            )
            for upload in _children(page, "Upload"):
                if _text(upload, "Key") == path and _text(upload, "UploadId") != upload_id:
                    await self._abort_upload(http, path, _text(upload, "UploadId"))
        except (httpx.HTTPError, ET.ParseError, ValueError, StoreUnavailable) as exc:
            log.warning("could not list the unfinished S3 uploads of %s: %s", path, exc)

    async def _check_sizes(self, sources: Sequence[tuple[str, int]]) -> None:
        """FileNotFoundError for a missing source, ValueError for a size not the one given."""
        gate = asyncio.Semaphore(_CONCURRENT_HEADS)

        async def check(name: str, size: int) -> None:
            async with gate:
                try:
                    meta = await obstore.head_async(self.store, self.path_of(name))
                except (NotFoundError, FileNotFoundError):
                    raise FileNotFoundError(name) from None
                except (GenericError, OSError) as exc:
                    raise _unavailable(exc) from None
            if meta["size"] != size:
                raise ValueError(f"source {name} has {meta['size']} bytes, not {size}")

        await _first_error([check(name, size) for name, size in sources])

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
            raise _unavailable(exc) from None
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
        self, http: httpx.AsyncClient, path: str, upload_id: str, parts: Sequence[Part]
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
                        response = await self._send(http, "PUT", path, query, headers=headers)
                    except S3Refused as exc:
                        if exc.code in ("NoSuchKey", "InvalidRange"):
                            raise FileNotFoundError(piece.key) from None
                        raise
                    return _text(ET.fromstring(response.content), "ETag")
                async with one_sent:
                    chunks = [
                        chunk
                        for piece in part.pieces
                        for chunk in await self._get(piece.key, piece.start, piece.end)
                    ]
                    response = await self._send(http, "PUT", path, query, content=chunks)
                    return response.headers["etag"]

        return await _first_error([send(n, part) for n, part in enumerate(parts, 1)])

    async def _abort_upload(self, http: httpx.AsyncClient, path: str, upload_id: str) -> None:
        try:
            await self._send(http, "DELETE", path, {"uploadId": upload_id})
        except (httpx.HTTPError, StoreUnavailable) as exc:
            log.warning(
                "could not abort the S3 multipart upload of %s (the reconciler will): %s",
                path,
                exc,
            )

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
            raise _unavailable(exc) from None
        async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
            yield memoryview(chunk)  # obstore's buffer, passed on without a copy

    async def _head(self, key: str) -> None:
        try:
            await obstore.head_async(self.store, self.path_of(key))
        except (NotFoundError, FileNotFoundError) as exc:
            raise FileNotFoundError(key) from exc
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from None

    async def delete(self, key: str) -> None:
        try:
            await obstore.delete_async(self.store, self.path_of(key))
        except (NotFoundError, FileNotFoundError):
            return
        except (GenericError, OSError) as exc:
            raise _unavailable(exc) from None

    async def list_object_keys(self, older_than: float) -> AsyncIterator[str]:
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
            raise _unavailable(exc) from None

    async def remove_stale_temp(self, older_than: float) -> int:
        # Nothing to do: an unfinished S3 upload is never an object. Multipart uploads that
        # a killed replica left open are aborted by `abort_stale_uploads`.
        return 0

    # -- unfinished multipart uploads --
    def _signing_keys(self) -> tuple[str, str, str | None]:
        """(access key, secret, session token) to sign with, from the environment."""
        env = os.environ
        return (
            env["AWS_ACCESS_KEY_ID"].strip(),
            env["AWS_SECRET_ACCESS_KEY"].strip(),
            env.get("AWS_SESSION_TOKEN", "").strip() or None,
        )

    async def _request(
        self, http: httpx.AsyncClient, method: str, key: str, query: dict[str, str]
    ) -> httpx.Response:
        """One S3 request without a body, signed unless anonymous; S3Refused when refused."""
        return await self._send(http, method, key, query)

    async def _send(
        self,
        http: httpx.AsyncClient,
        method: str,
        key: str,
        query: dict[str, str],
        headers: Mapping[str, str] | None = None,
        content: bytes | Sequence[bytes] | None = None,
    ) -> httpx.Response:
        """One S3 request, signed unless anonymous; S3Refused when refused (also an error
        in a 200 answer, as UploadPartCopy and CompleteMultipartUpload may give)."""
        request = _s3_request(
            method,
            self._bucket_url + ("/" + quote(key, safe="/-_.~") if key else ""),
            query,
            self.region,
            None if self.credential_kind == "anonymous" else self._signing_keys(),
            headers=headers,
            content=content,
        )
        response = await http.send(request)
        if response.status_code >= 300 or (
            response.status_code == 200
            and response.content.lstrip().startswith(b"<?xml")
            and b"<Error>" in response.content[:512]
        ):
            raise S3Refused(method, request.url, response)
        return response

    async def _stale_uploads(
        self, http: httpx.AsyncClient, cutoff: datetime.datetime
    ) -> list[tuple[str, str]]:
        """(key, upload id) of the multipart uploads under the prefix started before
        `cutoff` whose key is one of ours (a file id), all pages of the listing."""
        prefix = f"{self.prefix}/" if self.prefix else ""
        stale: list[tuple[str, str]] = []
        markers: dict[str, str] = {}
        while True:
            query = {"uploads": "", "prefix": prefix, **markers}
            page = ET.fromstring((await self._request(http, "GET", "", query)).content)
            for upload in _children(page, "Upload"):
                key = _text(upload, "Key")[len(prefix) :]
                initiated = datetime.datetime.fromisoformat(
                    _text(upload, "Initiated").replace("Z", "+00:00")
                )
                # Only our keys (a file id, or an Uploads API part id): another
                # application's upload in a shared bucket (or under our prefix) is not
                # ours to abort.
                ours = is_file_id(key) or _PART_KEY.fullmatch(key) is not None
                if ours and initiated < cutoff:
                    stale.append((key, _text(upload, "UploadId")))
            if _text(page, "IsTruncated") != "true":
                return stale
            markers = {
                "key-marker": _text(page, "NextKeyMarker"),
                "upload-id-marker": _text(page, "NextUploadIdMarker"),
            }

    def _refused_for_good(self, exc: BaseException) -> bool:
        """Whether `exc` says the credentials may not list or abort uploads (AccessDenied);
        then the reconciler stops asking and says so once. A bad signature, a skewed clock
        or an unreachable endpoint can be fixed without a restart: tried again next sweep."""
        if not (isinstance(exc, S3Refused) and exc.code == "AccessDenied"):
            return False
        self._said_lifecycle = True
        self.aborts_stale_uploads = False
        log.warning(
            "could not abort unfinished S3 uploads: %s (the credentials may not list or "
            "abort them; the bucket's lifecycle rule must)",
            exc,
        )
        return True

    async def abort_stale_uploads(
        self,
        older_than: float,
        named: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> int:
        """Abort the multipart uploads under the prefix started before `older_than` whose
        key `named` does not name (a live upload's reservation names its key); how many."""
        if not self.aborts_stale_uploads:
            if not self._said_lifecycle:
                self._said_lifecycle = True
                log.info(
                    "unfinished S3 multipart uploads are left to the bucket's lifecycle rule "
                    "(the reconciler signs only with AWS_ACCESS_KEY_ID credentials)"
                )
            return 0
        cutoff = datetime.datetime.fromtimestamp(older_than, tz=datetime.UTC)
        aborted = 0
        # Not worth failing the sweep for: the next one tries again, and the lifecycle
        # rule is the safety net.
        errors = (httpx.HTTPError, ET.ParseError, ValueError, StoreUnavailable)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            try:
                stale = await self._stale_uploads(http, cutoff)
            except errors as exc:
                if not self._refused_for_good(exc):
                    log.warning("could not list unfinished S3 uploads: %s", exc)
                return 0
            kept = await named([key for key, _ in stale]) if stale else set()
            failed: list[str] = []
            for key, upload_id in stale:
                if key in kept:
                    continue  # a live upload (its reservation is renewed as bytes come)
                try:
                    await self._request(http, "DELETE", self.path_of(key), {"uploadId": upload_id})
                except errors as exc:
                    if isinstance(exc, S3Refused) and exc.code == "NoSuchUpload":
                        continue  # completed or aborted by its owner since the listing
                    if self._refused_for_good(exc):
                        break
                    failed.append(f"{key}: {exc}")
                    continue
                aborted += 1
            if failed:
                log.warning(
                    "could not abort %d unfinished S3 upload(s), tried again next sweep: %s",
                    len(failed),
                    failed[0],
                )
        return aborted


async def _first_error(steps: Sequence[Awaitable[Any]]) -> list[Any]:
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


def _hold_nothing() -> None:
    """The release of a hold that holds nothing."""


class S3Refused(StoreUnavailable):
    """An S3 request answered with an error status; its S3 error code when it gave one."""

    def __init__(self, method: str, url: httpx.URL, response: httpx.Response) -> None:
        found = re.search(r"<Code>([^<]+)</Code>", response.text)
        self.status = response.status_code
        self.code = found.group(1) if found else ""
        super().__init__(
            f"S3 {method} {url} answered {self.status}" + (f" ({self.code})" if self.code else "")
        )


def _children(node: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in node if child.tag.rsplit("}", 1)[-1] == name]


def _text(node: ET.Element, name: str) -> str:
    found = _children(node, name)
    return (found[0].text or "") if found else ""


def _s3_request(
    method: str,
    url: str,
    query: Mapping[str, str],
    region: str,
    keys: tuple[str, str, str | None] | None,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | Sequence[bytes] | None = None,
) -> httpx.Request:
    """The request for `url` and `query` with `headers` and the body `content` (bytes, or
    chunks sent one after another without joining them), signed with `keys` (access key,
    secret, session token) unless None. The query string is written here, in SigV4's
    encoding (a space is %20, not +), so that what is sent is what is signed."""
    query_string = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items()))
    chunks = [content] if isinstance(content, bytes) else list(content or [])
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    sent = {name.lower(): value for name, value in (headers or {}).items()}
    body: Any = None
    if chunks:
        sent["content-length"] = str(sum(len(chunk) for chunk in chunks))
        body = _stream(chunks)
    request = httpx.Request(
        method, url + ("?" + query_string if query_string else ""), headers=sent, content=body
    )
    if keys is not None:
        amz = {name: value for name, value in sent.items() if name.startswith("x-amz-")}
        request.headers.update(_sigv4(request, region, *keys, digest.hexdigest(), amz))
    return request


async def _stream(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _canonical_request(request: httpx.Request, headers: Mapping[str, str]) -> str:
    """SigV4's canonical request, from the path, query and Host that httpx sends (which
    leaves out a default port, :80 or :443, that the endpoint URL may name)."""
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    signing = {"host": request.headers["host"], **headers}
    return "\n".join(
        [
            request.method,
            path or "/",
            "&".join(sorted(query.split("&"), key=lambda p: p.partition("="))) if query else "",
            "".join(f"{k}:{signing[k]}\n" for k in sorted(signing)),
            ";".join(sorted(signing)),
            signing["x-amz-content-sha256"],
        ]
    )


def _sigv4(
    request: httpx.Request,
    region: str,
    access_key: str,
    secret_key: str,
    token: str | None,
    payload_hash: str = hashlib.sha256(b"").hexdigest(),
    amz_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign an S3 request whose body has the sha256 `payload_hash`, with
    its `x-amz-*` headers signed too (AWS Signature Version 4)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    day = stamp[:8]
    headers = {**(amz_headers or {}), "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    if token:
        headers["x-amz-security-token"] = token
    canonical = _canonical_request(request, headers)
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed = ";".join(sorted(["host", *headers]))
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return headers
