"""Batches run by several processes on one PostgreSQL and one S3 bucket: replicas that share a
batch, a replica killed mid-batch, `openai-files batch-worker` beside `serve
--no-batch-runner` stopped with Ctrl-C, and the worker refused on the embedded default.

Which process sent a request is told at the engine by the API key each sends
(`--batch-upstream-api-key`, one per process): the fake engine records every request's
headers."""

from __future__ import annotations

import collections
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_files.testing.engine import FakeEngine

from .. import _batches as B
from .._server import Deployment, ServerProcess, WorkerProcess, openai_files_cli, sql
from .._services import PostgresCluster, SeaweedS3

#: Requests each process sends at once; requests of the batch; the short lease.
CONCURRENCY = 8
LINES = 600
LEASE = 3


@pytest.fixture
def scaleout(postgres: PostgresCluster, s3: SeaweedS3, tmp_path: Path) -> Deployment:
    return Deployment("scaleout", tmp_path, postgres=postgres, s3=s3)


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=0.05).start() as e:
        yield e


def _settings(engine: FakeEngine, **more: str) -> dict[str, str]:
    return {
        "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
        "OPENAI_FILES_BATCH_CONCURRENCY": str(CONCURRENCY),
        "OPENAI_FILES_BATCH_CONCURRENCY_PER_BATCH": str(CONCURRENCY),
        **more,
    }


def _as(name: str) -> dict[str, str]:
    """The settings that make a process send `name` as its key to the engine."""
    return {"OPENAI_FILES_BATCH_UPSTREAM_API_KEY": name}


def _senders(engine: FakeEngine) -> collections.Counter[str]:
    """Requests the engine received, by the key of the process that sent them."""
    return collections.Counter(
        r.headers.get("authorization", "").removeprefix("Bearer ") for r in engine.received
    )


def _sent_again(engine: FakeEngine, count: int = LINES, **extra: Any) -> list[int]:
    """The requests of an input (`B.input_file(count, **extra)`) sent more than once."""
    return [i for i in range(count) if engine.attempts(B.body(i, **extra).encode()) > 1]


def test_two_replicas_share_a_batch_and_one_finishes_it_when_the_other_is_killed(
    scaleout: Deployment, engine: FakeEngine
) -> None:
    victim, survivor = scaleout.replicas(
        2,
        env=_settings(engine, OPENAI_FILES_BATCH_LEASE_SECONDS=str(LEASE)),
        own=[_as("victim"), _as("survivor")],
    )
    try:
        key = survivor.create_key("org_share", "proj_share")
        with B.client(survivor, key) as http:
            batch = B.create(http, B.input_file(LINES))
            # Both replicas' workers run requests of the one batch.
            deadline = time.monotonic() + 60
            while min(_senders(engine)[name] for name in ("victim", "survivor")) < 40:
                assert time.monotonic() < deadline, _senders(engine)
                time.sleep(0.02)
            victim.kill()
            killed = time.monotonic()
            by_victim = _senders(engine)["victim"]
            assert set(_senders(engine)) == {"victim", "survivor"}
            assert B.done(B.get(http, batch["id"])) < LINES  # killed mid-batch
            final = B.wait(http, batch["id"])
            assert final["status"] == "completed", final
            out, errors = B.results(http, final)
    finally:
        victim.kill()
        survivor.stop()
    B.exactly_once(out, errors, LINES)
    assert not errors
    assert _senders(engine)["victim"] == by_victim  # a dead replica sends nothing
    # The victim's requests were taken over once their leases lapsed, not before: only
    # those it had sent when killed went out twice, at most its concurrency.
    again = _sent_again(engine)
    assert len(again) <= CONCURRENCY, again
    last = max(r.at for r in engine.received)
    assert last >= killed + LEASE - 1.5, (last - killed, LEASE)
    assert all(engine.attempts(B.body(i).encode()) >= 1 for i in range(LINES))


@pytest.mark.parametrize(
    "stop", [pytest.param(signal.SIGINT, id="ctrl-c"), pytest.param(signal.SIGTERM, id="sigterm")]
)
def test_a_batch_worker_runs_batches_beside_a_replica_and_gives_them_back_on_ctrl_c(
    scaleout: Deployment, engine: FakeEngine, tmp_path: Path, stop: signal.Signals
) -> None:
    # Ctrl-C in a terminal; SIGTERM from Kubernetes, systemd or `docker stop`: the same stop.
    # The default lease (30 s): the second worker finishes the batch long before the
    # first one's leases would lapse, since the first gave its requests back. Slow answers:
    # the first has all its slots in flight when it is stopped.
    slow: dict[str, Any] = {"fault": {"latency": 0.2}}
    count = 120
    (replica,) = scaleout.replicas(
        1, "--no-batch-runner", env=_settings(engine), own=[_as("replica")]
    )
    workers: list[WorkerProcess] = []

    def worker(name: str) -> WorkerProcess:
        started = WorkerProcess(tmp_path / name / "data", env={**replica.env, **_as(name)})
        workers.append(started)
        return started.start()

    try:
        first = worker("first")
        key = replica.create_key("org_worker", "proj_worker")
        with B.client(replica, key) as http:
            batch = B.create(http, B.input_file(count, **slow))
            # Stopped with requests at the engine (they go in waves of its slots).
            B.wait(http, batch["id"], lambda b: B.done(b) >= 40 and engine.requests > B.done(b))
            assert first.interrupt(sig=stop) == 0, first.log_text()
            stopped = time.monotonic()
            # Its requests were given back as it stopped, not left to lapse.
            running = "SELECT COUNT(*) FROM batch_requests WHERE status = 'running'"
            assert sql(replica, running) == 0
            progress = B.get(http, batch["id"])
            assert progress["status"] == "in_progress"
            assert B.done(progress) < count
            sent = engine.requests
            time.sleep(0.5)
            assert engine.requests == sent  # nobody runs it now: the replica does not
            worker("second")
            final = B.wait(http, batch["id"])
            assert time.monotonic() - stopped < 20  # well before a lease would lapse
            assert final["status"] == "completed", final
            out, errors = B.results(http, final)
    finally:
        for started in workers:
            started.kill()
        replica.stop()
    B.exactly_once(out, errors, count)
    assert not errors
    senders = _senders(engine)
    assert set(senders) == {"first", "second"}, senders  # the replica sent nothing
    # The requests in flight at Ctrl-C were given back unanswered, and sent again by the
    # second worker; no others.
    assert 0 < len(_sent_again(engine, count, **slow)) <= CONCURRENCY


def test_a_batch_worker_refuses_a_data_folder_that_serve_holds(
    engine: FakeEngine, tmp_path: Path
) -> None:
    env = {"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url}
    server = ServerProcess(tmp_path / "data", env=env).start()
    try:
        done = openai_files_cli(
            "batch-worker", "--data-dir", str(tmp_path / "data"), env={**os.environ, **env}
        )
    finally:
        server.stop()
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert "the data folder is held by a server" in message, done.stderr
    assert "`serve` runs batches itself" in message
    assert "Traceback" not in done.stderr
    assert engine.requests == 0
