"""The benchmark report: a Markdown table and a plot, from one run's results."""

from __future__ import annotations

import re
import statistics
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ._format import fig, met
from .batches import row10_cells
from .peers import peer_cell, peer_column
from .scale import row5_cells, row5_met

MiB = 1024 * 1024

NOTES = Path(__file__).with_name("NOTES.md")

#: `{{rows.5.ratios.local:.2f}}` in NOTES.md: a value of the run's results (a dotted path
#: into them, then a format spec), so that a note quotes the table's run only from it.
_FIGURE = re.compile(r"\{\{([\w.]+)(?::([^}]*))?\}\}")


def render_notes(text: str, result: Mapping[str, Any]) -> str:
    """NOTES.md with each `{{path:format}}` replaced by that value of `result`; a path that
    the results do not hold is an error, not an empty figure."""

    def value(match: re.Match[str]) -> str:
        node: Any = result
        for key in match.group(1).split("."):
            node = node[key]
        return format(node, match.group(2) or "")

    return _FIGURE.sub(value, text)


def _row_cells(number: str, row: dict[str, Any]) -> list[str]:
    if number == "3":
        peaks = row["peaks_mib"]
        ours_text = (
            f"server: upload {peaks['upload_server_kib']:.1f}, download "
            f"{peaks['download_server_kib']:.1f}; client: upload "
            f"{peaks['upload_client_kib']:.1f}, download {peaks['download_client_kib']:.1f}"
        )
        return [ours_text, "(absolute)", "—"]
    if number == "5":
        return row5_cells(row)
    if number == "10":
        return row10_cells(row)
    ours, ref = row["ours"], row["reference"]
    if number == "8":
        ours_text = f"upload {fig(ours['upload'])}; download {fig(ours['download'])}"
        ref_text = f"put {fig(ref['put'])}; get {fig(ref['get'])}"
        ratio = (
            f"{row['ratio']:.2f} (upload {row['ratio_upload']:.2f}, "
            f"download {row['ratio_download']:.2f})"
        )
        return [ours_text, f"{row['reference_name']}: {ref_text}", ratio]
    if number == "9":
        return _row9_cells(row)
    if number == "2" and "reference_curl" in row:
        return [
            f"{fig(ours)}; with durable=True {fig(row['ours_durable'])}",
            f"{row['reference_name']}: {fig(ref)}; curl -o of the same URL: "
            f"{fig(row['reference_curl'])}",
            f"{row['ratio']:.2f} of the socket, {row['ratio_curl']:.2f} of curl (throughput)",
        ]
    if number == "1" and "reference_floor" in row:
        return [
            fig(ours),
            f"{row['reference_name']}: {fig(ref)}; {row['floor_name']}: "
            f"{fig(row['reference_floor'])}",
            f"{row['ratio']:.2f} of dd, {row['ratio_floor']:.2f} of the socket (time)",
        ]
    ours_text = fig(ours)
    if number == "4":
        ours_text += f", client peak +{row['sdk_client_peak_mib']:.0f} MiB"
    ref_text = f"{row['reference_name']}: {fig(ref)}"
    return [ours_text, ref_text, f"{row['ratio']:.2f} ({row['ratio_name']})"]


def _row9_cells(row: dict[str, Any]) -> list[str]:
    if "download_local" in row:
        return _row9_manifest_cells(row)
    ours, ref = row["ours"], row["reference"]

    def side(name: str, figs: dict[str, Any]) -> str:
        plain, md5 = (
            figs[k]["max"] / 1024 for k in ("complete_server_kib", "complete_md5_server_kib")
        )
        return (
            f"{name}: parts {fig(figs['parts_s'])}; complete {fig(figs['complete_s'])}, "
            f"with md5 {fig(figs['complete_md5_s'])}; server peak growth: completion "
            f"+{plain:.1f} MiB, with md5 +{md5:.1f} MiB, parts "
            f"+{figs['parts_server_kib']['max'] / 1024:.1f} MiB"
        )

    ours_text = side("local", ours["local"]) + "<br>" + side("S3", ours["s3"])
    fresh = ref.get("fresh_join")
    ref_text = (
        f"local: cp + sync {fig(ref['cp'])}"
        + (f"; the same join of parts just uploaded, plain Python {fig(fresh)}" if fresh else "")
        + f"<br>S3: CopyObject {fig(ref['copy'])}, obstore put {fig(ref['put'])}"
    )
    ratio = (
        (f"local {row['ratio_local_fresh']:.2f} of the join, " if fresh else "local ")
        + f"{row['ratio_local']:.2f} of cp (md5 {row['ratio_local_md5']:.2f}); "
        f"S3 {row['ratio_s3']:.2f} (md5 {row['ratio_s3_md5']:.2f}; of put "
        f"{row['ratio_s3_put']:.2f})"
    )
    if row.get("rounds_retried"):
        ours_text += f"<br>rounds that failed and were run again: {row['rounds_retried']}"
    return [ours_text, ref_text, ratio]


def _row9_manifest_cells(row: dict[str, Any]) -> list[str]:
    """Row 9 since completion writes a manifest: completion against absolute seconds and
    md5sum, the download of the file made of parts against one blob's."""
    ours, ref = row["ours"], row["reference"]

    def side(name: str, figs: dict[str, Any]) -> str:
        plain, md5 = (
            figs[k]["max"] / 1024 for k in ("complete_server_kib", "complete_md5_server_kib")
        )
        return (
            f"{name}: parts {fig(figs['parts_s'])}; complete {fig(figs['complete_s'])}, "
            f"with md5 {fig(figs['complete_md5_s'])}; download {fig(figs['download_s'])} "
            f"(one blob {fig(figs['download_blob_s'])}); server peak growth: completion "
            f"+{plain:.1f} MiB, with md5 +{md5:.1f} MiB, parts "
            f"+{figs['parts_server_kib']['max'] / 1024:.1f} MiB"
        )

    ours_text = side("local", ours["local"]) + "<br>" + side("S3", ours["s3"])
    ref_text = f"md5sum {fig(ref['md5sum'])}; the same bytes as one blob, downloaded"
    ratio = (
        f"complete: local {row['ratio_local']:.3f} s, S3 {row['ratio_s3']:.3f} s; md5: local "
        f"{row['ratio_local_md5']:.2f}, S3 {row['ratio_s3_md5']:.2f} of md5sum; download: "
        f"local {row['download_local']:.2f}, S3 {row['download_s3']:.2f} of one blob "
        "(throughput)"
    )
    if row.get("rounds_retried"):
        ours_text += f"<br>rounds that failed and were run again: {row['rounds_retried']}"
    return [ours_text, ref_text, ratio]


def _measured_apart(number: str, row: dict[str, Any]) -> str:
    """A note for a row measured in a run of its own, merged into the full run's table."""
    m = row["measured"]
    before, after = (m["load"][k][0] for k in ("before", "after"))
    return (
        f"- Row {number} was measured on its own: commit `{m['commit']}`, {m['date']}, "
        f"`{m['command']}` ({m['runs']} run(s), {m['seconds']:.0f} s); load average "
        f"(1 min) {before:.2f} before, {after:.2f} after, on a machine shared with other work."
    )


def write_plot(result: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curve = result["curve"]
    if not curve:
        return
    sizes = [p["bytes"] / MiB for p in curve]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key, label in (("upload_s", "upload"), ("download_s", "download")):
        rates = [p["bytes"] / MiB / statistics.median(p[key]) for p in curve]
        left.plot(sizes, rates, marker="o", label=label)
    left.set_xscale("log", base=2)
    left.set_xlabel("file size (MiB)")
    left.set_ylabel("throughput (MiB/s)")
    left.set_title("Our client ↔ embedded server")
    left.legend()
    left.grid(alpha=0.3)
    for key, label in (
        ("upload_server_kib", "server, upload"),
        ("download_server_kib", "server, download"),
        ("upload_client_kib", "client, upload"),
        ("download_client_kib", "client, download"),
    ):
        right.plot(sizes, [max(p[key]) / 1024 for p in curve], marker="o", label=label)
    right.axhline(64, color="red", linestyle="--", linewidth=0.8, label="server limit")
    right.axhline(32, color="orange", linestyle="--", linewidth=0.8, label="client limit")
    right.set_xscale("log", base=2)
    right.set_xlabel("file size (MiB)")
    right.set_ylabel("peak RSS growth (MiB)")
    right.set_title("Memory stays flat")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _stack_lines(stack: dict[str, Any]) -> list[str]:
    """The HTTP servers side by side (bench/stack.py)."""
    measured = stack.get("measured")
    when = (
        f" (measured apart: `{measured['command']}`, commit `{measured['commit']}`, "
        f"{measured['date']})"
        if measured
        else ""
    )
    lines = [
        "## The HTTP server: uvicorn and granian in the same run",
        "",
        f"The embedded default under each (`--http-server`), side by side, a "
        f"{stack['file_mib']:.0f} MiB file, rounds alternating{when}. Speed: granian's "
        "against uvicorn's (above 1, granian is faster).",
        "",
        "| measured | uvicorn (default) | granian | granian's speed |",
        "|---|---|---|---|",
    ]
    for m in stack["metrics"].values():
        lines.append(
            f"| {m['what']} | {fig(m['uvicorn'])} | {fig(m['granian'])} | "
            f"{m['granian_speed']:.2f} |"
        )
    return lines


def write_report(result: Mapping[str, Any], md_path: Path, png_path: Path) -> None:
    m = result["machine"]
    # Rows that ran more (or fewer) times than the run's default say so.
    other: dict[int, list[str]] = {}
    for number, row in sorted(result["rows"].items(), key=lambda item: int(item[0])):
        if row.get("runs", result["runs"]) != result["runs"]:
            other.setdefault(row["runs"], []).append(number)
    exceptions = "; ".join(f"rows {', '.join(n)}: {runs}" for runs, n in other.items())
    lines = [
        "# Benchmarks",
        "",
        "Every figure in the tables is a ratio against a reference measured in the same run, "
        "on the same",
        "machine (the machines are small and noisy). Each figure is the median of "
        f"{result['runs']} run(s)" + (f" ({exceptions})" if exceptions else "") + ", with "
        "min-max in brackets. The notes after the tables name the run each of their own "
        "figures comes from.",
        "",
        f"- Machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB memory, "
        f"{m['disk_gib']} GiB disk; Python {m['python']}",
        f"- Commit `{m['commit']}`, {m['date']}; `{result['command']}` took "
        f"{result['seconds']:.0f} s",
        "- Servers on free loopback ports with fresh data folders; clients in separate "
        "processes; RSS from `/proc/<pid>/status` (`VmHWM` after a reset through "
        "`clear_refs`).",
    ]
    if "load" in result:
        lines.append(
            f"- Load average (1 min) {result['load']['before'][0]:.2f} before the run, "
            f"{result['load']['after'][0]:.2f} after (the machine may be shared)."
        )
    peer = peer_column(result["rows"])  # a column only when the run measured a peer
    lines += [
        "",
        "| # | what | ours | reference | ratio | target | met |" + (f" {peer} |" if peer else ""),
        "|---|---|---|---|---|---|---|" + ("---|" if peer else ""),
    ]
    for number in sorted(result["rows"], key=int):
        row = result["rows"][number]
        ours, ref, ratio = _row_cells(number, row)
        verdict = row5_met(row) if number == "5" else row["met"]
        lines.append(
            f"| {number} | {row['what']} | {ours} | {ref} | {ratio} | {row['target']} | "
            f"{met(verdict)} |" + (f" {peer_cell(number, row)} |" if peer else "")
        )
    apart = [_measured_apart(n, r) for n, r in sorted(result["rows"].items()) if "measured" in r]
    if apart:
        lines += ["", *apart]
    if result.get("stack"):
        lines += ["", *_stack_lines(result["stack"])]
    if result["curve"]:
        lines += [
            "",
            f"![throughput and memory against file size]({png_path.name})",
            "",
            "| size (MiB) | upload (MiB/s) | download (MiB/s) | server peak up/down (MiB) "
            "| client peak up/down (MiB) |",
            "|---|---|---|---|---|",
        ]
        for p in result["curve"]:
            size = p["bytes"] / MiB
            lines.append(
                f"| {size:.0f} | {size / statistics.median(p['upload_s']):.0f} | "
                f"{size / statistics.median(p['download_s']):.0f} | "
                f"{max(p['upload_server_kib']) / 1024:.1f} / "
                f"{max(p['download_server_kib']) / 1024:.1f} | "
                f"{max(p['upload_client_kib']) / 1024:.1f} / "
                f"{max(p['download_client_kib']) / 1024:.1f} |"
            )
    quoted = set(re.findall(r"\{\{rows\.(\w+)\.", NOTES.read_text())) if NOTES.exists() else set()
    if result.get("quick"):  # the notes quote a full run's sizes (a million files...)
        lines += ["", "(The notes are left out: they quote a full run, and this one is quick.)"]
    elif quoted <= set(result["rows"]):
        if NOTES.exists():
            lines += ["", render_notes(NOTES.read_text(), result).strip()]
    else:  # a run of some rows only (`--rows`): the notes quote rows it did not measure
        lines += ["", f"(The notes are left out: they quote rows {', '.join(sorted(quoted))}.)"]
    md_path.write_text("\n".join(lines) + "\n")
    write_plot(result, png_path)
