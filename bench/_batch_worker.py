"""Client-side work of row 10 (bench/batches.py), each in a process of its own; prints one
JSON line.

python -m bench._batch_worker make-input PATH COUNT
python -m bench._batch_worker floor ENGINE_URL PATH CONCURRENCY [aiohttp | httpx [PER_CLIENT]]
python -m bench._batch_worker batch BASE_URL KEY PATH
python -m bench._batch_worker sdk-batch BASE_URL KEY PATH   # the peer, through the official SDK
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

#: How often the client asks for the batch while it runs (seconds).
POLL_SECONDS = 0.05
#: The event loop of the floor's client: uvloop, the loop our server runs on (uvicorn picks
#: it), when installed; asyncio's own otherwise (NOTES.md: httpx is several times slower on it).
LOOP = "asyncio"
try:
    import uvloop

    LOOP = "uvloop"
except ImportError:  # pragma: no cover - the bench extra installs it with the server's
    uvloop = None  # type: ignore[assignment]
#: The model every request names. The fake engine answers any; llama-stack (the peer) names a
#: model it serves `<provider id>/<the engine's model id>` (bench/peers/llama-stack-batches.yaml).
MODEL = "engine/bench-model"


def cmd_make_input(path: str, count: str) -> dict[str, Any]:
    """A batch input file of COUNT chat requests, each a short conversation."""
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(int(count)):
            body = {
                "model": MODEL,
                "messages": [
                    {"role": "system", "content": "You answer in one sentence."},
                    {"role": "user", "content": f"Request {i}: what is {i} times {i + 1}?"},
                ],
                "max_tokens": 16,
            }
            line = {
                "custom_id": f"request-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": body,
            }
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
    return {"bytes": Path(path).stat().st_size}


def bodies_of(path: str) -> list[bytes]:
    """Each line's `body`, as the server sends it: its JSON text as written in the file."""
    out = []
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                out.append(json.dumps(json.loads(raw)["body"], separators=(",", ":")).encode())
    return out


def _run(main: Coroutine[Any, Any, float]) -> float:
    if uvloop is not None:
        return uvloop.run(main)
    return asyncio.run(main)


def cmd_floor(
    engine_url: str, path: str, concurrency: str, client: str = "aiohttp", per_client: str = ""
) -> dict[str, Any]:
    """The floor of row 10: the same bodies sent straight to the engine by a plain asyncio
    client, CONCURRENCY tasks taking the next body in turn, each answer read whole; the
    seconds from the first send to the last answer.

    CLIENT `aiohttp`: one aiohttp.ClientSession of CONCURRENCY connections, the client our
    server sends with (server/batch_engine.py). CLIENT `httpx`: one httpx.AsyncClient of
    CONCURRENCY connections (the transport of the official `openai` SDK), or with PER_CLIENT,
    clients of that many connections each (task i uses client i mod their number): httpx's
    pool looks at every connection it holds whenever a request starts or ends."""
    bodies = bodies_of(path)
    width = int(concurrency)
    url = f"{engine_url}/chat/completions"
    statuses: dict[int, int] = {}
    headers = {"content-type": "application/json"}
    clients = 1

    async def with_aiohttp() -> float:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=width)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as http:
            async with http.post(url, data=bodies[0], headers=headers) as answer:
                await answer.read()  # warm: one connection
            queue = iter(bodies)

            async def worker() -> None:
                for body in queue:
                    async with http.post(url, data=body, headers=headers) as answer:
                        await answer.read()
                        statuses[answer.status] = statuses.get(answer.status, 0) + 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(width)))
            return time.perf_counter() - start

    async def with_httpx() -> float:
        import httpx

        size = int(per_client) if per_client else width
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        pool = [httpx.AsyncClient(limits=limits, timeout=600) for _ in range(-(-width // size))]
        try:
            for http in pool:
                await http.post(url, content=bodies[0], headers=headers)  # warm: one each
            queue = iter(bodies)

            async def worker(http: httpx.AsyncClient) -> None:
                for body in queue:
                    answer = await http.post(url, content=body, headers=headers)
                    statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

            start = time.perf_counter()
            await asyncio.gather(*(worker(pool[i % len(pool)]) for i in range(width)))
            return time.perf_counter() - start
        finally:
            for http in pool:
                await http.aclose()

    if client == "aiohttp":
        seconds = _run(with_aiohttp())
    elif client == "httpx":
        seconds = _run(with_httpx())
        clients = -(-width // int(per_client)) if per_client else 1
    else:
        raise SystemExit(f"floor: the client is aiohttp or httpx, not {client!r}")
    return {
        "seconds": seconds,
        "requests": len(bodies),
        "client": client,
        "clients": clients,
        "statuses": statuses,
        "loop": LOOP,
    }


def cmd_batch(base_url: str, key: str, path: str) -> dict[str, Any]:
    """Row 10 on our server: upload PATH (purpose batch), create the batch, ask for it every
    POLL_SECONDS until it has ended. `seconds`: from sending the create to seeing it
    completed; `server_seconds`: completed_at - created_at as the server reports them
    (whole seconds, as OpenAI's object has them)."""
    from openai_files import Client

    with Client(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.list(limit=1)  # warm: connection and imports
        uploaded = client.upload(path, purpose="batch")
        start = time.perf_counter()
        batch = client.create_batch(uploaded.id, "/v1/chat/completions")
        polls = 0
        #: When the client first saw each status, and the first request counted (seconds
        #: after the create was sent).
        seen: dict[str, float] = {batch.status: time.perf_counter() - start}
        while not batch.ended:
            time.sleep(POLL_SECONDS)
            batch = client.retrieve_batch(batch.id)
            polls += 1
            now = time.perf_counter() - start
            seen.setdefault(batch.status, now)
            if batch.request_counts.completed + batch.request_counts.failed:
                seen.setdefault("first counted", now)
        seconds = time.perf_counter() - start
    counts = batch.request_counts
    return {
        "seconds": seconds,
        "server_seconds": (batch.completed_at or 0) - batch.created_at,
        "status": batch.status,
        "in_progress_at": batch.in_progress_at,
        "created_at": batch.created_at,
        "completed_at": batch.completed_at,
        "total": counts.total if counts else None,
        "completed": counts.completed if counts else None,
        "failed": counts.failed if counts else None,
        "polls": polls,
        "seen": seen,
    }


def cmd_sdk_batch(base_url: str, key: str, path: str) -> dict[str, Any]:
    """`batch` through the official openai SDK (the peer's clients' SDK): upload, create,
    retrieve every POLL_SECONDS until the batch has ended."""
    import openai

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.files.list()  # warm: connection and imports
        uploaded = client.files.create(file=Path(path), purpose="batch")
        start = time.perf_counter()
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
        )
        polls = 0
        while batch.status not in ("completed", "failed", "expired", "cancelled"):
            time.sleep(POLL_SECONDS)
            batch = client.batches.retrieve(batch.id)
            polls += 1
        seconds = time.perf_counter() - start
    counts = batch.request_counts
    return {
        "seconds": seconds,
        "server_seconds": (batch.completed_at or 0) - batch.created_at,
        "status": batch.status,
        "errors": [e.model_dump() for e in (batch.errors.data or [])[:3]] if batch.errors else None,
        "total": counts.total if counts else None,
        "completed": counts.completed if counts else None,
        "failed": counts.failed if counts else None,
        "error_file_id": batch.error_file_id,
        "polls": polls,
    }


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "make-input": cmd_make_input,
    "floor": cmd_floor,
    "batch": cmd_batch,
    "sdk-batch": cmd_sdk_batch,
}


def main() -> None:
    name, *args = sys.argv[1:]
    print(json.dumps(COMMANDS[name](*args)))


if __name__ == "__main__":
    main()
