"""`/readyz` of a replica whose PostgreSQL or S3 stops, or hangs: 503 naming it, in bounded
time, and 200 again once it is back; `/healthz` answers 200 throughout (the process lives)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from openai_files.server import settings as S

from .._server import Deployment, ServerProcess
from .._services import PostgresCluster, SeaweedS3

#: The replicas here wait this long for a store (--ready-timeout-seconds).
TIMEOUT = 1.0
OK = {"database": "ok", "storage": "ok"}


def _replica(pg: PostgresCluster, s3: SeaweedS3, tmp_path: Path) -> ServerProcess:
    deployment = Deployment("scaleout", tmp_path, postgres=pg, s3=s3)
    return deployment.server(env={"OPENAI_FILES_READY_TIMEOUT_SECONDS": str(TIMEOUT)})


def _probe(server: ServerProcess) -> httpx.Response:
    return httpx.get(server.root_url + "/readyz", timeout=30)


def _until(server: ServerProcess, status: int, checks: dict[str, str]) -> None:
    """Probe until the answer is `status` with `checks` (an answer stands for a second, and
    a database pool meets its dead connections first), for at most a minute."""
    deadline = time.monotonic() + 60
    while True:
        r = _probe(server)
        if r.status_code == status and r.json()["checks"] == checks:
            return
        assert time.monotonic() < deadline, (r.status_code, r.text, server.log_text()[-3000:])
        time.sleep(0.2)


def _unready_in_bounded_time(server: ServerProcess, checks: dict[str, str]) -> None:
    """A probe, once the last answer no longer stands, answers 503 with `checks` within the
    timeout and a margin, not when the store wakes; /healthz meanwhile answers at once."""
    time.sleep(S.READY_CACHE_SECONDS)
    started = time.monotonic()
    r = _probe(server)
    elapsed = time.monotonic() - started
    assert r.status_code == 503, r.text
    assert r.json() == {"status": "unavailable", "checks": checks}
    assert elapsed < TIMEOUT + 2, elapsed
    started = time.monotonic()
    assert httpx.get(server.root_url + "/healthz", timeout=30).status_code == 200
    assert time.monotonic() - started < 1


@contextlib.contextmanager
def _frozen(pids: list[int]) -> Iterator[None]:
    """The processes `pids` stopped (SIGSTOP): they hold their sockets and answer nothing,
    as a hung server does; continued at the end."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def _postgres_pids(pg: PostgresCluster) -> list[int]:
    """The cluster's postmaster and every backend and worker it runs."""
    postmaster = psutil.Process(pg.pid)
    return [postmaster.pid, *(p.pid for p in postmaster.children(recursive=True))]


def _s3_pids(s3: SeaweedS3) -> list[int]:
    assert s3.proc is not None
    weed = psutil.Process(s3.proc.pid)
    return [weed.pid, *(p.pid for p in weed.children(recursive=True))]


def test_a_replica_whose_database_stops_or_hangs_is_unready_until_it_is_back(
    own: tuple[PostgresCluster, SeaweedS3], tmp_path: Path
) -> None:
    pg, s3 = own
    server = _replica(pg, s3, tmp_path)
    try:
        assert _probe(server).json() == {"status": "ok", "checks": OK}

        pg.halt()
        _unready_in_bounded_time(server, {"database": "error", "storage": "ok"})
        pg.resume()
        _until(server, 200, OK)

        with _frozen(_postgres_pids(pg)):
            _unready_in_bounded_time(server, {"database": "timeout", "storage": "ok"})
        _until(server, 200, OK)

        log = server.log_text()
        assert "readiness: the database does not answer (error)" in log
        timed_out = f"readiness: the database does not answer (timeout): no answer in {TIMEOUT:g} s"
        assert timed_out in log
        assert "readiness: the database answers again" in log
    finally:
        server.stop()


def test_a_replica_whose_storage_stops_or_hangs_is_unready_until_it_is_back(
    own: tuple[PostgresCluster, SeaweedS3], tmp_path: Path
) -> None:
    pg, s3 = own
    server = _replica(pg, s3, tmp_path)
    try:
        assert _probe(server).json() == {"status": "ok", "checks": OK}

        s3.halt()
        _unready_in_bounded_time(server, {"database": "ok", "storage": "error"})
        s3.start()
        _until(server, 200, OK)

        with _frozen(_s3_pids(s3)):
            _unready_in_bounded_time(server, {"database": "ok", "storage": "timeout"})
        _until(server, 200, OK)

        log = server.log_text()
        assert "readiness: the storage does not answer (error)" in log
        assert "readiness: the storage does not answer (timeout)" in log
        assert "readiness: the storage answers again" in log
    finally:
        server.stop()
