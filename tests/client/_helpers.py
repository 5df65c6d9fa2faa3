"""What the client tests share: a fake server on httpx's MockTransport, and one test for
both drivers (an adapter runs `AsyncClient`'s coroutines on a private event loop)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from openai_files import AsyncClient, Client

BASE_URL = "http://files.test/v1"
KEY = "sk-test-0123456789abcdef"

Handler = Callable[[httpx.Request], httpx.Response]


def file_json(file_id: str = "file-abc", **extra: Any) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": 5,
        "created_at": 1716390396,
        "expires_at": None,
        "filename": "a.txt",
        "purpose": "assistants",
        "status": "processed",
        "status_details": None,
        **extra,
    }


def error_json(message: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}
    }


class Recorder:
    """A scripted server: answers in turn (an exception is raised), and keeps what it got."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        self.bodies.append(request.read())
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer) and not isinstance(answer, httpx.Response):
            return answer(request)
        # A fresh copy each time: httpx binds a response's stream to the client that got it.
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json", "x-request-id": "req_1", **(headers or {})},
    )


def mock_client(recorder: Recorder, **options: Any) -> Client:
    transport = httpx.MockTransport(recorder)
    return Client(KEY, base_url=BASE_URL, http_client=httpx.Client(transport=transport), **options)


def mock_async_client(recorder: Recorder, **options: Any) -> AsyncClient:
    transport = httpx.MockTransport(recorder)
    return AsyncClient(
        KEY, base_url=BASE_URL, http_client=httpx.AsyncClient(transport=transport), **options
    )


class SyncView:
    """`AsyncClient` with `Client`'s blocking methods: one test body covers both drivers."""

    def __init__(self, client: AsyncClient, runner: asyncio.Runner) -> None:
        self._client = client
        self._runner = runner

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            return self._runner.run(method(*args, **kwargs))

        return call

    def iter_files(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        async def collect() -> list[Any]:
            return [f async for f in self._client.iter_files(*args, **kwargs)]

        return iter(self._runner.run(collect()))


def both_drivers(
    make_sync: Callable[[], Client], make_async: Callable[[], AsyncClient], kind: str
) -> Iterator[Any]:
    """Yield a `Client`, or a `SyncView` of an `AsyncClient`, and close it afterwards."""
    if kind == "sync":
        with make_sync() as client:
            yield client
        return
    with asyncio.Runner() as runner:
        aclient = make_async()
        try:
            yield SyncView(aclient, runner)
        finally:
            runner.run(aclient.close())
