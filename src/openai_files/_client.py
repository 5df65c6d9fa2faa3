"""`Client` and `AsyncClient`: drivers that perform the effects of `_core`'s operations.

All decisions (headers, retries, errors, parsing, paging) are made in `_core`; each method
here hands an operation to `_run`, which sends, reads, saves and sleeps as asked, with
blocking calls in `Client` and with `await` in `AsyncClient`.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import httpx

from . import _core, _uploads
from ._config import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, PAGE_SIZE, Config
from ._core import Call, Effect, Gather, Op, Order, Read, Save, Send
from ._models import FileDeleted, FileList, FileObject, Upload, UploadList
from ._sink import areceive, receive
from ._types import FileData, ProgressCallback

T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
#: The responses an operation opened (`list` is a method name in the classes below).
_Responses = list[httpx.Response]
_Results = list[Any]

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
                self._config, file, purpose=purpose, filename=filename,
                mime_type=mime_type, expires_after=expires_after, progress=progress,
                use_uploads=use_uploads, resume=resume,
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

    def _run(self, op: Op[T], flight: _Flight | None = None) -> T:
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
                        raise _Stopped
                result, error = None, None
                try:
                    result = self._perform(effect, opened, flight)
                except Exception as exc:
                    error = exc
        finally:
            op.close()
            for response in opened:
                response.close()

    def _perform(self, effect: Effect, opened: _Responses, flight: _Flight | None) -> Any:
        if isinstance(effect, Send):
            request = effect.request
            if flight is not None and isinstance(request.stream, httpx.SyncByteStream):
                flight.landed()  # a request before this one (a retry's) is over
                length = request.headers.get("content-length")
                request.stream = _Stoppable(
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
            return self._gather(effect, flight.stop if flight is not None else None)
        _sleep(effect.seconds)
        return None

    def _gather(self, effect: Gather, stop: _Interrupt | None) -> _Results:
        """Each operation in a thread of its own, at most `limit` at once.

        After an error no other operation starts, but those running are waited for and
        their results handed to `on_done` (an upload's accepted parts are kept for its
        resume); then the first error is raised.

        Interrupted (Ctrl-C: a KeyboardInterrupt in this thread), it sets `stop`, so that
        every thread below ends at its next step (an upload's part in flight is abandoned
        mid-body), and raises once the requests whose bodies went whole are answered and
        their results handed to `on_done` (the server takes such a part: its id must be
        kept), or after `_GRACE` seconds at most; at once when there are none. The threads
        are daemons, so a program that exits on the interrupt does not wait for them.
        """
        import queue

        stop = _Interrupt() if stop is None else stop
        results: _Results = [None] * len(effect.ops)
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for index in range(len(effect.ops)):
            todo.put(index)
        finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
        halt = threading.Event()  # an operation failed: no other starts

        def work() -> None:
            while not (halt.is_set() or stop.is_set()):
                try:
                    index = todo.get_nowait()
                except queue.Empty:
                    break
                flight = _Flight(stop)
                try:
                    finished.put((index, self._run(effect.ops[index], flight), None, flight))
                except BaseException as exc:  # handed to the gathering thread
                    finished.put((index, None, exc, flight))
            finished.put((-1, None, None, None))  # this worker is done

        workers = [
            threading.Thread(target=work, name="openai-files", daemon=True)
            for _ in range(min(effect.limit, len(effect.ops)))
        ]
        first: BaseException | None = None
        try:
            for worker in workers:
                worker.start()
            running = len(workers)
            while running:
                index, result, exc, flight = self._next(finished, stop)
                try:
                    if index < 0:
                        running -= 1
                    elif exc is not None:
                        if first is None:
                            first = exc
                            halt.set()
                    else:
                        results[index] = result
                        if effect.on_done is not None:
                            effect.on_done(index, result)
                finally:
                    if flight is not None:
                        flight.landed()
        except BaseException:
            stop.halt()
            _land(finished, stop, effect.on_done)
            raise
        for op in effect.ops:
            op.close()  # those never started
        if first is not None:
            raise first
        return results

    @staticmethod
    def _next(finished: Any, stop: threading.Event) -> _Finished:
        """The next result; `_Stopped` as soon as `stop` is set (by an outer `_gather`, in
        another thread: the interrupt reaches the main thread only)."""
        import queue

        while True:
            if stop.is_set():
                raise _Stopped
            try:
                item: _Finished = finished.get(timeout=_POLL)
            except queue.Empty:
                continue
            return item


#: How often a gathering thread other than the main one looks whether it was stopped.
_POLL = 0.05
#: The most an interrupted call waits for the answers to requests whose bodies went whole.
_GRACE = 1.5


class _Interrupt(threading.Event):
    """Set when a call is interrupted; counts the requests whose bodies went whole and
    whose results are not yet handed on (`landing`), which the interrupt waits for until
    `until` (a `time.monotonic()`)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.landing = 0
        self.until = 0.0

    def halt(self) -> None:
        with self._lock:
            if not self.is_set():
                self.until = time.monotonic() + _GRACE
                self.set()

    def land(self) -> bool:
        """Count one more landing request, unless the call was interrupted already."""
        with self._lock:
            if self.is_set():
                return False
            self.landing += 1
            return True

    def landed(self) -> None:
        with self._lock:
            self.landing -= 1


class _Flight:
    """One operation of a `Gather`: whether its request's body went whole (`landing`)."""

    def __init__(self, stop: _Interrupt) -> None:
        self.stop = stop
        self.landing = False

    def land(self) -> bool:
        self.landing = self.stop.land()
        return self.landing

    def landed(self) -> None:
        if self.landing:
            self.landing = False
            self.stop.landed()


#: An operation's index (-1: its worker is done), result, error and flight.
_Finished = tuple[int, Any, "BaseException | None", "_Flight | None"]


def _land(finished: Any, stop: _Interrupt, on_done: Any) -> None:
    """After an interrupt: hand the results that come to `on_done` until no request is
    landing any more, or `stop.until`."""
    import queue

    while True:
        try:
            item: _Finished = finished.get_nowait()
        except queue.Empty:
            left = stop.until - time.monotonic()
            if stop.landing <= 0 or left <= 0:
                return
            try:
                item = finished.get(timeout=min(_POLL, left))
            except queue.Empty:
                continue
        index, result, exc, flight = item
        try:
            if index >= 0 and exc is None and on_done is not None:
                on_done(index, result)
        finally:
            if flight is not None:
                flight.landed()


class _Stopped(BaseException):
    """An operation's thread ends: the call that started it was interrupted."""


class _Stoppable(httpx.SyncByteStream):
    """A request body that ends (the request with it) once `flight.stop` is set, before
    its last chunk only: from there it is landing (see `_Interrupt`). `length` is the
    body's (None: unknown, the body lands once its chunks are all written)."""

    def __init__(self, inner: httpx.SyncByteStream, flight: _Flight, length: int | None) -> None:
        self._inner = inner
        self._flight = flight
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        flight, sent = self._flight, 0
        for chunk in self._inner:
            sent += len(chunk)
            last = self._length is not None and sent >= self._length
            if flight.stop.is_set() or (last and not flight.landing and not flight.land()):
                raise _Stopped
            yield chunk
        if not flight.landing and not flight.land():
            raise _Stopped

    def close(self) -> None:
        self._inner.close()


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
                self._config, file, purpose=purpose, filename=filename,
                mime_type=mime_type, expires_after=expires_after, progress=progress,
                use_uploads=use_uploads, resume=resume,
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

    async def _run(self, op: Op[T]) -> T:
        opened: _Responses = []
        result: Any = None
        error: Exception | None = None
        try:
            while True:
                try:
                    effect = op.send(result) if error is None else op.throw(error)
                except StopIteration as stop:
                    return cast(T, stop.value)
                result, error = None, None
                try:
                    result = await self._perform(effect, opened)
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

    async def _perform(self, effect: Effect, opened: _Responses) -> Any:
        if isinstance(effect, Send):
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
            return await self._gather(effect)
        await _asleep(effect.seconds)
        return None

    async def _gather(self, effect: Gather) -> _Results:
        """Each operation in a task of its own, at most `limit` at once; errors as in
        `Client._gather` (the running ones end, the others never start)."""
        import anyio

        results: _Results = [None] * len(effect.ops)
        limiter = anyio.Semaphore(effect.limit)
        errors: list[Exception] = []

        async def one(index: int, op: Op[Any]) -> None:
            async with limiter:
                if errors:
                    return
                try:
                    results[index] = await self._run(op)
                    if effect.on_done is not None:
                        effect.on_done(index, results[index])
                except Exception as exc:
                    errors.append(exc)

        try:
            async with anyio.create_task_group() as group:
                for index, op in enumerate(effect.ops):
                    group.start_soon(one, index, op)
        except BaseExceptionGroup as group_errors:
            raise _first_error(group_errors) from None
        finally:
            for op in effect.ops:
                op.close()  # those never started
        if errors:
            raise errors[0]
        return results


def _first_error(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group (the one that stopped the others)."""
    first = errors.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
