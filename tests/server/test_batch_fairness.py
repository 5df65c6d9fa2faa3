"""Fairness between batches: a small batch created after a large one of the same project
runs beside it at once (it is not queued behind it), and a tenant's batch created while
another tenant's large batch holds every slot gets about half of them, also when that
tenant runs batches in several projects. On both deployments, against the fake engine (a
fixed latency: the share of requests that arrive in a window is the share of the slots
held over it)."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator

import pytest

from openai_files.testing.engine import FakeEngine

from .. import _batches as B
from .._server import Deployment, ServerProcess

CONCURRENCY = 16
LARGE = 3000
LATENCY = 0.02


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=LATENCY).start() as e:
        yield e


@pytest.fixture(scope="module")
def fair_server(deployment: Deployment, engine: FakeEngine) -> Iterator[ServerProcess]:
    server = deployment.server(
        env={
            "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
            "OPENAI_FILES_BATCH_CONCURRENCY": str(CONCURRENCY),
        }
    )
    try:
        yield server
    finally:
        server.stop()


def _key(server: ServerProcess) -> str:
    tenant = uuid.uuid4().hex[:10]
    return server.create_key(f"org_{tenant}", f"proj_{tenant}")


def _models(engine: FakeEngine) -> list[tuple[float, str]]:
    """When each request arrived at the engine, and the model it named."""
    return [(r.at, str(json.loads(r.body)["model"])) for r in engine.received]


def test_a_small_batch_runs_beside_a_large_one_of_its_project(
    fair_server: ServerProcess, engine: FakeEngine
) -> None:
    with B.client(fair_server, _key(fair_server)) as http:
        large = B.create(http, B.input_file(LARGE, model="large"))
        B.wait(http, large["id"], lambda b: B.done(b) >= CONCURRENCY)  # every slot taken
        small = B.create(http, B.input_file(10, model="small", prefix="s"))
        ended = B.wait(http, small["id"])
        progress = B.done(B.get(http, large["id"]))
        assert ended["status"] == "completed", ended
        out, errors = B.results(http, ended)
        B.exactly_once(out, errors, 10, prefix="s")
        assert progress < 0.4 * LARGE, progress  # long before the large one is half done
        assert http.post(f"/batches/{large['id']}/cancel").status_code == 200
        assert B.wait(http, large["id"])["status"] == "cancelled"


def test_a_later_tenant_gets_half_the_slots(fair_server: ServerProcess, engine: FakeEngine) -> None:
    engine.clear()
    with (
        B.client(fair_server, _key(fair_server)) as first,
        B.client(fair_server, _key(fair_server)) as second,
    ):
        large = B.create(first, B.input_file(LARGE, model="tenant-a"))
        B.wait(first, large["id"], lambda b: B.done(b) >= CONCURRENCY)
        later = B.create(second, B.input_file(400, model="tenant-b"))
        ended = B.wait(second, later["id"])
        still = B.get(first, large["id"])
        assert ended["status"] == "completed", ended
        assert still["status"] == "in_progress"  # the two overlapped throughout
        assert first.post(f"/batches/{large['id']}/cancel").status_code == 200
        assert B.wait(first, large["id"])["status"] == "cancelled"
    arrivals = _models(engine)
    of_b = [at for at, model in arrivals if model == "tenant-b"]
    assert len(of_b) == 400
    window = [model for at, model in arrivals if of_b[0] <= at <= of_b[-1]]
    share = window.count("tenant-b") / len(window)
    assert share >= 0.35, (share, len(window))
    # Never starved: tenant B's requests keep arriving all along the window.
    gaps = [b - a for a, b in itertools.pairwise(of_b)]
    assert max(gaps) < 1.0, max(gaps)


def test_an_organization_with_many_projects_gets_no_more_than_one_with_one(
    fair_server: ServerProcess, engine: FakeEngine
) -> None:
    """Slots go to organizations first, then projects, then batches: an organization
    running large batches in three projects does not get three shares against a later
    organization's one batch (project first, that one would get a quarter)."""
    engine.clear()
    many = "org_" + uuid.uuid4().hex[:10]
    keys = [fair_server.create_key(many, f"proj_{uuid.uuid4().hex[:10]}") for _ in range(3)]
    clients = [B.client(fair_server, key) for key in keys]
    try:
        larges = [
            B.create(http, B.input_file(LARGE, model=f"many-{i}")) for i, http in enumerate(clients)
        ]
        for http, large in zip(clients, larges, strict=True):
            B.wait(http, large["id"], lambda b: B.done(b) >= 1)  # each project runs
        with B.client(fair_server, _key(fair_server)) as other:
            later = B.create(other, B.input_file(400, model="one"))
            ended = B.wait(other, later["id"])
        assert ended["status"] == "completed", ended
        for http, large in zip(clients, larges, strict=True):
            assert B.get(http, large["id"])["status"] == "in_progress"  # overlapped
            assert http.post(f"/batches/{large['id']}/cancel").status_code == 200
            assert B.wait(http, large["id"])["status"] == "cancelled"
    finally:
        for http in clients:
            http.close()
    arrivals = _models(engine)
    of_one = [at for at, model in arrivals if model == "one"]
    assert len(of_one) == 400
    window = [model for at, model in arrivals if of_one[0] <= at <= of_one[-1]]
    share = window.count("one") / len(window)
    assert share >= 0.4, (share, len(window))
