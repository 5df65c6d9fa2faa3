"""What one batch may make a worker hold: the bodies it holds add up to at most
`BATCH_BODY_BUDGET_BYTES` (one alone may pass it), and finalizing reads results a bounded
page at a time. The bounds are made small here, so that a few requests reach them."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator

import pytest

from openai_files.server import settings as S
from openai_files.testing.engine import FakeEngine

from .._server import Deployment

KiB = 1024
BODY = 200 * KiB


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=0.3).start() as e:
        yield e


def test_the_bodies_a_worker_holds_stay_within_the_budget(
    deployment: Deployment, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Room for two bodies at a time, for six requests of 200 KiB at a concurrency of 64.
    monkeypatch.setattr(S, "BATCH_BODY_BUDGET_BYTES", 2 * BODY + KiB)
    # A page of one answer at a time: each is about 1 KiB.
    monkeypatch.setattr(S, "BATCH_RESULT_PAGE_BYTES", 1)
    server = deployment.app({"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url})
    try:
        tenant = uuid.uuid4().hex[:8]
        key = server.create_key(f"org_{tenant}", f"proj_{tenant}")
        with server.openai(key) as client:
            lines = [
                json.dumps(
                    {
                        "custom_id": f"big-{i}",
                        "method": "POST",
                        "url": "/v1/chat/completions",
                        "body": {"model": "m", "messages": [], "pad": str(i) * BODY},
                    }
                )
                for i in range(6)
            ]
            data = ("\n".join(lines) + "\n").encode()
            file = client.files.create(file=("big.jsonl", io.BytesIO(data)), purpose="batch")
            batch = client.batches.create(
                input_file_id=file.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
            deadline = time.monotonic() + 60
            while batch.status not in ("completed", "failed"):
                assert time.monotonic() < deadline
                time.sleep(0.1)
                batch = client.batches.retrieve(batch.id)
            assert batch.status == "completed", batch
            assert batch.output_file_id is not None
            out = client.files.content(batch.output_file_id).text.splitlines()
            assert [json.loads(line)["custom_id"] for line in out] == [f"big-{i}" for i in range(6)]
    finally:
        server.stop()
    arrivals = sorted(r.at for r in engine.received)
    assert len(arrivals) == 6
    # Each answer takes 0.3 s: never more than two requests at the engine at once.
    for t in arrivals:
        assert sum(1 for u in arrivals if t <= u < t + 0.25) <= 2, arrivals


def test_batches_that_find_the_budget_full_run_once_bodies_are_given_back(
    deployment: Deployment, engine: FakeEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two batches of large bodies, room for two bodies: the one whose claim finds the
    budget full waits for bytes to be given back, then runs; neither stalls."""
    monkeypatch.setattr(S, "BATCH_BODY_BUDGET_BYTES", 2 * BODY + KiB)
    server = deployment.app({"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url})
    try:
        tenant = uuid.uuid4().hex[:8]
        key = server.create_key(f"org_{tenant}", f"proj_{tenant}")
        with server.openai(key) as client:
            batches = []
            for name in ("a", "b"):
                lines = [
                    json.dumps(
                        {
                            "custom_id": f"{name}-{i}",
                            "method": "POST",
                            "url": "/v1/chat/completions",
                            "body": {"model": name, "messages": [], "pad": str(i) * BODY},
                        }
                    )
                    for i in range(3)
                ]
                data = ("\n".join(lines) + "\n").encode()
                file = client.files.create(
                    file=(f"{name}.jsonl", io.BytesIO(data)), purpose="batch"
                )
                batches.append(
                    client.batches.create(
                        input_file_id=file.id,
                        endpoint="/v1/chat/completions",
                        completion_window="24h",
                    )
                )
            deadline = time.monotonic() + 60
            for batch in batches:
                while batch.status not in ("completed", "failed"):
                    assert time.monotonic() < deadline, batch
                    time.sleep(0.1)
                    batch = client.batches.retrieve(batch.id)
                assert batch.status == "completed", batch
                assert batch.request_counts is not None and batch.request_counts.completed == 3
    finally:
        server.stop()
    models = sorted(json.loads(r.body)["model"] for r in engine.received)
    assert models == ["a"] * 3 + ["b"] * 3
