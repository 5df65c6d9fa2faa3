"""`make soak`: many clients for minutes on each deployment, every byte verified.

Each of `--clients` clients loops over a mix of operations (upload a random file, list,
retrieve, download and compare its SHA-256, delete) against one server process, for
`--minutes` on each deployment. Halfway, a slowloris phase opens `--slow` connections that
send a request head a byte at a time: the other clients must not notice. The server's RSS
and open file descriptors are sampled throughout. Everything runs on 127.0.0.1 and stops by
itself; results go to bench/results/soak-<UTC time>.json and a summary to stdout.

    python -m bench.soak --minutes 10            # what docs/reliability.md reports
    python -m bench.soak --minutes 1 --clients 8 # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
from tests._server import Deployment, ServerProcess  # the repo's own test harness

from ._harness import ROOT, percentile, status_kib, unwind_on_sigterm

#: Operation weights of the mix (uploads are balanced by deletes, so the store stays small).
MIX = {"upload": 3, "list": 2, "retrieve": 3, "download": 3, "delete": 2}
#: Upload sizes: mostly small, some of a few MiB.
SIZES = (1024, 16 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024)
SAMPLE_SECONDS = 2.0


class Stats:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, list[str]] = defaultdict(list)
        self.bytes_verified = 0

    def summary(self) -> dict[str, Any]:
        return {
            op: {
                "count": len(samples),
                "errors": len(self.errors.get(op, [])),
                "p50_ms": round(percentile(samples, 50) * 1000, 2),
                "p99_ms": round(percentile(samples, 99) * 1000, 2),
            }
            for op, samples in sorted(self.latency.items())
        }


async def _client_loop(
    index: int, base_url: str, key: str, deadline: float, stats: Stats, seed: int
) -> None:
    rng = random.Random(seed * 1000 + index)
    mine: dict[str, str] = {}  # file id -> sha256 of what was uploaded
    ops, weights = zip(*MIX.items(), strict=True)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}, timeout=120
    ) as http:
        while time.monotonic() < deadline:
            op = rng.choices(ops, weights)[0]
            if op != "upload" and op != "list" and not mine:
                op = "upload"
            start = time.monotonic()
            try:
                await _one(op, http, rng, mine, stats)
            except Exception as exc:  # every failure is counted, none ends the run
                stats.errors[op].append(f"{type(exc).__name__}: {exc}"[:300])
            stats.latency[op].append(time.monotonic() - start)
        for file_id in list(mine):  # leave the tenant empty
            with contextlib.suppress(httpx.HTTPError):
                await http.delete(f"/files/{file_id}")


async def _one(
    op: str, http: httpx.AsyncClient, rng: random.Random, mine: dict[str, str], stats: Stats
) -> None:
    if op == "upload":
        data = rng.randbytes(rng.choice(SIZES))
        r = await http.post(
            "/files", files={"file": ("soak.bin", data)}, data={"purpose": "vision"}
        )
        r.raise_for_status()
        body = r.json()
        assert body["bytes"] == len(data), body
        mine[body["id"]] = hashlib.sha256(data).hexdigest()
        return
    if op == "list":
        r = await http.get("/files", params={"limit": 20})
        r.raise_for_status()
        assert r.json()["object"] == "list"
        return
    file_id = rng.choice(list(mine))
    if op == "retrieve":
        r = await http.get(f"/files/{file_id}")
        r.raise_for_status()
        assert r.json()["id"] == file_id
    elif op == "download":
        digest = hashlib.sha256()
        size = 0
        async with http.stream("GET", f"/files/{file_id}/content") as r:
            r.raise_for_status()
            async for chunk in r.aiter_bytes():
                digest.update(chunk)
                size += len(chunk)
        assert digest.hexdigest() == mine[file_id], f"{file_id}: content differs"
        stats.bytes_verified += size
    elif op == "delete":
        r = await http.delete(f"/files/{file_id}")
        r.raise_for_status()
        del mine[file_id]


async def _slowloris(host: str, port: int, count: int, until: float) -> dict[str, int]:
    """Open `count` connections that send a request head a byte every second."""
    head = b"GET /v1/files HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 4096
    closed = 0

    async def one() -> None:
        nonlocal closed
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            closed += 1
            return
        try:
            for byte in head:
                if time.monotonic() > until:
                    return
                writer.write(bytes([byte]))
                await writer.drain()
                with contextlib.suppress(asyncio.TimeoutError):
                    if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                        closed += 1
                        return
        except OSError:
            closed += 1
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    await asyncio.gather(*(one() for _ in range(count)))
    return {"opened": count, "closed_by_server": closed}


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def _run(server: ServerProcess, key: str, args: argparse.Namespace) -> dict[str, Any]:
    stats = Stats()
    samples: list[dict[str, float]] = []
    start = time.monotonic()
    deadline = start + args.minutes * 60
    host, port = server.base_url.split("//")[1].split("/")[0].rsplit(":", 1)

    async def sample() -> None:
        while time.monotonic() < deadline:
            samples.append(
                {
                    "t": round(time.monotonic() - start, 1),
                    "rss_mib": round(status_kib(server.pid, "VmRSS") / 1024, 1),
                    "fds": _fds(server.pid),
                }
            )
            await asyncio.sleep(SAMPLE_SECONDS)

    async def slow_phase() -> dict[str, int]:
        await asyncio.sleep(args.minutes * 60 / 2)
        return await _slowloris(host, int(port), args.slow, time.monotonic() + 60)

    sampler = asyncio.create_task(sample())
    slow = asyncio.create_task(slow_phase())
    await asyncio.gather(
        *(
            _client_loop(i, server.base_url, key, deadline, stats, args.seed)
            for i in range(args.clients)
        )
    )
    slow_result = await slow
    sampler.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sampler
    samples.append(
        {
            "t": round(time.monotonic() - start, 1),
            "rss_mib": round(status_kib(server.pid, "VmRSS") / 1024, 1),
            "fds": _fds(server.pid),
        }
    )
    total = sum(len(v) for v in stats.latency.values())
    errors = sum(len(v) for v in stats.errors.values())
    return {
        "seconds": round(time.monotonic() - start, 1),
        "operations": total,
        "errors": errors,
        "error_samples": {op: msgs[:5] for op, msgs in stats.errors.items()},
        "bytes_verified": stats.bytes_verified,
        "per_operation": stats.summary(),
        "slowloris": slow_result,
        "rss_mib": {
            "start": samples[0]["rss_mib"],
            "end": samples[-1]["rss_mib"],
            "max": max(s["rss_mib"] for s in samples),
        },
        "fds": {
            "start": samples[0]["fds"],
            "end": samples[-1]["fds"],
            "max": max(s["fds"] for s in samples),
        },
        "samples": samples,
    }


def _deployment(name: str, root: Path, services: list[Any]) -> Deployment:
    if name == "embedded":
        return Deployment("embedded", root)
    from openai_files.testing.services import PostgresCluster, SeaweedS3

    # Listed before they start: the caller stops them even if a start is cut short.
    postgres = PostgresCluster()
    services.append(postgres)
    s3 = SeaweedS3()
    services.append(s3)
    postgres.start()
    s3.start()
    return Deployment("scaleout", root, postgres=postgres, s3=s3)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="per deployment")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--slow", type=int, default=200, help="slowloris connections")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--deployments", default="embedded,scaleout", help="comma-separated: embedded,scaleout"
    )
    args = parser.parse_args()
    unwind_on_sigterm()
    results: dict[str, Any] = {"args": vars(args), "host_cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="openai-files-soak-") as tmp:
        for name in args.deployments.split(","):
            services: list[Any] = []
            try:
                deployment = _deployment(name, Path(tmp), services)
                # Every client uploads with the one key: as many may stream at once.
                server = deployment.server("--max-uploads-per-key", str(args.clients))
                try:
                    key = server.create_key("org-soak", "proj_soak")
                    print(f"[soak] {name}: {args.clients} clients for {args.minutes} min")
                    results[name] = asyncio.run(_run(server, key, args))
                finally:
                    server.stop()
            finally:
                for service in reversed(services):
                    service.stop()
            r = results[name]
            print(
                f"[soak] {name}: {r['operations']} operations, {r['errors']} errors, "
                f"{r['bytes_verified'] / 2**20:.0f} MiB verified; RSS {r['rss_mib']}; "
                f"FDs {r['fds']}; slowloris {r['slowloris']}"
            )
            for op, figures in r["per_operation"].items():
                print(f"[soak]   {op:<9} {figures}")
    out = ROOT / "bench" / "results" / f"soak-{time.strftime('%Y%m%dT%H%MZ', time.gmtime())}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"[soak] wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
