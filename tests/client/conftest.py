"""Fixtures of the client tests: a client of either driver on the real server or a mock."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from openai_files import AsyncClient, Client, _client
from openai_files.testing.engine import FakeEngine

from .._server import Deployment, ServerProcess
from ._helpers import Recorder, both_drivers, mock_async_client, mock_client


@pytest.fixture
def env(server: ServerProcess, api_key: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment variables that point the client at the test server."""
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", api_key)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    return {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url}


@pytest.fixture(params=["sync", "async"])
def files(request: pytest.FixtureRequest, server: ServerProcess, api_key: str) -> Iterator[Any]:
    """`Client` or (through a blocking view) `AsyncClient`, on the real server."""
    options: dict[str, Any] = {"base_url": server.base_url, "max_retries": 0}
    yield from both_drivers(
        lambda: Client(api_key, **options), lambda: AsyncClient(api_key, **options), request.param
    )


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits asked for, recorded instead of slept."""
    waits: list[float] = []

    async def asleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(_client, "_sleep", waits.append)
    monkeypatch.setattr(_client, "_asleep", asleep)
    return waits


@pytest.fixture(params=["sync", "async"])
def drive(request: pytest.FixtureRequest, sleeps: list[float]) -> Any:
    """Make a client of either driver on a scripted server."""
    made: list[Iterator[Any]] = []

    def make(recorder: Recorder, **options: Any) -> Any:
        gen = both_drivers(
            lambda: mock_client(recorder, **options),
            lambda: mock_async_client(recorder, **options),
            request.param,
        )
        made.append(gen)
        return next(gen)

    yield make
    for gen in made:
        next(gen, None)


@pytest.fixture(scope="session")
def engine() -> Iterator[FakeEngine]:
    """The fake OpenAI-compatible engine that batches run against."""
    with FakeEngine().start() as e:
        yield e


@pytest.fixture(scope="session")
def batch_server(deployment: Deployment, engine: FakeEngine) -> Iterator[ServerProcess]:
    """A server whose batches run against the fake engine (its retries quick)."""
    proc = deployment.server(
        env={
            "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
            "OPENAI_FILES_BATCH_RETRY_BASE_SECONDS": "0.05",
        }
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def batch_key(batch_server: ServerProcess) -> str:
    """A key of a fresh organization and project on the batch server."""
    suffix = uuid.uuid4().hex[:10]
    return batch_server.create_key(f"org-{suffix}", f"proj_{suffix}")


@pytest.fixture(params=["sync", "async"])
def batches(
    request: pytest.FixtureRequest, batch_server: ServerProcess, batch_key: str
) -> Iterator[Any]:
    """`Client` or (through a blocking view) `AsyncClient`, on the batch server."""
    options: dict[str, Any] = {"base_url": batch_server.base_url, "max_retries": 0}
    yield from both_drivers(
        lambda: Client(batch_key, **options),
        lambda: AsyncClient(batch_key, **options),
        request.param,
    )
