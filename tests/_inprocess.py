"""The app of `openai-files serve`, running in the test's own process, for tests.

The app's lifespan (stores opened, sweeper started) runs on an event loop thread of its own,
as under uvicorn; requests reach it through httpx transports that hand them to that loop, so
a route's error shows in the test's report with its line (the app's log is captured too).
What needs a real socket or process (connection limits, crashes, replicas, the CLI) runs a
real server: `_server.ServerProcess`.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import requests
import requests.adapters
import urllib3
from anyio.from_thread import BlockingPortal
from openai import AsyncOpenAI, OpenAI
from starlette.testclient import TestClient

from openai_files.server import create_app
from openai_files.server.settings import Settings

from ._server import create_admin_key, create_key

#: The URL the in-process app answers on (no socket: the transports below reach it).
ROOT_URL = "http://testserver"


class AppServer:
    """One app in this process, on the stores of `data_dir` and of the `OPENAI_FILES_*`
    variables in `env`; `start()` runs its lifespan, `stop()` ends it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.env = {**os.environ, **(env or {})}
        self.root_url = ROOT_URL
        self.base_url = ROOT_URL + "/v1"
        self.settings = Settings.from_env(self.env, data_dir=self.data_dir)
        self.app = create_app(self.settings)
        self._lifespan = TestClient(self.app)
        self._log = io.StringIO()
        self._log_handler = logging.StreamHandler(self._log)
        self._log_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        #: The server's loggers (the client's, also under openai_files, are left alone).
        self._loggers = [logging.getLogger(f"openai_files.{n}") for n in ("server", "access")]
        self._log_levels = [logger.level for logger in self._loggers]
        # The S3 store reads its credentials from the process environment (when it opens,
        # and when it signs): they are set for the app's life.
        self._aws_env = {
            k: v for k, v in self.env.items() if k.startswith("AWS_") and os.environ.get(k) != v
        }
        self._aws_before: dict[str, str | None] = {}

    def start(self) -> AppServer:
        # As `serve` logs: info and above, tracebacks included.
        for logger in self._loggers:
            logger.addHandler(self._log_handler)
            logger.setLevel(logging.INFO)
        for name, value in self._aws_env.items():
            self._aws_before[name] = os.environ.get(name)
            os.environ[name] = value
        try:
            self._lifespan.__enter__()
        except BaseException:
            self._restore()
            raise
        return self

    def stop(self) -> None:
        try:
            self._lifespan.__exit__(None, None, None)
        finally:
            self._restore()

    def _restore(self) -> None:
        for logger, level in zip(self._loggers, self._log_levels, strict=True):
            logger.removeHandler(self._log_handler)
            logger.setLevel(level)
        for name, value in self._aws_before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._aws_before.clear()

    @property
    def portal(self) -> BlockingPortal:
        """The event loop thread the app runs on."""
        portal = self._lifespan.portal
        assert portal is not None, "the app is not started"
        return portal

    def log_text(self) -> str:
        """What the app logged since it started."""
        return self._log.getvalue()

    def create_key(self, org: str, project: str) -> str:
        return create_key(self.data_dir, org, project, self.env)

    def create_admin_key(self, org: str) -> str:
        return create_admin_key(self.data_dir, org, self.env)

    def transport(self) -> httpx.BaseTransport:
        return _AppTransport(self.app, self.portal)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        return _AsyncAppTransport(self.app, self.portal)

    def http(self, api_key: str | None = None, **options: Any) -> httpx.Client:
        """An httpx client of the API (base URL `/v1`), as `api_key` when given."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        options.setdefault("base_url", self.base_url)
        return httpx.Client(transport=self.transport(), headers=headers, **options)

    # The SDK's annotations name httpx2's clients only; it takes httpx's as well (its
    # "legacy httpx" clients), which carry the app's transport here.
    def openai(self, api_key: str) -> OpenAI:
        """The official SDK as `api_key`, without retries."""
        http = httpx.Client(transport=self.transport())
        return OpenAI(
            base_url=self.base_url,
            api_key=api_key,
            max_retries=0,
            http_client=http,  # type: ignore[arg-type]  # an httpx client: see above
        )

    def async_openai(self, api_key: str) -> AsyncOpenAI:
        http = httpx.AsyncClient(transport=self.async_transport())
        return AsyncOpenAI(
            base_url=self.base_url,
            api_key=api_key,
            max_retries=0,
            http_client=http,  # type: ignore[arg-type]  # an httpx client: see above
        )

    def requests_session(self) -> requests.Session:
        """A `requests` session whose requests to ROOT_URL go to the app."""
        session = requests.Session()
        session.mount(ROOT_URL, _AppAdapter(self.transport()))
        return session


#: The most bytes of a request body the app gets in one message: what uvicorn reads from
#: a socket at once (a body arrives in pieces of at most this, never whole).
CHUNK_BYTES = 64 * 1024


class _Chunks(httpx.AsyncByteStream):
    """A request body in the pieces a server would hand the app: the client's chunks, each
    cut to at most CHUNK_BYTES."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = [
            chunk[i : i + CHUNK_BYTES]
            for chunk in chunks
            for i in range(0, len(chunk), CHUNK_BYTES)
        ]

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def asgi_scope(
    method: str,
    path: str,
    api_key: str,
    headers: list[tuple[bytes, bytes]] | None = None,
    extensions: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The scope of an HTTP request to the app with `api_key`, for a test that calls the
    app itself (to control `receive`, or to see each message it sends)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", f"Bearer {api_key}".encode()),
            *(headers or []),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    if extensions is not None:
        scope["extensions"] = extensions
    return scope


async def _send(app: Any, request: httpx.Request, chunks: list[bytes]) -> httpx.Response:
    """`request` through the app, on the app's loop; the answer whole, its bytes as sent."""
    transport = httpx.ASGITransport(app, client=("127.0.0.1", 50000))
    forwarded = httpx.Request(
        request.method, request.url, headers=request.headers, stream=_Chunks(chunks)
    )
    response = await transport.handle_async_request(forwarded)
    body = b"".join([chunk async for chunk in response.aiter_raw()])
    return httpx.Response(
        response.status_code, headers=response.headers, stream=httpx.ByteStream(body)
    )


class _AppTransport(httpx.BaseTransport):
    """Sync requests, each run on the app's loop (safe from several threads at once)."""

    def __init__(self, app: Any, portal: BlockingPortal) -> None:
        self.app = app
        self.portal = portal

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        chunks = list(request.stream)  # type: ignore[arg-type]
        response: httpx.Response = self.portal.call(_send, self.app, request, chunks)
        return response


class _AsyncAppTransport(httpx.AsyncBaseTransport):
    """Async requests from any event loop, each run on the app's loop."""

    def __init__(self, app: Any, portal: BlockingPortal) -> None:
        self.app = app
        self.portal = portal

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        chunks = [chunk async for chunk in request.stream]  # type: ignore[union-attr]
        future = self.portal.start_task_soon(_send, self.app, request, chunks)
        return await asyncio.wrap_future(future)


def _latin1(value: str | bytes) -> bytes:
    """A header's name or value as http.client sends it: text in Latin-1."""
    return value if isinstance(value, bytes) else value.encode("latin-1")


class _AppAdapter(requests.adapters.HTTPAdapter):
    """`requests` to the app: the prepared request's bytes, as they would go on the wire."""

    def __init__(self, transport: httpx.BaseTransport) -> None:
        super().__init__()
        self._transport = transport

    def send(  # type: ignore[override]
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        body = request.body
        content = body.encode() if isinstance(body, str) else (body or b"")
        assert isinstance(content, bytes), type(body)
        assert request.method is not None and request.url is not None
        answer = self._transport.handle_request(
            httpx.Request(
                request.method,
                request.url,
                headers=[(_latin1(k), _latin1(v)) for k, v in request.headers.items()],
                content=content,
            )
        )
        headers = urllib3.HTTPHeaderDict()
        for name, value in answer.headers.multi_items():
            headers.add(name, value)
        raw = urllib3.HTTPResponse(
            body=io.BytesIO(b"".join(answer.iter_raw())),
            headers=headers,
            status=answer.status_code,
            reason=answer.reason_phrase,
            version=11,
            preload_content=False,
        )
        return self.build_response(request, raw)
