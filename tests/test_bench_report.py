"""docs/benchmarks.md is what bench/_report.py makes of bench/results/latest.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench._report import NOTES, render_notes, write_report

ROOT = Path(__file__).resolve().parents[1]


def test_the_report_regenerates_byte_for_byte(tmp_path: Path) -> None:
    result = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    write_report(result, tmp_path / "benchmarks.md", tmp_path / "benchmarks.png")
    assert (tmp_path / "benchmarks.md").read_bytes() == (
        ROOT / "docs" / "benchmarks.md"
    ).read_bytes()


def test_a_quick_run_reports_without_the_notes(tmp_path: Path) -> None:
    """`make bench QUICK=1` (in CI) measures small sizes: the notes quote a full run's (a
    million files), so its report leaves them out rather than fail on a missing figure."""
    result = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    result["quick"] = True
    del result["rows"]["5"]["populate_s"]["local"]["1000000"]
    write_report(result, tmp_path / "benchmarks.md", tmp_path / "benchmarks.png")
    text = (tmp_path / "benchmarks.md").read_text()
    assert "The notes are left out" in text
    assert "{{" not in text


def test_row_5s_worst_p50_is_the_worst_at_any_count() -> None:
    """The slowest p50 of any request at any file count, not only at the largest: here the
    deep page at 100 files is the slowest, and over the target."""
    from bench.scale import REQUESTS, row5_cells, row5_met

    def at(ms: float) -> dict[str, float]:
        return dict.fromkeys(REQUESTS, ms)

    tables = {
        "local": {"10": at(1.0), "100": {**at(1.0), "list deep page": 6.0}, "1000": at(1.1)},
        "postgres": {"10": at(2.0), "100": at(2.0), "1000": at(2.0)},
    }
    row = {
        "ours": tables,
        "ratios": {"local": 1.1, "postgres": 1.0},
        "no_limit": {},
        "no_limit_growth_mib": 1.0,
        "reference_name": "the same request at 10 files",
        "met": True,  # what a run that looked at the largest count only would have said
    }
    ratio = row5_cells(row)[2]
    assert "SQLite + local folder 1.10 (worst p50 6.00 ms)" in ratio
    assert "PostgreSQL + S3 1.00 (worst p50 2.00 ms)" in ratio
    assert row5_met(row) is False


def test_the_notes_quote_the_table_s_run_from_its_results() -> None:
    """A figure of the table's run in bench/NOTES.md is a placeholder the report fills from
    the results; one the results do not hold stops the report."""
    result = {"rows": {"7": {"target": ">= 0.25", "ratio": 0.3712}}}
    assert render_notes("{{rows.7.target}}, {{rows.7.ratio:.2f}}", result) == ">= 0.25, 0.37"
    assert render_notes("GET /v1/files/{id} and {x}", result) == "GET /v1/files/{id} and {x}"
    with pytest.raises(KeyError):
        render_notes("{{rows.7.nothing:.2f}}", result)
    # Every placeholder of the notes names a value of the results the docs were made from.
    latest = json.loads((ROOT / "bench" / "results" / "latest.json").read_text())
    assert "{{" not in render_notes(NOTES.read_text(), latest)
    # Row 7's target, as the notes give it, is the one the bench checks.
    assert "{{rows.7.target}}" in NOTES.read_text()
    assert latest["rows"]["7"]["target"] == ">= 0.25"
