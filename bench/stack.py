"""The HTTP server, chosen by measurement: rows 1, 2 (a Range too), 5, 6 and 7 under uvicorn
and under granian (`--http-server granian`, whole files sent by path), in the same run.

Both servers run side by side on the embedded default; each round measures one then the
other, in alternating order, so that the machine's noise falls on both.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time

import httpx

from ._harness import (
    WRK_CONNECTIONS,
    BenchServer,
    Figure,
    MiB,
    make_file,
    peak_growth,
    run_worker,
)
from ._results import Stack, StackMetric
from ._run import Bench
from .rates import upload_script, wrk
from .scale import ORG, PROJECT, file_id, make_key, populate_sqlite

STACKS = ("uvicorn", "granian")
#: Files in each server's listing for row 5's figure (a page of 100 from the middle).
LISTED = 10_000

#: What is measured, its unit, and whether more is better.
METRICS: dict[str, tuple[str, str, bool]] = {
    "upload_s": ("row 1: upload through our client", "s", False),
    "download_s": ("row 2: download through our client", "s", False),
    "curl_s": ("row 2: curl -o, the whole file", "s", False),
    "range_s": ("row 2: curl -o, a Range of half the file", "s", False),
    "download_server_kib": ("row 3: server peak growth on our download", "KiB", False),
    "list_ms": (f"row 5: p50 of a page of 100 from the middle of {LISTED:,}", "ms", False),
    "retrieve_rps": ("row 6: GET /v1/files/{id}, 32 connections", "req/s", True),
    "constant_rps": ("row 6: a constant route, 32 connections", "req/s", True),
    "upload_rps": ("row 7: durable 4 KiB uploads, 32 connections", "uploads/s", True),
}


def curl_seconds(url: str, key: str, dest: str, byte_range: str | None = None) -> float:
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed (Debian: apt-get install curl)")
    cmd = [curl, "-sSf", "-o", dest, "-H", f"Authorization: Bearer {key}"]
    if byte_range:
        cmd += ["-r", byte_range]
    start = time.perf_counter()
    subprocess.run([*cmd, url], check=True)
    seconds = time.perf_counter() - start
    os.unlink(dest)
    return seconds


def server_stacks(bench: Bench) -> Stack:
    bench.log("the HTTP server: uvicorn and granian on rows 1, 2, 5, 6, 7")
    big = make_file(bench.work / "big.bin", bench.big)
    seconds = 2 if bench.quick else 8
    samples = 20 if bench.quick else 60
    figures = {s: {m: Figure(m, unit) for m, (_, unit, _) in METRICS.items()} for s in STACKS}
    servers: dict[str, tuple[BenchServer, str]] = {}
    try:
        for stack in STACKS:
            data = bench.work / f"stack-{stack}" / "data"
            key = make_key(data, {})
            populate_sqlite(data / "files.sqlite3", ORG, PROJECT, LISTED)
            proc = BenchServer(
                data,
                *("--log-level", "warning", "--http-server", stack),
                *("--max-uploads-per-key", str(WRK_CONNECTIONS)),  # wrk's uploads, one key
            ).start()
            servers[stack] = (proc, key)
        script = upload_script(bench.work)
        middle = f"/files?limit=100&after={file_id(LISTED // 2)}"
        for i in range(bench.runs):
            for stack in STACKS if i % 2 == 0 else reversed(STACKS):
                proc, key = servers[stack]
                fig = figures[stack]
                bench.warm_memory(bench.big)  # as rows 1 and 2 (Bench.warm_memory)
                up = run_worker("upload", proc.base_url, key, str(big))
                fig["upload_s"].values.append(up["seconds"])
                made = up["result"]
                url = f"{proc.base_url}/files/{made}/content"
                dest = str(bench.work / "stack-dl.bin")
                bench.warm_memory(bench.big)
                with peak_growth(proc.pid) as mem:
                    down = run_worker("download", proc.base_url, key, made, dest)
                fig["download_s"].values.append(down["seconds"])
                fig["download_server_kib"].values.append(mem["growth_kib"])
                bench.warm_memory(bench.big)
                fig["curl_s"].values.append(curl_seconds(url, key, dest))
                bench.warm_memory(bench.big)
                half = bench.big // 2
                fig["range_s"].values.append(
                    curl_seconds(url, key, dest, f"{half // 2}-{half // 2 + half - 1}")
                )
                lat = run_worker("latency", proc.base_url, key, str(samples), middle)
                fig["list_ms"].values.append(statistics.median(lat["ms"][middle]))
                fig["retrieve_rps"].values.append(
                    wrk(f"{proc.base_url}/files/{made}", key, seconds).rps
                )
                fig["constant_rps"].values.append(
                    wrk(proc.root_url + "/bench/constant", key, seconds).rps
                )
                fig["upload_rps"].values.append(
                    wrk(proc.base_url + "/files", key, seconds, script).rps
                )
                httpx.delete(
                    f"{proc.base_url}/files/{made}", headers={"Authorization": f"Bearer {key}"}
                ).raise_for_status()  # the disk holds one big file per server at a time
                bench.log(
                    f"stack {stack}: upload {up['seconds']:.2f} s, download "
                    f"{down['seconds']:.2f} s, {fig['upload_rps'].values[-1]:.0f} uploads/s"
                )
    finally:
        for proc, _ in servers.values():
            proc.stop()
        for stack in STACKS:
            shutil.rmtree(bench.work / f"stack-{stack}", ignore_errors=True)
    table: dict[str, StackMetric] = {}
    for metric, (what, unit, more_is_better) in METRICS.items():
        uv, gr = figures["uvicorn"][metric], figures["granian"][metric]
        ratio = gr.median / uv.median if uv.median else float("nan")
        table[metric] = {
            "what": what,
            "unit": unit,
            "uvicorn": uv.summary(),
            "granian": gr.summary(),
            # granian against uvicorn, as a speed: above 1, granian is faster.
            "granian_speed": ratio if more_is_better else (1 / ratio if ratio else ratio),
        }
    return {"file_mib": bench.big / MiB, "listed": LISTED, "metrics": table}
