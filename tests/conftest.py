"""Shared fixtures: one real server per session, a fresh tenant per test.

tests/api swaps the server for the app running in the test process (tests/api/conftest.py);
the tests that need a socket or a process of their own (crash, replicas, the CLI, connection
limits, logs) keep the real one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from ._litellm import LiteLLMProxy, proxy_or_skip
from ._server import Deployment, ServerProcess, _run
from ._services import PostgresCluster, SeaweedS3

DEPLOYMENTS = ["embedded", "scaleout"]


@pytest.fixture(scope="session", params=DEPLOYMENTS)
def deployment(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    """Each API test runs on both: {SQLite, local folder} and {PostgreSQL, S3}."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "scaleout":
        return Deployment(
            "scaleout",
            root,
            postgres=request.getfixturevalue("postgres"),
            s3=request.getfixturevalue("s3"),
        )
    return Deployment("embedded", root)


@pytest.fixture(scope="session")
def server(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server on the deployment under test, on a free loopback port."""
    proc = deployment.server()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def new_key(server: ServerProcess) -> Callable[..., str]:
    """Make a key for a fresh organization and project (or the ones given)."""

    def make(org: str | None = None, project: str | None = None) -> str:
        suffix = uuid.uuid4().hex[:10]
        return server.create_key(org or f"org-{suffix}", project or f"proj_{suffix}")

    return make


@pytest.fixture
def api_key(new_key: Callable[..., str]) -> str:
    return new_key()


@pytest.fixture
def client(server: ServerProcess, api_key: str) -> Iterator[openai.OpenAI]:
    """The official SDK, as a tenant with no files yet."""
    with openai.OpenAI(base_url=server.base_url, api_key=api_key, max_retries=0) as c:
        yield c


@pytest.fixture
def aclient(server: ServerProcess, api_key: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key=api_key, max_retries=0)


@pytest.fixture
def data_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    def make(name: str, content: bytes) -> Path:
        path = tmp_path / name
        path.write_bytes(content)
        return path

    return make


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


async def _no_fsync(url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        await conn.execute("ALTER SYSTEM SET fsync = off")
        await conn.execute("SELECT pg_reload_conf()")
        # The reload is asynchronous: wait until new sessions see it.
        for _ in range(200):
            check = await asyncpg.connect(url)
            try:
                if await check.fetchval("SHOW fsync") == "off":
                    return
            finally:
                await check.close()
            await asyncio.sleep(0.05)
        raise RuntimeError("PostgreSQL did not take fsync = off")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster on loopback (started on first use).

    Without fsync: a commit still writes its WAL to the kernel before it returns, so a
    server killed (or stopped in immediate mode, as the outage tests stop it) keeps every
    commit; only a crash of the machine itself, which no test makes, could lose one. It
    makes the scale-out tests' databases and commits about twice as fast."""
    cluster = PostgresCluster().start()
    _run(_no_fsync(cluster.url()))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[SeaweedS3]:
    """A throwaway SeaweedFS S3 server on loopback (started on first use)."""
    server = SeaweedS3().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def litellm_proxy() -> Iterator[LiteLLMProxy]:
    """LiteLLM's proxy on loopback, answering from mock responses (tests/_litellm.py): an
    OpenAI-compatible engine for the batch tests."""
    proxy = proxy_or_skip()
    try:
        yield proxy
    finally:
        proxy.stop()
