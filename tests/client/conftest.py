"""Fixtures of the client tests: a client of either driver on the real server or a mock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from openai_files import AsyncClient, Client, _client

from .._server import ServerProcess
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
