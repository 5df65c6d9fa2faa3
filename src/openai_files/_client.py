"""`Client` and `AsyncClient`: drivers that perform the effects of `_core`'s operations.

All decisions (headers, retries, errors, parsing, paging) are made in `_core`; each method
here hands an operation to `_run`, which sends, reads, saves and sleeps as asked, with
blocking calls in `Client` and with `await` in `AsyncClient`.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

import httpx

from . import _core, _uploads
from ._config import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, PAGE_SIZE, Config
from ._core import Call, Effect, Gather, Op, Order, Read, Save, Send
from ._models import FileDeleted, FileList, FileObject, Upload, UploadList
from ._sink import areceive, receive
from ._threads import Flight, Stoppable, Stopped, gather
from ._types import FileData, ProgressCallback, UploadArgs

if TYPE_CHECKING:
    from ._tasks import Flight as AsyncFlight

T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
#: The responses an operation opened (`list` is a method name in the classes below).
_Responses = list[httpx.Response]

#: Connections are reset when closed (SO_LINGER 0) rather than drained: a part of an upload
#: interrupted mid-way (Ctrl-C, the program exiting) must not reach the server whole from
#: the kernel's send buffer after the client has stopped recording part ids (it would fill
#: the upload's bytes with a part nobody knows of). A close after a whole answer loses
#: nothing.
_ABORT_ON_CLOSE = [(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))]


def _transport(proxy: str | None) -> httpx.HTTPTransport:
    """A transport whose connections are reset when closed, through `proxy` if given."""
    return httpx.HTTPTransport(proxy=proxy, socket_options=_ABORT_ON_CLOSE)


#: Seams for tests: what a retry's wait calls (the async one is anyio's sleep).
_sleep = time.sleep


async def _asleep(seconds: float) -> None:
    import anyio  # httpx's own dependency, imported only by async code

    await anyio.sleep(seconds)


class _Base(Generic[H]):
    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        debug: bool = False,
        http_client: H | None = None,
        upload_threshold: int | None = None,
        part_size: int | None = None,
        upload_concurrency: int | None = None,
    ) -> None:
        self._config = Config.resolve(
            api_key=api_key,
            base_url=base_url,
            organization=organization,
            project=project,
            timeout=timeout,
            max_retries=max_retries,
            headers=headers,
            debug=debug,
            upload_threshold=upload_threshold,
            part_size=part_size,
            upload_concurrency=upload_concurrency,
        )
        self._owns_http = http_client is None
        self._http: H = http_client if http_client is not None else self._default_http()

    def _default_http(self) -> H:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """The API root requests go to."""
        return self._config.base_url

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._config.base_url!r})"


class Client(_Base[httpx.Client]):
    """A client for the Files API; every argument defaults to its environment variable.

    Args:
        api_key: The key (default `OPENAI_API_KEY`); without one, construction fails.
        base_url: The API root (default `OPENAI_BASE_URL`, else `https://api.openai.com/v1`).
        organization: Sent as `OpenAI-Organization` (default `OPENAI_ORG_ID`).
        project: Sent as `OpenAI-Project` (default `OPENAI_PROJECT_ID`).
        timeout: Seconds for each phase of a request (connect, each read, each write).
        max_retries: Attempts after the first on 408, 409, 429, 5xx and network errors.
        headers: Extra headers for every request.
        debug: Print each request and response (the key masked) to stderr.
        http_client: An `httpx.Client` to send with (for proxies, mounts, tests).
        upload_threshold: Paths larger than this many bytes are uploaded in parts through
            the Uploads API (default `OPENAI_FILES_UPLOAD_THRESHOLD`, else 512 MB).
        part_size: Bytes per part of such an upload (default `OPENAI_FILES_PART_SIZE`,
            else 64 MB, the most a part may hold).
        upload_concurrency: Parts sent at once (default `OPENAI_FILES_UPLOAD_CONCURRENCY`,
            else 4).

    Example:
        >>> with Client() as client:                                # doctest: +SKIP
        ...     f = client.upload("train.jsonl", purpose="fine-tune")
        ...     client.download(f.id, "copy.jsonl")
        ...     client.delete(f.id)
    """

    def _default_http(self) -> httpx.Client:
        # httpx ignores HTTP(S)_PROXY and NO_PROXY once a transport is given: their routes
        # are mounted here, as httpx would, with the same socket options.
        from httpx._utils import get_environment_proxies

        mounts: dict[str, httpx.BaseTransport | None] = {
            pattern: None if url is None else _transport(url)
            for pattern, url in get_environment_proxies().items()
        }
        return httpx.Client(transport=_transport(None), mounts=mounts)

    def upload(
        self,
        file: FileData,
        *,
        purpose: str,
        filename: str | None = None,
        mime_type: str | None = None,
        expires_after: int | None = None,
        progress: ProgressCallback | None = None,
        use_uploads: bool | None = None,
        resume: str | None = None,
    ) -> FileObject:
        """Upload a path, bytes or a binary file object (streamed, never read whole).

        `filename` defaults to the path's name, `mime_type` to a guess from it, and
        `expires_after` (seconds after creation) to the server's rule for the purpose.

        A path larger than `upload_threshold` (or any path with `use_uploads=True`) goes
        through the Uploads API in parallel parts; after a failure, the same call resumes
        it (from the state file `<path>.openai-upload.json`), sending only the missing
        parts; `resume=` names the upload expected there. `use_uploads=False` never does.
        """
        return self._run(
            _uploads.upload(
                self._config, file,
                UploadArgs(purpose, filename, mime_type, expires_after, progress),
                use_uploads, resume,
            )
        )  # fmt: skip

    def cancel_upload(self, upload_id: str) -> Upload:
        """Cancel a pending upload of the Uploads API (its parts are removed)."""
        return self._run(_uploads.cancel(self._config, upload_id))

    def list_uploads(self, *, status: str | None = None, limit: int | None = None) -> UploadList:
        """Uploads, newest first: the pending ones unless `status` says (`completed`,
        `cancelled`, `expired`, `all`). `GET /uploads` is this package's server's, not
        OpenAI's."""
        return self._run(_uploads.list_uploads(self._config, status=status, limit=limit))

    def list(
        self,
        purpose: str | None = None,
        *,
        limit: int | None = None,
        order: Order | None = None,
        after: str | None = None,
    ) -> FileList:
        """One page of files (newest first unless `order="asc"`)."""
        return self._run(
            _core.list_page(self._config, purpose, limit=limit, order=order, after=after)
        )

    def iter_files(
        self, purpose: str | None = None, *, order: Order | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[FileObject]:
        """Every file, page after page (stops should a server repeat a page)."""
        pager = _core.Pager(purpose, order, page_size)
        while (op := pager.next_page(self._config)) is not None:
            yield from pager.take(self._run(op))

    def retrieve(self, file_id: str) -> FileObject:
        """A file's metadata."""
        return self._run(_core.retrieve(self._config, file_id))

    def delete(self, file_id: str) -> FileDeleted:
        """Delete a file."""
        return self._run(_core.delete(self._config, file_id))

    def content(self, file_id: str) -> bytes:
        """A file's bytes, in memory (use `download` for large files)."""
        return self._run(_core.content(self._config, file_id))

    def download(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        durable: bool = False,
    ) -> int:
        """Stream a file's bytes to `path`, which appears only once complete; returns the size.

        With `durable=True` the file is fsynced (and its folder) before this returns, so it
        survives a power loss; by default it is left to the system's write-back, as
        `curl -o` does: a download can be repeated, and the fsync doubles its time.
        """
        return self._run(_core.download(self._config, file_id, path, progress, durable))

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _run(self, op: Op[T], flight: Flight | None = None) -> T:
        """Perform `op`'s effects. `flight.stop` is shared by the threads of a `Gather`:
        once it is set (the caller was interrupted), each of them ends at its next effect
        or its next chunk of a request body, except to read the answer to a request whose
        body went whole (the server takes it: its answer is waited for a while)."""
        stop = flight.stop if flight is not None else None
        opened: _Responses = []
        result: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(result) if error is None else op.throw(error)
                except StopIteration as done:
                    return cast(T, done.value)
                if stop is not None and stop.is_set():
                    assert flight is not None
                    if not (flight.landing and isinstance(effect, Read)):
                        raise Stopped
                result, error = None, None
                try:
                    result = self._perform(effect, opened, flight)
                except Exception as exc:
                    error = exc
        finally:
            op.close()
            for response in opened:
                response.close()

    def _perform(self, effect: Effect, opened: _Responses, flight: Flight | None) -> Any:
        if isinstance(effect, Send):
            request = effect.request
            if flight is not None and isinstance(request.stream, httpx.SyncByteStream):
                flight.landed()  # a request before this one (a retry's) is over
                length = request.headers.get("content-length")
                request.stream = Stoppable(
                    request.stream, flight, int(length) if length is not None else None
                )
            opened.append(self._http.send(request, stream=True))
            return opened[-1]
        if isinstance(effect, Read):
            return effect.response.read()
        if isinstance(effect, Save):
            sink = effect.sink
            try:
                sink.open()
                receive(effect.response, sink)
                sink.commit()
            finally:
                sink.discard()
            return None
        if isinstance(effect, Call):
            return effect.function()
        if isinstance(effect, Gather):
            return gather(effect, flight.stop if flight is not None else None, self._run)
        _sleep(effect.seconds)
        return None


class AsyncClient(_Base[httpx.AsyncClient]):
    """The same client for `async` code; arguments as `Client`'s.

    Example:
        >>> async with AsyncClient() as client:                     # doctest: +SKIP
        ...     async for f in client.iter_files(purpose="batch"):
        ...         print(f.id, f.filename)
    """

    def _default_http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient()

    async def upload(
        self,
        file: FileData,
        *,
        purpose: str,
        filename: str | None = None,
        mime_type: str | None = None,
        expires_after: int | None = None,
        progress: ProgressCallback | None = None,
        use_uploads: bool | None = None,
        resume: str | None = None,
    ) -> FileObject:
        """As `Client.upload`; the file is read in a worker thread."""
        return await self._run(
            _uploads.upload(
                self._config, file,
                UploadArgs(purpose, filename, mime_type, expires_after, progress),
                use_uploads, resume,
            )
        )  # fmt: skip

    async def cancel_upload(self, upload_id: str) -> Upload:
        """As `Client.cancel_upload`."""
        return await self._run(_uploads.cancel(self._config, upload_id))

    async def list_uploads(
        self, *, status: str | None = None, limit: int | None = None
    ) -> UploadList:
        """As `Client.list_uploads`."""
        return await self._run(_uploads.list_uploads(self._config, status=status, limit=limit))

    async def list(
        self,
        purpose: str | None = None,
        *,
        limit: int | None = None,
        order: Order | None = None,
        after: str | None = None,
    ) -> FileList:
        """As `Client.list`."""
        return await self._run(
            _core.list_page(self._config, purpose, limit=limit, order=order, after=after)
        )

    async def iter_files(
        self, purpose: str | None = None, *, order: Order | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[FileObject]:
        """As `Client.iter_files`."""
        pager = _core.Pager(purpose, order, page_size)
        while (op := pager.next_page(self._config)) is not None:
            for item in pager.take(await self._run(op)):
                yield item

    async def retrieve(self, file_id: str) -> FileObject:
        """As `Client.retrieve`."""
        return await self._run(_core.retrieve(self._config, file_id))

    async def delete(self, file_id: str) -> FileDeleted:
        """As `Client.delete`."""
        return await self._run(_core.delete(self._config, file_id))

    async def content(self, file_id: str) -> bytes:
        """As `Client.content`."""
        return await self._run(_core.content(self._config, file_id))

    async def download(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        progress: ProgressCallback | None = None,
        durable: bool = False,
    ) -> int:
        """As `Client.download`; the file is written in a worker thread."""
        return await self._run(_core.download(self._config, file_id, path, progress, durable))

    async def close(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, op: Op[T], flight: AsyncFlight | None = None) -> T:
        """Perform `op`'s effects. Once `flight` is stopped (the caller was cancelled), the
        operation ends at its next effect, except to read the answer to a request whose
        body went whole (see `_tasks`)."""
        opened: _Responses = []
        result: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(result) if error is None else op.throw(error)
                except StopIteration as stop:
                    return cast(T, stop.value)
                stopped = flight is not None and flight.stopped
                if stopped and not (flight and flight.landing and isinstance(effect, Read)):
                    raise Stopped
                result, error = None, None
                try:
                    result = await self._perform(effect, opened, flight)
                except Exception as exc:
                    error = exc
        finally:
            op.close()
            if opened:
                import anyio

                # Shielded: a cancelled caller still gives its connections back.
                with anyio.CancelScope(shield=True):
                    for response in opened:
                        await response.aclose()

    async def _perform(self, effect: Effect, opened: _Responses, flight: AsyncFlight | None) -> Any:
        if isinstance(effect, Send):
            if flight is not None:
                flight.sending(effect.request)
            opened.append(await self._http.send(effect.request, stream=True))
            return opened[-1]
        if isinstance(effect, Read):
            return await effect.response.aread()
        if isinstance(effect, Save):
            from anyio.to_thread import run_sync

            sink = effect.sink
            try:
                await run_sync(sink.open)
                await areceive(effect.response, sink)
                await run_sync(sink.commit)
            finally:
                import anyio

                # Shielded: in a cancelled scope an unshielded await would raise before the
                # thread started, and leave the `.part` file behind.
                with anyio.CancelScope(shield=True):
                    await run_sync(sink.discard)
            return None
        if isinstance(effect, Call):
            from anyio.to_thread import run_sync

            return await run_sync(effect.function)
        if isinstance(effect, Gather):
            from ._tasks import gather as agather  # anyio: imported by async code only

            return await agather(effect, self._run)
        await _asleep(effect.seconds)
        return None
