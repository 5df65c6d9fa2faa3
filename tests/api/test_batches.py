"""The Batch API through the official SDK's `client.batches`, sync and async, on both
deployments, against the fake engine (`openai_files.testing.engine`) run on a real socket."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any, Final

import openai
import pytest

from openai_files.server.stores import Owner
from openai_files.testing.engine import FakeEngine

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import assert_error, assert_schema

ENDPOINT: Final = "/v1/chat/completions"


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine().start() as e:
        yield e


@pytest.fixture(scope="module")
def batch_server(deployment: Deployment, engine: FakeEngine) -> Iterator[AppServer]:
    """An app whose batches run against the fake engine (retries quick)."""
    app = deployment.app(
        {
            "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
            "OPENAI_FILES_BATCH_RETRY_BASE_SECONDS": "0.05",
        }
    )
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def bkey(batch_server: AppServer) -> str:
    """A key of a new tenant of the batch server."""
    tenant = uuid.uuid4().hex[:10]
    return batch_server.create_key(f"org_{tenant}", f"proj_{tenant}")


@pytest.fixture
def bclient(batch_server: AppServer, bkey: str) -> Iterator[openai.OpenAI]:
    with batch_server.openai(bkey) as c:
        yield c


def request_line(custom_id: str, body: dict[str, Any] | str, url: str = ENDPOINT) -> bytes:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return (
        f'{{"custom_id": {json.dumps(custom_id, ensure_ascii=False)}, "method": "POST", '
        f'"url": "{url}", "body": {text}}}'
    ).encode()


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m-small", "messages": [{"role": "user", "content": text}], **extra}


def upload(client: openai.OpenAI, lines: list[bytes], name: str = "requests.jsonl") -> str:
    data = b"\n".join(lines) + b"\n"
    return client.files.create(file=(name, io.BytesIO(data)), purpose="batch").id


def wait(client: openai.OpenAI, batch_id: str, timeout: float = 60.0) -> Any:
    ended = ("completed", "failed", "cancelled", "expired")
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in ended:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}"
        time.sleep(0.1)


def lines_of(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_a_batch_runs_through_the_sdk(
    bclient: openai.OpenAI, engine: FakeEngine, batch_server: AppServer, bkey: str
) -> None:
    bodies = [
        '{"model": "m-small", "messages": [{"role": "user", "content": "héllo"}]}',
        '{"messages":[{"role":"user","content":"two"}],"model":"m-small","temperature":0.5}',
        json.dumps(chat("three", max_tokens=3)),
    ]
    lines = [request_line(f"req-{i}", b) for i, b in enumerate(bodies)]
    file_id = upload(bclient, lines)
    before = int(time.time())
    raw = bclient.batches.with_raw_response.create(
        input_file_id=file_id,
        endpoint=ENDPOINT,
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    created = raw.http_response.json()
    assert_schema("Batch", created)
    assert created["status"] == "validating"
    assert created["object"] == "batch"
    assert created["id"].startswith("batch_")
    assert created["metadata"] == {"job": "nightly"}
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert created["expires_at"] == created["created_at"] + 24 * 3600
    assert created["created_at"] >= before
    done = wait(bclient, created["id"])
    assert done.status == "completed", done
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (3, 3)
    assert done.request_counts.failed == 0
    assert done.error_file_id is None
    assert done.model == "m-small"
    for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
        assert getattr(done, stamp) >= done.created_at
    raw_done = batch_server.http(bkey).get(f"/batches/{done.id}").json()
    assert_schema("Batch", raw_done)
    out = lines_of(bclient, done.output_file_id)
    assert [line["custom_id"] for line in out] == ["req-0", "req-1", "req-2"]
    # Each body reached the engine byte for byte, and its answer is the line's body.
    received = {r.sha256: r for r in engine.received}
    usage = {"input": 0, "output": 0, "total": 0}
    for body, line in zip(bodies, out, strict=True):
        digest = hashlib.sha256(body.encode()).hexdigest()
        assert digest in received, body
        assert line["id"].startswith("batch_req_")
        assert line["error"] is None
        assert line["response"]["status_code"] == 200
        assert line["response"]["request_id"]
        answer = line["response"]["body"]
        assert digest in json.dumps(answer)
        usage["input"] += answer["usage"]["prompt_tokens"]
        usage["output"] += answer["usage"]["completion_tokens"]
        usage["total"] += answer["usage"]["total_tokens"]
    assert done.usage is not None
    assert done.usage.input_tokens == usage["input"] > 0
    assert done.usage.output_tokens == usage["output"]
    assert done.usage.total_tokens == usage["total"]
    output = bclient.files.retrieve(str(done.output_file_id))
    assert output.purpose == "batch_output"
    assert output.filename == f"{done.id}_output.jsonl"
    listed = bclient.batches.list(limit=100)
    assert done.id in [b.id for b in listed.data]


def test_refused_and_failed_requests_go_to_the_error_file(
    bclient: openai.OpenAI, engine: FakeEngine
) -> None:
    tag = uuid.uuid4().hex
    lines = [
        request_line("ok", chat("fine")),
        request_line("bad", chat("no", fault={"status": 400, "message": "bad model"})),
        # Bodies of their own: the engine counts attempts by body, across deployments.
        request_line("flaky", chat(f"retry {tag}", fault={"status": 500, "fail_first": 2})),
        request_line("slow-down", chat(f"429 {tag}", fault={"status": 429, "fail_first": 1})),
        request_line("gone", chat(f"reset {tag}", fault={"reset": True, "fail_first": 1})),
    ]
    done = wait(
        bclient,
        bclient.batches.create(
            input_file_id=upload(bclient, lines), endpoint=ENDPOINT, completion_window="24h"
        ).id,
    )
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (4, 1)
    out = lines_of(bclient, done.output_file_id)
    assert sorted(line["custom_id"] for line in out) == ["flaky", "gone", "ok", "slow-down"]
    errors = lines_of(bclient, done.error_file_id)
    assert [line["custom_id"] for line in errors] == ["bad"]
    assert errors[0]["response"]["status_code"] == 400
    assert errors[0]["response"]["body"]["error"]["message"] == "bad model"
    assert errors[0]["error"] is None

    # Retried as often as the engine failed them; the 400 once (never retried).
    def attempts(text: str, fault: dict[str, Any]) -> int:
        return engine.attempts(json.dumps(chat(text, fault=fault), ensure_ascii=False).encode())

    assert attempts(f"retry {tag}", {"status": 500, "fail_first": 2}) == 3
    assert attempts(f"429 {tag}", {"status": 429, "fail_first": 1}) == 2
    assert attempts("no", {"status": 400, "message": "bad model"}) >= 1


@pytest.mark.parametrize(
    ("lines", "code", "line"),
    [
        pytest.param(
            [request_line("a", chat("x")), b'{"method": "POST", "url": "/v1/chat/completions"}'],
            "missing_required_parameter",
            2,
            id="no-custom-id",
        ),
        pytest.param(
            [request_line("a", chat("x")), request_line("a", chat("y"))],
            "duplicate_custom_id",
            2,
            id="duplicate",
        ),
        pytest.param(
            [request_line("a", chat("x"), url="/v1/embeddings")], None, 1, id="other-endpoint"
        ),
    ],
)
def test_a_bad_input_fails_the_batch_naming_its_lines(
    bclient: openai.OpenAI, engine: FakeEngine, lines: list[bytes], code: str | None, line: int
) -> None:
    sent = engine.requests
    done = wait(
        bclient,
        bclient.batches.create(
            input_file_id=upload(bclient, lines), endpoint=ENDPOINT, completion_window="24h"
        ).id,
    )
    assert done.status == "failed"
    assert done.failed_at is not None
    assert done.errors is not None and done.errors.data
    first = done.errors.data[0]
    if code is not None:
        assert first.code == code
    assert first.line == line
    assert first.message
    assert engine.requests == sent  # nothing was sent
    assert done.output_file_id is None and done.error_file_id is None


def test_create_is_checked(bclient: openai.OpenAI, batch_server: AppServer, bkey: str) -> None:
    http = batch_server.http(bkey)
    file_id = upload(bclient, [request_line("a", chat("x"))])
    base = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
    cases: list[tuple[dict[str, Any], str, str | None]] = [
        ({**base, "endpoint": "/v1/nope"}, "endpoint", None),
        ({**base, "completion_window": "48h"}, "completion_window", None),
        ({**base, "input_file_id": "file-doesnotexist"}, "input_file_id", None),
        ({**base, "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata", None),
        ({**base, "metadata": {"k": "v" * 513}}, "metadata.k", None),
        (
            {**base, "output_expires_after": {"anchor": "created_at", "seconds": 10}},
            "output_expires_after.seconds",
            None,
        ),
        ({k: v for k, v in base.items() if k != "endpoint"}, "endpoint", None),
    ]
    for body, param, code in cases:
        answer = http.post("/batches", json=body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert error["param"] == param, (body, error)
        assert error["code"] == code
    other = bclient.files.create(file=("x.txt", io.BytesIO(b"x")), purpose="user_data")
    answer = http.post("/batches", json={**base, "input_file_id": other.id})
    assert_error(
        answer,
        400,
        f"The file {other.id} has purpose 'user_data'; a batch reads a file of purpose 'batch'.",
        param="input_file_id",
    )


def test_another_projects_batch_is_a_404(
    bclient: openai.OpenAI, batch_server: AppServer, bkey: str
) -> None:
    batch = bclient.batches.create(
        input_file_id=upload(bclient, [request_line("a", chat("x"))]),
        endpoint=ENDPOINT,
        completion_window="24h",
    )
    stranger = batch_server.http(batch_server.create_key("org_other", "proj_other"))
    for method, path in (
        ("GET", f"/batches/{batch.id}"),
        ("POST", f"/batches/{batch.id}/cancel"),
    ):
        answer = stranger.request(method, path)
        assert_error(answer, 404, f"No batch found with id '{batch.id}'.", param="batch_id")
    assert batch.id not in [b["id"] for b in stranger.get("/batches").json()["data"]]
    # Nor may a batch read another project's file.
    answer = stranger.post(
        "/batches",
        json={
            "input_file_id": batch.input_file_id,
            "endpoint": ENDPOINT,
            "completion_window": "24h",
        },
    )
    assert_error(answer, 400, f"No such File object: {batch.input_file_id}", param="input_file_id")
    wait(bclient, batch.id)


def test_cancel_keeps_what_finished(bclient: openai.OpenAI, engine: FakeEngine) -> None:
    slow = {"latency": 0.3}
    lines = [request_line(f"c{i}", chat(f"n{i}", fault=slow)) for i in range(200)]
    batch = bclient.batches.create(
        input_file_id=upload(bclient, lines), endpoint=ENDPOINT, completion_window="24h"
    )
    deadline = time.monotonic() + 30
    while bclient.batches.retrieve(batch.id).request_counts.completed < 5:  # type: ignore[union-attr]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    cancelling = bclient.batches.cancel(batch.id)
    assert cancelling.status in ("cancelling", "cancelled")
    assert cancelling.cancelling_at is not None
    sent = engine.requests
    done = wait(bclient, batch.id)
    assert done.status == "cancelled"
    assert done.cancelled_at is not None
    assert done.request_counts is not None
    out = lines_of(bclient, done.output_file_id)
    errors = lines_of(bclient, done.error_file_id)
    assert done.request_counts.completed == len(out) >= 5
    assert done.request_counts.failed == len(errors)
    ids = [line["custom_id"] for line in out + errors]
    assert sorted(ids) == sorted(f"c{i}" for i in range(200))  # each exactly once
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    # No request left after the cancel was answered (those in flight then may finish).
    time.sleep(0.5)
    assert engine.requests <= sent + 64
    # A finished batch cannot be cancelled again into another state.
    assert bclient.batches.cancel(batch.id).status == "cancelled"


def test_archiving_the_project_cancels_its_batch_and_upload(
    batch_server: AppServer, engine: FakeEngine
) -> None:
    """Archiving a project (Administration API) cancels its running batch as a cancel
    would (the runner finalizes it as cancelled, its output kept) and its pending upload;
    its files stay."""
    tenant = uuid.uuid4().hex[:10]
    owner = Owner(f"org_{tenant}", f"proj_{tenant}")
    key = batch_server.create_key(owner.org_id, owner.project_id)
    meta = batch_server.app.state.service.meta

    def stored(read: Any, *args: Any) -> Any:
        return batch_server.portal.call(read, owner, *args)

    with batch_server.openai(key) as client:
        slow = {"latency": 0.3}
        lines = [request_line(f"c{i}", chat(f"n{i}", fault=slow)) for i in range(200)]
        input_id = upload(client, lines)
        batch = client.batches.create(
            input_file_id=input_id, endpoint=ENDPOINT, completion_window="24h"
        )
        deadline = time.monotonic() + 30
        while client.batches.retrieve(batch.id).request_counts.completed < 3:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pending = client.uploads.create(
            bytes=10, filename="x.jsonl", mime_type="text/jsonl", purpose="batch"
        )
    with batch_server.http(batch_server.create_admin_key(owner.org_id)) as admin:
        archived = admin.post(f"/organization/projects/{owner.project_id}/archive")
        assert archived.status_code == 200 and archived.json()["status"] == "archived"
    deadline = time.monotonic() + 60
    while (record := stored(meta.get_batch, batch.id)).status != "cancelled":
        assert record.status == "cancelling", record.status
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert record.cancelling_at is not None and record.output_file_id is not None
    sent = engine.requests
    time.sleep(0.5)
    assert engine.requests <= sent + 64  # no request leaves after it ended
    assert stored(meta.get_upload, pending.id).status == "cancelled"
    now = int(time.time())
    for file_id in (input_id, record.output_file_id):
        assert stored(meta.get_file, file_id, now) is not None  # files stay


def test_list_pages_newest_first(bclient: openai.OpenAI) -> None:
    file_id = upload(bclient, [request_line("a", chat("x"))])
    made = [
        bclient.batches.create(input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h").id
        for _ in range(3)
    ]
    page = bclient.batches.list(limit=2)
    assert [b.id for b in page.data][:2] == made[::-1][:2]
    assert page.has_more
    rest = bclient.batches.list(limit=2, after=page.data[-1].id)
    assert rest.data[0].id == made[0]
    for batch_id in made:
        wait(bclient, batch_id)


def test_the_async_sdk_runs_a_batch(batch_server: AppServer, bkey: str) -> None:
    async def run() -> None:
        client = batch_server.async_openai(bkey)
        data = request_line("only", chat("async")) + b"\n"
        file = await client.files.create(file=("a.jsonl", data), purpose="batch")
        batch = await client.batches.create(
            input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h"
        )
        deadline = time.monotonic() + 60
        while batch.status not in ("completed", "failed"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
            batch = await client.batches.retrieve(batch.id)
        assert batch.status == "completed"
        assert batch.output_file_id is not None
        text = (await client.files.content(batch.output_file_id)).text
        assert json.loads(text)["custom_id"] == "only"
        await client.close()

    asyncio.run(run())


def test_without_an_engine_a_batch_is_refused_naming_the_setting(
    server: AppServer, client: openai.OpenAI, api_key: str
) -> None:
    file_id = upload(client, [request_line("a", chat("x"))])
    answer = server.http(api_key).post(
        "/batches",
        json={"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"},
    )
    error = assert_error(
        answer,
        400,
        "This server runs no batches: no engine is set. Start it with --batch-upstream-url "
        "(or OPENAI_FILES_BATCH_UPSTREAM_URL), the base URL of an OpenAI-compatible server "
        "ending in /v1, or --batch-routes-file.",
        code="batches_not_configured",
    )
    assert error


def test_an_unknown_batch_is_a_404(bclient: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        bclient.batches.retrieve("batch_doesnotexist")
    with pytest.raises(openai.NotFoundError):
        bclient.batches.retrieve("../etc")


def test_metrics_count_batches_and_their_requests(
    bclient: openai.OpenAI, batch_server: AppServer
) -> None:
    def scrape() -> dict[str, float]:
        text = batch_server.http(base_url=batch_server.root_url).get("/metrics").text
        values: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith("openai_files_batch"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    before = scrape()
    lines = [request_line(f"m{i}", chat("x")) for i in range(3)]
    # A body of its own: the engine counts attempts by body, across deployments.
    unique = uuid.uuid4().hex
    lines.append(request_line("retried", chat(unique, fault={"status": 503, "fail_first": 1})))
    done = wait(
        bclient,
        bclient.batches.create(
            input_file_id=upload(bclient, lines), endpoint=ENDPOINT, completion_window="24h"
        ).id,
    )
    assert done.status == "completed"
    after = scrape()

    def grew(name: str) -> float:
        return after[name] - before.get(name, 0.0)

    assert grew('openai_files_batches_ended_total{status="completed"}') >= 1
    assert grew('openai_files_batch_requests_total{result="sent"}') >= 5
    assert grew('openai_files_batch_requests_total{result="retried"}') >= 1
    assert grew('openai_files_batch_engine_latency_seconds_total{part="count"}') >= 4
    assert 'openai_files_batches{status="in_progress"}' in after


def test_output_expires_after_sets_the_result_files_expiry(bclient: openai.OpenAI) -> None:
    lines = [request_line("ok", chat("x")), request_line("no", chat("y", fault={"status": 404}))]
    created = bclient.batches.create(
        input_file_id=upload(bclient, lines),
        endpoint=ENDPOINT,
        completion_window="24h",
        output_expires_after={"anchor": "created_at", "seconds": 7200},
    )
    done = wait(bclient, created.id)
    assert done.status == "completed"
    for file_id in (done.output_file_id, done.error_file_id):
        assert file_id is not None
        file = bclient.files.retrieve(file_id)
        assert file.purpose == "batch_output"
        assert file.expires_at == file.created_at + 7200
    # Without it, the result files do not expire.
    plain = wait(
        bclient,
        bclient.batches.create(
            input_file_id=upload(bclient, lines[:1]), endpoint=ENDPOINT, completion_window="24h"
        ).id,
    )
    assert plain.output_file_id is not None
    assert bclient.files.retrieve(plain.output_file_id).expires_at is None


def test_a_project_has_at_most_max_active_batches(
    deployment: Deployment, engine: FakeEngine
) -> None:
    server = deployment.app(
        {"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url, "OPENAI_FILES_MAX_ACTIVE_BATCHES": "1"}
    )
    try:
        http = server.http(server.create_key("org_cap", "proj_cap"))
        with server.openai(server.create_key("org_cap", "proj_cap")) as client:
            slow = [request_line(f"s{i}", chat(f"{i}", fault={"latency": 0.5})) for i in range(4)]
            file_id = upload(client, slow)
        body = {"input_file_id": file_id, "endpoint": ENDPOINT, "completion_window": "24h"}
        first = http.post("/batches", json=body)
        assert first.status_code == 200, first.text
        assert_error(
            http.post("/batches", json=body),
            429,
            "This project has 1 batches that have not ended, the most this server runs at "
            "once for one project; wait for one to end or cancel one.",
            code="too_many_batches",
        )
        # Another project of the same organization is not held by it.
        other = server.http(server.create_key("org_cap", "proj_other"))
        with server.openai(server.create_key("org_cap", "proj_other")) as client:
            other_file = upload(client, [request_line("o", chat("o"))])
        answer = other.post("/batches", json={**body, "input_file_id": other_file})
        assert answer.status_code == 200, answer.text
        with server.openai(server.create_key("org_cap", "proj_cap")) as client:
            assert wait(client, first.json()["id"]).status == "completed"
        # Once it ended, the project may create another.
        assert http.post("/batches", json=body).status_code == 200
    finally:
        server.stop()
