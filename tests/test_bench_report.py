"""docs/benchmarks.md is what bench/_report.py makes of bench/results/latest.json."""

from __future__ import annotations

import json
from pathlib import Path

from bench._report import write_report

ROOT = Path(__file__).resolve().parents[1]


def test_the_report_regenerates_byte_for_byte(tmp_path: Path) -> None:
    result = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    write_report(result, tmp_path / "benchmarks.md", tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.md").read_bytes() == (
        ROOT / "docs" / "benchmarks.md"
    ).read_bytes()
