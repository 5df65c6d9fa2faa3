"""The Batch API's calls of `Client` and `AsyncClient`: the requests they send and the
objects they return (on a scripted server), then whole batches on the real server run
against the fake engine."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from openai_files import (
    BadRequestError,
    Batch,
    BatchError,
    BatchList,
    BatchRequestCounts,
    BatchUsage,
    NotFoundError,
    RateLimitError,
)

from .._server import ServerProcess
from ._helpers import Recorder, error_json, json_response


def batch_json(batch_id: str = "batch_abc", **extra: Any) -> dict[str, Any]:
    """A batch object as OpenAI's API sends it, every key present."""
    return {
        "id": batch_id,
        "object": "batch",
        "endpoint": "/v1/chat/completions",
        "model": None,
        "errors": None,
        "input_file_id": "file-in",
        "completion_window": "24h",
        "status": "validating",
        "output_file_id": None,
        "error_file_id": None,
        "created_at": 1716390396,
        "in_progress_at": None,
        "expires_at": 1716476796,
        "finalizing_at": None,
        "completed_at": None,
        "failed_at": None,
        "expired_at": None,
        "cancelling_at": None,
        "cancelled_at": None,
        "request_counts": {"total": 0, "completed": 0, "failed": 0},
        "usage": {
            "input_tokens": 0,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 0,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 0,
        },
        "metadata": None,
        **extra,
    }


# --- the model ---------------------------------------------------------------------------


def test_a_batch_object_round_trips_key_for_key() -> None:
    data = batch_json(
        status="failed",
        model="gpt-4o-mini",
        errors={
            "object": "list",
            "data": [
                {"code": "invalid_json_line", "message": "bad", "param": None, "line": 2},
                {"code": "missing_required_parameter", "message": "m", "param": "url",
                 "line": None},
            ],
        },
        request_counts={"total": 5, "completed": 3, "failed": 2},
        usage={
            "input_tokens": 10,
            "input_tokens_details": {"cached_tokens": 4},
            "output_tokens": 20,
            "output_tokens_details": {"reasoning_tokens": 7},
            "total_tokens": 30,
        },
        metadata={"run": "nightly"},
        failed_at=1716390400,
    )  # fmt: skip
    batch = Batch.from_dict(data)
    assert batch.to_dict() == data
    assert list(batch.to_dict()) == list(data)  # the API's order
    assert batch.ended and batch.failed_at == 1716390400
    assert batch.request_counts == BatchRequestCounts(total=5, completed=3, failed=2)
    assert batch.usage == BatchUsage(10, 20, 30, cached_tokens=4, reasoning_tokens=7)
    assert batch.errors == [
        BatchError("invalid_json_line", "bad", None, 2),
        BatchError("missing_required_parameter", "m", "url", None),
    ]
    assert batch.metadata == {"run": "nightly"}


def test_a_sparse_batch_object_is_defaulted() -> None:
    batch = Batch.from_dict({"id": "batch_1", "status": "in_progress", "unknown": 1})
    assert batch.request_counts == BatchRequestCounts() and batch.usage == BatchUsage()
    assert batch.errors is None and batch.metadata is None and not batch.ended
    assert batch.to_dict()["errors"] is None
    assert [Batch.from_dict(batch_json(status=s)).ended for s in (
        "validating", "in_progress", "finalizing", "cancelling", "completed", "failed",
        "expired", "cancelled",
    )] == [False] * 4 + [True] * 4  # fmt: skip


# --- the requests, on a scripted server -------------------------------------------------


def test_create_batch_sends_openais_body(drive: Any) -> None:
    rec = Recorder(json_response(200, batch_json(metadata={"k": "v"})))
    batch = drive(rec).create_batch(
        "file-in",
        "/v1/chat/completions",
        metadata={"k": "v"},
        output_expires_after=7200,
    )
    assert isinstance(batch, Batch) and batch.id == "batch_abc" and batch.status == "validating"
    request = rec.requests[0]
    assert (request.method, request.url.path) == ("POST", "/v1/batches")
    assert request.headers["content-type"] == "application/json"
    assert json.loads(rec.bodies[0]) == {
        "input_file_id": "file-in",
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"k": "v"},
        "output_expires_after": {"anchor": "created_at", "seconds": 7200},
    }


def test_create_batch_sends_only_what_is_given(drive: Any) -> None:
    rec = Recorder(json_response(200, batch_json()))
    drive(rec).create_batch("file-in", "/v1/embeddings", completion_window="48h")
    assert json.loads(rec.bodies[0]) == {
        "input_file_id": "file-in",
        "endpoint": "/v1/embeddings",
        "completion_window": "48h",
    }


def test_retrieve_list_and_cancel_paths(drive: Any) -> None:
    page = {"object": "list", "data": [batch_json("batch_2"), batch_json("batch_1")],
            "first_id": "batch_2", "last_id": "batch_1", "has_more": True}  # fmt: skip
    rec = Recorder(
        json_response(200, batch_json("batch_a/b")),
        json_response(200, page),
        json_response(200, batch_json("batch_1", status="cancelling")),
    )
    client = drive(rec)
    assert client.retrieve_batch("batch_a/b").id == "batch_a/b"
    listed = client.list_batches(after="batch_3", limit=2)
    assert isinstance(listed, BatchList) and [b.id for b in listed.data] == ["batch_2", "batch_1"]
    assert listed.has_more and listed.last_id == "batch_1" and listed.to_dict() == page
    assert client.cancel_batch("batch_1").status == "cancelling"
    got = [(r.method, r.url.raw_path.decode()) for r in rec.requests]
    assert got == [
        ("GET", "/v1/batches/batch_a%2Fb"),  # an id is one path segment, whatever it holds
        ("GET", "/v1/batches?after=batch_3&limit=2"),
        ("POST", "/v1/batches/batch_1/cancel"),
    ]
    assert rec.requests[2].headers["content-length"] == "0"


def test_list_batches_without_arguments_sends_no_query(drive: Any) -> None:
    rec = Recorder(json_response(200, {"object": "list", "data": [], "has_more": False}))
    page = drive(rec).list_batches()
    assert page.data == [] and page.first_id is None and not page.has_more
    assert rec.requests[0].url.raw_path == b"/v1/batches"


@pytest.mark.parametrize("bad", ["", "  ", None])
def test_a_batch_id_is_required(drive: Any, bad: Any) -> None:
    rec = Recorder(json_response(200, batch_json()))
    client = drive(rec)
    with pytest.raises(ValueError, match="a batch id is a non-empty string"):
        client.retrieve_batch(bad)
    with pytest.raises(ValueError, match="a file id is a non-empty string"):
        client.create_batch(bad, "/v1/chat/completions")
    assert rec.requests == []


def test_errors_are_mapped_as_the_other_calls_map_them(drive: Any, sleeps: list[float]) -> None:
    rec = Recorder(
        json_response(404, error_json("No batch found with id 'batch_x'.", "batch_id")),
        json_response(429, error_json("too many", code="too_many_batches")),
    )
    client = drive(rec, max_retries=1)
    with pytest.raises(NotFoundError) as found:
        client.retrieve_batch("batch_x")
    assert found.value.param == "batch_id" and found.value.request_id == "req_1"
    with pytest.raises(RateLimitError) as limited:
        client.create_batch("file-in", "/v1/chat/completions")
    assert limited.value.code == "too_many_batches"
    assert len(rec.requests) == 3 and len(sleeps) == 1  # a 429 is retried, as elsewhere


# --- whole batches, on the real server against the fake engine ------------------------------

ENDPOINT = "/v1/chat/completions"


def request_line(custom_id: str, text: str, url: str = ENDPOINT, **body: Any) -> dict[str, Any]:
    messages = [{"role": "user", "content": text}]
    return {"custom_id": custom_id, "method": "POST", "url": url,
            "body": {"model": "m-small", "messages": messages, **body}}  # fmt: skip


def jsonl(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def wait_for(client: Any, batch_id: str, timeout: float = 60.0) -> Batch:
    deadline = time.monotonic() + timeout
    while True:
        batch: Batch = client.retrieve_batch(batch_id)
        if batch.ended:
            return batch
        assert time.monotonic() < deadline, f"{batch_id} still {batch.status}"
        time.sleep(0.1)


def test_a_batch_runs_and_its_object_is_the_servers(
    batches: Any, batch_server: ServerProcess, batch_key: str
) -> None:
    data = jsonl(
        request_line("a", "one"),
        request_line("b", "two", fault={"status": 400, "message": "no such model"}),
        request_line("c", "three"),
    )
    f = batches.upload(data, purpose="batch", filename="requests.jsonl")
    created = batches.create_batch(
        f.id, ENDPOINT, metadata={"run": "nightly"}, output_expires_after=3600
    )
    assert created.id.startswith("batch_") and created.status == "validating"
    assert (created.input_file_id, created.endpoint, created.completion_window) == (
        f.id, ENDPOINT, "24h",
    )  # fmt: skip
    assert created.metadata == {"run": "nightly"}
    done = wait_for(batches, created.id)
    assert done.status == "completed" and done.completed_at is not None
    assert done.request_counts == BatchRequestCounts(total=3, completed=2, failed=1)
    assert done.usage.total_tokens > 0 and done.errors is None
    assert done.output_file_id is not None and done.error_file_id is not None
    output = [json.loads(line) for line in batches.content(done.output_file_id).splitlines()]
    errors = [json.loads(line) for line in batches.content(done.error_file_id).splitlines()]
    assert [o["custom_id"] for o in output] == ["a", "c"]
    assert [e["custom_id"] for e in errors] == ["b"]
    # Every field of the server's object, as it sent it.
    raw = httpx.get(
        f"{batch_server.base_url}/batches/{done.id}",
        headers={"Authorization": f"Bearer {batch_key}"},
    ).json()
    assert done.to_dict() == raw and list(done.to_dict()) == list(raw)
    page = batches.list_batches(limit=1)
    assert [b.id for b in page.data] == [done.id] and page.data[0] == done
    assert not page.has_more
    with pytest.raises(BadRequestError) as refused:
        batches.cancel_batch(done.id)
    assert refused.value.code == "batch_not_cancellable"


def test_list_batches_pages_newest_first(batches: Any) -> None:
    f = batches.upload(jsonl(request_line("a", "x")), purpose="batch", filename="r.jsonl")
    made = [batches.create_batch(f.id, ENDPOINT).id for _ in range(3)]
    first = batches.list_batches(limit=2)
    assert len(first.data) == 2 and first.has_more and first.last_id == first.data[1].id
    rest = batches.list_batches(after=first.last_id, limit=2)
    assert len(rest.data) == 1 and not rest.has_more
    listed = [b.id for b in first.data + rest.data]
    assert sorted(listed) == sorted(made)  # each once (made in one second: any order)
    created = [b.created_at for b in first.data + rest.data]
    assert created == sorted(created, reverse=True)
    for batch_id in made:
        wait_for(batches, batch_id)


def test_cancel_batch(batches: Any) -> None:
    slow = [request_line(str(i), "x", fault={"latency": 1}) for i in range(40)]
    f = batches.upload(jsonl(*slow), purpose="batch", filename="slow.jsonl")
    batch = batches.create_batch(f.id, ENDPOINT)
    cancelling = batches.cancel_batch(batch.id)
    assert cancelling.id == batch.id
    assert cancelling.status in ("cancelling", "cancelled") and cancelling.cancelling_at
    done = wait_for(batches, batch.id)
    assert done.status == "cancelled" and done.cancelled_at is not None
    assert done.request_counts.completed < 40
    assert batches.cancel_batch(batch.id).status == "cancelled"  # again: as it stands


def test_a_batch_whose_input_is_refused_fails_with_its_errors(batches: Any) -> None:
    lines = [request_line("a", "x"), request_line("b", "y", url="/v1/embeddings")]
    f = batches.upload(jsonl(*lines), purpose="batch", filename="bad.jsonl")
    done = wait_for(batches, batches.create_batch(f.id, ENDPOINT).id)
    assert done.status == "failed" and done.failed_at is not None and done.errors
    assert [(e.code, e.line) for e in done.errors] == [("invalid_url", 2)]
    assert done.output_file_id is None


def test_refusals_are_typed_errors(batches: Any) -> None:
    with pytest.raises(NotFoundError) as missing:
        batches.retrieve_batch("batch_nope")
    assert missing.value.status_code == 404 and missing.value.param == "batch_id"
    with pytest.raises(NotFoundError):
        batches.cancel_batch("batch_nope")
    other = batches.upload(b"x", purpose="assistants", filename="a.txt")
    with pytest.raises(BadRequestError) as wrong:
        batches.create_batch(other.id, ENDPOINT)
    assert wrong.value.param == "input_file_id" and "purpose 'assistants'" in wrong.value.message
    with pytest.raises(BadRequestError) as endpoint:
        batches.create_batch(other.id, "/v1/nope")
    assert endpoint.value.param == "endpoint"
    with pytest.raises(BadRequestError) as after:
        batches.list_batches(after="batch_nope")
    assert after.value.param == "after"
