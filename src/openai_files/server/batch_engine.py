"""The engines batches run against: OpenAI-compatible servers, reached over HTTP/1.1.

Which engine serves a model: the routing file (`--batch-routes-file`) when it names the
model, else its default, else `--batch-upstream-url`. The routing file, JSON or TOML (by its
extension), is read and checked when `Engines` is built (a ValueError names the file and
what is wrong in it)::

    {"models": {"gpt-4o-mini": {"url": "http://gpu-1:8000/v1", "api_key": "sk-..."},
                "text-embedding-3-small": {"url": "http://gpu-2:8000/v1",
                                           "api_key_env": "EMBEDDINGS_KEY"}},
     "default": {"url": "http://gpu-3:8000/v1"}}

Each engine's URL is its API's base, ending in /v1: a request line's url
`/v1/chat/completions` is sent to `{base}/chat/completions`. `api_key` (or `api_key_env`,
the environment variable that holds it) is sent as `Authorization: Bearer ...`.

One pooled HTTP/1.1 client (an `aiohttp.ClientSession`) per distinct engine URL; at most
`--batch-concurrency` requests are in flight in all (a retry's wait holds no slot). A
request's body goes out as given, byte for byte. 429, 5xx, connection failures and timeouts
are retried (`--batch-max-retries`) after an exponential backoff with full jitter, never
sooner than the answer's Retry-After; any other answer is final at once. `Engines.send`
never raises for engine trouble: what it could not get is an `EngineAnswer` whose `error`
says why.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import random
import time
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import anyio.to_thread

from .._version import __version__
from . import _json
from . import settings as S
from .settings import Settings, engine_key_problem, engine_url_problem

log = logging.getLogger("openai_files.batches")

#: The codes of `EngineAnswer.error`.
ENGINE_UNREACHABLE = "engine_unreachable"
ENGINE_TIMEOUT = "engine_timeout"
RESPONSE_TOO_LARGE = "response_too_large"
INVALID_ENGINE_RESPONSE = "invalid_engine_response"
NO_ENGINE = "no_engine"
#: The routing file's keys, and those of each engine in it.
ROUTES_KEYS = frozenset({"models", "default"})
ENGINE_KEYS = frozenset({"url", "api_key", "api_key_env"})


@dataclasses.dataclass(frozen=True)
class EngineAnswer:
    """What came of sending one request."""

    status_code: int  # the engine's final HTTP status (0: no HTTP answer at all)
    body: bytes  # its body (bounded by settings.BATCH_MAX_RESPONSE_BYTES)
    request_id: str | None  # the engine's x-request-id header, if any
    #: (code, message) when there is no usable HTTP answer: connection failures or timeouts
    #: after the last retry, a body too large, a 2xx body that is not a JSON object, no
    #: engine for the model.
    error: tuple[str, str] | None
    attempts: int  # how many times it was sent
    retried: int  # how many of those were retries
    #: A 2xx answer's body, decoded (the JSON object it is; parsed once, here).
    parsed: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Engine:
    """One engine: its API's base URL (no trailing slash) and the key sent to it."""

    url: str
    api_key: str


@dataclasses.dataclass(frozen=True)
class Routes:
    """Which engine serves which model; `default` the others (None: no engine for them)."""

    models: Mapping[str, Engine]
    default: Engine | None

    def engine_for(self, model: str | None) -> Engine | None:
        if model is not None and model in self.models:
            return self.models[model]
        return self.default

    @property
    def engines(self) -> list[Engine]:
        found = [*self.models.values(), *([self.default] if self.default else [])]
        return list(dict.fromkeys(found))


def load_routes(path: Path, fallback: Engine | None = None) -> Routes:
    """The routes of a routing file (JSON, or TOML for a `.toml` file); a model it does not
    name goes to its default, else to `fallback`. ValueError names the file and the fault."""

    def bad(why: str) -> ValueError:
        return ValueError(f"the batch routing file {path} (--batch-routes-file): {why}")

    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise bad(f"cannot be read ({exc.strerror or exc})") from None
    try:
        if path.suffix.lower() == ".toml":
            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise bad(f"it is not valid {kind} ({exc})") from None
    if not isinstance(data, dict):
        raise bad('it must hold an object: {"models": {...}, "default": {...}}')
    unknown = set(data) - ROUTES_KEYS
    if unknown:
        raise bad(f"unknown keys {sorted(unknown)} (it may have models and default)")
    models = data.get("models", {})
    if not isinstance(models, dict):
        raise bad("models must map model names to engines")

    def engine(where: str, value: Any) -> Engine:
        if not isinstance(value, dict):
            raise bad(f'{where} must be an object, {{"url": ..., "api_key": ...}}')
        unknown = set(value) - ENGINE_KEYS
        if unknown:
            raise bad(f"{where} has unknown keys {sorted(unknown)}")
        url = value.get("url")
        if not isinstance(url, str):
            raise bad(f"{where} has no url")
        problem = engine_url_problem(url)
        if problem:
            raise bad(f"{where}'s url {url!r}: {problem}")
        if "api_key" in value and "api_key_env" in value:
            raise bad(f"{where} has both api_key and api_key_env: keep one")
        key = value.get("api_key", "")
        if "api_key_env" in value:
            name = value["api_key_env"]
            if not isinstance(name, str) or not os.environ.get(name):
                raise bad(f"{where}'s api_key_env names {name!r}, which is not set")
            key = os.environ[name]
        if not isinstance(key, str):
            raise bad(f"{where}'s api_key must be a string")
        problem = engine_key_problem(key)
        if problem:
            raise bad(f"{where}'s api_key: {problem}")
        return Engine(url=url.rstrip("/"), api_key=key)

    routed = {}
    for model, value in models.items():
        if not model:
            raise bad("a model name is empty")
        routed[model] = engine(f"model {model!r}", value)
    default = engine("default", data["default"]) if "default" in data else fallback
    if not routed and default is None:
        raise bad("it names no engine (no models, no default)")
    return Routes(models=routed, default=default)


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait an answer asks for: `retry-after-ms`, else `Retry-After` in seconds or as an
    HTTP date; at most BATCH_RETRY_AFTER_MAX_SECONDS; None when it asks none (or is garbled)."""
    wait: float | None = None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            wait = float(millis) / 1000
        except ValueError:
            wait = None
    value = headers.get("retry-after")
    if wait is None and value is not None:
        try:
            wait = float(value)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            wait = when.timestamp() - (time.time() if now is None else now)
    if wait is None or wait != wait:  # absent, or NaN
        return None
    return min(max(wait, 0.0), S.BATCH_RETRY_AFTER_MAX_SECONDS)


def backoff_seconds(retry: int, base: float, retry_after: float | None = None) -> float:
    """How long to wait before the `retry`th retry (1-based): a random time under
    base * 2**(retry - 1), at most BATCH_RETRY_CAP_SECONDS (full jitter), and at least
    the answer's Retry-After."""
    ceiling = min(S.BATCH_RETRY_CAP_SECONDS, base * 2 ** min(retry - 1, 62))
    wait = random.uniform(0, ceiling)
    return max(wait, retry_after or 0.0)


@dataclasses.dataclass
class _Attempt:
    """The outcome of one attempt: an HTTP answer, or an error with no answer."""

    status_code: int = 0
    body: bytes = b""
    request_id: str | None = None
    error: tuple[str, str] | None = None
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        if self.error is not None:
            return self.error[0] in (ENGINE_UNREACHABLE, ENGINE_TIMEOUT)
        return self.status_code == 429 or 500 <= self.status_code <= 599


class Engines:
    """The engines of one server process, built from its settings.

    `configured` is False when no engine is set (POST /v1/batches is then refused naming
    --batch-upstream-url). A bad routing file is a ValueError here. `open()` builds the
    clients, `aclose()` closes them. The counters (`sent`, `retried`, `failed`,
    `latency_seconds_sum`, `latency_count`) are for /metrics: attempts sent, of which
    retries; requests whose result is not a 2xx JSON answer; the time from sending an
    attempt to having its answer whole, summed over the attempts that got one.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        fallback = (
            Engine(settings.batch_upstream_url.rstrip("/"), settings.batch_upstream_api_key)
            if settings.batch_upstream_url
            else None
        )
        if settings.batch_routes_file:
            self.routes = load_routes(Path(settings.batch_routes_file).expanduser(), fallback)
        else:
            self.routes = Routes(models={}, default=fallback)
        self.configured = bool(self.routes.engines)
        self.max_retries = settings.batch_max_retries
        self.retry_base = settings.batch_retry_base_seconds
        self._slots = asyncio.Semaphore(settings.batch_concurrency)
        self._clients: dict[str, aiohttp.ClientSession] = {}
        self._user_agent = f"openai-files/{__version__} (batch)"
        self.sent = 0
        self.retried = 0
        self.failed = 0
        self.latency_seconds_sum = 0.0
        self.latency_count = 0

    def serves(self, model: str | None) -> bool:
        """Whether some engine serves `model` (None: a request that names none)."""
        return self.routes.engine_for(model) is not None

    async def open(self) -> None:
        """Build the pooled client of each distinct engine URL (in the running loop)."""
        for engine in self.routes.engines:
            if engine.url not in self._clients:
                self._clients[engine.url] = _session(self.settings)

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for each in clients:
            await each.close()

    async def send(self, url_path: str, model: str | None, body: bytes) -> EngineAnswer:
        """POST `body` (bytes, as given, content-type application/json) to
        `{base}{url_path minus the leading /v1}` of the engine routed for `model`: retries
        429, 5xx, connection errors and timeouts with exponential backoff and full jitter,
        never sooner than the answer's Retry-After (seconds or HTTP date, capped), at most
        `max_retries` retries; a 4xx other than 429 is final at once. Never raises for
        engine trouble (asyncio.CancelledError passes through)."""
        engine = self.routes.engine_for(model)
        if engine is None:
            self.failed += 1
            shown = "a request that names no model" if model is None else f"model {model!r}"
            return EngineAnswer(0, b"", None, (NO_ENGINE, f"No engine is set for {shown}."), 0, 0)
        client = self._clients.get(engine.url)
        if client is None:
            raise RuntimeError("Engines.send before Engines.open")
        url = engine.url + (url_path[3:] if url_path.startswith("/v1/") else url_path)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "identity",  # the answer's size is its size on the wire
            "User-Agent": self._user_agent,
        }
        if engine.api_key:
            headers["Authorization"] = f"Bearer {engine.api_key}"
        attempts = 0
        while True:
            if attempts:
                self.retried += 1
            attempts += 1
            self.sent += 1
            async with self._slots:
                outcome = await self._attempt(client, url, headers, body)
            if not outcome.retryable or attempts > self.max_retries:
                break
            await asyncio.sleep(backoff_seconds(attempts, self.retry_base, outcome.retry_after))
        error = outcome.error
        parsed = None
        if error is None and 200 <= outcome.status_code <= 299:
            parsed = await _json_object(outcome.body)
        if error is None and 200 <= outcome.status_code <= 299 and parsed is None:
            error = (
                INVALID_ENGINE_RESPONSE,
                f"The engine answered {outcome.status_code} with a body that is not a JSON object.",
            )
        if error is not None or not 200 <= outcome.status_code <= 299:
            self.failed += 1
        return EngineAnswer(
            status_code=outcome.status_code,
            body=outcome.body,
            request_id=outcome.request_id,
            error=error,
            attempts=attempts,
            retried=attempts - 1,
            parsed=parsed,
        )

    async def _attempt(
        self, client: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes
    ) -> _Attempt:
        """Send once; read the answer, bounded."""
        timeout = self.settings.batch_request_timeout_seconds
        start = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                async with client.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    request_id = answer.headers.get("x-request-id")
                    coding = answer.headers.get("content-encoding", "identity").lower()
                    if coding not in ("", "identity"):
                        message = (
                            f"The engine answered with Content-Encoding {coding[:40]!r}, "
                            "though asked for identity."
                        )
                        return _Attempt(
                            answer.status, b"", request_id, (INVALID_ENGINE_RESPONSE, message)
                        )
                    limit = S.BATCH_MAX_RESPONSE_BYTES
                    declared = answer.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > limit:
                        return _too_large(answer.status, request_id)
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in answer.content.iter_any():
                        size += len(chunk)
                        if size > limit:
                            return _too_large(answer.status, request_id)
                        chunks.append(chunk)
                    self.latency_seconds_sum += time.monotonic() - start
                    self.latency_count += 1
                    return _Attempt(
                        status_code=answer.status,
                        body=b"".join(chunks),
                        request_id=request_id,
                        retry_after=retry_after_seconds(answer.headers),
                    )
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            message = f"The engine did not answer within {S.shown_float(timeout)} s."
            return _Attempt(error=(ENGINE_TIMEOUT, message))
        except aiohttp.ClientError as exc:
            # Refused or reset connections, an answer cut short or not HTTP: the engine
            # could not be reached (retried). The message goes to the tenant's error file:
            # it says what happened, not where the engine is (that goes to the log).
            log.info("engine %s: %s: %s", url, type(exc).__name__, exc)
            return _Attempt(error=(ENGINE_UNREACHABLE, _unreachable_message(exc)))


def _session(settings: Settings) -> aiohttp.ClientSession:
    """The pooled client of one engine: up to --batch-concurrency keep-alive connections.

    aiohttp rather than httpx (which the client side of this project uses): its pool hands
    a free connection out in constant time and its HTTP parser is compiled, where httpcore's
    pool polls every idle connection's socket whenever a request starts or ends; the
    benchmark's floor (bench/_batch_worker.py) measured the same 10,000 requests sent with
    a tenth of the CPU (bench/NOTES.md, row 10)."""
    timeout = settings.batch_request_timeout_seconds
    connector = aiohttp.TCPConnector(
        limit=max(1, settings.batch_concurrency),
        limit_per_host=0,
        keepalive_timeout=S.BATCH_KEEPALIVE_SECONDS,
        ssl=_TLS.context(),
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(
            total=None, connect=min(S.BATCH_CONNECT_TIMEOUT_SECONDS, timeout)
        ),
        auto_decompress=False,  # asked for identity: the answer's size is its size on the wire
        trust_env=False,
        cookie_jar=aiohttp.DummyCookieJar(),
        raise_for_status=False,
    )


class _TLS:
    """One TLS context for every engine client (each takes tens of ms to make)."""

    _context: Any = None

    @classmethod
    def context(cls) -> Any:
        if cls._context is None:
            import httpx  # its context: certifi's roots, as the project's client trusts

            cls._context = httpx.create_ssl_context()
        return cls._context


def _unreachable_message(exc: aiohttp.ClientError) -> str:
    """What the error file says of an engine that could not be reached: the kind of fault,
    never the engine's address (aiohttp's own messages name the host and URL)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        why = "the connection could not be made"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        why = "the engine closed the connection without answering"
    elif isinstance(exc, aiohttp.ClientPayloadError):
        why = "its answer was cut short or malformed"
    elif isinstance(exc, aiohttp.ClientResponseError):
        why = "its answer is not valid HTTP"
    elif isinstance(exc, aiohttp.ClientOSError):
        why = "the connection failed"
    else:
        why = type(exc).__name__
    return f"The engine could not be reached: {why}."


def _too_large(status_code: int, request_id: str | None) -> _Attempt:
    message = f"The engine's answer is larger than {S.BATCH_MAX_RESPONSE_BYTES} bytes."
    return _Attempt(status_code, b"", request_id, (RESPONSE_TOO_LARGE, message))


async def _json_object(body: bytes) -> dict[str, Any] | None:
    """The JSON object `body` is (JSON's, without Python's NaN and Infinity), else None; in
    a worker thread for a large body (a 16 MiB answer takes a quarter of a second to parse:
    not on the event loop)."""
    if len(body) > S.BATCH_PARSE_INLINE_BYTES:
        return await anyio.to_thread.run_sync(_object_of, body)
    return _object_of(body)


def _object_of(body: bytes) -> dict[str, Any] | None:
    try:
        # UTF-8, as JSON on the wire is: json.loads would guess UTF-16 or take a BOM from
        # bytes, and the result line holds the body's text as decoded from UTF-8.
        value = _json.loads(body.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError included
        return None
    return value if isinstance(value, dict) else None
