"""S3-compatible blob store (`s3://bucket/prefix?endpoint=...&region=...`), for many replicas.

obstore (Rust's object_store) does the I/O: its async API runs on its own Tokio threads, so
no call blocks the event loop, and it streams both ways. Writes buffer at most one part
(`_s3_writer.py`): a file smaller than a part is one PUT; a larger one is a multipart upload
with a bounded number of parts in flight, which obstore aborts when the stream feeding it
fails (our `abort`). An S3 object is invisible until its upload completes, so objects go
straight to their final key.

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

With none of them, opening the store fails at once with a line naming the variables
(`_s3_check.py`).

`check()` makes one cheap request (a listing under a prefix that holds nothing) so that
`openai-files serve` refuses to start, with one line, when the credentials are refused, the
bucket does not exist or the endpoint does not answer.

`compose` of an upload's parts (keys `<key>.<part id>`, `_manifest.py`) writes their list, a
manifest, as the object `.manifests/<key>` (one PUT; no object key starts with a dot): no
byte is copied, and reading the object reads across the parts. Other sources are copied
(`_s3_compose.py`, planned by `_s3_parts.py`), big ones server-side;
the reconciler (`_s3_reconcile.py`) aborts the multipart uploads a killed replica left. Both
make the S3 requests obstore lacks (`_s3_api.py`, signed by `_sigv4.py`).
"""

from __future__ import annotations

import asyncio
import datetime
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

try:
    import obstore
    from obstore.exceptions import BaseError, GenericError, NotFoundError
    from obstore.store import S3Store
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the S3 store needs obstore: pip install 'openai-files[s3]'", name=exc.name
    ) from exc

from ..settings import (
    DEFAULT_S3_CHECK_TIMEOUT_SECONDS,
    DEFAULT_S3_CONCURRENT_PARTS,
    DEFAULT_S3_PART_BYTES,
    S3_MAX_PART_BYTES,
    S3_MIN_PART_BYTES,
    MiB,
    shown_bytes,
)
from . import _manifest
from ._errors import StoreUnavailable
from ._records import Chunk
from ._s3_api import S3Api
from ._s3_check import INSTANCE_CREDENTIALS, credential_source, explain
from ._s3_compose import Composer
from ._s3_errors import log, unavailable
from ._s3_reconcile import Reconciler
from ._s3_writer import S3BlobWriter, part_sizes

#: Chunks handed to the response while downloading.
READ_CHUNK_BYTES = 4 * MiB

#: Retries of the start check: a refused connection is retried twice (well under a second);
#: an endpoint that does not answer fails once its timeout has passed.
_CHECK_RETRY: dict[str, Any] = {"max_retries": 2, "retry_timeout": datetime.timedelta(seconds=3)}
#: Where the start check lists: a prefix no object is ever stored under (keys never start
#: with a dot), so the listing is one request with an empty answer.
_CHECK_PREFIX = ".openai-files-start-check"
#: Where the manifests of composed objects are (`_manifest.py`): under a dot, where no
#: object key can be.
_MANIFESTS = ".manifests"


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
        if endpoint and endpoint.startswith("http://"):
            client["allow_http"] = True
        self._config = config
        self._client_options = client
        self._probe_store: S3Store | None = None
        self.store = S3Store(self.bucket, config=config, client_options=client)  # type: ignore[arg-type]
        # The requests obstore cannot make (path-style, as obstore's), when they can be
        # signed: with keys, or unsigned.
        api = None
        if self.credential_kind in ("keys", "anonymous"):
            api = S3Api(
                f"{self.endpoint.rstrip('/')}/{self.bucket}",
                region,
                anonymous=self.credential_kind == "anonymous",
            )
        self._composer = Composer(
            self.store, api, self.bucket, self.path_of, self.writer, concurrent_parts
        )
        self._reconciler = Reconciler(api, self.prefix, self.path_of)

    def _probe(self) -> S3Store:
        """A client of its own for `check` and `ping`: it waits `check_timeout` for an
        answer and retries little, where the store's own client waits minutes for a part."""
        if self._probe_store is None:
            self._probe_store = S3Store(
                self.bucket,
                config=self._config,  # type: ignore[arg-type]
                client_options={  # type: ignore[arg-type]
                    **self._client_options,
                    "timeout": datetime.timedelta(seconds=self.check_timeout),
                },
                retry_config=_CHECK_RETRY,  # type: ignore[arg-type]
            )
        return self._probe_store

    @property
    def _check_prefix(self) -> str:
        return f"{self.prefix}/{_CHECK_PREFIX}" if self.prefix else _CHECK_PREFIX

    async def check(self) -> None:
        """Prove, with one cheap request, that the bucket exists and takes our credentials:
        a listing under a prefix that holds nothing. A StoreUnavailable of one line naming
        what to fix (the credentials, the bucket or the endpoint) otherwise."""
        probe, prefix = self._probe(), self._check_prefix

        def first_page() -> None:
            for _batch in obstore.list(probe, prefix, chunk_size=1):
                break

        try:
            # The blocking call, in a thread: a process that exits right after an async
            # obstore call sometimes aborts (its runtime still hands objects back to Python).
            await asyncio.to_thread(first_page)
        except (BaseError, OSError) as exc:
            log.debug("S3 start check failed: %s", exc)
            raise StoreUnavailable(
                explain(exc, self.bucket, self.endpoint, self.credentials)
            ) from None

    async def ping(self) -> None:
        """The start check's listing, made with the async API (the server runs on, and a
        caller that stops waiting drops the request)."""
        try:
            async for _batch in obstore.list(self._probe(), self._check_prefix, chunk_size=1):
                break
        except (BaseError, OSError) as exc:
            raise StoreUnavailable(
                explain(exc, self.bucket, self.endpoint, self.credentials)
            ) from None

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

    def writer(self, key: str, *, buffer_bytes: int | None = None) -> S3BlobWriter:
        """A writer of `key` in parts of the store's size, or sized to hold about
        `buffer_bytes` (`_s3_writer.part_sizes`)."""
        part, in_flight = part_sizes(buffer_bytes, self.part_bytes, self.concurrent_parts)
        return S3BlobWriter(self.store, self.path_of(key), part, in_flight)

    def manifest_path_of(self, key: str) -> str:
        self.path_of(key)  # an unsafe key is refused
        return f"{self.prefix}/{_MANIFESTS}/{key}" if self.prefix else f"{_MANIFESTS}/{key}"

    async def compose(self, key: str, sources: Sequence[tuple[str, int]]) -> bool:
        if not _manifest.composable(key, sources):
            await self._composer.compose(key, sources)
            await self._delete_path(self.manifest_path_of(key))
            return False
        for name, _ in sources:
            self.path_of(name)  # an unsafe key is refused before any request
        await self._composer.check_sizes(sources)
        try:
            await obstore.put_async(
                self.store, self.manifest_path_of(key), _manifest.encode(sources)
            )
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None
        # An object composed whole earlier (by a copy) is replaced by the manifest.
        await self._delete_path(self.path_of(key))
        return True

    async def parts_of(self, key: str) -> list[tuple[str, int]] | None:
        """The parts, in order, of the composed object `key` ((key, size) pairs); None for
        an object stored whole (or none)."""
        try:
            result = await obstore.get_async(self.store, self.manifest_path_of(key))
            data = await result.bytes_async()
        except (NotFoundError, FileNotFoundError):
            return None
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None
        return _manifest.decode(bytes(data))

    @property
    def relayed_bytes(self) -> int:
        """Bytes `compose` has read through this process (sources too small to copy
        server-side); a big source's bytes never count here."""
        return self._composer.relayed_bytes

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        try:
            async for chunk in self._read(key, start, end):
                yield chunk
            return
        except FileNotFoundError:
            parts = await self.parts_of(key)
            if parts is None:
                raise
        async for chunk in self._read_pieces(_manifest.pieces(parts, start, end)):
            yield chunk

    async def _read_pieces(self, pieces: Sequence[tuple[str, int, int]]) -> AsyncIterator[Chunk]:
        """The bytes of a composed object's parts, each `(key, start, end)` in turn; the
        next part's GET is sent while the current one streams, so that a part's first byte
        does not wait for a round trip."""
        ahead: asyncio.Future[Any] | None = None
        try:
            for i, (name, lo, hi) in enumerate(pieces):
                result = await (ahead if ahead is not None else self._get_range(name, lo, hi))
                ahead = None
                if i + 1 < len(pieces):
                    ahead = asyncio.ensure_future(self._get_range(*pieces[i + 1]))
                async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
                    yield memoryview(chunk)
        finally:
            if ahead is not None:
                ahead.cancel()

    async def _get_range(self, key: str, start: int, end: int) -> Any:
        """The GET of bytes `[start, end)` of `key` (not empty), once its answer begins."""
        try:
            return await obstore.get_async(
                self.store, self.path_of(key), options={"range": (start, end)}
            )
        except (NotFoundError, FileNotFoundError) as exc:
            raise FileNotFoundError(key) from exc
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None

    async def _read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
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
            raise unavailable(exc) from None
        async for chunk in result.stream(min_chunk_size=READ_CHUNK_BYTES):
            yield memoryview(chunk)  # obstore's buffer, passed on without a copy

    async def _head(self, key: str) -> None:
        try:
            await obstore.head_async(self.store, self.path_of(key))
        except (NotFoundError, FileNotFoundError) as exc:
            raise FileNotFoundError(key) from exc
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None

    async def delete(self, key: str, *, parts: bool = True) -> None:
        await self._delete_path(self.path_of(key))
        manifest = await self.parts_of(key)
        if manifest is None:
            return
        if parts:  # the manifest last: a delete cut short is found again
            for name, _ in manifest:
                if _manifest.owner_of(name) == key:
                    await self._delete_path(self.path_of(name))
        await self._delete_path(self.manifest_path_of(key))

    async def _delete_path(self, path: str) -> None:
        try:
            await obstore.delete_async(self.store, path)
        except (NotFoundError, FileNotFoundError):
            return
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None

    async def list_object_keys(self, older_than: float) -> AsyncIterator[str]:
        cutoff = datetime.datetime.fromtimestamp(older_than, tz=datetime.UTC)
        prefix = f"{self.prefix}/" if self.prefix else None
        try:
            async for batch in obstore.list(self.store, prefix, chunk_size=1000):
                for meta in batch:
                    path = str(meta["path"])
                    key = path[len(prefix) :] if prefix else path
                    if meta["last_modified"] >= cutoff:
                        continue
                    if "/" not in key:
                        yield key
                    elif key.startswith(f"{_MANIFESTS}/"):  # a composed object
                        yield key[len(_MANIFESTS) + 1 :]
        except (GenericError, OSError) as exc:
            raise unavailable(exc) from None

    async def remove_stale_temp(self, older_than: float) -> int:
        # Nothing to do: an unfinished S3 upload is never an object. Multipart uploads that
        # a killed replica left open are aborted by `abort_stale_uploads`.
        return 0

    # -- unfinished multipart uploads (`_s3_reconcile.py`) --
    @property
    def aborts_stale_uploads(self) -> bool:
        """Whether the reconciler aborts unfinished multipart uploads (it signs with keys,
        and they were not refused)."""
        return self._reconciler.enabled

    async def abort_stale_uploads(
        self,
        older_than: float,
        named: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> int:
        """How many stale multipart uploads were aborted (`Reconciler`, the contract in
        base.py)."""
        return await self._reconciler.abort_stale_uploads(older_than, named)


def _hold_nothing() -> None:
    """The release of a hold that holds nothing."""
