"""`make bench`: speed and memory, each as a ratio against a reference measured in the same run.

python -m bench            # the full run: writes bench/results/ and docs/benchmarks.md
python -m bench --quick    # a small smoke run (CI), results in bench/results/quick/
python -m bench --rows 9 --merge   # one group, put into the last full run's table
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._harness import ROOT, unwind_on_sigterm
from ._report import write_report
from ._results import CurvePoint, Machine, Result, Row, Stack
from ._run import Bench
from .batches import batch_throughput
from .peers import peer_batches, peer_transfers, save
from .rates import request_rates
from .scale import listing_latency
from .stack import server_stacks
from .transfers import embedded_transfers, scaleout_transfers
from .uploads import uploads_api


def machine() -> Machine:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    disk = shutil.disk_usage(ROOT)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "disk_gib": round(disk.total / 2**30),
        "python": platform.python_version(),
        "commit": commit or "unknown",
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def measured(result: Result) -> dict[str, Any]:
    """When and how a row merged into the last full run's results was measured."""
    return {
        "command": result["command"],
        "seconds": result["seconds"],
        "load": result["load"],
        "runs": result["runs"],
        "commit": result["machine"]["commit"],
        "date": result["machine"]["date"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument(
        "--rows",
        default="1,5,6,8,9,10,stack",
        help="row groups to run: 1 (rows 1-4), 5, 6 (rows 6-7), 8, 9, 10, and stack (uvicorn "
        "and granian on rows 1, 2, 5, 6, 7)",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="put this run's rows into the last full run's results and docs/benchmarks.md "
        "(each merged row keeps its own commit, date and load)",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="rows 1-4 against llama-stack's Files API and row 10 against its Batches API "
        "too, a peer column (make bench PEERS=1)",
    )
    args = parser.parse_args()
    groups = set(args.rows.split(","))
    if args.peers and not groups & {"1", "10"}:
        parser.error("--peers measures rows 1-4 and 10: give --rows with 1 or 10")
    full = groups >= {"1", "5", "6", "8", "9", "10", "stack"} and not args.quick
    if args.merge and (args.quick or full):
        parser.error("--merge takes a partial run: give --rows without --quick")
    # Only a full run writes docs/benchmarks.md; others keep their report beside their JSON.
    out_dir = ROOT / "bench" / "results" / ("" if full else "quick" if args.quick else "partial")
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    unwind_on_sigterm()  # its temporary folder holds gigabytes of test files
    rows: dict[str, Row] = {}
    curve: list[CurvePoint] = []
    stack: Stack | None = None
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-", dir=ROOT / "bench") as tmp:
        bench = Bench(args.quick, Path(tmp))
        started = time.perf_counter()
        if "1" in groups:
            embedded = embedded_transfers(bench)
            if args.peers:
                peers = peer_transfers(bench, embedded.row1, embedded.row2)
                embedded.row1["peer"] = peers.row1
                embedded.row2["peer"] = peers.row2
                embedded.row3["peer"] = peers.row3
                embedded.row4["peer"] = peers.row4
            rows.update({"1": embedded.row1, "2": embedded.row2})
            rows.update({"3": embedded.row3, "4": embedded.row4})
            curve = embedded.curve
        if "5" in groups:
            rows["5"] = listing_latency(bench)
        if "6" in groups:
            rows["6"], rows["7"] = request_rates(bench)
        if "8" in groups:
            rows["8"] = scaleout_transfers(bench)
        if "9" in groups:
            rows["9"] = uploads_api(bench)
        if "10" in groups:
            row10 = batch_throughput(bench)
            if args.peers:
                row10["peer"] = peer_batches(bench, row10)
            rows["10"] = row10
        if "stack" in groups:
            stack = server_stacks(bench)
        command = "make bench" + (" QUICK=1" if args.quick else "")
        if not full and not args.quick:
            command = f"python -m bench --rows {args.rows}"
        if args.peers:
            command += " --peers" if command.startswith("python") else " PEERS=1"
        result: Result = {
            "machine": machine(),
            "quick": args.quick,
            "runs": bench.runs,
            "command": command,
            "seconds": round(time.perf_counter() - started, 1),
            "load": {"before": load_before, "after": os.getloadavg()},
            "rows": rows,
            "curve": curve,
        }
        if stack:
            result["stack"] = stack
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
    (out_dir / "latest.json").write_text(json.dumps(result, indent=2))
    if args.peers and not args.quick:
        bench.log(f"peer run kept in {save(result, stamp)}")
    if full:
        (out_dir / f"{stamp}-{result['machine']['commit']}.json").write_text(
            json.dumps(result, indent=2)
        )
    docs = ROOT / "docs" if full else out_dir
    report: Mapping[str, Any] = result
    if args.merge:
        # The rows measured now join the last full run's, each saying when it was measured.
        base_path = ROOT / "bench" / "results" / "latest.json"
        merged = json.loads(base_path.read_text())
        for number, row in rows.items():
            merged["rows"][number] = {**row, "measured": measured(result)}
        if stack:
            merged["stack"] = {**stack, "measured": measured(result)}
        base_path.write_text(json.dumps(merged, indent=2))
        (
            ROOT / "bench" / "results" / f"{stamp}-{result['machine']['commit']}-merged.json"
        ).write_text(json.dumps(merged, indent=2))
        report, docs = merged, ROOT / "docs"
    write_report(report, docs / "benchmarks.md", docs / "benchmarks.png")
    bench.log(f"done in {round(time.perf_counter() - started, 1)} s: {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
