"""The engine client of the Batch API (server/batch_engine.py), against the fake engine
(openai_files.testing.engine) served for real on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from openai_files.server import batch_engine
from openai_files.server import settings as S
from openai_files.server.batch_engine import (
    ENGINE_TIMEOUT,
    ENGINE_UNREACHABLE,
    INVALID_ENGINE_RESPONSE,
    NO_ENGINE,
    RESPONSE_TOO_LARGE,
    EngineAnswer,
    Engines,
    backoff_seconds,
    retry_after_seconds,
)
from openai_files.server.settings import Settings
from openai_files.testing.engine import FakeEngine

pytestmark = pytest.mark.anyio

CHAT = "/v1/chat/completions"


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine() as started:
        yield started


@pytest.fixture(scope="module")
def engine_b() -> Iterator[FakeEngine]:
    with FakeEngine() as started:
        yield started


@pytest.fixture(autouse=True)
def fresh(engine: FakeEngine, engine_b: FakeEngine) -> None:
    for each in (engine, engine_b):
        each.clear()
        each.fault = None


def settings_for(tmp_path: Path, **values: Any) -> Settings:
    values.setdefault("batch_retry_base_seconds", 0.01)
    return Settings(data_dir=tmp_path / "data", **values)


@pytest.fixture
async def engines_for(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Make opened Engines from settings (closed at the end)."""
    made: list[Engines] = []

    async def make(**values: Any) -> Engines:
        built = Engines(settings_for(tmp_path, **values))
        await built.open()
        made.append(built)
        return built

    yield make
    for built in made:
        await built.aclose()


def body_of(model: str = "m-test", **fields: Any) -> bytes:
    return json.dumps({"model": model, "messages": [], **fields}).encode()


async def test_success_sends_the_body_byte_for_byte(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url, batch_upstream_api_key="sk-up")
    assert engines.configured
    body = b'{"model":  "m-\\u00e9" , "messages":[{"role":"user","content":"caf\xc3\xa9"}]}\n'
    answer: EngineAnswer = await engines.send(CHAT, "m-\u00e9", body)
    assert answer.status_code == 200 and answer.error is None
    assert (answer.attempts, answer.retried) == (1, 0)
    (seen,) = engine.received
    assert seen.body == body
    assert seen.path == "/v1/chat/completions"
    assert seen.headers["authorization"] == "Bearer sk-up"
    assert seen.headers["content-type"] == "application/json"
    parsed = json.loads(answer.body)
    assert parsed["object"] == "chat.completion" and seen.sha256 in str(parsed)
    assert answer.request_id and answer.request_id.startswith("req_")
    assert (engines.sent, engines.retried, engines.failed) == (1, 0, 0)
    assert engines.latency_count == 1 and engines.latency_seconds_sum > 0


async def test_each_endpoint_goes_to_its_path_without_a_key_when_none_is_set(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url + "/")
    for path in ("/v1/embeddings", "/v1/responses", "/v1/completions", "/v1/moderations"):
        answer = await engines.send(path, "m", body_of(input="x"))
        assert answer.status_code == 200, answer
    assert [r.path for r in engine.received] == [
        "/v1/embeddings",
        "/v1/responses",
        "/v1/completions",
        "/v1/moderations",
    ]
    assert all("authorization" not in r.headers for r in engine.received)


async def test_an_engine_key_is_what_the_engine_checks(
    tmp_path: Path, engines_for: Callable[..., Any]
) -> None:
    with FakeEngine(api_key="sk-right") as keyed:
        wrong = await engines_for(batch_upstream_url=keyed.url, batch_upstream_api_key="sk-no")
        answer = await wrong.send(CHAT, "m", body_of())
        assert answer.status_code == 401 and answer.attempts == 1 and answer.error is None
        right = await engines_for(batch_upstream_url=keyed.url, batch_upstream_api_key="sk-right")
        assert (await right.send(CHAT, "m", body_of())).status_code == 200
        assert wrong.failed == 1 and right.failed == 0


@pytest.mark.parametrize("form", ["json", "toml"])
async def test_routes_by_model(
    form: str,
    tmp_path: Path,
    engine: FakeEngine,
    engine_b: FakeEngine,
    engines_for: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEST_ENGINE_B_KEY", "sk-b")
    if form == "json":
        routes = tmp_path / "routes.json"
        routes.write_text(
            json.dumps(
                {
                    "models": {"model-a": {"url": engine.url, "api_key": "sk-a"}},
                    "default": {"url": engine_b.url, "api_key_env": "TEST_ENGINE_B_KEY"},
                }
            )
        )
    else:
        routes = tmp_path / "routes.toml"
        routes.write_text(
            f'[models."model-a"]\nurl = "{engine.url}"\napi_key = "sk-a"\n\n'
            f'[default]\nurl = "{engine_b.url}"\napi_key_env = "TEST_ENGINE_B_KEY"\n'
        )
    engines = await engines_for(batch_routes_file=str(routes))
    assert (await engines.send(CHAT, "model-a", body_of("model-a"))).status_code == 200
    assert (await engines.send(CHAT, "model-b", body_of("model-b"))).status_code == 200
    assert (await engines.send(CHAT, None, b'{"messages": []}')).status_code == 400
    assert [json.loads(r.body).get("model") for r in engine.received] == ["model-a"]
    assert engine.received[0].headers["authorization"] == "Bearer sk-a"
    assert [json.loads(r.body).get("model") for r in engine_b.received] == ["model-b", None]
    assert all(r.headers["authorization"] == "Bearer sk-b" for r in engine_b.received)


async def test_a_model_the_routes_do_not_name_goes_to_the_upstream_url_else_nowhere(
    tmp_path: Path, engine: FakeEngine, engine_b: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    routes = tmp_path / "routes.json"
    routes.write_text(json.dumps({"models": {"model-a": {"url": engine.url}}}))
    both = await engines_for(batch_routes_file=str(routes), batch_upstream_url=engine_b.url)
    assert both.serves("other") and both.serves(None)
    assert (await both.send(CHAT, "other", body_of("other"))).status_code == 200
    assert len(engine_b.received) == 1 and not engine.received
    alone = await engines_for(batch_routes_file=str(routes))
    assert alone.configured and alone.serves("model-a") and not alone.serves("other")
    answer = await alone.send(CHAT, "other", body_of("other"))
    assert answer.status_code == 0 and answer.error is not None
    assert answer.error[0] == NO_ENGINE and "'other'" in answer.error[1]
    assert answer.attempts == 0 and alone.failed == 1


async def test_no_engine_set(engines_for: Callable[..., Any]) -> None:
    engines = await engines_for()
    assert not engines.configured and not engines.serves("m")
    answer = await engines.send(CHAT, "m", body_of())
    assert answer.error is not None and answer.error[0] == NO_ENGINE


async def test_429_waits_at_least_retry_after(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    body = body_of(fault={"status": 429, "retry_after": 1, "fail_first": 1})
    answer = await engines.send(CHAT, "m", body)
    assert answer.status_code == 200 and (answer.attempts, answer.retried) == (2, 1)
    first, second = engine.received
    assert second.at - first.at >= 1.0
    assert (engines.sent, engines.retried, engines.failed) == (2, 1, 0)


async def test_retry_after_as_an_http_date(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    fault = {"status": 503, "retry_after": when, "fail_first": 1}
    answer = await engines.send(CHAT, "m", body_of(fault=fault))
    assert answer.status_code == 200 and answer.attempts == 2
    first, second = engine.received
    assert second.at - first.at >= 0.9  # the date has whole seconds


async def test_500_then_success(engine: FakeEngine, engines_for: Callable[..., Any]) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    body = body_of(fault={"status": 500, "fail_first": 2})
    answer = await engines.send(CHAT, "m", body)
    assert answer.status_code == 200 and answer.error is None
    assert (answer.attempts, answer.retried) == (3, 2)
    assert engine.attempts(body) == 3
    assert all(r.body == body for r in engine.received)


async def test_a_reset_is_retried(engine: FakeEngine, engines_for: Callable[..., Any]) -> None:
    engines = await engines_for(batch_upstream_url=engine.url, batch_max_retries=2)
    answer = await engines.send(CHAT, "m", body_of(fault={"reset": True, "fail_first": 1}))
    assert answer.status_code == 200 and answer.attempts == 2
    answer = await engines.send(CHAT, "m", body_of(fault={"reset": True}))
    assert answer.status_code == 0 and answer.body == b""
    assert answer.error is not None and answer.error[0] == ENGINE_UNREACHABLE
    assert (answer.attempts, answer.retried) == (3, 2)
    assert engines.failed == 1


async def test_unreachable_engine(tmp_path: Path, engines_for: Callable[..., Any]) -> None:
    from openai_files.testing.engine import bind

    sock = bind()  # a port that listens but is closed before use: nothing answers there
    port = sock.getsockname()[1]
    sock.close()
    engines = await engines_for(
        batch_upstream_url=f"http://127.0.0.1:{port}/v1", batch_max_retries=1
    )
    answer = await engines.send(CHAT, "m", body_of())
    assert answer.status_code == 0 and answer.attempts == 2
    assert answer.error is not None and answer.error[0] == ENGINE_UNREACHABLE


async def test_a_timeout_is_retried_then_final(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(
        batch_upstream_url=engine.url, batch_request_timeout_seconds=0.3, batch_max_retries=1
    )
    answer = await engines.send(CHAT, "m", body_of(fault={"hang": True, "fail_first": 1}))
    assert answer.status_code == 200 and answer.attempts == 2
    start = time.monotonic()
    answer = await engines.send(CHAT, "m", body_of(fault={"hang": True}))
    assert answer.status_code == 0 and answer.attempts == 2
    assert answer.error is not None and answer.error[0] == ENGINE_TIMEOUT
    assert 0.6 <= time.monotonic() - start < 5


async def test_a_slow_trickle_is_bounded_by_the_whole_attempt(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    """The timeout bounds an attempt whole, not each read: an answer that takes longer in
    all (here its latency alone) times out."""
    engines = await engines_for(
        batch_upstream_url=engine.url, batch_request_timeout_seconds=0.2, batch_max_retries=0
    )
    answer = await engines.send(CHAT, "m", body_of(fault={"latency": 1.0}))
    assert answer.error is not None and answer.error[0] == ENGINE_TIMEOUT


@pytest.mark.parametrize(
    "fault",
    [
        {"malformed": True},
        {"answer_text": "[1, 2]"},
        # JSON on the wire is UTF-8: a BOM in front of it is not JSON (json.loads would take
        # it from bytes, and the result line would hold it).
        {"answer_text": '\ufeff{"id": "x"}'},
    ],
)
async def test_a_2xx_that_is_not_a_json_object(
    fault: dict[str, Any], engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    answer = await engines.send(CHAT, "m", body_of(fault=fault))
    assert answer.status_code == 200 and answer.attempts == 1
    assert answer.error is not None and answer.error[0] == INVALID_ENGINE_RESPONSE
    assert answer.body  # kept, for the error file's message
    assert engines.failed == 1


async def test_a_content_coded_answer_is_refused(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    """Asked for identity, the engine gzips anyway: refused (not decoded without a bound)."""
    engines = await engines_for(batch_upstream_url=engine.url)
    answer = await engines.send(CHAT, "m", body_of(fault={"gzip": True}))
    assert answer.status_code == 200 and answer.attempts == 1
    assert answer.error == (
        INVALID_ENGINE_RESPONSE,
        "The engine answered with Content-Encoding 'gzip', though asked for identity.",
    )
    assert engine.received[-1].headers["accept-encoding"] == "identity"


async def test_an_unreachable_engine_is_named_in_the_log_not_in_the_error(
    engines_for: Callable[..., Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The error goes to the tenant's error file: it says what happened, not where the
    engine is."""
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engines = await engines_for(batch_upstream_url=url, batch_max_retries=0)
    with caplog.at_level(logging.INFO, logger="openai_files.batches"):
        answer = await engines.send(CHAT, "m", body_of())
    assert answer.error == (
        ENGINE_UNREACHABLE,
        "The engine could not be reached: the connection could not be made.",
    )
    assert f"127.0.0.1:{port}" in caplog.text


@pytest.mark.parametrize(
    ("field", "value", "fault"),
    [
        ("batch_upstream_url", "http://user:secret@engine:8000/v1", "user or password"),
        ("batch_upstream_api_key", "sk-one\r\nX-Injected: 1", "printable ASCII"),
        ("batch_upstream_api_key", "sk one", "printable ASCII"),
    ],
)
def test_an_engine_setting_that_cannot_go_in_a_request_is_refused_at_start(
    field: str, value: str, fault: str
) -> None:
    fields: dict[str, Any] = {"batch_upstream_url": "http://engine:8000/v1", field: value}
    with pytest.raises(ValueError, match=fault):
        Settings(**fields)


async def test_a_400_is_final_at_once(engine: FakeEngine, engines_for: Callable[..., Any]) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    fault = {"status": 400, "message": "bad temperature", "code": "invalid_value"}
    answer = await engines.send(CHAT, "m", body_of(fault=fault))
    assert answer.status_code == 400 and answer.error is None
    assert (answer.attempts, answer.retried) == (1, 0)
    assert json.loads(answer.body)["error"]["message"] == "bad temperature"
    assert len(engine.received) == 1 and engines.failed == 1


async def test_retries_exhausted_give_the_last_answer(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url, batch_max_retries=3)
    body = body_of(fault={"status": 503, "message": "overloaded"})
    answer = await engines.send(CHAT, "m", body)
    assert answer.status_code == 503 and answer.error is None
    assert (answer.attempts, answer.retried) == (4, 3)
    assert json.loads(answer.body)["error"]["message"] == "overloaded"
    assert engine.attempts(body) == 4
    assert (engines.sent, engines.retried, engines.failed) == (4, 3, 1)
    none = await engines_for(batch_upstream_url=engine.url, batch_max_retries=0)
    assert (await none.send(CHAT, "m", body)).attempts == 1


async def test_an_answer_too_large_is_not_read_whole(
    engine: FakeEngine, engines_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(S, "BATCH_MAX_RESPONSE_BYTES", 64 * 1024)
    engines = await engines_for(batch_upstream_url=engine.url)
    answer = await engines.send(CHAT, "m", body_of(fault={"answer_bytes": 64 * 1024 + 1}))
    assert answer.error is not None and answer.error[0] == RESPONSE_TOO_LARGE
    assert answer.status_code == 200 and answer.body == b"" and answer.attempts == 1
    answer = await engines.send(CHAT, "m", body_of(fault={"answer_bytes": 64 * 1024}))
    assert answer.error is None and len(answer.body) == 64 * 1024


async def test_a_streamed_answer_too_large(
    engine: FakeEngine, engines_for: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer with no Content-Length is counted as it streams."""
    monkeypatch.setattr(S, "BATCH_MAX_RESPONSE_BYTES", 64 * 1024)
    engines = await engines_for(batch_upstream_url=engine.url)
    fault = {"answer_bytes": 64 * 1024 + 1, "chunked": True}
    answer = await engines.send(CHAT, "m", body_of(fault=fault))
    assert answer.error is not None and answer.error[0] == RESPONSE_TOO_LARGE
    fault = {"answer_bytes": 64 * 1024, "chunked": True}
    answer = await engines.send(CHAT, "m", body_of(fault=fault))
    assert answer.error is None and len(answer.body) == 64 * 1024


async def test_concurrency_is_bounded(engine: FakeEngine, engines_for: Callable[..., Any]) -> None:
    engines = await engines_for(batch_upstream_url=engine.url, batch_concurrency=4)
    start = time.monotonic()
    answers = await asyncio.gather(
        *(engines.send(CHAT, "m", body_of(i=i, fault={"latency": 0.2})) for i in range(12))
    )
    assert [a.status_code for a in answers] == [200] * 12
    assert time.monotonic() - start >= 0.6  # three rounds of four


async def test_connections_to_an_engine_are_bounded_and_kept_alive(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    """At most --batch-concurrency connections to an engine, reused from one request to
    the next (three rounds of four requests go over the same four connections)."""
    engines = await engines_for(batch_upstream_url=engine.url, batch_concurrency=4)
    sending = [
        asyncio.ensure_future(engines.send(CHAT, "m", body_of(i=i, fault={"latency": 0.4})))
        for i in range(12)
    ]
    await asyncio.sleep(0.2)
    first = set(engine._transports)
    await asyncio.sleep(0.4)
    second = set(engine._transports)
    assert [a.status_code for a in await asyncio.gather(*sending)] == [200] * 12
    assert len(first) == 4
    assert second == first


async def test_cancellation_passes_through(
    engine: FakeEngine, engines_for: Callable[..., Any]
) -> None:
    engines = await engines_for(batch_upstream_url=engine.url)
    task = asyncio.ensure_future(engines.send(CHAT, "m", body_of(fault={"hang": True})))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_retry_after_forms() -> None:
    now = 1_000_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after_seconds({"retry-after": "3"}) == 3
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after": date}, now=now) == 7
    assert retry_after_seconds({"retry-after": date}, now=now + 60) == 0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == (0.25)
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({"retry-after": "nan"}) is None
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "99999"}) == (S.BATCH_RETRY_AFTER_MAX_SECONDS)


def test_backoff_is_jittered_exponential_capped_and_honours_retry_after() -> None:
    for retry in (1, 2, 3, 10, 100):
        ceiling = min(S.BATCH_RETRY_CAP_SECONDS, 0.5 * 2 ** (retry - 1))
        waits = [backoff_seconds(retry, 0.5) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling / 2  # spread over the range, not fixed
    assert all(backoff_seconds(1, 0.5, retry_after=5) >= 5 for _ in range(50))


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = "http://127.0.0.1:9/v1"
BAD_ROUTES = [
    ("routes.json", "{not json", "not valid JSON"),
    ("routes.toml", "[models\n", "not valid TOML"),
    ("routes.json", "[]", "must hold an object"),
    ("routes.json", json.dumps({"engines": {}}), "unknown keys ['engines']"),
    ("routes.json", json.dumps({"models": []}), "models must map"),
    ("routes.json", json.dumps({"models": {"m": "http://x/v1"}}), "model 'm' must be an object"),
    ("routes.json", json.dumps({"models": {"m": {}}}), "model 'm' has no url"),
    ("routes.json", json.dumps({"models": {"m": {"url": "ftp://x/v1"}}}), "http:// or https://"),
    ("routes.json", json.dumps({"models": {"m": {"url": "http://x:8000"}}}), "end in /v1"),
    ("routes.json", json.dumps({"default": {"url": GOOD, "key": "k"}}), "unknown keys ['key']"),
    ("routes.json", json.dumps({"default": {"url": GOOD, "api_key": 5}}), "must be a string"),
    (
        "routes.json",
        json.dumps({"default": {"url": GOOD, "api_key_env": "TEST_NO_SUCH_VARIABLE_X"}}),
        "'TEST_NO_SUCH_VARIABLE_X', which is not set",
    ),
    ("routes.json", json.dumps({"models": {"": {"url": GOOD}}}), "a model name is empty"),
    ("routes.json", json.dumps({"models": {}}), "names no engine"),
]


@pytest.mark.parametrize(("name", "text", "problem"), BAD_ROUTES)
def test_a_bad_routing_file_is_refused_naming_file_and_problem(
    tmp_path: Path, name: str, text: str, problem: str
) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(ValueError) as caught:
        Engines(settings_for(tmp_path, batch_routes_file=str(path)))
    assert str(path) in str(caught.value) and problem in str(caught.value)
    assert "--batch-routes-file" in str(caught.value)


def test_a_missing_routing_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(ValueError, match="cannot be read") as caught:
        Engines(settings_for(tmp_path, batch_routes_file=str(path)))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("engine:8000/v1", "http:// or https://"),
        ("http://engine:8000", "end in /v1"),
        ("http://engine:8000/v1?x=1", "no query"),
    ],
)
def test_a_bad_upstream_url_is_a_settings_error(tmp_path: Path, url: str, problem: str) -> None:
    with pytest.raises(ValueError, match="--batch-upstream-url") as caught:
        settings_for(tmp_path, batch_upstream_url=url)
    assert problem in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("batch_concurrency", 0),
        ("batch_concurrency_per_batch", 0),
        ("batch_max_retries", -1),
        ("batch_request_timeout_seconds", 0.0),
        ("batch_retry_base_seconds", 0.0),
    ],
)
def test_batch_settings_are_checked(tmp_path: Path, name: str, value: Any) -> None:
    with pytest.raises(ValueError, match="--" + name.replace("_", "-")):
        settings_for(tmp_path, **{name: value})


def test_batch_settings_from_the_environment(tmp_path: Path) -> None:
    env = {
        "OPENAI_FILES_BATCH_UPSTREAM_URL": "https://engine.example/v1",
        "OPENAI_FILES_BATCH_UPSTREAM_API_KEY": "sk-env",
        "OPENAI_FILES_BATCH_CONCURRENCY": "8",
        "OPENAI_FILES_BATCH_MAX_RETRIES": "0",
        "OPENAI_FILES_BATCH_REQUEST_TIMEOUT_SECONDS": "2.5",
    }
    settings = Settings.from_env(env, data_dir=tmp_path)
    assert settings.batch_upstream_url == "https://engine.example/v1"
    assert settings.batch_upstream_api_key == "sk-env"
    assert (settings.batch_concurrency, settings.batch_max_retries) == (8, 0)
    assert settings.batch_request_timeout_seconds == 2.5
    assert Engines(settings).configured
    assert batch_engine.Engines(Settings(data_dir=tmp_path)).configured is False
