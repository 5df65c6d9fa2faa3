"""Row 10: the Batch API end to end. One batch of chat requests, run by our server against
the fake engine (its own process, answering after 20 ms), on both deployments, against the
floor: the same bodies sent to the same engine by a plain asyncio client with as many tasks
as the server's concurrency, in the same run. The floor is aiohttp, the HTTP client our
server sends with (one session of 64 connections); httpx, the transport of the official
`openai` SDK, is shown beside it (its connections spread over clients of 4: one pool of 64
is several times slower still). Beside them, the server's peak RSS growth over a batch of
the largest size a batch may have (50,000 lines).

python -m bench --rows 10    # the row alone (results in bench/results/partial/)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openai_files.server import settings as S
from openai_files.testing.engine import EngineProcess

from ._harness import BenchServer, Figure, peak_growth, run_worker, scaleout_env, scaleout_services
from ._results import BatchMemory, Row10
from ._run import Bench

#: The server's concurrency (both --batch-concurrency and --batch-concurrency-per-batch) and
#: the floor client's tasks.
CONCURRENCY = 64
#: How long the fake engine takes to answer each request.
ENGINE_LATENCY = 0.02
#: The deployments, as the row names them.
DEPLOYMENTS = ("local", "s3")
#: The httpx floor spreads its connections over clients of this many each (NOTES.md: one
#: httpx pool of 64 sent a fifth of the requests a second that 16 pools of 4 sent).
HTTPX_CLIENT_CONNECTIONS = 4
#: The row's targets.
TARGET_RATIO = 1.2
TARGET_MEMORY_MIB = 64


def batch_worker(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return run_worker(*args, module="bench._batch_worker", env=env, timeout=3600)


def make_input(work: Path, count: int) -> Path:
    path = work / f"batch-{count}.jsonl"
    if not path.exists():
        batch_worker("make-input", str(path), str(count))
    return path


def server_args(engine: EngineProcess) -> tuple[str, ...]:
    return (
        "--batch-upstream-url", engine.url,
        "--batch-concurrency", str(CONCURRENCY),
        "--batch-concurrency-per-batch", str(CONCURRENCY),
    )  # fmt: skip


def floor_seconds(engine: EngineProcess, path: Path, client: str = "aiohttp") -> float:
    """A floor: the batch's bodies straight to the engine, CONCURRENCY tasks, with aiohttp
    (one session) or httpx (clients of HTTPX_CLIENT_CONNECTIONS)."""
    args = [engine.url, str(path), str(CONCURRENCY), client]
    if client == "httpx":
        args.append(str(HTTPX_CLIENT_CONNECTIONS))
    return float(batch_worker("floor", *args)["seconds"])


def run_batch(server: BenchServer, path: Path) -> tuple[dict[str, Any], int]:
    """One batch on `server` (upload, create, poll until it ends), with the server's peak
    RSS growth over it (KiB); a batch that does not complete every request is an error."""
    assert server.first_key
    with peak_growth(server.pid) as mem:
        out = batch_worker("batch", server.base_url, server.first_key, str(path))
    if out["status"] != "completed" or out["completed"] != out["total"]:
        raise RuntimeError(f"row 10: the batch did not complete every request: {out}")
    return out, mem["growth_kib"]


def batch_throughput(bench: Bench) -> Row10:
    """Row 10."""
    count = 500 if bench.quick else 10_000
    big = 2_000 if bench.quick else S.BATCH_MAX_REQUESTS
    bench.log(
        f"row 10: a batch of {count} chat requests, engine answering after "
        f"{ENGINE_LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY}, both deployments"
    )
    path, big_path = make_input(bench.work, count), make_input(bench.work, big)
    floor = Figure("floor (aiohttp)", "s")
    floor_httpx = Figure("floor (httpx)", "s")
    client = {d: Figure(f"{d} create to completed, client", "s") for d in DEPLOYMENTS}
    server_s = {d: Figure(f"{d} created_at to completed_at", "s") for d in DEPLOYMENTS}
    memory: dict[str, BatchMemory] = {}
    with (
        EngineProcess(bench.work / "engine.log", latency=ENGINE_LATENCY) as engine,
        scaleout_services() as (pg, s3),
    ):
        env = scaleout_env(pg, s3, prefix="batches")
        servers = {"local": bench.server(*server_args(engine))}
        servers["s3"] = bench.server(*server_args(engine), env=env)
        with servers["local"] as local, servers["s3"] as remote:
            on = {"local": local, "s3": remote}
            for i in range(bench.runs):
                floor.values.append(floor_seconds(engine, path))
                floor_httpx.values.append(floor_seconds(engine, path, "httpx"))
                for deployment, server in on.items():
                    out, _ = run_batch(server, path)
                    client[deployment].values.append(out["seconds"])
                    server_s[deployment].values.append(out["server_seconds"])
                bench.log(
                    f"row 10: run {i + 1}: floor {floor.values[-1]:.1f} s (httpx "
                    f"{floor_httpx.values[-1]:.1f} s), "
                    + ", ".join(f"{d} {client[d].values[-1]:.1f} s" for d in DEPLOYMENTS)
                )
            for deployment, server in on.items():
                out, growth = run_batch(server, big_path)
                memory[deployment] = {
                    "growth_kib": growth,
                    "seconds": out["seconds"],
                    "requests_per_s": big / out["seconds"],
                }
                bench.log(
                    f"row 10: {big} lines on {deployment}: {out['seconds']:.1f} s, server "
                    f"+{growth / 1024:.1f} MiB"
                )
    ratios = {d: client[d].median / floor.median for d in DEPLOYMENTS}
    ratios_httpx = {d: client[d].median / floor_httpx.median for d in DEPLOYMENTS}
    memory_mib = max(m["growth_kib"] for m in memory.values()) / 1024
    return {
        "runs": bench.runs,
        "what": f"Batch API: {count:,} chat requests in one batch, engine answering after "
        f"{ENGINE_LATENCY * 1000:.0f} ms, concurrency {CONCURRENCY}: create to completed",
        "requests": count,
        "concurrency": CONCURRENCY,
        "latency_ms": ENGINE_LATENCY * 1000,
        "ours": {d: client[d].summary() for d in DEPLOYMENTS},
        "ours_server": {d: server_s[d].summary() for d in DEPLOYMENTS},
        "reference": floor.summary(),
        "reference_name": f"the same bodies straight to the engine, {CONCURRENCY} asyncio "
        f"tasks, one aiohttp.ClientSession (our server's HTTP client)",
        "reference_httpx": floor_httpx.summary(),
        "reference_httpx_name": f"the same with httpx (the official SDK's transport), "
        f"AsyncClients of {HTTPX_CLIENT_CONNECTIONS} connections each",
        "ratio_httpx": max(ratios_httpx.values()),
        "ratio": max(ratios.values()),
        "ratio_name": "create to completed (client) / the floor (time)",
        "ratio_local": ratios["local"],
        "ratio_s3": ratios["s3"],
        "requests_per_s": {
            "floor": count / floor.median,
            "floor_httpx": count / floor_httpx.median,
            **{d: count / client[d].median for d in DEPLOYMENTS},
        },
        "memory_requests": big,
        "memory": memory,
        "memory_mib": memory_mib,
        "target": f"<= {TARGET_RATIO} x the floor on both; server peak RSS growth <= "
        f"{TARGET_MEMORY_MIB} MiB on {big:,} lines",
        "met": max(ratios.values()) <= TARGET_RATIO and memory_mib <= TARGET_MEMORY_MIB,
    }


def row10_cells(row: dict[str, Any]) -> list[str]:
    """Row 10's cells: ours, the reference, the ratio."""
    from ._format import fig

    names = {"local": "embedded", "s3": "PostgreSQL + S3"}
    rates = row["requests_per_s"]
    ours = "<br>".join(
        f"{names[d]}: {fig(row['ours'][d])} as the client sees it, "
        f"{row['ours_server'][d]['median']:.0f} s as the server reports it (whole seconds); "
        f"{rates[d]:,.0f} requests/s"
        for d in DEPLOYMENTS
    )
    growth = "; ".join(
        f"{names[d]} +{m['growth_kib'] / 1024:.1f} MiB ({m['requests_per_s']:,.0f} requests/s)"
        for d, m in row["memory"].items()
    )
    ours += f"<br>server peak growth on {row['memory_requests']:,} lines: {growth}"
    ref = f"{row['reference_name']}: {fig(row['reference'])}, {rates['floor']:,.0f} requests/s"
    if "reference_httpx" in row:
        ref += (
            f"<br>{row['reference_httpx_name']}: {fig(row['reference_httpx'])}, "
            f"{rates['floor_httpx']:,.0f} requests/s"
        )
    if "reference_single" in row:
        ref += (
            f"<br>the same with one httpx.AsyncClient of {row['concurrency']} connections: "
            f"{fig(row['reference_single'])}, {rates['floor_single']:,.0f} requests/s"
        )
    ratio = f"{row['ratio']:.2f} (embedded {row['ratio_local']:.2f}, PostgreSQL + S3 " + (
        f"{row['ratio_s3']:.2f}; time)"
    )
    if "ratio_httpx" in row:
        ratio += f"<br>against the httpx floor: {row['ratio_httpx']:.2f}"
    return [ours, ref, ratio]
