"""`Client` and `AsyncClient`: drivers that perform the effects of `_core`'s operations.

All decisions (headers, retries, errors, parsing, paging) are made in `_core`; each method
is made from its call in `_calls` (signature and docstring written once) and hands the
operation to `_run`, which sends, reads, saves and sleeps as asked, with blocking calls in
`Client` and with `await` in `AsyncClient`. What is common to both loops is `_core.Steps`;
their `Gather`s are `_threads.gather` and `_tasks.gather`.
"""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import httpx

from . import _calls, _core
from ._calls import awaitable, blocking
from ._config import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, PAGE_SIZE, Config
from ._core import Call, Effect, Gather, Op, Order, Read, Save, Send
from ._models import FileObject
from ._sink import areceive, receive
from ._steps import Steps
from ._threads import Flight, Stoppable, gather

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

    upload = blocking(_calls.upload)
    cancel_upload = blocking(_calls.cancel_upload)
    list_uploads = blocking(_calls.list_uploads)
    list = blocking(_calls.list_files, "list")
    retrieve = blocking(_calls.retrieve)
    delete = blocking(_calls.delete)
    content = blocking(_calls.content)
    download = blocking(_calls.download)
    create_batch = blocking(_calls.create_batch)
    retrieve_batch = blocking(_calls.retrieve_batch)
    list_batches = blocking(_calls.list_batches)
    cancel_batch = blocking(_calls.cancel_batch)

    def iter_files(
        self, purpose: str | None = None, *, order: Order | None = None, page_size: int = PAGE_SIZE
    ) -> Iterator[FileObject]:
        """Every file, page after page (stops should a server repeat a page)."""
        pager = _core.Pager(purpose, order, page_size)
        while (op := pager.next_page(self._config)) is not None:
            yield from pager.take(self._run(op))

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
        opened: _Responses = []
        steps = Steps(op, flight)
        try:
            for effect in steps:
                try:
                    steps.ok(self._perform(effect, opened, flight))
                except Exception as exc:
                    steps.failed(exc)
            return steps.value
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

    upload = awaitable(_calls.upload)
    cancel_upload = awaitable(_calls.cancel_upload)
    list_uploads = awaitable(_calls.list_uploads)
    list = awaitable(_calls.list_files, "list")
    retrieve = awaitable(_calls.retrieve)
    delete = awaitable(_calls.delete)
    content = awaitable(_calls.content)
    download = awaitable(_calls.download)
    create_batch = awaitable(_calls.create_batch)
    retrieve_batch = awaitable(_calls.retrieve_batch)
    list_batches = awaitable(_calls.list_batches)
    cancel_batch = awaitable(_calls.cancel_batch)

    async def iter_files(
        self, purpose: str | None = None, *, order: Order | None = None, page_size: int = PAGE_SIZE
    ) -> AsyncIterator[FileObject]:
        """Every file, page after page (stops should a server repeat a page)."""
        pager = _core.Pager(purpose, order, page_size)
        while (op := pager.next_page(self._config)) is not None:
            for item in pager.take(await self._run(op)):
                yield item

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
        steps = Steps(op, flight)
        try:
            for effect in steps:
                try:
                    steps.ok(await self._perform(effect, opened, flight))
                except Exception as exc:
                    steps.failed(exc)
            return steps.value
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
