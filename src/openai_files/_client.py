"""`Client` and `AsyncClient`: drivers that perform the effects of `_core`'s operations.

All decisions (headers, retries, errors, parsing, paging) are made in `_core`; each method
here hands an operation to `_run`, which sends, reads, saves and sleeps as asked, with
blocking calls in `Client` and with `await` in `AsyncClient`.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from types import TracebackType
from typing import Any, Generic, TypeVar, cast

import httpx

from . import _core
from ._config import CHUNK_SIZE, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, PAGE_SIZE, Config
from ._core import Effect, Op, Order, Read, Save, Send
from ._models import FileDeleted, FileList, FileObject
from ._streams import FileData, ProgressCallback

T = TypeVar("T")
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
#: The responses an operation opened (`list` is a method name in the classes below).
_Responses = list[httpx.Response]

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

    Example:
        >>> with Client() as client:                                # doctest: +SKIP
        ...     f = client.upload("train.jsonl", purpose="fine-tune")
        ...     client.download(f.id, "copy.jsonl")
        ...     client.delete(f.id)
    """

    def _default_http(self) -> httpx.Client:
        return httpx.Client()

    def upload(
        self,
        file: FileData,
        *,
        purpose: str,
        filename: str | None = None,
        mime_type: str | None = None,
        expires_after: int | None = None,
        progress: ProgressCallback | None = None,
    ) -> FileObject:
        """Upload a path, bytes or a binary file object (streamed, never read whole).

        `filename` defaults to the path's name, `mime_type` to a guess from it, and
        `expires_after` (seconds after creation) to the server's rule for the purpose.
        """
        return self._run(
            _core.upload(
                self._config, file, purpose=purpose, filename=filename,
                mime_type=mime_type, expires_after=expires_after, progress=progress,
            )
        )  # fmt: skip

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
    ) -> int:
        """Stream a file's bytes to `path`, which appears only once complete; returns the size."""
        return self._run(_core.download(self._config, file_id, path, progress))

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

    def _run(self, op: Op[T]) -> T:
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
                    result = self._perform(effect, opened)
                except Exception as exc:
                    error = exc
        finally:
            op.close()
            for response in opened:
                response.close()

    def _perform(self, effect: Effect, opened: _Responses) -> Any:
        if isinstance(effect, Send):
            opened.append(self._http.send(effect.request, stream=True))
            return opened[-1]
        if isinstance(effect, Read):
            return effect.response.read()
        if isinstance(effect, Save):
            sink = effect.sink
            try:
                sink.open()
                for chunk in effect.response.iter_bytes(CHUNK_SIZE):
                    sink.write(chunk)
                sink.commit()
            finally:
                sink.discard()
            return None
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
    ) -> FileObject:
        """As `Client.upload`; the file is read in a worker thread."""
        return await self._run(
            _core.upload(
                self._config, file, purpose=purpose, filename=filename,
                mime_type=mime_type, expires_after=expires_after, progress=progress,
            )
        )  # fmt: skip

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
    ) -> int:
        """As `Client.download`; the file is written in a worker thread."""
        return await self._run(_core.download(self._config, file_id, path, progress))

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
                async for chunk in effect.response.aiter_bytes(CHUNK_SIZE):
                    await run_sync(sink.write, chunk)
                await run_sync(sink.commit)
            finally:
                import anyio

                # Shielded: in a cancelled scope an unshielded await would raise before the
                # thread started, and leave the `.part` file behind.
                with anyio.CancelScope(shield=True):
                    await run_sync(sink.discard)
            return None
        await _asleep(effect.seconds)
        return None
