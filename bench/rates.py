"""Rows 6 and 7: requests per second on `GET /v1/files/{id}` and durable 4 KiB uploads per
second, with wrk's 32 keep-alive connections, each against its reference on the same run.

python -m bench --rows 6    # rows 6 and 7 (results in bench/results/partial/)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

from ._harness import WRK_CONNECTIONS, Figure, make_file, run_worker
from ._results import RateRow
from ._run import Bench


class WrkResult(NamedTuple):
    rps: float
    requests: int


def wrk(url: str, key: str, seconds: int, script: Path | None = None) -> WrkResult:
    """wrk's requests per second (and count) on `url`; non-2xx answers are an error."""
    cmd = [
        "wrk",
        "-t2",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "--latency",
        "-H",
        f"Authorization: Bearer {key}",
    ]
    if script:
        cmd += ["-s", str(script)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[1])
    requests = int(next(line for line in out.splitlines() if "requests in" in line).split()[0])
    errors = 0
    for line in out.splitlines():
        if "Non-2xx" in line:
            errors = int(line.split()[-1])
    if errors:
        raise RuntimeError(f"wrk saw {errors} non-2xx answers:\n{out}")
    return WrkResult(rps, requests)


def upload_script(work: Path) -> Path:
    """A wrk script that uploads 4 KiB files (purpose vision: no format check)."""
    script = work / "upload.lua"
    boundary = "benchboundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        f'vision\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="small.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + "x" * 4096
        + f"\r\n--{boundary}--\r\n"
    )
    lua = body.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
    script.write_text(
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
        f'wrk.body = "{lua}"\n'
    )
    return script


def fsync_rate(work: Path, count: int) -> float:
    """Row 7's reference: `count` 4 KiB writes, each fsynced, plain Python, one thread."""
    folder = work / "fsync"
    folder.mkdir(exist_ok=True)
    block = os.urandom(4096)
    start = time.perf_counter()
    for i in range(count):
        fd = os.open(folder / f"{i}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, block)
        os.fsync(fd)
        os.close(fd)
    rate = count / (time.perf_counter() - start)
    shutil.rmtree(folder)
    return rate


def request_rates(bench: Bench) -> tuple[RateRow, RateRow]:
    """Rows 6 and 7."""
    if not shutil.which("wrk"):
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    seconds = 2 if bench.quick else 8
    bench.log("row 6: requests per second, GET /v1/files/{id}")
    ours, ref = Figure("retrieve", "req/s"), Figure("constant", "req/s")
    uploads, fsyncs = Figure("4 KiB uploads", "uploads/s"), Figure("4 KiB fsync", "writes/s")
    # wrk's 32 connections upload with one key: as many may stream at once (row 7).
    with bench.server("--max-uploads-per-key", str(WRK_CONNECTIONS)) as server:
        key = server.first_key
        assert key
        made = run_worker(
            "upload", server.base_url, key, str(make_file(bench.work / "tiny.bin", 4096))
        )["result"]
        for _ in range(bench.runs):
            ref.values.append(wrk(server.root_url + "/bench/constant", key, seconds).rps)
            ours.values.append(wrk(f"{server.base_url}/files/{made}", key, seconds).rps)
        bench.log("row 7: 4 KiB uploads per second")
        script = upload_script(bench.work)
        for _ in range(bench.runs):
            result = wrk(server.base_url + "/files", key, seconds, script)
            uploads.values.append(result.rps)
            fsyncs.values.append(fsync_rate(bench.work, result.requests))
    row6: RateRow = {
        "what": "requests/s, GET /v1/files/{id}, 32 keep-alive connections (wrk)",
        "ours": ours.summary(),
        "reference": ref.summary(),
        "reference_name": "a constant-JSON route on the same server stack",
        "ratio": ours.median / ref.median,
        "ratio_name": "ours / reference",
        "target": ">= 0.5",
        "met": ours.median / ref.median >= 0.5,
    }
    row7: RateRow = {
        "what": "4 KiB uploads/s, 32 concurrent connections (wrk), each durable",
        "ours": uploads.summary(),
        "reference": fsyncs.summary(),
        "reference_name": "as many 4 KiB writes with fsync, plain Python, one thread",
        "ratio": uploads.median / fsyncs.median,
        "ratio_name": "ours / reference",
        # Each upload is two fsyncs (file and folder, shared by uploads that end
        # together) and a SQLite commit (shared likewise): a quarter of bare fsyncs.
        "target": ">= 0.25",
        "met": uploads.median / fsyncs.median >= 0.25,
    }
    return row6, row7
