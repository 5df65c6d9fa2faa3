"""Row 9: the Uploads API on both deployments: parts sent 4 at a time through the official
SDK, then the completion (with and without the md5), against the same join done without
the server (cp + sync, and a join of the parts just uploaded) and S3's CopyObject.

python -m bench --rows 9    # the row alone (results in bench/results/partial/)
"""

from __future__ import annotations

import hashlib
import os
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
    "parts_server_kib",
    "complete_server_kib",
    "complete_md5_server_kib",
)


class Round(TypedDict):
    """One upload: its parts, its completion, and the server's peak growth in each."""

    parts_s: float
    complete_s: float
    parts_server_kib: int
    complete_server_kib: int


class UploadRounds:
    """The rounds of row 9 on one run: the figures of each deployment, and how many rounds
    failed and were run again."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.figs: dict[str, dict[str, Figure]] = {}
        self.retries = 0

    def once(self, server: BenchServer, key: str, path: Path, part: int, md5: str | None) -> Round:
        """Create an upload, send its parts 4 at a time, complete it (with the md5 or not),
        then delete the file; times and the server's peak RSS growth of each phase. A round
        that fails (the S3 server once answered a completion's copy with 503) is run once
        more from a new upload, saying so."""
        try:
            return self.attempt(server, key, path, part, md5)
        except RuntimeError as exc:
            # The failed upload is left to expire; the run's data folder goes at its end.
            self.bench.log(
                f"row 9: a round failed, once more from a new upload:\n{str(exc)[-600:]}"
            )
            self.retries += 1
            return self.attempt(server, key, path, part, md5)

    def attempt(
        self, server: BenchServer, key: str, path: Path, part: int, md5: str | None
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
        }

    def rounds(
        self, deployment: str, server: BenchServer, key: str, path: Path, part: int, md5: str
    ) -> dict[str, Figure]:
        """The figures of one deployment: parts and completion, without and with the md5."""
        figs = self.figs.setdefault(
            deployment, {k: Figure(k, "KiB" if k.endswith("kib") else "s") for k in FIGURES}
        )
        if deployment == "local":
            # The local folder's fair reference: the same join, in plain Python, of parts
            # just uploaded (a first copy of freshly written files measured up to twice as
            # slow as a copy of the same bytes at rest, which is what cp copies).
            figs.setdefault("fresh_join_s", Figure("join of fresh parts", "s")).values.append(
                self.join_fresh_parts(server, key, path, part)
            )
        plain = self.once(server, key, path, part, None)
        checked = self.once(server, key, path, part, md5)
        figs["parts_s"].values += [plain["parts_s"], checked["parts_s"]]
        figs["complete_s"].values.append(plain["complete_s"])
        figs["complete_md5_s"].values.append(checked["complete_s"])
        figs["parts_server_kib"].values += [plain["parts_server_kib"], checked["parts_server_kib"]]
        figs["complete_server_kib"].values.append(plain["complete_server_kib"])
        figs["complete_md5_server_kib"].values.append(checked["complete_server_kib"])
        return figs

    def join_fresh_parts(self, server: BenchServer, key: str, path: Path, part: int) -> float:
        """Send an upload's parts as `once` does, then join the part files the server just
        wrote as its completion would (copy_file_range in order, fsync), in this process,
        and cancel the upload; the seconds of the join."""
        ids = run_worker("upload-parts", server.base_url, key, str(path), str(part), "4")["result"]
        files = {p.name: p for p in (server.data_dir / "blobs").rglob("part_*")}
        dest = self.bench.work / "fresh-join.bin"
        start = time.perf_counter()
        out = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            at = 0
            for part_id in ids["part_ids"]:
                src = os.open(files[part_id], os.O_RDONLY)
                try:
                    size, done = os.fstat(src).st_size, 0
                    while done < size:
                        done += os.copy_file_range(src, out, size - done, done, at + done)
                    at += size
                finally:
                    os.close(src)
            os.fsync(out)
        finally:
            os.close(out)
        seconds = time.perf_counter() - start
        dest.unlink()
        httpx.post(
            f"{server.base_url}/uploads/{ids['upload_id']}/cancel",
            headers={"Authorization": f"Bearer {key}"},
            timeout=600,
        ).raise_for_status()
        return seconds


def cp_sync(work: Path, path: Path) -> float:
    """The local folder's plain reference: `cp` of the file, then `sync` of the copy."""
    dest = work / "cp-copy.bin"
    start = time.perf_counter()
    subprocess.run(["cp", str(path), str(dest)], check=True)
    subprocess.run(["sync", str(dest)], check=True)
    seconds = time.perf_counter() - start
    dest.unlink()
    return seconds


def md5_of(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(8 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


def uploads_api(bench: Bench) -> Row9:
    # The quick run ends with a part of 1 byte: on S3, completion then merges the parts
    # under S3's 5 MiB minimum (stores/_s3_compose.py) as well as copying the others.
    size, part = (64 * MiB + 1, 8 * MiB) if bench.quick else (2048 * MiB, 64 * MiB)
    count = -(-size // part)
    amount = f"{size // MiB} MiB" + (f" + {size % MiB} B" if size % MiB else "")
    bench.log(f"row 9: Uploads API, {amount} in {count} parts, both deployments")
    big = make_file(bench.work / "upload-big.bin", size)
    md5 = md5_of(big)
    rounds = UploadRounds(bench)
    ref_cp = Figure("cp + sync", "s")
    with bench.server() as server:
        key = server.first_key
        assert key
        for _ in range(bench.runs):
            ref_cp.values.append(cp_sync(bench.work, big))
            local = rounds.rounds("local", server, key, big, part, md5)
    bench.log("row 9: on PostgreSQL + S3 (SeaweedFS)")
    ref_put, ref_copy = Figure("obstore put", "s"), Figure("S3 CopyObject", "s")
    with scaleout_services() as (pg, s3):
        env = scaleout_env(pg, s3)
        direct = s3.url("bench", prefix="direct")
        with bench.server(env=env) as server:
            key = server.first_key
            assert key
            for i in range(bench.runs):
                ref_put.values.append(
                    run_worker("s3-put", direct, str(big), f"up-{i}", env=env, retries=1)["seconds"]
                )
                ref_copy.values.append(
                    run_worker("s3-copy", direct, f"up-{i}", f"up-{i}-copy", env=env, retries=1)[
                        "seconds"
                    ]
                )
                remote = rounds.rounds("s3", server, key, big, part, md5)
    big.unlink()
    peak_mib = (
        max(
            max(f[k].values)
            for f in (local, remote)
            for k in ("complete_server_kib", "complete_md5_server_kib")
        )
        / 1024
    )
    fresh = local["fresh_join_s"]
    local_ratio = local["complete_s"].median / ref_cp.median
    s3_ratio = remote["complete_s"].median / ref_copy.median
    return {
        "what": f"Uploads API: {amount} in {count} parts of {part // MiB} MiB "
        "(4 in parallel, official SDK), then complete",
        "ours": {
            name: {k: f.summary() for k, f in figs.items()}
            for name, figs in (("local", local), ("s3", remote))
        },
        "reference": {
            "cp": ref_cp.summary(),
            "fresh_join": fresh.summary(),
            "put": ref_put.summary(),
            "copy": ref_copy.summary(),
        },
        "reference_name": "cp + sync of the file (local); S3 CopyObject of one object of "
        "the same size and obstore put of the file (SeaweedFS)",
        "ratio": max(local["complete_s"].median / fresh.median, s3_ratio),
        "ratio_name": "completion without md5 / reference (time)",
        "ratio_local": local_ratio,
        "ratio_s3": s3_ratio,
        "ratio_s3_put": remote["complete_s"].median / ref_put.median,
        "ratio_local_md5": local["complete_md5_s"].median / ref_cp.median,
        "ratio_local_fresh": local["complete_s"].median / fresh.median,
        "ratio_s3_md5": remote["complete_md5_s"].median / ref_copy.median,
        "peak_mib": peak_mib,
        "rounds_retried": rounds.retries,
        "target": "completion <= 1.5 x the same join of parts just uploaded (local), "
        "<= 1.5 x CopyObject (S3); server peak RSS growth < 64 MiB",
        "met": local["complete_s"].median / fresh.median <= 1.5
        and s3_ratio <= 1.5
        and peak_mib < 64,
    }
