"""A fake OpenAI-compatible engine, for the Batch API's tests and benchmark.

It answers `POST /v1/chat/completions`, `/v1/completions`, `/v1/embeddings`, `/v1/responses`
and `/v1/moderations` with an answer in OpenAI's shape, `usage` included (see `usage_of`),
derived from the request: the model it names and the SHA-256 of the body as received (in the
answer's text, and in the `x-body-sha256` header), so that a test can check that a body
arrived byte for byte. Every answer carries an `x-request-id`.

Faults are injected per request by a `"fault"` object in the request body (a real engine
would refuse the unknown key; this one is ours), or for every request that has none by
`FakeEngine.fault`. Its keys (all optional; see `Fault`):

- `latency`: seconds to wait before answering;
- `status`: answer this status with an error in OpenAI's envelope (`message`, `code`, `type`
  name its fields), and `retry_after`: the `Retry-After` header to send with it, as given
  (seconds, or an HTTP date);
- `reset`: close the connection without answering (a TCP reset);
- `hang`: wait this many seconds (`true`: an hour), or until the client goes, then answer;
- `malformed`: answer 200 with a body that is not JSON; `answer_text`: answer exactly this
  text (with `status`, 200 by default);
- `gzip`: send a normal answer gzip-compressed (`Content-Encoding: gzip`), whatever the
  request's Accept-Encoding says;
- `answer_bytes`: pad a normal answer to at least this many bytes; `chunked`: send the
  answer in chunks, without a Content-Length;
- `fail_first`: the fault applies to the first N attempts of the request only, later ones
  are answered normally; attempts are counted per `key` (by default the body's SHA-256: a
  retry sends the same bytes).

`FakeEngine(...).start()` runs the engine on uvicorn in a thread of this process, on a free
loopback port, and records what it received (`received`, `attempts`; the last
`record_limit` requests). `FakeEngine(latency=0.02, record=False)` is the benchmark's plain
engine. `EngineProcess` runs it in a process of its own (`python -m
openai_files.testing.engine --port 0 --latency 0.02`), so that it does not share the
interpreter of the client that measures; `GET /_engine/stats` counts what it answered.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import dataclasses
import gzip
import hashlib
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .services import LOOPBACK

#: The paths answered, under /v1.
ENDPOINTS = ("chat/completions", "completions", "embeddings", "responses", "moderations")
#: The request key that carries a fault.
FAULT_KEY = "fault"
#: Requests a recording engine keeps (the oldest go first).
DEFAULT_RECORD_LIMIT = 10_000
#: How long `"hang": true` waits.
DEFAULT_HANG_SECONDS = 3600.0
#: Tokens an answer "generates" unless the request asks for fewer.
COMPLETION_TOKENS = 16
#: A `chunked` answer goes out in chunks of this many bytes.
CHUNK_BYTES = 16 * 1024
#: Floats in a fake embedding.
EMBEDDING_DIMENSIONS = 8
#: Idle keep-alive connections are kept this long (longer than a client pool keeps them, so
#: that the client, not the engine, closes them).
KEEP_ALIVE_SECONDS = 75
#: Pending connections the listening socket queues (thousands of clients at once).
BACKLOG = 4096
#: Stopping waits this long for answers in flight (a hanging one is then cancelled).
STOP_GRACE_SECONDS = 1
#: The line `python -m openai_files.testing.engine` prints once it listens.
BANNER = "fake OpenAI engine serving at {url}"
_BANNER_LINE = re.compile(r"fake OpenAI engine serving at (http://\S+/v1)")


@dataclasses.dataclass(frozen=True)
class Fault:
    """What to do to a request instead of (or before) answering it (see the module's doc)."""

    latency: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    message: str | None = None
    code: str | None = None
    type: str | None = None
    reset: bool = False
    hang: float | None = None
    malformed: bool = False
    answer_text: str | None = None
    answer_bytes: int = 0
    chunked: bool = False
    gzip: bool = False
    fail_first: int | None = None
    key: str | None = None

    @classmethod
    def parse(cls, value: Any) -> Fault:
        """A fault from its JSON object; ValueError names what does not fit."""
        if isinstance(value, Fault):
            return value
        if not isinstance(value, Mapping):
            raise ValueError(f"{FAULT_KEY} must be an object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(value) - names
        if unknown:
            raise ValueError(f"unknown {FAULT_KEY} keys: {sorted(unknown)}")
        fields: dict[str, Any] = dict(value)
        if fields.get("hang") is True:
            fields["hang"] = DEFAULT_HANG_SECONDS
        if "retry_after" in fields and fields["retry_after"] is not None:
            retry_after = fields["retry_after"]
            if isinstance(retry_after, float) and retry_after.is_integer():
                retry_after = int(retry_after)
            fields["retry_after"] = str(retry_after)
        flags = ("reset", "malformed", "chunked", "gzip")
        numbers = ("latency", "hang")
        integers = ("status", "answer_bytes", "fail_first")
        for name, got in fields.items():
            if got is None:
                continue
            if name in flags:
                fits = isinstance(got, bool)
            elif name in numbers:
                fits = isinstance(got, int | float) and not isinstance(got, bool)
            elif name in integers:
                fits = isinstance(got, int) and not isinstance(got, bool)
            else:
                fits = isinstance(got, str)
            if not fits:
                raise ValueError(f"{FAULT_KEY}.{name} has the wrong type: {got!r}")
        return cls(**fields)

    def applies(self, attempt: int) -> bool:
        """Whether the fault applies to this (1-based) attempt."""
        return self.fail_first is None or attempt <= self.fail_first


@dataclasses.dataclass(frozen=True)
class Received:
    """One request as the engine received it."""

    path: str  # e.g. /v1/chat/completions
    headers: dict[str, str]  # lower-case names; repeated headers joined by ", "
    body: bytes
    sha256: str
    key: str  # what its attempts are counted by
    attempt: int  # 1-based
    at: float  # time.monotonic() when it arrived


def usage_of(path: str, body: bytes) -> dict[str, Any]:
    """The `usage` the engine answers for `body` sent to `path` (under /v1): prompt tokens
    are the body's length over 4 (at least 1), completion tokens COMPLETION_TOKENS (or the
    request's `max_tokens`, `max_completion_tokens`, `max_output_tokens` when smaller), half
    the prompt tokens are cached, a quarter of the completion tokens are reasoning.
    Moderations have no usage ({})."""
    kind = path.removeprefix("/v1/")
    try:
        request = json.loads(body)
    except ValueError:
        request = {}
    if not isinstance(request, dict):
        request = {}
    prompt = max(1, len(body) // 4)
    completion = COMPLETION_TOKENS
    for name in ("max_tokens", "max_completion_tokens", "max_output_tokens"):
        limit = request.get(name)
        if isinstance(limit, int) and not isinstance(limit, bool) and 0 < limit < completion:
            completion = limit
    cached, reasoning = prompt // 2, completion // 4
    if kind == "embeddings":
        return {"prompt_tokens": prompt, "total_tokens": prompt}
    if kind == "moderations":
        return {}
    if kind == "responses":
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion,
        }
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if kind == "chat/completions":
        usage["prompt_tokens_details"] = {"cached_tokens": cached, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def answer_text(model: str, sha256: str) -> str:
    """The text the engine "generates" for a body whose SHA-256 is `sha256`."""
    return f"fake answer of {model} to a body of sha256 {sha256}"


def answer_of(path: str, body: bytes, request: Mapping[str, Any]) -> dict[str, Any]:
    """The engine's normal answer to `request` (`body` parsed) sent to `path`."""
    kind = path.removeprefix("/v1/")
    sha = hashlib.sha256(body).hexdigest()
    model = str(request.get("model"))
    created = int(time.time())
    usage = usage_of(path, body)
    text = answer_text(model, sha)
    if kind == "chat/completions":
        return {
            "id": f"chatcmpl-{sha[:24]}",
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage,
            "system_fingerprint": "fp_fake",
        }
    if kind == "completions":
        return {
            "id": f"cmpl-{sha[:24]}",
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        }
    if kind == "embeddings":
        inputs = request.get("input")
        count = len(inputs) if isinstance(inputs, list) and inputs else 1
        data = []
        for index in range(count):
            seed = hashlib.sha256(f"{sha}:{index}".encode()).digest()
            floats = [(b - 128) / 128 for b in seed[:EMBEDDING_DIMENSIONS]]
            vector: Any = floats
            if request.get("encoding_format") == "base64":
                vector = base64.b64encode(struct.pack(f"<{len(floats)}f", *floats)).decode()
            data.append({"object": "embedding", "index": index, "embedding": vector})
        return {"object": "list", "data": data, "model": model, "usage": usage}
    if kind == "responses":
        return {
            "id": f"resp_{sha[:32]}",
            "object": "response",
            "created_at": created,
            "status": "completed",
            "error": None,
            "incomplete_details": None,
            "model": model,
            "output": [
                {
                    "type": "message",
                    "id": f"msg_{sha[:32]}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": usage,
        }
    # moderations
    inputs = request.get("input")
    count = len(inputs) if isinstance(inputs, list) and inputs else 1
    categories = ("harassment", "hate", "self-harm", "sexual", "violence")
    return {
        "id": f"modr-{sha[:24]}",
        "model": model,
        "results": [
            {
                "flagged": False,
                "categories": dict.fromkeys(categories, False),
                "category_scores": dict.fromkeys(categories, 0.0),
            }
            for _ in range(count)
        ],
    }


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    429: "requests",
}


def error_body(
    status: int,
    message: str,
    *,
    code: str | None = None,
    type: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """An error in OpenAI's envelope."""
    kind = type or _ERROR_TYPES.get(
        status, "server_error" if status >= 500 else "invalid_request_error"
    )
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


class FakeEngine:
    """The fake engine: its app, its records, and its server (`start`, `stop`).

    `latency`: seconds every answer waits; `record`: keep what was received (`received`,
    `attempts`), at most `record_limit` requests; `fault`: applied to every request that
    carries none; `api_key`: when set, a request without `Authorization: Bearer <api_key>`
    is a 401, as a real engine's.
    """

    def __init__(
        self,
        *,
        latency: float = 0.0,
        record: bool = True,
        record_limit: int = DEFAULT_RECORD_LIMIT,
        fault: Fault | Mapping[str, Any] | None = None,
        api_key: str | None = None,
    ) -> None:
        self.latency = latency
        self.record = record
        self.fault: Fault | None = None if fault is None else Fault.parse(fault)
        self.api_key = api_key
        self.app = create_app(self)
        self.port = 0
        self._lock = threading.Lock()
        self._received: collections.deque[Received] = collections.deque(maxlen=record_limit)
        self._attempts: collections.Counter[str] = collections.Counter()
        self._requests = 0
        self._by_path: collections.Counter[str] = collections.Counter()
        self._transports: dict[tuple[str, int], asyncio.Transport] = {}
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- what the tests read --
    @property
    def url(self) -> str:
        """The engine's base URL, `http://127.0.0.1:<port>/v1`."""
        return f"http://{LOOPBACK}:{self.port}/v1"

    @property
    def received(self) -> list[Received]:
        """The requests received (the last `record_limit`), oldest first."""
        with self._lock:
            return list(self._received)

    @property
    def requests(self) -> int:
        """How many requests arrived (recorded or not)."""
        return self._requests

    def attempts(self, key: str | bytes) -> int:
        """How many times a request arrived: by its fault's `key`, or by its body."""
        if isinstance(key, bytes):
            key = hashlib.sha256(key).hexdigest()
        with self._lock:
            return self._attempts[key]

    def stats(self) -> dict[str, Any]:
        """Requests counted, in all and by path."""
        with self._lock:
            return {"requests": self._requests, "by_path": dict(self._by_path)}

    def clear(self) -> None:
        """Forget what was received and the attempts counted."""
        with self._lock:
            self._received.clear()
            self._attempts.clear()

    # -- the server --
    def start(self, port: int = 0, timeout: float = 30.0) -> Self:
        """Serve on a free loopback port (or `port`) from a thread of this process."""
        sock = bind(port)
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(self.config())
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="fake-engine"
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                sock.close()
                raise RuntimeError("the fake engine did not start")
            time.sleep(0.01)
        return self  # uvicorn closes the socket when it stops

    def config(self) -> Config:
        """uvicorn's configuration of the engine."""
        return uvicorn.Config(
            self.app,
            loop="auto",
            http=self._protocol(),
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            backlog=BACKLOG,
            timeout_graceful_shutdown=STOP_GRACE_SECONDS,
        )

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(STOP_GRACE_SECONDS + 10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start() if self._server is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _protocol(self) -> type[HttpToolsProtocol]:
        """uvicorn's protocol, keeping each connection's transport (by the client's address)
        so that a `reset` fault can close it."""
        transports = self._transports

        class Protocol(HttpToolsProtocol):
            def __init__(
                self,
                config: Config,
                server_state: ServerState,
                app_state: dict[str, Any],
                _loop: asyncio.AbstractEventLoop | None = None,
            ) -> None:
                super().__init__(config, server_state, app_state, _loop)
                self.peer: tuple[str, int] | None = None

            def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
                super().connection_made(transport)
                peer = transport.get_extra_info("peername")
                if peer:
                    self.peer = (str(peer[0]), int(peer[1]))
                    transports[self.peer] = transport

            def connection_lost(self, exc: Exception | None) -> None:
                if self.peer is not None:
                    transports.pop(self.peer, None)
                super().connection_lost(exc)

        return Protocol

    # -- answering --
    async def answer(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        sha = hashlib.sha256(body).hexdigest()
        self._requests += 1
        self._by_path[path] += 1
        headers = {"x-request-id": f"req_{self._requests:08x}{sha[:16]}", "x-body-sha256": sha}
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        fault = self.fault
        bad_fault = None
        if isinstance(parsed, dict) and FAULT_KEY in parsed:
            try:
                fault = Fault.parse(parsed[FAULT_KEY])
            except ValueError as exc:
                bad_fault = str(exc)
        key = fault.key if fault is not None and fault.key else sha
        attempt = 1
        if self.record or (fault is not None and fault.fail_first is not None):
            with self._lock:
                self._attempts[key] += 1
                attempt = self._attempts[key]
                if self.record:
                    self._received.append(
                        Received(
                            path=path,
                            headers={
                                name: ", ".join(request.headers.getlist(name))
                                for name in request.headers
                            },
                            body=body,
                            sha256=sha,
                            key=key,
                            attempt=attempt,
                            at=time.monotonic(),
                        )
                    )
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.api_key is not None and request.headers.get("authorization") != (
            f"Bearer {self.api_key}"
        ):
            return _error(401, "Incorrect API key provided.", headers, code="invalid_api_key")
        if bad_fault is not None:
            return _error(400, bad_fault, headers, param=FAULT_KEY)
        if fault is not None and fault.applies(attempt):
            faulted = await self._fault(request, fault, headers)
            if faulted is not None:
                return faulted
        if not isinstance(parsed, dict):
            return _error(
                400,
                "We could not parse the JSON body of your request. (HINT: This likely means "
                "you aren't using your HTTP library correctly.)",
                headers,
            )
        if not isinstance(parsed.get("model"), str):
            return _error(400, "you must provide a model parameter", headers, param="model")
        answer = answer_of(path, body, parsed)
        if fault is not None and fault.applies(attempt) and fault.answer_bytes:
            answer["padding"] = ""
            size = len(json.dumps(answer, separators=(",", ":")).encode())
            answer["padding"] = "x" * max(0, fault.answer_bytes - size)
        if fault is not None and fault.applies(attempt) and fault.chunked:
            return _chunked(json.dumps(answer, separators=(",", ":")).encode(), headers)
        if fault is not None and fault.applies(attempt) and fault.gzip:
            packed = gzip.compress(json.dumps(answer, separators=(",", ":")).encode())
            headers["content-encoding"] = "gzip"
            return Response(packed, media_type="application/json", headers=headers)
        return JSONResponse(answer, headers=headers)

    async def _fault(
        self, request: Request, fault: Fault, headers: dict[str, str]
    ) -> Response | None:
        """Apply `fault`: the answer it makes, or None to answer normally."""
        if fault.latency:
            await asyncio.sleep(fault.latency)
        if fault.hang is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_disconnected(request), fault.hang)
        if fault.reset:
            client = request.scope.get("client")
            transport = self._transports.get((client[0], client[1])) if client else None
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:  # a reset (RST), not an orderly close (FIN)
                    with contextlib.suppress(OSError):
                        sock.setsockopt(
                            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                        )
                transport.abort()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(_disconnected(request), 5)
            return Response(b"", status_code=500, headers=headers)  # not sent: the client is gone
        if fault.malformed:
            return Response(
                b"<html>this is not JSON {", media_type="application/json", headers=headers
            )
        if fault.answer_text is not None:
            return Response(
                fault.answer_text.encode(),
                status_code=fault.status or 200,
                media_type="application/json",
                headers=headers,
            )
        if fault.status is not None:
            if fault.retry_after is not None:
                headers["retry-after"] = fault.retry_after
            message = fault.message or f"fault injected: status {fault.status}"
            return _error(fault.status, message, headers, code=fault.code, type=fault.type)
        return None

    async def stats_route(self, request: Request) -> Response:
        return JSONResponse(self.stats())


async def _disconnected(request: Request) -> None:
    """Return once the client has gone."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _chunked(content: bytes, headers: dict[str, str]) -> Response:
    """`content` in chunks of CHUNK_BYTES, with no Content-Length."""

    async def chunks() -> AsyncIterator[bytes]:
        for at in range(0, len(content), CHUNK_BYTES):
            yield content[at : at + CHUNK_BYTES]

    return StreamingResponse(chunks(), media_type="application/json", headers=headers)


def _error(
    status: int,
    message: str,
    headers: dict[str, str],
    *,
    code: str | None = None,
    type: str | None = None,
    param: str | None = None,
) -> Response:
    body = error_body(status, message, code=code, type=type, param=param)
    return JSONResponse(body, status_code=status, headers=headers)


def create_app(engine: FakeEngine) -> Starlette:
    """The engine's ASGI app: the endpoints of ENDPOINTS, and `GET /_engine/stats`."""
    routes = [Route(f"/v1/{path}", engine.answer, methods=["POST"]) for path in ENDPOINTS]
    routes.append(Route("/_engine/stats", engine.stats_route, methods=["GET"]))
    return Starlette(routes=routes)


def bind(port: int = 0) -> socket.socket:
    """A listening socket on the loopback address (`port` 0: a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((LOOPBACK, port))
        sock.listen(BACKLOG)
        sock.set_inheritable(True)
    except BaseException:
        sock.close()
        raise
    return sock


class EngineProcess:
    """The fake engine in a process of its own (`python -m openai_files.testing.engine`),
    on a free loopback port; its output goes to `log_path`. Stop it with `stop()`."""

    def __init__(self, log_path: Path, *, latency: float = 0.0, args: Sequence[str] = ()) -> None:
        self.log_path = Path(log_path)
        self.latency = latency
        self.args = list(args)
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30.0) -> Self:
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "openai_files.testing.engine",
                "--port", "0", "--latency", str(self.latency), *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _BANNER_LINE.search(self.log_path.read_text(errors="replace"))
            if match:
                self.url = match.group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the fake engine did not start:\n{self.log_path.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m openai_files.testing.engine",
        description="A fake OpenAI-compatible engine on 127.0.0.1 (for tests and benchmarks).",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: a free one)")
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds every answer waits (default 0)"
    )
    parser.add_argument(
        "--record", action="store_true", help="keep the requests received (in memory, bounded)"
    )
    parser.add_argument("--api-key", default=None, help="the key requests must send")
    args = parser.parse_args(argv)
    engine = FakeEngine(latency=args.latency, record=args.record, api_key=args.api_key)
    sock = bind(args.port)
    engine.port = sock.getsockname()[1]
    print(BANNER.format(url=engine.url), flush=True)
    server = uvicorn.Server(engine.config())
    server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
