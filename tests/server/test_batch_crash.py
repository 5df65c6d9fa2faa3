"""Durable batches: a server killed with SIGKILL at any moment of a batch, then started again
on the same stores, finishes the batch; only the requests in flight at the kill are sent
again (at most the concurrency), and every `custom_id` is in the output and error files
together exactly once. On both deployments."""

from __future__ import annotations

import collections
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_files.testing.engine import FakeEngine

from .._server import Deployment, ServerProcess, openai_files_cli

CONCURRENCY = 8
LINES = 240


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=0.05).start() as e:
        yield e


def _body(i: int) -> str:
    return json.dumps({"model": "m", "messages": [{"role": "user", "content": f"line {i}"}]})


def _batch_file() -> bytes:
    return b"".join(
        (
            f'{{"custom_id": "r{i}", "method": "POST", "url": "/v1/chat/completions", '
            f'"body": {_body(i)}}}\n'
        ).encode()
        for i in range(LINES)
    )


def _start(data_dir: Path, env: dict[str, str]) -> ServerProcess:
    return ServerProcess(data_dir, env=env).start()


def _wait(http: httpx.Client, batch_id: str, until: Any, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        batch: dict[str, Any] = http.get(f"/v1/batches/{batch_id}").json()
        if until(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)


def _client(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.root_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def _lines(http: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    answer = http.get(f"/v1/files/{file_id}/content")
    assert answer.status_code == 200
    return [json.loads(line) for line in answer.text.splitlines()]


@pytest.mark.parametrize("kill_after", [0, 60, 180], ids=["at-create", "early", "late"])
def test_a_batch_killed_mid_run_finishes_exactly_once(
    deployment: Deployment, engine: FakeEngine, tmp_path: Path, kill_after: int
) -> None:
    env = deployment.env(
        OPENAI_FILES_BATCH_UPSTREAM_URL=engine.url,
        OPENAI_FILES_BATCH_CONCURRENCY=str(CONCURRENCY),
        OPENAI_FILES_BATCH_CONCURRENCY_PER_BATCH=str(CONCURRENCY),
        # On PostgreSQL the restarted server takes the killed one's requests over once
        # their leases lapse (the embedded one at once, alone on its data).
        OPENAI_FILES_BATCH_LEASE_SECONDS="3",
    )
    if deployment.name == "scaleout":
        done = openai_files_cli("migrate", env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
    data_dir = tmp_path / "data"
    server = _start(data_dir, env)
    try:
        key = server.first_key or server.create_key("org_crash", "proj_crash")
        with _client(server, key) as http:
            uploaded = http.post(
                "/v1/files",
                files={"file": ("requests.jsonl", _batch_file())},
                data={"purpose": "batch"},
            )
            assert uploaded.status_code == 200, uploaded.text
            created = http.post(
                "/v1/batches",
                json={
                    "input_file_id": uploaded.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            ).json()
            if kill_after:
                _wait(http, created["id"], lambda b: b["request_counts"]["completed"] >= kill_after)
        server.kill()
        assert engine.requests < LINES  # killed mid-run
        server = _start(data_dir, env)
        with _client(server, key) as http:
            final = _wait(http, created["id"], lambda b: b["status"] in ("completed", "failed"))
            assert final["status"] == "completed", final
            counts = final["request_counts"]
            out = _lines(http, final["output_file_id"])
            errors = _lines(http, final["error_file_id"])
    finally:
        server.kill()
    ids = collections.Counter(line["custom_id"] for line in out + errors)
    assert ids == collections.Counter(f"r{i}" for i in range(LINES))  # each exactly once
    assert counts == {"total": LINES, "completed": len(out), "failed": len(errors)}
    assert not errors
    # Only what was in flight at the kill went out twice: at most the concurrency.
    again = [i for i in range(LINES) if engine.attempts(_body(i).encode()) > 1]
    assert len(again) <= CONCURRENCY, again
    assert all(engine.attempts(_body(i).encode()) >= 1 for i in range(LINES))
