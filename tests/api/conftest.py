"""The route, service and multipart tests run against the app in this process (no socket):
`server` here is an `AppServer` of the deployment under test."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest

from .._inprocess import AppServer
from .._server import Deployment


@pytest.fixture(scope="session")
def server(deployment: Deployment) -> Iterator[AppServer]:
    """The app of the deployment under test, started in this process."""
    app = deployment.app()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def client(server: AppServer, api_key: str) -> Iterator[openai.OpenAI]:
    """The official SDK, as a tenant with no files yet."""
    with server.openai(api_key) as c:
        yield c


@pytest.fixture
def aclient(server: AppServer, api_key: str) -> openai.AsyncOpenAI:
    return server.async_openai(api_key)
