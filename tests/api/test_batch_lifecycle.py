"""A running batch whose world changes under it: its completion window passes (the clock
moved on: its `expires_at` set in the past in the database), or its input file is deleted.
On both deployments, the app in this process, against the fake engine."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from openai_files.testing.engine import FakeEngine

from .. import _batches as B
from .._inprocess import AppServer
from .._server import Deployment, sql

CONCURRENCY = 4
#: How long the engine takes to answer each request.
LATENCY = 0.1


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=LATENCY).start() as e:
        yield e


@pytest.fixture(scope="module")
def app(deployment: Deployment, engine: FakeEngine) -> Iterator[AppServer]:
    server = deployment.app(
        {
            "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
            "OPENAI_FILES_BATCH_CONCURRENCY": str(CONCURRENCY),
        }
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def http(app: AppServer) -> Iterator[httpx.Client]:
    tenant = uuid.uuid4().hex[:10]
    with app.http(app.create_key(f"org_{tenant}", f"proj_{tenant}"), timeout=30) as client:
        yield client


def _sweep(app: AppServer) -> None:
    """One sweep with no grace: every object no row names goes."""
    app.portal.call(app.app.state.service.sweep, 0)


def _exists(app: AppServer, key: str) -> bool:
    blobs = app.app.state.service.blobs

    async def run() -> bool:
        try:
            async for _ in blobs.read(key, 0, 1):
                break
        except FileNotFoundError:
            return False
        return True

    return bool(app.portal.call(run))


def test_a_batch_whose_window_passes_ends_expired(
    app: AppServer, http: httpx.Client, engine: FakeEngine
) -> None:
    count = 100
    batch = B.create(http, B.input_file(count, model="expiring"))
    B.wait(http, batch["id"], lambda b: b["request_counts"]["completed"] >= 10)
    moved = int(time.time()) - 1
    sql(app, "UPDATE batches SET expires_at = ? WHERE id = ?", moved, batch["id"])
    ended = B.wait(http, batch["id"], timeout=30)
    sent = engine.requests
    assert ended["status"] == "expired", ended
    assert ended["expired_at"] is not None and ended["expired_at"] >= moved
    assert ended["expires_at"] == moved
    assert ended["completed_at"] is None
    out, errors = B.results(http, ended)
    B.exactly_once(out, errors, count)
    # What finished is in the output; every other request in the error file, as expired.
    assert len(out) >= 10
    assert all(line["response"]["status_code"] == 200 for line in out)
    assert len(errors) == count - len(out) > 0
    for line in errors:
        assert line["response"] is None
        assert line["error"]["code"] == "batch_expired", line
    assert ended["request_counts"] == {
        "total": count,
        "completed": len(out),
        "failed": count - len(out),
    }
    # Nothing is sent once it ended.
    time.sleep(1.5)  # three of the worker's looks
    assert engine.requests == sent


def test_a_batch_whose_input_is_deleted_runs_on_and_the_bytes_go_once_it_ended(
    app: AppServer, http: httpx.Client, engine: FakeEngine
) -> None:
    count = 80
    batch = B.create(http, B.input_file(count, model="orphaned"))
    file_id = batch["input_file_id"]
    key = sql(app, "SELECT blob_key FROM files WHERE id = ?", file_id)
    assert key
    B.wait(http, batch["id"], lambda b: b["request_counts"]["completed"] >= 4)
    deleted = http.delete(f"/files/{file_id}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert http.get(f"/files/{file_id}").status_code == 404
    # The batch running names the bytes: a sweep keeps them.
    _sweep(app)
    assert _exists(app, key)
    assert B.get(http, batch["id"])["status"] == "in_progress"
    ended = B.wait(http, batch["id"], timeout=60)
    assert ended["status"] == "completed", ended
    out, errors = B.results(http, ended)
    B.exactly_once(out, errors, count)
    assert not errors
    # Ended, the batch names them no more: the next sweep removes them.
    assert _exists(app, key)
    _sweep(app)
    assert not _exists(app, key)
    # Its output is whole still.
    assert len(B.lines(http, ended["output_file_id"])) == count
