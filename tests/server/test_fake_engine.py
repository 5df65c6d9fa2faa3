"""The fake OpenAI engine (openai_files.testing.engine) that the Batch API's tests and
benchmark run against: its answers, its records, its faults, its two ways to run."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openai_files.testing.engine import (
    ENDPOINTS,
    EngineProcess,
    FakeEngine,
    Fault,
    answer_text,
    usage_of,
)


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as started:
        yield started


@pytest.fixture
def http(engine: FakeEngine) -> Iterator[httpx.Client]:
    engine.clear()
    engine.fault = None
    with httpx.Client(base_url=engine.url, timeout=10) as client:
        yield client


def body_of(**fields: object) -> bytes:
    return json.dumps({"model": "m-test", **fields}).encode()


@pytest.mark.parametrize("path", ENDPOINTS)
def test_answers_in_openai_shape_with_usage(http: httpx.Client, path: str) -> None:
    body = body_of(input=["one", "two"], messages=[{"role": "user", "content": "hi"}])
    r = http.post(f"/{path}", content=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    sha = hashlib.sha256(body).hexdigest()
    assert r.headers["x-body-sha256"] == sha
    assert r.headers["x-request-id"].startswith("req_")
    assert answer["model"] == "m-test"
    assert answer.get("usage", {}) == usage_of(f"/v1/{path}", body)
    text = answer_text("m-test", sha)
    if path == "chat/completions":
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"] == text
        usage = answer["usage"]
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"] // 2
        assert usage["completion_tokens_details"]["reasoning_tokens"] == 4
    elif path == "completions":
        assert answer["choices"][0]["text"] == text
    elif path == "responses":
        assert answer["output"][0]["content"][0]["text"] == text
        assert set(answer["usage"]) == {
            "input_tokens",
            "input_tokens_details",
            "output_tokens",
            "output_tokens_details",
            "total_tokens",
        }
    elif path == "embeddings":
        assert [d["index"] for d in answer["data"]] == [0, 1]
        assert answer["usage"]["total_tokens"] == answer["usage"]["prompt_tokens"]
    else:
        assert len(answer["results"]) == 2 and "usage" not in answer


def test_base64_embeddings_decode_to_the_same_floats(http: httpx.Client) -> None:
    floats = http.post("/embeddings", content=body_of(input="x")).json()
    packed = http.post("/embeddings", content=body_of(input="x", encoding_format="base64"))
    raw = base64.b64decode(packed.json()["data"][0]["embedding"])
    # Not the same body, so not the same vector: only the format is checked.
    assert len(struct.unpack(f"<{len(raw) // 4}f", raw)) == len(floats["data"][0]["embedding"])


def test_records_bodies_byte_for_byte_and_headers(engine: FakeEngine, http: httpx.Client) -> None:
    body = b'{ "model" : "m\\u00e9",  "messages": [] }\n'
    r = http.post("/chat/completions", content=body, headers={"X-Trace": "abc"})
    assert r.status_code == 200
    assert r.json()["model"] == "m\u00e9"
    (seen,) = engine.received
    assert seen.body == body and seen.path == "/v1/chat/completions"
    assert seen.headers["x-trace"] == "abc"
    assert seen.sha256 == hashlib.sha256(body).hexdigest() == r.headers["x-body-sha256"]
    assert seen.attempt == 1 and engine.attempts(body) == 1


def test_refuses_bodies_a_real_engine_refuses(http: httpx.Client) -> None:
    r = http.post("/chat/completions", content=b"not json")
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = http.post("/chat/completions", content=b'{"messages": []}')
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    assert http.post("/images/generations", content=body_of()).status_code == 404


def test_status_fault_with_retry_after(http: httpx.Client) -> None:
    r = http.post("/chat/completions", content=body_of(fault={"status": 429, "retry_after": 3}))
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert r.json()["error"]["message"]
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    r = http.post("/chat/completions", content=body_of(fault={"status": 503, "retry_after": date}))
    assert r.status_code == 503 and r.headers["retry-after"] == date
    assert r.json()["error"]["type"] == "server_error"
    fault = {"status": 400, "message": "bad thing", "code": "invalid_value"}
    r = http.post("/chat/completions", content=body_of(fault=fault))
    assert r.status_code == 400
    assert r.json()["error"] == {
        "message": "bad thing",
        "type": "invalid_request_error",
        "param": None,
        "code": "invalid_value",
    }


def test_fail_first_counts_attempts_per_key(engine: FakeEngine, http: httpx.Client) -> None:
    body = body_of(fault={"status": 500, "fail_first": 2})
    assert [http.post("/chat/completions", content=body).status_code for _ in range(4)] == [
        500,
        500,
        200,
        200,
    ]
    assert engine.attempts(body) == 4
    assert [r.attempt for r in engine.received] == [1, 2, 3, 4]
    # A key counts attempts of different bodies together.
    for i in range(3):
        fault = {"status": 502, "fail_first": 1, "key": "line-7"}
        r = http.post("/completions", content=body_of(n=i, fault=fault))
        assert r.status_code == (502 if i == 0 else 200)
    assert engine.attempts("line-7") == 3


def test_reset_closes_without_answering(http: httpx.Client) -> None:
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        http.post("/chat/completions", content=body_of(fault={"reset": True}))
    assert http.post("/chat/completions", content=body_of()).status_code == 200


def test_hang_outlasts_the_client_timeout(http: httpx.Client) -> None:
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        http.post("/chat/completions", content=body_of(fault={"hang": True}), timeout=0.3)
    assert time.monotonic() - start < 5
    r = http.post("/chat/completions", content=body_of(fault={"hang": 0.2}))
    assert r.status_code == 200  # a short hang, then the answer


def test_malformed_and_raw_answers(http: httpx.Client) -> None:
    r = http.post("/chat/completions", content=body_of(fault={"malformed": True}))
    assert r.status_code == 200
    with pytest.raises(ValueError):
        json.loads(r.content)
    r = http.post("/responses", content=body_of(fault={"answer_text": "[1, 2]"}))
    assert r.status_code == 200 and r.content == b"[1, 2]"
    r = http.post("/chat/completions", content=body_of(fault={"answer_bytes": 100_000}))
    assert r.status_code == 200 and len(r.content) == 100_000
    assert r.json()["object"] == "chat.completion"


def test_latency_fault_and_bad_faults(http: httpx.Client) -> None:
    start = time.monotonic()
    assert http.post("/embeddings", content=body_of(fault={"latency": 0.3})).status_code == 200
    assert time.monotonic() - start >= 0.3
    bads: list[object] = [{"bogus": 1}, {"status": "500"}, {"reset": 1}, [], {"latency": True}]
    for bad in bads:
        r = http.post("/chat/completions", content=body_of(fault=bad))
        assert r.status_code == 400 and r.json()["error"]["param"] == "fault", bad


def test_the_control_object_faults_requests_without_their_own(
    engine: FakeEngine, http: httpx.Client
) -> None:
    engine.fault = Fault(status=503, fail_first=1)
    body = body_of()
    assert http.post("/chat/completions", content=body).status_code == 503
    assert http.post("/chat/completions", content=body).status_code == 200
    # A request's own fault wins.
    r = http.post("/chat/completions", content=body_of(fault={"status": 418}))
    assert r.status_code == 418


def test_api_key_is_checked_when_set() -> None:
    with FakeEngine(api_key="sk-engine") as engine:
        url = engine.url + "/chat/completions"
        assert httpx.post(url, content=body_of()).status_code == 401
        r = httpx.post(url, content=body_of(), headers={"Authorization": "Bearer sk-engine"})
        assert r.status_code == 200
        assert engine.received[-1].headers["authorization"] == "Bearer sk-engine"


async def _post_raw(port: int, body: bytes) -> bytes:
    """One request on a connection of its own, read to the close: what the engine answered
    (httpx's pool slows down with thousands of connections, so it is not used here)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: engine\r\nContent-Type: application/json"
        f"\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    writer.write(head.encode() + body)
    try:
        return await reader.read()
    finally:
        writer.close()


def test_plain_engine_serves_thousands_at_once_and_records_nothing() -> None:
    """The benchmark's engine: fixed latency, no records; 2000 requests in flight at once
    take about one latency (0.5 s), where one after another they would take 1000 s."""

    async def run(port: int) -> list[bytes]:
        return await asyncio.gather(*(_post_raw(port, body_of(i=i)) for i in range(2000)))

    with FakeEngine(latency=0.5, record=False) as engine:
        start = time.monotonic()
        answers = asyncio.run(run(engine.port))
        took = time.monotonic() - start
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2000
        assert engine.requests == 2000 and engine.received == []
        assert took < 20, took


def test_runs_as_a_process(tmp_path: Path) -> None:
    with EngineProcess(tmp_path / "engine.log", latency=0.01) as proc:
        assert proc.url.startswith("http://127.0.0.1:") and proc.url.endswith("/v1")
        for _ in range(3):
            r = httpx.post(proc.url + "/responses", content=body_of(input="hi"), timeout=10)
            assert r.status_code == 200 and r.json()["object"] == "response"
        stats = httpx.get(proc.url.removesuffix("/v1") + "/_engine/stats").json()
        assert stats == {"requests": 3, "by_path": {"/v1/responses": 3}}
    assert proc.proc is not None and proc.proc.returncode is not None
