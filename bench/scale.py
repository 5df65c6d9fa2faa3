"""Row 5: listing latency against the number of files, up to 1,000,000, on both deployments
(SQLite + a local folder, PostgreSQL + S3), and `GET /v1/files` with no `limit` (10,000
objects): its latency and the server's peak RSS growth.

File rows are inserted directly (the bytes play no part in listing): SQLite with
`executemany`, PostgreSQL with `COPY` (asyncpg's `copy_records_to_table`), then
`VACUUM ANALYZE`, which autovacuum would run on its own after so many inserts.

python -m bench --rows 5          # the row alone (results in bench/results/partial/)
python -m bench.scale pages BASE_URL KEY OBJECTS LIMIT SAMPLES   # the paging reference
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ._harness import (
    BenchServer,
    peak_growth,
    percentile,
    run_worker,
    scaleout_env,
    scaleout_services,
)
from ._results import NoLimit, Row5
from ._run import Bench

ORG, PROJECT = "org-bench", "proj_bench"
COLUMNS = (
    "id",
    "org_id",
    "project_id",
    "bytes",
    "created_at",
    "expires_at",
    "filename",
    "purpose",
    "mime_type",
    "blob_key",
)
#: Rows made and inserted at a time (1,000,000 rows held at once would cost ~300 MiB).
CHUNK = 50_000
#: What a listing with no `limit` returns at most (the API's default limit).
NO_LIMIT = 10_000
REQUESTS = ("list first page", "list deep page", "list last page", "retrieve")
DEPLOYMENTS = {"local": "SQLite + local folder", "postgres": "PostgreSQL + S3"}


def file_id(i: int) -> str:
    return f"file-bench{i:016d}"


def file_rows(count: int, org: str, project: str) -> Iterator[list[tuple[Any, ...]]]:
    """`count` file rows in chunks, ids ascending with `created_at` (200 files share each
    second), two purposes."""
    now = int(time.time())
    for start in range(0, count, CHUNK):
        yield [
            (
                file_id(i),
                org,
                project,
                10,
                now - count // 200 + i // 200,
                None,
                f"{i}.jsonl",
                "batch" if i % 3 else "vision",
                "application/octet-stream",
                file_id(i),
            )
            for i in range(start, min(count, start + CHUNK))
        ]


def populate_sqlite(db_path: Path, org: str, project: str, count: int) -> None:
    with sqlite3.connect(db_path) as db:
        for chunk in file_rows(count, org, project):
            db.executemany(
                f"INSERT INTO files ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * 10)})", chunk
            )
        db.execute(
            "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, ?) ON CONFLICT (org_id) "
            "DO UPDATE SET used_bytes = used_bytes + excluded.used_bytes",
            (org, 10 * count),
        )


async def _populate_postgres(dsn: str, org: str, project: str, count: int) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction():
            for chunk in file_rows(count, org, project):
                await conn.copy_records_to_table("files", records=chunk, columns=list(COLUMNS))
            await conn.execute(
                "INSERT INTO org_usage (org_id, used_bytes) VALUES ($1, $2) ON CONFLICT "
                "(org_id) DO UPDATE SET used_bytes = org_usage.used_bytes + "
                "excluded.used_bytes",
                org,
                10 * count,
            )
        await conn.execute("VACUUM ANALYZE files")
    finally:
        await conn.close()


def populate_postgres(dsn: str, org: str, project: str, count: int) -> None:
    asyncio.run(_populate_postgres(dsn, org, project, count))


def make_key(data: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "openai_files", "keys", "create", "--org", ORG, "--project",
         PROJECT, "--json", "--init", "--data-dir", str(data)],
        capture_output=True, text=True, check=True, env={**os.environ, **env},
    )  # fmt: skip
    key: str = json.loads(done.stdout)["key"]
    return key


def listing_latency(bench: Bench) -> Row5:
    """Row 5."""
    counts = [1000, 5000] if bench.quick else [1000, 10_000, 100_000, 1_000_000]
    rounds, samples = (2, 25) if bench.quick else (6, 60)
    no_limit_samples = 5 if bench.quick else 15
    bench.log(f"row 5: listing latency at {', '.join(map(str, counts))} files, both deployments")
    servers: dict[tuple[str, int], tuple[BenchServer, str, dict[str, str]]] = {}
    populate_s: dict[str, dict[str, float]] = {d: {} for d in DEPLOYMENTS}
    samples_ms: dict[str, dict[int, dict[str, list[float]]]] = {
        d: {c: {} for c in counts} for d in DEPLOYMENTS
    }
    no_limit: dict[str, NoLimit] = {}
    pg_ping: list[float] = []
    with scaleout_services() as (pg, s3):
        try:
            for deployment in DEPLOYMENTS:
                for count in counts:
                    data = bench.work / f"lat-{deployment}-{count}" / "data"
                    env = {} if deployment == "local" else scaleout_env(pg, s3, f"scale-{count}")
                    key = make_key(data, env)
                    start = time.perf_counter()
                    if deployment == "local":
                        populate_sqlite(data / "files.sqlite3", ORG, PROJECT, count)
                    else:
                        populate_postgres(env["OPENAI_FILES_DATABASE"], ORG, PROJECT, count)
                    populate_s[deployment][str(count)] = time.perf_counter() - start
                    bench.log(
                        f"row 5: {count} rows into {deployment} in "
                        f"{populate_s[deployment][str(count)]:.1f} s"
                    )
                    # ids ascend with created_at; the default order is newest first.
                    paths = {
                        "list first page": "/files?limit=100",
                        "list deep page": f"/files?limit=100&after={file_id(count // 2)}",
                        "list last page": f"/files?limit=100&after={file_id(100)}",
                        "retrieve": f"/files/{file_id(count // 3)}",
                    }
                    proc = BenchServer(data, "--log-level", "warning", env=env).start()
                    # The floor of any request: a constant JSON route on the same server stack.
                    paths["constant route"] = proc.root_url + "/bench/constant"
                    servers[deployment, count] = (proc, key, paths)
            # Rounds alternate between the servers, so that the machine's noise falls on all.
            # PostgreSQL's own floor: one round trip (SELECT 1) from a client process.
            ping_dsn = servers["postgres", counts[0]][0].env["OPENAI_FILES_DATABASE"]
            for _ in range(rounds):
                pg_ping.extend(run_scale("ping", ping_dsn, str(samples))["ms"])
                for (deployment, count), (proc, key, paths) in servers.items():
                    result = run_worker(
                        "latency", proc.base_url, key, str(samples), *paths.values()
                    )
                    for name, path in paths.items():
                        samples_ms[deployment][count].setdefault(name, []).extend(
                            result["ms"][path]
                        )
            # No `limit`: up to 10,000 objects in one answer, on the largest listing; the peak
            # covers the first such request the server answers. The reference: the same objects
            # in pages of 100, one after another on the same connection.
            for deployment in DEPLOYMENTS:
                proc, key, _ = servers[deployment, counts[-1]]
                objects = min(NO_LIMIT, counts[-1])
                with peak_growth(proc.pid) as mem:
                    ms = run_worker("latency", proc.base_url, key, str(no_limit_samples), "/files")[
                        "ms"
                    ]["/files"]
                pages = run_scale(
                    "pages", proc.base_url, key, str(objects), "100", str(no_limit_samples)
                )["ms"]
                no_limit[deployment] = {
                    "objects": objects,
                    "of_files": counts[-1],
                    "p50_ms": percentile(ms, 50),
                    "p95_ms": percentile(ms, 95),
                    "pages_p50_ms": percentile(pages, 50),
                    "server_growth_kib": mem["growth_kib"],
                    "server_base_kib": mem["base_kib"],
                }
        finally:
            for proc, _, _ in servers.values():
                proc.stop()
    tables: dict[str, dict[str, dict[str, float]]] = {}
    for deployment in DEPLOYMENTS:
        table = tables[deployment] = {}
        for count in counts:
            got = samples_ms[deployment][count]
            table[str(count)] = {n: percentile(v, 50) for n, v in got.items()}
            table[str(count)].update({f"{n} p95": percentile(v, 95) for n, v in got.items()})
    ratios, worst_p50 = row5_figures(tables)
    worst_ratio = max(ratios.values())
    # The floor of a request, beside the figures: the constant route (the server stack, no
    # store), and on PostgreSQL one round trip to it as well (one more process to wake: on a
    # busy machine, each costs a wait for a core).
    floor = {
        d: statistics.median(tables[d][str(c)]["constant route"] for c in counts)
        for d in DEPLOYMENTS
    }
    floor["postgres"] += percentile(pg_ping, 50)
    growth_mib = max(v["server_growth_kib"] for v in no_limit.values()) / 1024
    return {
        "what": "p50 latency (ms) of GET /v1/files?limit=100 and GET /v1/files/{id}, both "
        f"deployments; GET /v1/files with no limit ({min(NO_LIMIT, counts[-1])} objects)",
        "ours": tables,
        "no_limit": no_limit,
        "populate_s": populate_s,
        "postgres_ping_ms": percentile(pg_ping, 50),
        "floor_ms": floor,
        "reference_name": f"the same request at {counts[0]} files; no limit: the same "
        "objects in pages of 100",
        "ratio": worst_ratio,
        "ratios": ratios,
        "ratio_name": f"p50 at {counts[-1]} / p50 at {counts[0]} (worst request)",
        "worst_p50_ms": max(worst_p50.values()),
        "worst_p50_by_deployment_ms": worst_p50,
        "no_limit_growth_mib": growth_mib,
        "target": "<= 1.5, and p50 <= 5 ms, on each; no limit: server peak growth <= 8 MiB",
        "met": row5_verdict(ratios, worst_p50, growth_mib),
    }


def row5_figures(
    tables: dict[str, dict[str, dict[str, float]]],
) -> tuple[dict[str, float], dict[str, float]]:
    """Each deployment's worst ratio (a request's p50 at the largest count over its p50 at
    the smallest) and its worst p50: the slowest request at any count, not only at the
    largest (a deep page may be slowest at a middle count)."""
    ratios: dict[str, float] = {}
    worst_p50: dict[str, float] = {}
    for deployment, table in tables.items():
        counts = sorted(table, key=int)
        small, large = table[counts[0]], table[counts[-1]]
        ratios[deployment] = max(large[n] / small[n] for n in REQUESTS)
        worst_p50[deployment] = max(table[c][n] for c in counts for n in REQUESTS)
    return ratios, worst_p50


def row5_verdict(ratios: dict[str, float], worst_p50: dict[str, float], growth_mib: float) -> bool:
    return max(ratios.values()) <= 1.5 and max(worst_p50.values()) <= 5 and growth_mib <= 8


def row5_met(row: dict[str, Any]) -> bool:
    """Row 5's verdict, from its per-count tables (as `row5_cells` shows them)."""
    if "ratios" not in row:
        return bool(row["met"])
    ratios, worst = row5_figures(row["ours"])
    return row5_verdict(ratios, worst, row["no_limit_growth_mib"])


def row5_cells(row: dict[str, Any]) -> list[str]:
    """Row 5's ours, reference and ratio cells (also of results from before both
    deployments were measured: `ours` was then the local table alone)."""
    ours = row["ours"]
    tables = ours if "local" in ours else {"local": ours}

    def side(table: dict[str, dict[str, float]]) -> str:
        counts = list(table)
        parts = [f"{n}: {', '.join(f'{table[c][n]:.2f}' for c in counts)}" for n in REQUESTS]
        return f"p50 ms at {' / '.join(counts)} files — " + "; ".join(parts)

    cells = [f"{DEPLOYMENTS[d]}: {side(t)}" for d, t in tables.items()]
    if "floor_ms" in row:
        floor = row["floor_ms"]
        cells.append(
            f"floor (the constant route on the same stack): {DEPLOYMENTS['local']} "
            f"{floor['local']:.2f} ms; {DEPLOYMENTS['postgres']} {floor['postgres']:.2f} ms "
            f"(with one SELECT 1 to PostgreSQL, {row['postgres_ping_ms']:.2f} ms)"
        )
    for d, nl in row.get("no_limit", {}).items():
        cells.append(
            f"{DEPLOYMENTS[d]}, no limit ({nl['objects']} of {nl['of_files']} files): p50 "
            f"{nl['p50_ms']:.0f} ms (p95 {nl['p95_ms']:.0f}), server peak growth "
            f"+{nl['server_growth_kib'] / 1024:.1f} MiB; in pages of 100: "
            f"{nl['pages_p50_ms']:.0f} ms"
        )
    if "ratios" not in row:
        ratio = f"{row['ratio']:.2f} (worst p50 {row['worst_p50_ms']:.2f} ms)"
    else:
        # From the per-count tables, not the run's own worst: results written before the
        # worst p50 covered every count looked at the largest only.
        ratios, worst = row5_figures(tables)
        ratio = ", ".join(
            f"{DEPLOYMENTS[d]} {r:.2f} (worst p50 {worst[d]:.2f} ms)" for d, r in ratios.items()
        )
        ratio += (
            "; no limit "
            + ", ".join(
                f"{nl['p50_ms'] / nl['pages_p50_ms']:.2f}" for nl in row["no_limit"].values()
            )
            + " of the pages' time"
        )
    return ["<br>".join(cells), row["reference_name"], ratio]


def run_scale(*args: str) -> dict[str, Any]:
    """`python -m bench.scale ARGS` in a client process of its own; its JSON answer."""
    return run_worker(*args, module="bench.scale")


def cmd_ping(dsn: str, samples: str) -> dict[str, Any]:
    """PostgreSQL's floor: milliseconds of `SELECT 1` through asyncpg, one connection."""

    async def run() -> list[float]:
        import asyncpg

        conn = await asyncpg.connect(dsn)
        try:
            for _ in range(5):
                await conn.fetchval("SELECT 1")  # warm
            ms = []
            for _ in range(int(samples)):
                start = time.perf_counter()
                await conn.fetchval("SELECT 1")
                ms.append((time.perf_counter() - start) * 1000)
            return ms
        finally:
            await conn.close()

    return {"ms": asyncio.run(run())}


def cmd_pages(base_url: str, key: str, objects: str, limit: str, samples: str) -> dict[str, Any]:
    """The no-limit listing's reference: OBJECTS files read in pages of LIMIT (`after` the
    last one), one after another on one connection; milliseconds of each walk."""
    import httpx

    total, step = int(objects), int(limit)

    def walk() -> int:
        got, after = 0, None
        while got < total:
            params: dict[str, Any] = {"limit": min(step, total - got)}
            if after:
                params["after"] = after
            page = http.get("/files", params=params).raise_for_status().json()
            got += len(page["data"])
            after = page["last_id"]
            if not page["has_more"]:
                break
        return got

    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        walk()  # warm
        ms = []
        for _ in range(int(samples)):
            start = time.perf_counter()
            walk()
            ms.append((time.perf_counter() - start) * 1000)
    return {"ms": ms}


if __name__ == "__main__":
    commands: dict[str, Callable[..., dict[str, Any]]] = {"pages": cmd_pages, "ping": cmd_ping}
    command, *arguments = sys.argv[1:]
    if command not in commands:
        sys.exit(f"unknown command {command!r}: python -m bench.scale pages|ping ...")
    print(json.dumps(commands[command](*arguments)))
