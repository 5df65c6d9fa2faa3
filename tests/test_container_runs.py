"""What the container files configure, run here without a container engine: the image's
HEALTHCHECK command against a real server, and Caddy with the Caddyfile's config in front of
real servers, sending requests only to those whose /readyz answers 200."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai
import pytest
from deploy.healthcheck import STALE_SECONDS

from openai_files.server import settings as S

from ._caddy import adapted_caddyfile, caddy_bin, only_server, proxy_of
from ._server import ServerProcess, WorkerProcess
from ._services import LOOPBACK, free_port
from .api._contract import assert_error
from .test_container_files import healthcheck, healthcheck_script


def _port(server: ServerProcess) -> int:
    port = urlsplit(server.base_url).port
    assert port is not None
    return port


def _dead_proxies() -> dict[str, str]:
    """Proxy settings that Docker may give a container (from the daemon's or the client's
    config), naming an address where nothing listens: a check that followed them fails."""
    dead = f"http://{LOOPBACK}:{free_port()}"
    return {name: dead for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY")}


def _run_healthcheck(port: int, heartbeat: Path) -> subprocess.CompletedProcess[str]:
    """The image's health check command, as Docker runs it in a container serving on `port`
    whose heartbeat file is `heartbeat` (`python` is the Python in use), with proxies set."""
    _, command = healthcheck()
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(_dead_proxies())
    env.update({"OPENAI_FILES_PORT": str(port), "OPENAI_FILES_HEARTBEAT_FILE": str(heartbeat)})
    return subprocess.run(
        [sys.executable, str(healthcheck_script()), *command[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_image_health_check_passes_while_the_server_answers(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    beat = tmp_path / "heartbeat"  # the image names one; `serve` writes none
    try:
        port = _port(server)
        done = _run_healthcheck(port, beat)
        assert done.returncode == 0, done.stderr  # asked directly, though proxies are set
        # Liveness: the data folder gone makes the server unready, not unhealthy.
        os.rename(server.data_dir, tmp_path / "moved-away")
        time.sleep(1)
        assert httpx.get(server.root_url + "/readyz").status_code == 503
        assert _run_healthcheck(port, beat).returncode == 0
        os.rename(tmp_path / "moved-away", server.data_dir)
    finally:
        server.stop()
    assert not beat.exists()
    gone = _run_healthcheck(port, beat)
    assert gone.returncode == 1  # Docker's "unhealthy" (2 is reserved)
    assert "Connection refused" in gone.stderr


def test_the_image_health_check_follows_the_batch_worker_by_its_heartbeat(
    tmp_path: Path,
) -> None:
    """`batch-worker` serves nothing: the check reads the age of the heartbeat file it
    touches every HEARTBEAT_SECONDS, and finds it stale once the worker stops running."""
    beat, port = tmp_path / "heartbeat", free_port()  # nothing listens on `port`
    env = {
        "OPENAI_FILES_HEARTBEAT_FILE": str(beat),
        "OPENAI_FILES_BATCH_UPSTREAM_URL": f"http://{LOOPBACK}:{free_port()}/v1",
    }
    worker = WorkerProcess(tmp_path / "data", env=env).start()
    assert worker.proc is not None
    try:
        assert beat.exists()
        done = _run_healthcheck(port, beat)
        assert done.returncode == 0, done.stderr
        # A worker whose event loop no longer runs: its file ages (made old at once here,
        # rather than waited for), and the check says so.
        worker.proc.send_signal(signal.SIGSTOP)
        old = time.time() - 2 * STALE_SECONDS
        os.utime(beat, (old, old))
        stale = _run_healthcheck(port, beat)
        assert stale.returncode == 1
        assert f"the batch worker's heartbeat {beat} is" in stale.stderr
        # Running again, it touches the file within a beat.
        worker.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + S.HEARTBEAT_SECONDS + 10
        while _run_healthcheck(port, beat).returncode != 0:
            assert time.monotonic() < deadline, worker.log_text()
            time.sleep(0.5)
        assert worker.interrupt(sig=signal.SIGTERM) == 0, worker.log_text()
    finally:
        worker.proc.send_signal(signal.SIGCONT)
        worker.kill()
    # Stopped, it removed the file: the check asks /healthz, which nothing answers.
    assert not beat.exists()
    gone = _run_healthcheck(port, beat)
    assert gone.returncode == 1 and "Connection refused" in gone.stderr


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


def _from_caddy(answer: httpx.Response) -> bool:
    """Whether Caddy answered itself: its Server header, and no Via (which it adds to an
    answer it passes on from a replica, whose own Server header comes along)."""
    return answer.headers.get_list("server") == ["Caddy"] and "via" not in answer.headers


def _caddy_error_message(status: int) -> str:
    """The message of the Caddyfile's answer when a request ends in `status` (its
    handle_errors routes)."""
    for route in only_server(adapted_caddyfile())["errors"]["routes"]:
        [match] = route["match"]
        codes = match["expression"].partition(" in ")[2]
        if status in json.loads(codes):
            [sub] = route["handle"]
            [handled] = sub["routes"]
            [respond] = [h for h in handled["handle"] if h["handler"] == "static_response"]
            message: str = json.loads(respond["body"])["error"]["message"]
            return message
    raise AssertionError(f"the Caddyfile has no answer for {status}")


def _try_seconds() -> float:
    """How long Caddy looks for a replica to take a request (lb_try_duration)."""
    seconds: float = proxy_of(adapted_caddyfile())["load_balancing"]["try_duration"] / 1e9
    return seconds


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

            # None ready: the load balancer answers itself, soon, in OpenAI's error shape
            # with a Retry-After (a replica's own 503 would name the replica's server and
            # come through Caddy's Via).
            with _unready(first), _unready(second):
                _eventually(lambda: _from_caddy(http.get("/v1/files")))
                started = time.monotonic()
                answer = http.get("/v1/files")
                waited = time.monotonic() - started
                assert _from_caddy(answer), (answer.headers, answer.text)
                assert waited < _try_seconds() + 1.5, waited
                assert_error(answer, 503, _caddy_error_message(503), error_type="server_error")
                assert answer.headers["retry-after"] == "2"
                # What an SDK user sees: a 503 with the message, retried after Retry-After.
                with (
                    openai.OpenAI(
                        base_url=url + "/v1", api_key=first.first_key, max_retries=0
                    ) as sdk,
                    pytest.raises(openai.InternalServerError) as raised,
                ):
                    sdk.files.list()
                assert raised.value.status_code == 503
                assert raised.value.body == answer.json()["error"] | {
                    "message": _caddy_error_message(503)
                }
                # It retries a 503, after the Retry-After.
                started = time.monotonic()
                with (
                    openai.OpenAI(
                        base_url=url + "/v1", api_key=first.first_key, max_retries=1
                    ) as sdk,
                    pytest.raises(openai.InternalServerError),
                ):
                    sdk.files.list()
                # Two waits of Caddy's and the Retry-After: its own pause would be ~0.5 s.
                assert time.monotonic() - started >= 2 * _try_seconds() + 2 - 0.2
            _eventually(lambda: answered() == {200, 401})
            # Ready again: answers are the replicas' own, through Caddy.
            proxied = http.get("/v1/files")
            assert proxied.status_code in (200, 401) and not _from_caddy(proxied)

            # The web console, through the load balancer.
            page = http.get("/")
            assert page.status_code == 200
            assert "<title>Files · openai-files console</title>" in page.text
            assert http.get("/readyz").json()["status"] == "ok"

            # A replica that stops: a request that cannot connect to it goes to the other,
            # at once (before a health check sees it).
            second.stop()
            assert answered(30) == {200}

            # None left (both stopped, before a health check sees it): Caddy's answer,
            # in the same shape, whether it found no replica (503) or one that refused (502).
            first.stop()
            answer = http.get("/v1/files")
            assert _from_caddy(answer), (answer.headers, answer.text)
            assert answer.status_code in (502, 503)
            assert_error(
                answer,
                answer.status_code,
                _caddy_error_message(answer.status_code),
                error_type="server_error",
            )
            assert answer.headers["retry-after"] == "2"
