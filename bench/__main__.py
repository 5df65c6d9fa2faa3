"""`make bench`: speed and memory, each as a ratio against a reference measured in the same run.

python -m bench            # the full run: writes bench/results/ and docs/benchmarks.md
python -m bench --quick    # a small smoke run (CI), results in bench/results/quick/
python -m bench --rows 9 --merge   # one group, put into the last full run's table
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ._harness import (
    ROOT,
    WRK_CONNECTIONS,
    BenchServer,
    Figure,
    MiB,
    make_file,
    peak_growth,
    run_worker,
    scaleout_env,
    scaleout_services,
    unwind_on_sigterm,
)
from ._report import write_report

Row = dict[str, Any]


class Bench:
    def __init__(self, quick: bool, work: Path) -> None:
        self.quick = quick
        self.work = work
        self.runs = 1 if quick else 3
        self.big = 8 * MiB if quick else 512 * MiB
        self.sizes = (
            [1 * MiB, 4 * MiB]
            if quick
            else [MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 512 * MiB]
        )
        self.rows: dict[str, Row] = {}
        self.curve: list[dict[str, Any]] = []
        #: The HTTP servers side by side (bench/stack.py), when measured.
        self.stack: dict[str, Any] | None = None

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    # -- servers --
    @contextmanager
    def server(self, *args: str, env: dict[str, str] | None = None) -> Iterator[BenchServer]:
        data = self.work / f"srv-{time.monotonic_ns()}" / "data"
        proc = BenchServer(data, "--log-level", "warning", *args, env=env).start()
        try:
            yield proc
        finally:
            proc.stop()
            shutil.rmtree(data.parent, ignore_errors=True)

    # -- rows 1 to 4: transfers on the embedded server --
    def transfer(
        self, server: BenchServer, key: str, path: Path, sdk: bool = False, refs: bool = False
    ) -> Row:
        """Upload `path` and download it (not with the SDK); with `refs`, row 2's references
        too, in between: `curl -o` of the same URL and our client with `durable=True`, and
        each step that writes the file starts on warm memory (`warm_memory`)."""
        size = path.stat().st_size
        if refs:
            self.warm_memory(size)
        with peak_growth(server.pid) as up_mem:
            up = run_worker("sdk-upload" if sdk else "upload", server.base_url, key, str(path))
        row: Row = {
            "upload_s": up["seconds"],
            "upload_server_kib": up_mem["growth_kib"],
            "upload_client_kib": up["rss_growth_kib"],
        }
        if not sdk:
            if refs:
                self.warm_memory(size)
            with peak_growth(server.pid) as down_mem:
                down = run_worker(
                    "download", server.base_url, key, up["result"], str(self.work / "dl.bin")
                )
            row.update(
                download_s=down["seconds"],
                download_server_kib=down_mem["growth_kib"],
                download_client_kib=down["rss_growth_kib"],
            )
        if refs:
            self.warm_memory(size)
            row["curl_s"] = self.curl(server, key, up["result"])
            self.warm_memory(size)
            row["durable_s"] = run_worker(
                "download",
                server.base_url,
                key,
                up["result"],
                str(self.work / "dl.bin"),
                "durable",
            )["seconds"]
        return row

    def warm_memory(self, size: int) -> None:
        """Write `size` bytes to a scratch file and delete it, so that the timed step after
        it gets memory the system has just freed.

        On a virtual machine that hands freed memory back to its host (virtio-balloon free
        page reporting, as here), memory freed a few seconds ago costs a fault in the host
        on its next use: a 512 MiB download into a file measured 1.5-2.1 s after a pause,
        0.3-0.5 s right after 512 MiB were freed. dd's copy is deleted just before the
        socket reference runs, so without this the references got warm memory and our
        client cold memory."""
        block = bytes(MiB)
        scratch = self.work / "warm.bin"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(-(-size // MiB)):
                os.write(fd, block)
        finally:
            os.close(fd)
            scratch.unlink()

    def curl(self, server: BenchServer, key: str, file_id: str) -> float:
        """`curl -o` of the file's content URL: what people compare a download with."""
        curl = shutil.which("curl")
        if curl is None:
            raise RuntimeError("curl is not installed (Debian: apt-get install curl)")
        dest = self.work / "curl.bin"
        start = time.perf_counter()
        subprocess.run(
            [curl, "-sSf", "-o", str(dest), "-H", f"Authorization: Bearer {key}",
             f"{server.base_url}/files/{file_id}/content"],
            check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        dest.unlink()
        return seconds

    def dd(self, path: Path) -> float:
        dest = self.work / "dd-copy.bin"
        start = time.perf_counter()
        subprocess.run(
            ["dd", f"if={path}", f"of={dest}", "bs=1M", "conv=fsync", "status=none"], check=True
        )
        seconds = time.perf_counter() - start
        dest.unlink()
        return seconds

    def embedded_transfers(self) -> None:
        self.log("rows 1-4: transfers on the embedded server")
        big = make_file(self.work / "big.bin", self.big)
        ours_up = Figure("upload", "s")
        ours_down = Figure("download", "s")
        ref_dd = Figure("dd conv=fsync", "s")
        ref_file = Figure("loopback socket into a file", "s")
        ref_floor = Figure("the file through a loopback socket into a file, fsync", "s")
        ref_curl = Figure("curl -o", "s")
        ours_durable = Figure("download, durable=True", "s")
        sdk_up = Figure("openai SDK upload", "s")
        mem = {
            k: Figure(k, "KiB")
            for k in (
                "upload_server_kib",
                "upload_client_kib",
                "download_server_kib",
                "download_client_kib",
                "sdk_client_kib",
            )
        }
        # The transfers of a 512 MiB file vary most from run to run here: more runs.
        runs = self.runs if self.quick else 5
        with self.server() as server:
            key = server.first_key
            assert key
            for i in range(runs):
                self.warm_memory(self.big)
                ref_dd.values.append(self.dd(big))
                self.warm_memory(self.big)
                ref_file.values.append(
                    run_worker("socket-file", str(self.big), str(self.work / "sock.bin"))["seconds"]
                )
                self.warm_memory(self.big)
                ref_floor.values.append(
                    run_worker(
                        "socket-file",
                        str(self.big),
                        str(self.work / "sock.bin"),
                        str(big),
                        "durable",
                    )["seconds"]
                )
                row = self.transfer(server, key, big, refs=True)
                ours_up.values.append(row["upload_s"])
                ours_down.values.append(row["download_s"])
                ref_curl.values.append(row["curl_s"])
                ours_durable.values.append(row["durable_s"])
                for k in (
                    "upload_server_kib",
                    "upload_client_kib",
                    "download_server_kib",
                    "download_client_kib",
                ):
                    mem[k].values.append(row[k])
                sdk = self.transfer(server, key, big, sdk=True)
                sdk_up.values.append(sdk["upload_s"])
                mem["sdk_client_kib"].values.append(sdk["upload_client_kib"])
                self.log(
                    f"rows 1-4, run {i + 1}: upload {row['upload_s']:.2f} s (dd "
                    f"{ref_dd.values[-1]:.2f}, socket {ref_floor.values[-1]:.2f}), download "
                    f"{row['download_s']:.2f} s (socket "
                    f"{ref_file.values[-1]:.2f}, curl {row['curl_s']:.2f}), SDK upload "
                    f"{sdk['upload_s']:.2f} s"
                )
            self.log("curve: throughput and memory against size")
            for size in self.sizes:
                path = make_file(self.work / f"curve-{size}.bin", size)
                point: dict[str, Any] = {"bytes": size}
                for _ in range(self.runs):
                    row = self.transfer(server, key, path)
                    for k, v in row.items():
                        point.setdefault(k, []).append(v)
                self.curve.append(point)
                path.unlink()
        size_mib = self.big / MiB
        self.rows["1"] = {
            "runs": runs,
            "what": f"upload {size_mib:.0f} MiB through our client, durable on return",
            "ours": ours_up.summary(),
            "reference": ref_dd.summary(),
            "reference_name": "dd conv=fsync, same file, same disk",
            "ratio": ours_up.median / ref_dd.median,
            "ratio_name": "ours / reference (time)",
            # What any upload over a network socket costs here beyond dd: the loopback
            # copies, without HTTP, Python's parsing or the database.
            "reference_floor": ref_floor.summary(),
            "floor_name": "the file read, sent through a loopback socket, written and "
            "fsynced (Python, no HTTP)",
            "ratio_floor": ours_up.median / ref_floor.median,
            "target": "<= 1.5",
            "met": ours_up.median / ref_dd.median <= 1.5,
        }
        down_ratio = ref_file.median / ours_down.median
        curl_ratio = ref_curl.median / ours_down.median
        self.rows["2"] = {
            "runs": runs,
            "what": f"download {size_mib:.0f} MiB to a file through our client (page cache, "
            "as curl -o; durable=True beside it)",
            "ours": ours_down.summary(),
            "ours_durable": ours_durable.summary(),
            "reference": ref_file.summary(),
            "reference_name": "loopback TCP socket into a page-cache file, in Python",
            "reference_curl": ref_curl.summary(),
            "ratio": down_ratio,
            "ratio_name": "ours / reference (throughput)",
            "ratio_curl": curl_ratio,
            "target": ">= 0.5 of the socket; >= 1 of curl -o",
            "met": down_ratio >= 0.5 and curl_ratio >= 1,
        }
        peaks = {k: max(f.values) / 1024 for k, f in mem.items()}
        self.rows["3"] = {
            "runs": runs,
            "what": "peak RSS growth during rows 1 and 2 (MiB, worst run)",
            "ours": {k: f.summary() for k, f in mem.items()},
            "peaks_mib": peaks,
            "target": "<= 64 server, <= 32 client",
            "met": max(peaks["upload_server_kib"], peaks["download_server_kib"]) <= 64
            and max(peaks["upload_client_kib"], peaks["download_client_kib"]) <= 32,
        }
        self.rows["4"] = {
            "runs": runs,
            "what": "the same upload through the official openai SDK (a path)",
            "ours": sdk_up.summary(),
            "reference": ours_up.summary(),
            "reference_name": "row 1 (our client)",
            "ratio": sdk_up.median / ours_up.median,
            "ratio_name": "SDK / ours (time)",
            "sdk_client_peak_mib": max(mem["sdk_client_kib"].values) / 1024,
            "target": "report",
            "met": None,
        }

    # -- row 5: listing latency against the number of files, both deployments --
    def listing_latency(self) -> None:
        from .scale import listing_latency

        listing_latency(self)

    # -- rows 6 and 7: concurrency with wrk --
    def wrk(self, url: str, key: str, seconds: int, script: Path | None = None) -> dict[str, float]:
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
        return {"rps": rps, "requests": requests}

    def request_rates(self) -> None:
        if not shutil.which("wrk"):
            raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
        seconds = 2 if self.quick else 8
        self.log("row 6: requests per second, GET /v1/files/{id}")
        ours, ref = Figure("retrieve", "req/s"), Figure("constant", "req/s")
        uploads, fsyncs = Figure("4 KiB uploads", "uploads/s"), Figure("4 KiB fsync", "writes/s")
        # wrk's 32 connections upload with one key: as many may stream at once (row 7).
        with self.server("--max-uploads-per-key", str(WRK_CONNECTIONS)) as server:
            key = server.first_key
            assert key
            made = run_worker(
                "upload", server.base_url, key, str(make_file(self.work / "tiny.bin", 4096))
            )["result"]
            for _ in range(self.runs):
                ref.values.append(
                    self.wrk(server.root_url + "/bench/constant", key, seconds)["rps"]
                )
                ours.values.append(self.wrk(f"{server.base_url}/files/{made}", key, seconds)["rps"])
            self.log("row 7: 4 KiB uploads per second")
            script = self.upload_script()
            for _ in range(self.runs):
                result = self.wrk(server.base_url + "/files", key, seconds, script)
                uploads.values.append(result["rps"])
                fsyncs.values.append(self.fsync_rate(int(result["requests"])))
        self.rows["6"] = {
            "what": "requests/s, GET /v1/files/{id}, 32 keep-alive connections (wrk)",
            "ours": ours.summary(),
            "reference": ref.summary(),
            "reference_name": "a constant-JSON route on the same server stack",
            "ratio": ours.median / ref.median,
            "ratio_name": "ours / reference",
            "target": ">= 0.5",
            "met": ours.median / ref.median >= 0.5,
        }
        self.rows["7"] = {
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

    def upload_script(self) -> Path:
        """A wrk script that uploads 4 KiB files (purpose vision: no format check)."""
        script = self.work / "upload.lua"
        boundary = "benchboundary"
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
            f'vision\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="small.bin"\r\nContent-Type: application/octet-stream\r\n\r\n'
            + "x" * 4096
            + f"\r\n--{boundary}--\r\n"
        )
        lua = (
            body.replace("\\", "\\\\").replace('"', '\\"').replace("\r", "\\r").replace("\n", "\\n")
        )
        script.write_text(
            'wrk.method = "POST"\n'
            f'wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"\n'
            f'wrk.body = "{lua}"\n'
        )
        return script

    def fsync_rate(self, count: int) -> float:
        folder = self.work / "fsync"
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

    # -- row 8: the same transfers on PostgreSQL + S3 --
    def scaleout_transfers(self) -> None:
        self.log("row 8: transfers on PostgreSQL + S3 (SeaweedFS)")
        with scaleout_services() as (pg, s3):
            env = scaleout_env(pg, s3)
            big = make_file(self.work / "big.bin", self.big)
            up, down = Figure("upload", "s"), Figure("download", "s")
            ref_put, ref_get = Figure("obstore put", "s"), Figure("obstore get", "s")
            with self.server(env=env) as server:
                key = server.first_key
                assert key
                worker_env = {**env}
                direct = s3.url("bench", prefix="direct")
                # SeaweedFS shares the two cores: more runs steady the medians.
                for i in range(self.runs if self.quick else 5):
                    row = self.transfer(server, key, big)
                    up.values.append(row["upload_s"])
                    down.values.append(row["download_s"])
                    ref_put.values.append(
                        run_worker(
                            "s3-put", direct, str(big), f"direct/ref-{i}", env=worker_env, retries=1
                        )["seconds"]
                    )
                    ref_get.values.append(
                        run_worker(
                            "s3-get",
                            direct,
                            f"direct/ref-{i}",
                            str(self.work / "s3.bin"),
                            env=worker_env,
                            retries=1,
                        )["seconds"]
                    )
        self.rows["8"] = {
            "runs": self.runs if self.quick else 5,
            "what": f"rows 1 and 2 ({self.big // MiB} MiB) on PostgreSQL + S3",
            "ours": {"upload": up.summary(), "download": down.summary()},
            "reference": {"put": ref_put.summary(), "get": ref_get.summary()},
            "reference_name": "obstore put/get of the same bytes to the same SeaweedFS",
            "ratio": min(ref_put.median / up.median, ref_get.median / down.median),
            "ratio_name": "ours / reference (throughput, worse of upload and download)",
            "ratio_upload": ref_put.median / up.median,
            "ratio_download": ref_get.median / down.median,
            "target": ">= 0.8",
            "met": min(ref_put.median / up.median, ref_get.median / down.median) >= 0.8,
        }

    # -- row 9: the Uploads API's completion on both deployments --
    def upload_once(
        self, server: BenchServer, key: str, path: Path, part: int, md5: str | None
    ) -> dict[str, float]:
        """Create an upload, send its parts 4 at a time, complete it (with the md5 or not),
        then delete the file; times and the server's peak RSS growth of each phase. A round
        that fails (the S3 server once answered a completion's copy with 503) is run once
        more from a new upload, saying so."""
        try:
            return self.upload_attempt(server, key, path, part, md5)
        except RuntimeError as exc:
            # The failed upload is left to expire; the run's data folder goes at its end.
            self.log(f"row 9: a round failed, once more from a new upload:\n{str(exc)[-600:]}")
            self.upload_retries += 1
            return self.upload_attempt(server, key, path, part, md5)

    def upload_attempt(
        self, server: BenchServer, key: str, path: Path, part: int, md5: str | None
    ) -> dict[str, float]:
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
        import httpx

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

    def upload_rounds(
        self, server: BenchServer, key: str, path: Path, part: int, md5: str, run: int
    ) -> dict[str, Figure]:
        """The figures of one deployment: parts and completion, without and with the md5."""
        figs = self.upload_figs.setdefault(
            run,
            {
                k: Figure(k, "KiB" if k.endswith("kib") else "s")
                for k in (
                    "parts_s",
                    "complete_s",
                    "complete_md5_s",
                    "parts_server_kib",
                    "complete_server_kib",
                    "complete_md5_server_kib",
                )
            },
        )
        if run == 0:
            # The local folder's fair reference: the same join, in plain Python, of parts
            # just uploaded (a first copy of freshly written files measured up to twice as
            # slow as a copy of the same bytes at rest, which is what cp copies).
            figs.setdefault("fresh_join_s", Figure("join of fresh parts", "s")).values.append(
                self.join_fresh_parts(server, key, path, part)
            )
        plain = self.upload_once(server, key, path, part, None)
        checked = self.upload_once(server, key, path, part, md5)
        figs["parts_s"].values += [plain["parts_s"], checked["parts_s"]]
        figs["complete_s"].values.append(plain["complete_s"])
        figs["complete_md5_s"].values.append(checked["complete_s"])
        figs["parts_server_kib"].values += [plain["parts_server_kib"], checked["parts_server_kib"]]
        figs["complete_server_kib"].values.append(plain["complete_server_kib"])
        figs["complete_md5_server_kib"].values.append(checked["complete_server_kib"])
        return figs

    def join_fresh_parts(self, server: BenchServer, key: str, path: Path, part: int) -> float:
        """Send an upload's parts as `upload_once` does, then join the part files the server
        just wrote as its completion would (copy_file_range in order, fsync), in this
        process, and cancel the upload; the seconds of the join."""
        import httpx

        ids = run_worker("upload-parts", server.base_url, key, str(path), str(part), "4")["result"]
        files = {p.name: p for p in (server.data_dir / "blobs").rglob("part_*")}
        dest = self.work / "fresh-join.bin"
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

    def cp_sync(self, path: Path) -> float:
        dest = self.work / "cp-copy.bin"
        start = time.perf_counter()
        subprocess.run(["cp", str(path), str(dest)], check=True)
        subprocess.run(["sync", str(dest)], check=True)
        seconds = time.perf_counter() - start
        dest.unlink()
        return seconds

    def uploads_api(self) -> None:
        # The quick run ends with a part of 1 byte: on S3, completion then merges the parts
        # under S3's 5 MiB minimum (stores/s3.py) as well as copying the others.
        size, part = (64 * MiB + 1, 8 * MiB) if self.quick else (2048 * MiB, 64 * MiB)
        count = -(-size // part)
        amount = f"{size // MiB} MiB" + (f" + {size % MiB} B" if size % MiB else "")
        self.log(f"row 9: Uploads API, {amount} in {count} parts, both deployments")
        big = make_file(self.work / "upload-big.bin", size)
        digest = hashlib.md5(usedforsecurity=False)
        with big.open("rb") as fh:
            while chunk := fh.read(8 * MiB):
                digest.update(chunk)
        md5 = digest.hexdigest()
        self.upload_figs: dict[int, dict[str, Figure]] = {}
        self.upload_retries = 0
        ref_cp = Figure("cp + sync", "s")
        with self.server() as server:
            key = server.first_key
            assert key
            for _ in range(self.runs):
                ref_cp.values.append(self.cp_sync(big))
                local = self.upload_rounds(server, key, big, part, md5, 0)
        self.log("row 9: on PostgreSQL + S3 (SeaweedFS)")
        ref_put, ref_copy = Figure("obstore put", "s"), Figure("S3 CopyObject", "s")
        with scaleout_services() as (pg, s3):
            env = scaleout_env(pg, s3)
            direct = s3.url("bench", prefix="direct")
            with self.server(env=env) as server:
                key = server.first_key
                assert key
                for i in range(self.runs):
                    ref_put.values.append(
                        run_worker("s3-put", direct, str(big), f"up-{i}", env=env, retries=1)[
                            "seconds"
                        ]
                    )
                    ref_copy.values.append(
                        run_worker(
                            "s3-copy", direct, f"up-{i}", f"up-{i}-copy", env=env, retries=1
                        )["seconds"]
                    )
                    remote = self.upload_rounds(server, key, big, part, md5, 1)
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
        self.rows["9"] = {
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
            "rounds_retried": self.upload_retries,
            "target": "completion <= 1.5 x the same join of parts just uploaded (local), "
            "<= 1.5 x CopyObject (S3); server peak RSS growth < 64 MiB",
            "met": local["complete_s"].median / fresh.median <= 1.5
            and s3_ratio <= 1.5
            and peak_mib < 64,
        }


def machine() -> dict[str, Any]:
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


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a small smoke run (CI)")
    parser.add_argument(
        "--rows",
        default="1,5,6,8,9,stack",
        help="row groups to run: 1 (rows 1-4), 5, 6 (rows 6-7), 8, 9, and stack (uvicorn and "
        "granian on rows 1, 2, 5, 6, 7)",
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
        help="rows 1-4 against llama-stack's Files API too, a peer column (make bench PEERS=1)",
    )
    args = parser.parse_args()
    groups = set(args.rows.split(","))
    if args.peers and "1" not in groups:
        parser.error("--peers measures rows 1-4: give --rows with 1")
    full = groups >= {"1", "5", "6", "8", "9", "stack"} and not args.quick
    if args.merge and (args.quick or full):
        parser.error("--merge takes a partial run: give --rows without --quick")
    # Only a full run writes docs/benchmarks.md; others keep their report beside their JSON.
    out_dir = ROOT / "bench" / "results" / ("" if full else "quick" if args.quick else "partial")
    out_dir.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    unwind_on_sigterm()  # its temporary folder holds gigabytes of test files
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-", dir=ROOT / "bench") as tmp:
        bench = Bench(args.quick, Path(tmp))
        started = time.perf_counter()
        if "1" in groups:
            bench.embedded_transfers()
        if args.peers:
            from .peers import peer_transfers

            peer_transfers(bench)
        if "5" in groups:
            bench.listing_latency()
        if "6" in groups:
            bench.request_rates()
        if "8" in groups:
            bench.scaleout_transfers()
        if "9" in groups:
            bench.uploads_api()
        if "stack" in groups:
            from .stack import server_stacks

            server_stacks(bench)
        command = "make bench" + (" QUICK=1" if args.quick else "")
        if not full and not args.quick:
            command = f"python -m bench --rows {args.rows}"
        if args.peers:
            command += " --peers" if command.startswith("python") else " PEERS=1"
        result = {
            "machine": machine(),
            "quick": args.quick,
            "runs": bench.runs,
            "command": command,
            "seconds": round(time.perf_counter() - started, 1),
            "load": {"before": load_before, "after": os.getloadavg()},
            "rows": bench.rows,
            "curve": bench.curve,
            **({"stack": bench.stack} if bench.stack else {}),
        }
    stamp = time.strftime("%Y%m%dT%H%MZ", time.gmtime())
    (out_dir / "latest.json").write_text(json.dumps(result, indent=2))
    if args.peers and not args.quick:
        from .peers import save

        bench.log(f"peer run kept in {save(result, stamp)}")
    if full:
        (out_dir / f"{stamp}-{result['machine']['commit']}.json").write_text(
            json.dumps(result, indent=2)
        )
    docs = ROOT / "docs" if full else out_dir
    if args.merge:
        # The rows measured now join the last full run's, each saying when it was measured.
        base_path = ROOT / "bench" / "results" / "latest.json"
        merged = json.loads(base_path.read_text())
        for number, row in bench.rows.items():
            merged["rows"][number] = {
                **row,
                "measured": {
                    **{k: result[k] for k in ("command", "seconds", "load", "runs")},
                    "commit": result["machine"]["commit"],
                    "date": result["machine"]["date"],
                },
            }
        if bench.stack:
            merged["stack"] = {
                **bench.stack,
                "measured": {
                    **{k: result[k] for k in ("command", "seconds", "load", "runs")},
                    "commit": result["machine"]["commit"],
                    "date": result["machine"]["date"],
                },
            }
        base_path.write_text(json.dumps(merged, indent=2))
        (
            ROOT / "bench" / "results" / f"{stamp}-{result['machine']['commit']}-merged.json"
        ).write_text(json.dumps(merged, indent=2))
        result, docs = merged, ROOT / "docs"
    write_report(result, docs / "benchmarks.md", docs / "benchmarks.png")
    bench.log(f"done in {round(time.perf_counter() - started, 1)} s: {docs / 'benchmarks.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
