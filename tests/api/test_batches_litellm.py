"""A batch run against a real third-party OpenAI-compatible server: LiteLLM's proxy with mock
responses (tests/_litellm.py), through the official SDK, on both deployments. Its answers
(chat and embeddings, with usage), its 429 and its 500 land in the output and error files as
the engine gave them."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from .._inprocess import AppServer
from .._litellm import (
    CHAT_MODEL,
    CHAT_REPLY,
    EMBEDDING,
    EMBEDDING_MODEL,
    FAILING_MODEL,
    RATE_LIMITED_MODEL,
    LiteLLMProxy,
)
from .._server import Deployment


@pytest.fixture(scope="module")
def litellm_server(deployment: Deployment, litellm_proxy: LiteLLMProxy) -> Iterator[AppServer]:
    app = deployment.app(
        {
            "OPENAI_FILES_BATCH_UPSTREAM_URL": litellm_proxy.base_url,
            "OPENAI_FILES_BATCH_UPSTREAM_API_KEY": litellm_proxy.api_key,
            "OPENAI_FILES_BATCH_RETRY_BASE_SECONDS": "0.05",
            "OPENAI_FILES_BATCH_MAX_RETRIES": "1",
        }
    )
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture
def client(litellm_server: AppServer) -> Iterator[openai.OpenAI]:
    tenant = uuid.uuid4().hex[:10]
    key = litellm_server.create_key(f"org_{tenant}", f"proj_{tenant}")
    with litellm_server.openai(key) as c:
        yield c


def _run(client: openai.OpenAI, endpoint: Any, lines: list[dict[str, Any]]) -> Any:
    data = "".join(json.dumps(line) + "\n" for line in lines).encode()
    file = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    batch = client.batches.create(input_file_id=file.id, endpoint=endpoint, completion_window="24h")
    deadline = time.monotonic() + 120
    while batch.status not in ("completed", "failed", "cancelled", "expired"):
        assert time.monotonic() < deadline, batch
        time.sleep(0.2)
        batch = client.batches.retrieve(batch.id)
    return batch


def _lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def test_a_chat_batch_runs_against_litellm(client: openai.OpenAI) -> None:
    def line(custom_id: str, model: str) -> dict[str, Any]:
        body = {"model": model, "messages": [{"role": "user", "content": custom_id}]}
        return {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": body,
        }

    batch = _run(
        client,
        "/v1/chat/completions",
        [line(f"ok-{i}", CHAT_MODEL) for i in range(5)]
        + [line("limited", RATE_LIMITED_MODEL), line("broken", FAILING_MODEL)],
    )
    assert batch.status == "completed", batch
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (5, 2)
    out = _lines(client, batch.output_file_id)
    assert sorted(o["custom_id"] for o in out) == [f"ok-{i}" for i in range(5)]
    for o in out:
        answer = o["response"]["body"]
        assert o["response"]["status_code"] == 200
        assert answer["choices"][0]["message"]["content"] == CHAT_REPLY
        assert answer["model"] == CHAT_MODEL
    usage = sum(o["response"]["body"]["usage"]["total_tokens"] for o in out)
    assert batch.usage is not None and batch.usage.total_tokens == usage > 0
    errors = {e["custom_id"]: e for e in _lines(client, batch.error_file_id)}
    assert set(errors) == {"limited", "broken"}
    assert errors["limited"]["response"]["status_code"] == 429
    assert errors["broken"]["response"]["status_code"] == 500
    assert all("error" in e["response"]["body"] for e in errors.values())


def test_an_embeddings_batch_runs_against_litellm(client: openai.OpenAI) -> None:
    batch = _run(
        client,
        "/v1/embeddings",
        [
            {
                "custom_id": f"e{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": EMBEDDING_MODEL, "input": f"text {i}"},
            }
            for i in range(3)
        ],
    )
    assert batch.status == "completed", batch
    out = _lines(client, batch.output_file_id)
    assert [o["custom_id"] for o in out] == ["e0", "e1", "e2"]
    for o in out:
        assert o["response"]["body"]["data"][0]["embedding"] == EMBEDDING
