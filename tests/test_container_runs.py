"""What the container files configure, run here without a container engine: the image's
HEALTHCHECK command against a real server, and Caddy with the Caddyfile's config in front of
real servers, sending requests only to those whose /readyz answers 200."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ._caddy import adapted_caddyfile, caddy_bin, only_server, proxy_of
from ._server import ServerProcess
from ._services import LOOPBACK, free_port
from .test_container_files import healthcheck


def _port(server: ServerProcess) -> int:
    port = urlsplit(server.base_url).port
    assert port is not None
    return port


def _run_healthcheck(port: int) -> subprocess.CompletedProcess[str]:
    """The image's health check command, as Docker runs it in a container serving on
    `port` (`python` is the Python in use)."""
    _, command = healthcheck()
    return subprocess.run(
        [sys.executable, *command[1:]],
        env={**os.environ, "OPENAI_FILES_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_image_health_check_passes_while_the_server_answers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        port = _port(server)
        done = _run_healthcheck(port)
        assert done.returncode == 0, done.stderr
        # Liveness: the data folder gone makes the server unready, not unhealthy.
        os.rename(server.data_dir, tmp_path / "moved-away")
        time.sleep(1)
        assert httpx.get(server.root_url + "/readyz").status_code == 503
        assert _run_healthcheck(port).returncode == 0
        os.rename(tmp_path / "moved-away", server.data_dir)
    finally:
        server.stop()
    gone = _run_healthcheck(port)
    assert gone.returncode == 1  # Docker's "unhealthy" (2 is reserved)
    assert "Connection refused" in gone.stderr


# -- Caddy in front of two replicas --


@contextlib.contextmanager
def _caddy(upstreams: list[ServerProcess], tmp_path: Path) -> Iterator[str]:
    """Caddy running the Caddyfile's config, its listener and replicas moved to loopback
    addresses of this test (everything else as written); its URL."""
    config = adapted_caddyfile()
    port = free_port()
    only_server(config)["listen"] = [f"{LOOPBACK}:{port}"]
    proxy = proxy_of(config)
    assert len(proxy["upstreams"]) == len(upstreams)
    proxy["upstreams"] = [{"dial": f"{LOOPBACK}:{_port(s)}"} for s in upstreams]
    path = tmp_path / "caddy.json"
    path.write_text(json.dumps(config))
    home = tmp_path / "caddy-home"
    home.mkdir()
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
    }
    log = open(tmp_path / "caddy.log", "wb")  # noqa: SIM115 - the child keeps it
    proc = subprocess.Popen(
        [caddy_bin(), "run", "--config", str(path)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    log.close()
    url = f"http://{LOOPBACK}:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                    break
            assert proc.poll() is None, (tmp_path / "caddy.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "caddy.log").read_text()
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def _unready(server: ServerProcess) -> Iterator[None]:
    """The server's data folder moved away (its /readyz answers 503), then put back."""
    away = server.data_dir.with_name("moved-away")
    os.rename(server.data_dir, away)
    try:
        time.sleep(1)  # the replica's last answer stands a second
        assert httpx.get(server.root_url + "/readyz").status_code == 503
        yield
    finally:
        os.rename(away, server.data_dir)


def _eventually(condition: Callable[[], bool], seconds: float = 20) -> None:
    """Caddy asks every 2 s: the condition holds within a few rounds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the load balancer did not follow readiness"
        time.sleep(0.2)


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    """Two embedded servers, each with a database of its own: a key works on the one that
    made it, so an answer tells which replica gave it."""
    servers = [ServerProcess(tmp_path / f"replica-{n}" / "data").start() for n in (1, 2)]
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()


def test_the_load_balancer_sends_requests_to_ready_replicas_only(
    replicas: list[ServerProcess], tmp_path: Path
) -> None:
    first, second = replicas
    assert first.first_key is not None
    with _caddy(replicas, tmp_path) as url:
        http = httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {first.first_key}"}, timeout=30
        )

        def answered(n: int = 12) -> set[int]:
            """The statuses of `n` listings: 200 from the first replica, 401 from the
            second (which does not know the key)."""
            return {http.get("/v1/files").status_code for _ in range(n)}

        with http:
            assert answered() == {200, 401}  # both in rotation

            with _unready(second):
                _eventually(lambda: answered() == {200})
                assert answered(30) == {200}
            _eventually(lambda: answered() == {200, 401})

            with _unready(first):
                _eventually(lambda: answered() == {401})

            # None ready: the load balancer answers 503 itself.
            with _unready(first), _unready(second):
                _eventually(lambda: http.get("/readyz").status_code == 503)
            _eventually(lambda: answered() == {200, 401})

            # The web console, through the load balancer.
            page = http.get("/")
            assert page.status_code == 200
            assert "<title>Files · openai-files console</title>" in page.text
            assert http.get("/readyz").json()["status"] == "ok"

            # A replica that stops: a request that cannot connect to it goes to the other,
            # at once (before a health check sees it).
            second.stop()
            assert answered(30) == {200}
