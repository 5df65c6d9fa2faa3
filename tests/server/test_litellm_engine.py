"""LiteLLM's proxy as the batch tests' engine (tests/_litellm.py): the official SDK gets its
mock answers, with usage, from the pinned release, and the proxy talks to nothing beyond
loopback."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from .._litellm import (
    CHAT_MODEL,
    CHAT_REPLY,
    EMBEDDING,
    EMBEDDING_MODEL,
    FAILING_MODEL,
    RATE_LIMITED_MODEL,
    LiteLLMProxy,
    pinned_version,
    proxy_or_skip,
)


@pytest.fixture
def engine(litellm_proxy: LiteLLMProxy) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=litellm_proxy.base_url, api_key=litellm_proxy.api_key, max_retries=0
    ) as c:
        yield c


def test_a_chat_completion_gets_the_mock_reply_with_usage(engine: openai.OpenAI) -> None:
    done = engine.chat.completions.create(
        model=CHAT_MODEL, messages=[{"role": "user", "content": "Say hello."}]
    )
    assert done.object == "chat.completion"
    assert done.model == CHAT_MODEL
    assert [c.message.content for c in done.choices] == [CHAT_REPLY]
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None
    assert done.usage.prompt_tokens > 0 and done.usage.completion_tokens > 0
    assert done.usage.total_tokens == done.usage.prompt_tokens + done.usage.completion_tokens


def test_an_embeddings_request_gets_the_mock_vector_with_usage(engine: openai.OpenAI) -> None:
    done = engine.embeddings.create(model=EMBEDDING_MODEL, input="a line to embed")
    assert done.object == "list"
    assert [(d.index, d.embedding) for d in done.data] == [(0, EMBEDDING)]
    assert done.usage.prompt_tokens > 0


def test_the_engine_is_the_pinned_release(litellm_proxy: LiteLLMProxy) -> None:
    answer = httpx.post(
        f"{litellm_proxy.base_url}/chat/completions",
        headers={"Authorization": f"Bearer {litellm_proxy.api_key}"},
        json={"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["x-litellm-version"] == pinned_version()


def test_the_error_models_answer_429_and_500(engine: openai.OpenAI) -> None:
    messages: list[openai.types.chat.ChatCompletionMessageParam] = [
        {"role": "user", "content": "hi"}
    ]
    with pytest.raises(openai.RateLimitError) as limited:
        engine.chat.completions.create(model=RATE_LIMITED_MODEL, messages=messages)
    assert limited.value.status_code == 429
    with pytest.raises(openai.InternalServerError) as failed:
        engine.chat.completions.create(model=FAILING_MODEL, messages=messages)
    assert failed.value.status_code == 500


def test_a_wrong_key_is_refused(litellm_proxy: LiteLLMProxy) -> None:
    """Without a database LiteLLM cannot look a key other than its master key up, and says
    so with a 400 ('No connected db') rather than a 401."""
    with (
        openai.OpenAI(base_url=litellm_proxy.base_url, api_key="sk-wrong", max_retries=0) as c,
        pytest.raises(openai.APIStatusError) as refused,
    ):
        c.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.status_code in (400, 401)


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def _inet_endpoints(inodes: set[str]) -> list[tuple[str, str]]:
    """(local, remote) addresses of the TCP and UDP sockets among `inodes`."""
    found = []
    for table in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append((_address(fields[1]), _address(fields[2])))
    return found


def _address(hex_endpoint: str) -> str:
    """An address of /proc/net/{tcp,udp}[6] (host-order 32-bit words, in hex) as text."""
    host = bytes.fromhex(hex_endpoint.split(":")[0])
    words = b"".join(host[i : i + 4][::-1] for i in range(0, len(host), 4))
    return str(ipaddress.ip_address(words))


def test_the_proxy_talks_to_nothing_beyond_loopback(
    litellm_proxy: LiteLLMProxy, engine: openai.OpenAI
) -> None:
    engine.chat.completions.create(model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}])
    endpoints = _inet_endpoints(_socket_inodes(litellm_proxy.pid))
    assert endpoints, "the proxy has no socket open: not the process listening?"
    for local, remote in endpoints:
        assert ipaddress.ip_address(local).is_loopback, (local, remote)
        remote_ip = ipaddress.ip_address(remote)
        assert remote_ip.is_loopback or remote_ip.is_unspecified, (local, remote)


def test_stop_ends_the_proxy_and_everything_it_started() -> None:
    proxy = proxy_or_skip()
    try:
        assert proxy.started_in > 0
        assert proxy.root.exists()
    finally:
        proxy.stop()
    assert proxy.proc.returncode is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(proxy.pid, 0)  # no process is left in its group
    with pytest.raises(ConnectionRefusedError), socket.socket() as s:
        s.connect(("127.0.0.1", proxy.port))
    assert not proxy.root.exists()
