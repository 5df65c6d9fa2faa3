"""How the report writes a figure and a target's outcome (bench/_report.py and the rows'
own cells: bench/scale.py, bench/peers.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def fig(summary: Mapping[str, Any]) -> str:
    """A summary (`Figure.summary()`) as "median unit (min-max)"."""
    unit = summary["unit"]
    fmt = {"s": "{:.3f}", "ms": "{:.2f}"}.get(unit, "{:.0f}")
    med, lo, hi = (fmt.format(summary[k]) for k in ("median", "min", "max"))
    return f"{med} {unit} ({lo}-{hi})"


def met(value: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "—"}[value]
