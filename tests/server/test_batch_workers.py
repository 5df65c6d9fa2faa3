"""Several batch workers on one database, and answers the database cannot take as given:
a cancel is finished by whichever worker leases the batch while the others stop their own
requests of it, and one engine answer that cannot be stored as written holds up nothing."""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import openai
import pytest

from openai_files.server.batch_runner import BatchRunner
from openai_files.testing.engine import FakeEngine

from .._inprocess import AppServer

ENDPOINT: Final = "/v1/chat/completions"


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine().start() as e:
        yield e


def _line(custom_id: str, **body: Any) -> bytes:
    full = {"model": "m", "messages": [{"role": "user", "content": custom_id}], **body}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": full}
    ).encode()


def _create(client: openai.OpenAI, lines: list[bytes]) -> str:
    data = b"\n".join(lines) + b"\n"
    file = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(
        input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h"
    ).id


def _wait(client: openai.OpenAI, batch_id: str, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("completed", "failed", "cancelled", "expired"):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.1)


def test_a_cancel_ends_while_another_worker_holds_requests_of_the_batch(
    engine: FakeEngine, tmp_path: Path
) -> None:
    server = AppServer(
        tmp_path / "data",
        {"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url, "OPENAI_FILES_BATCH_CONCURRENCY": "4"},
    ).start()
    running: concurrent.futures.Future[None] | None = None
    try:
        first = server.app.state.batch_runner
        second = BatchRunner(first.settings, first.meta, first.blobs, first.engines)
        running = server.portal.start_task_soon(second.run)
        slow = {"latency": 2}
        a = server.openai(server.create_key("org_a", "proj_a"))
        b = server.openai(server.create_key("org_b", "proj_b"))
        other = _create(b, [_line(f"y{i}", fault=slow) for i in range(40)])
        time.sleep(1)
        batch_id = _create(a, [_line(f"x{i}", fault=slow) for i in range(40)])
        # Both workers hold requests of it (each gives half its slots to each project).
        deadline = time.monotonic() + 10
        while not all(batch_id in w._running for w in (first, second)):
            assert time.monotonic() < deadline, "both workers should run the batch"
            time.sleep(0.05)
        assert a.batches.cancel(batch_id).status == "cancelling"
        done = _wait(a, batch_id, timeout=15)
        assert done.status == "cancelled"
        assert done.request_counts is not None
        assert done.request_counts.completed + done.request_counts.failed == 40
        b.batches.cancel(other)
        _wait(b, other, timeout=15)
    finally:
        if running is not None:  # the second worker stops as a server's does
            running.cancel()
            with contextlib.suppress(concurrent.futures.CancelledError):
                running.result(timeout=15)
        server.stop()


def test_an_answer_that_cannot_be_stored_as_written_holds_nothing_up(
    engine: FakeEngine, tmp_path: Path
) -> None:
    server = AppServer(tmp_path / "data", {"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url}).start()
    try:
        client = server.openai(server.create_key("org_p", "proj_p"))
        # A lone surrogate, written as an escape, in an answer spread over several lines.
        odd = '{\n  "id": "x",\n  "text": "\\ud800"\n}'
        first = _create(client, [_line("odd", fault={"answer_text": odd}), _line("plain")])
        second = _create(client, [_line("later")])
        done = _wait(client, first, timeout=20)
        assert done.status == "completed"
        assert done.output_file_id is not None
        lines = [json.loads(t) for t in client.files.content(done.output_file_id).text.splitlines()]
        assert [line["custom_id"] for line in lines] == ["odd", "plain"]
        assert lines[0]["response"]["body"]["text"] == "\ud800"
        assert _wait(client, second, timeout=20).status == "completed"
    finally:
        server.stop()
