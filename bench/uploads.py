"""Row 9: the Uploads API on both deployments: parts sent 4 at a time through the official
SDK, then the completion (with and without the md5), then a download of the file it made.
Completion writes a manifest over the parts and copies nothing, so its targets are
absolute (without the md5) or against one `md5sum` of the same bytes (with it, the parts
are read back once); the download of the file made of parts is measured against the same
bytes stored as one blob (sent to POST /v1/files and downloaded the same way).

python -m bench --rows 9    # the row alone (results in bench/results/partial/)
"""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path
from typing import TypedDict

import httpx

from ._harness import (
    BenchServer,
    Figure,
    MiB,
    make_file,
    peak_growth,
    run_worker,
    scaleout_env,
    scaleout_services,
)
from ._results import Row9
from ._run import Bench

#: Each deployment's figures, without and with the md5.
FIGURES = (
    "parts_s",
    "complete_s",
    "complete_md5_s",
    "download_s",
    "download_blob_s",
    "parts_server_kib",
    "complete_server_kib",
    "complete_md5_server_kib",
)
#: The targets (issue 24): completion without the md5, in seconds; with it, against one
#: md5sum; a download of the file made of parts, against the same bytes as one blob
#: (throughput, so the time's inverse).
COMPLETE_TARGET_S = 0.2
MD5_TARGET = 1.2
DOWNLOAD_TARGET = 0.9


class Round(TypedDict):
    """One upload: its parts, its completion, and the server's peak growth in each."""

    parts_s: float
    complete_s: float
    parts_server_kib: int
    complete_server_kib: int
    #: The download of the file the upload made (None: not asked).
    download_s: float | None


class UploadRounds:
    """The rounds of row 9 on one run: the figures of each deployment, and how many rounds
    failed and were run again."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.figs: dict[str, dict[str, Figure]] = {}
        self.retries = 0

    def once(
        self,
        server: BenchServer,
        key: str,
        path: Path,
        part: int,
        md5: str | None,
        download: bool = False,
    ) -> Round:
        """Create an upload, send its parts 4 at a time, complete it (with the md5 or not),
        then delete the file; times and the server's peak RSS growth of each phase. A round
        that fails (the S3 server once answered a completion's copy with 503) is run once
        more from a new upload, saying so."""
        try:
            return self.attempt(server, key, path, part, md5, download)
        except RuntimeError as exc:
            # The failed upload is left to expire; the run's data folder goes at its end.
            self.bench.log(
                f"row 9: a round failed, once more from a new upload:\n{str(exc)[-600:]}"
            )
            self.retries += 1
            return self.attempt(server, key, path, part, md5, download)

    def attempt(
        self,
        server: BenchServer,
        key: str,
        path: Path,
        part: int,
        md5: str | None,
        download: bool = False,
    ) -> Round:
        with peak_growth(server.pid) as parts_mem:
            parts = run_worker("upload-parts", server.base_url, key, str(path), str(part), "4")
        ids = parts["result"]
        with peak_growth(server.pid) as done_mem:
            done = run_worker(
                "upload-complete",
                server.base_url,
                key,
                ids["upload_id"],
                ",".join(ids["part_ids"]),
                md5 or "-",
                timeout=1800,
            )
        fetched = self.download(server, key, done["result"]) if download else None
        httpx.delete(
            f"{server.base_url}/files/{done['result']}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        ).raise_for_status()
        return {
            "parts_s": parts["seconds"],
            "complete_s": done["seconds"],
            "parts_server_kib": parts_mem["growth_kib"],
            "complete_server_kib": done_mem["growth_kib"],
            "download_s": fetched,
        }

    def download(self, server: BenchServer, key: str, file_id: str) -> float:
        """Seconds of one download of the file, with our client, into a file (removed)."""
        dest = self.bench.work / "row9-download.bin"
        got = run_worker("download", server.base_url, key, file_id, str(dest), timeout=1800)
        return float(got["seconds"])

    def blob_download(self, server: BenchServer, key: str, path: Path) -> float:
        """The same bytes as one blob (POST /v1/files), downloaded as `download` does; the
        file is deleted after."""
        file_id = run_worker("upload", server.base_url, key, str(path), timeout=1800)["result"]
        try:
            return self.download(server, key, file_id)
        finally:
            httpx.delete(
                f"{server.base_url}/files/{file_id}",
                headers={"Authorization": f"Bearer {key}"},
                timeout=600,
            ).raise_for_status()

    def rounds(
        self, deployment: str, server: BenchServer, key: str, path: Path, part: int, md5: str
    ) -> dict[str, Figure]:
        """The figures of one deployment: parts and completion, without and with the md5."""
        figs = self.figs.setdefault(
            deployment, {k: Figure(k, "KiB" if k.endswith("kib") else "s") for k in FIGURES}
        )
        plain = self.once(server, key, path, part, None, download=True)
        checked = self.once(server, key, path, part, md5)
        assert plain["download_s"] is not None
        figs["download_s"].values.append(plain["download_s"])
        figs["download_blob_s"].values.append(self.blob_download(server, key, path))
        figs["parts_s"].values += [plain["parts_s"], checked["parts_s"]]
        figs["complete_s"].values.append(plain["complete_s"])
        figs["complete_md5_s"].values.append(checked["complete_s"])
        figs["parts_server_kib"].values += [plain["parts_server_kib"], checked["parts_server_kib"]]
        figs["complete_server_kib"].values.append(plain["complete_server_kib"])
        figs["complete_md5_server_kib"].values.append(checked["complete_server_kib"])
        return figs


def md5sum(path: Path) -> float:
    """The reference of a completion with the md5: `md5sum` of the same bytes, once."""
    start = time.perf_counter()
    subprocess.run(["md5sum", str(path)], check=True, capture_output=True)
    return time.perf_counter() - start


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def uploads_api(bench: Bench) -> Row9:
    # The quick run ends with a part of 1 byte (a part of any size is one of the manifest's).
    size, part = (64 * MiB + 1, 8 * MiB) if bench.quick else (2048 * MiB, 64 * MiB)
    count = -(-size // part)
    amount = f"{size // MiB} MiB" + (f" + {size % MiB} B" if size % MiB else "")
    bench.log(f"row 9: Uploads API, {amount} in {count} parts, both deployments")
    big = make_file(bench.work / "upload-big.bin", size)
    md5 = md5_of(big)
    rounds = UploadRounds(bench)
    ref_md5 = Figure("md5sum", "s")
    # The same bytes as one blob, for the download's reference: one POST /v1/files.
    one_blob = ("--max-file-bytes", str(size + MiB))
    with bench.server(*one_blob) as server:
        key = server.first_key
        assert key
        for _ in range(bench.runs):
            ref_md5.values.append(md5sum(big))
            local = rounds.rounds("local", server, key, big, part, md5)
    bench.log("row 9: on PostgreSQL + S3 (SeaweedFS)")
    with scaleout_services() as (pg, s3):
        env = scaleout_env(pg, s3)
        with bench.server(*one_blob, env=env) as server:
            key = server.first_key
            assert key
            for _ in range(bench.runs):
                ref_md5.values.append(md5sum(big))
                remote = rounds.rounds("s3", server, key, big, part, md5)
    big.unlink()
    sides = (("local", local), ("s3", remote))
    peak_mib = (
        max(
            max(f[k].values)
            for _, f in sides
            for k in ("complete_server_kib", "complete_md5_server_kib")
        )
        / 1024
    )
    md5_ratio = {n: f["complete_md5_s"].median / ref_md5.median for n, f in sides}
    # Throughput of the file made of parts / of the one blob (the inverse of the times).
    download_ratio = {n: f["download_blob_s"].median / f["download_s"].median for n, f in sides}
    complete_s = max(f["complete_s"].median for _, f in sides)
    return {
        "what": f"Uploads API: {amount} in {count} parts of {part // MiB} MiB "
        "(4 in parallel, official SDK), then complete (a manifest: no byte copied), then "
        "download",
        "ours": {name: {k: f.summary() for k, f in figs.items()} for name, figs in sides},
        "reference": {"md5sum": ref_md5.summary()},
        "reference_name": "md5sum of the same bytes (with the md5); the same bytes as one "
        "blob, downloaded the same way (the download)",
        "ratio": max(md5_ratio.values()),
        "ratio_name": "completion with md5 / md5sum (time)",
        "ratio_local": local["complete_s"].median,
        "ratio_s3": remote["complete_s"].median,
        "ratio_local_md5": md5_ratio["local"],
        "ratio_s3_md5": md5_ratio["s3"],
        "download_local": download_ratio["local"],
        "download_s3": download_ratio["s3"],
        "peak_mib": peak_mib,
        "rounds_retried": rounds.retries,
        "target": f"completion without md5 <= {COMPLETE_TARGET_S} s; with md5 <= "
        f"{MD5_TARGET} x md5sum; download of the file made of parts >= {DOWNLOAD_TARGET} x "
        "the one blob's (throughput); server peak RSS growth < 64 MiB; both deployments",
        "met": complete_s <= COMPLETE_TARGET_S
        and max(md5_ratio.values()) <= MD5_TARGET
        and min(download_ratio.values()) >= DOWNLOAD_TARGET
        and peak_mib < 64,
    }
