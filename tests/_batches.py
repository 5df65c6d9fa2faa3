"""Batches for the Batch API's process-level tests: input files, create, wait, read results.

Every call takes an httpx client of the API (base URL ending in /v1, key set): `client` makes
one for a server process, `AppServer.http` for the app in this process.
"""

from __future__ import annotations

import collections
import json
import time
from collections.abc import Callable
from typing import Any

import httpx

from ._server import ServerProcess

ENDPOINT = "/v1/chat/completions"
ENDED = ("completed", "failed", "cancelled", "expired")


def body(i: int, model: str = "m", **extra: Any) -> str:
    """The body of request `i` (unique per `i` and `model`), as sent byte for byte."""
    return json.dumps(
        {"model": model, "messages": [{"role": "user", "content": f"line {i}"}], **extra}
    )


def input_file(count: int, model: str = "m", prefix: str = "r", **extra: Any) -> bytes:
    """A batch input of `count` requests, custom_ids `{prefix}0`..."""
    return b"".join(
        (
            f'{{"custom_id": "{prefix}{i}", "method": "POST", "url": "{ENDPOINT}", '
            f'"body": {body(i, model, **extra)}}}\n'
        ).encode()
        for i in range(count)
    )


def client(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def upload(http: httpx.Client, data: bytes) -> str:
    answer = http.post(
        "/files", files={"file": ("requests.jsonl", data)}, data={"purpose": "batch"}
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def create(http: httpx.Client, data: bytes) -> dict[str, Any]:
    """Upload `data` and create a batch of it."""
    answer = http.post(
        "/batches",
        json={
            "input_file_id": upload(http, data),
            "endpoint": ENDPOINT,
            "completion_window": "24h",
        },
    )
    assert answer.status_code == 200, answer.text
    batch: dict[str, Any] = answer.json()
    return batch


def get(http: httpx.Client, batch_id: str) -> dict[str, Any]:
    answer = http.get(f"/batches/{batch_id}")
    assert answer.status_code == 200, answer.text
    batch: dict[str, Any] = answer.json()
    return batch


def done(batch: dict[str, Any]) -> int:
    """Requests of a batch that ended (completed or failed)."""
    counts = batch["request_counts"]
    return int(counts["completed"]) + int(counts["failed"])


def wait(
    http: httpx.Client,
    batch_id: str,
    until: Callable[[dict[str, Any]], bool] = lambda b: b["status"] in ENDED,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """The batch once `until` holds (by default: once it ended)."""
    deadline = time.monotonic() + timeout
    while True:
        batch = get(http, batch_id)
        if until(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.02)


def lines(http: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    """The lines of an output or error file (none without a file)."""
    if file_id is None:
        return []
    answer = http.get(f"/files/{file_id}/content")
    assert answer.status_code == 200, answer.text
    return [json.loads(line) for line in answer.text.splitlines()]


def results(http: httpx.Client, batch: dict[str, Any]) -> tuple[list[Any], list[Any]]:
    """An ended batch's output and error lines; checks that its counts are theirs and that
    no custom_id is in them twice."""
    out = lines(http, batch["output_file_id"])
    errors = lines(http, batch["error_file_id"])
    counts = batch["request_counts"]
    assert (counts["completed"], counts["failed"]) == (len(out), len(errors)), counts
    seen = collections.Counter(line["custom_id"] for line in out + errors)
    assert [i for i, n in seen.items() if n > 1] == []
    return out, errors


def exactly_once(out: list[Any], errors: list[Any], count: int, prefix: str = "r") -> None:
    """Every custom_id of an input of `count` requests is in the output and error files
    together exactly once."""
    ids = collections.Counter(line["custom_id"] for line in out + errors)
    assert ids == collections.Counter(f"{prefix}{i}" for i in range(count))
