"""Rows 1 to 4 (upload, download, memory, the official SDK on the embedded server), the curve
of throughput and memory against file size, and row 8 (rows 1 and 2 on PostgreSQL + S3).

python -m bench --rows 1    # rows 1-4 and the curve (results in bench/results/partial/)
python -m bench --rows 8
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

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
from ._results import CurvePoint, Row1, Row2, Row3, Row4, Row8
from ._run import Bench

#: The memory figures of rows 1, 2 and 4 (row 3).
MEMORY = (
    "upload_server_kib",
    "upload_client_kib",
    "download_server_kib",
    "download_client_kib",
    "sdk_client_kib",
)


class Transfer(TypedDict):
    """One upload of a file and (not with the SDK) its download; with `refs`, row 2's
    references measured in between."""

    upload_s: float
    upload_server_kib: int
    upload_client_kib: int
    download_s: NotRequired[float]
    download_server_kib: NotRequired[int]
    download_client_kib: NotRequired[int]
    curl_s: NotRequired[float]
    durable_s: NotRequired[float]


@dataclass
class Embedded:
    """What the embedded transfers measure: rows 1 to 4 and the curve."""

    row1: Row1
    row2: Row2
    row3: Row3
    row4: Row4
    curve: list[CurvePoint]


def transfer(
    bench: Bench, server: BenchServer, key: str, path: Path, sdk: bool = False, refs: bool = False
) -> Transfer:
    """Upload `path` and download it (not with the SDK); with `refs`, row 2's references
    too, in between: `curl -o` of the same URL and our client with `durable=True`, and
    each step that writes the file starts on warm memory (`Bench.warm_memory`)."""
    size = path.stat().st_size
    if refs:
        bench.warm_memory(size)
    with peak_growth(server.pid) as up_mem:
        up = run_worker("sdk-upload" if sdk else "upload", server.base_url, key, str(path))
    row: Transfer = {
        "upload_s": up["seconds"],
        "upload_server_kib": up_mem["growth_kib"],
        "upload_client_kib": up["rss_growth_kib"],
    }
    if not sdk:
        if refs:
            bench.warm_memory(size)
        with peak_growth(server.pid) as down_mem:
            down = run_worker(
                "download", server.base_url, key, up["result"], str(bench.work / "dl.bin")
            )
        row["download_s"] = down["seconds"]
        row["download_server_kib"] = down_mem["growth_kib"]
        row["download_client_kib"] = down["rss_growth_kib"]
    if refs:
        bench.warm_memory(size)
        row["curl_s"] = bench.curl(server.base_url, key, up["result"])
        bench.warm_memory(size)
        row["durable_s"] = run_worker(
            "download",
            server.base_url,
            key,
            up["result"],
            str(bench.work / "dl.bin"),
            "durable",
        )["seconds"]
    return row


def embedded_transfers(bench: Bench) -> Embedded:
    bench.log("rows 1-4: transfers on the embedded server")
    big = make_file(bench.work / "big.bin", bench.big)
    ours_up = Figure("upload", "s")
    ours_down = Figure("download", "s")
    ref_dd = Figure("dd conv=fsync", "s")
    ref_file = Figure("loopback socket into a file", "s")
    ref_floor = Figure("the file through a loopback socket into a file, fsync", "s")
    ref_curl = Figure("curl -o", "s")
    ours_durable = Figure("download, durable=True", "s")
    sdk_up = Figure("openai SDK upload", "s")
    mem = {k: Figure(k, "KiB") for k in MEMORY}
    curve: list[CurvePoint] = []
    # The transfers of a 512 MiB file vary most from run to run here: more runs.
    runs = bench.runs if bench.quick else 5
    with bench.server() as server:
        key = server.first_key
        assert key
        for i in range(runs):
            bench.warm_memory(bench.big)
            ref_dd.values.append(bench.dd(big))
            bench.warm_memory(bench.big)
            ref_file.values.append(
                run_worker("socket-file", str(bench.big), str(bench.work / "sock.bin"))["seconds"]
            )
            bench.warm_memory(bench.big)
            ref_floor.values.append(
                run_worker(
                    "socket-file",
                    str(bench.big),
                    str(bench.work / "sock.bin"),
                    str(big),
                    "durable",
                )["seconds"]
            )
            row = transfer(bench, server, key, big, refs=True)
            ours_up.values.append(row["upload_s"])
            ours_down.values.append(row["download_s"])
            ref_curl.values.append(row["curl_s"])
            ours_durable.values.append(row["durable_s"])
            mem["upload_server_kib"].values.append(row["upload_server_kib"])
            mem["upload_client_kib"].values.append(row["upload_client_kib"])
            mem["download_server_kib"].values.append(row["download_server_kib"])
            mem["download_client_kib"].values.append(row["download_client_kib"])
            sdk = transfer(bench, server, key, big, sdk=True)
            sdk_up.values.append(sdk["upload_s"])
            mem["sdk_client_kib"].values.append(sdk["upload_client_kib"])
            bench.log(
                f"rows 1-4, run {i + 1}: upload {row['upload_s']:.2f} s (dd "
                f"{ref_dd.values[-1]:.2f}, socket {ref_floor.values[-1]:.2f}), download "
                f"{row['download_s']:.2f} s (socket "
                f"{ref_file.values[-1]:.2f}, curl {row['curl_s']:.2f}), SDK upload "
                f"{sdk['upload_s']:.2f} s"
            )
        bench.log("curve: throughput and memory against size")
        for size in bench.sizes:
            path = make_file(bench.work / f"curve-{size}.bin", size)
            point: CurvePoint = {
                "bytes": size,
                "upload_s": [],
                "upload_server_kib": [],
                "upload_client_kib": [],
                "download_s": [],
                "download_server_kib": [],
                "download_client_kib": [],
            }
            for _ in range(bench.runs):
                row = transfer(bench, server, key, path)
                point["upload_s"].append(row["upload_s"])
                point["upload_server_kib"].append(row["upload_server_kib"])
                point["upload_client_kib"].append(row["upload_client_kib"])
                point["download_s"].append(row["download_s"])
                point["download_server_kib"].append(row["download_server_kib"])
                point["download_client_kib"].append(row["download_client_kib"])
            curve.append(point)
            path.unlink()
    size_mib = bench.big / MiB
    down_ratio = ref_file.median / ours_down.median
    curl_ratio = ref_curl.median / ours_down.median
    peaks = {k: max(f.values) / 1024 for k, f in mem.items()}
    return Embedded(
        row1={
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
        },
        row2={
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
        },
        row3={
            "runs": runs,
            "what": "peak RSS growth during rows 1 and 2 (MiB, worst run)",
            "ours": {k: f.summary() for k, f in mem.items()},
            "peaks_mib": peaks,
            "target": "<= 64 server, <= 32 client",
            "met": max(peaks["upload_server_kib"], peaks["download_server_kib"]) <= 64
            and max(peaks["upload_client_kib"], peaks["download_client_kib"]) <= 32,
        },
        row4={
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
        },
        curve=curve,
    )


def scaleout_transfers(bench: Bench) -> Row8:
    """Row 8: rows 1 and 2 on PostgreSQL + S3, against obstore's put and get."""
    bench.log("row 8: transfers on PostgreSQL + S3 (SeaweedFS)")
    runs = bench.runs if bench.quick else 5  # SeaweedFS shares the two cores: more runs
    with scaleout_services() as (pg, s3):
        env = scaleout_env(pg, s3)
        big = make_file(bench.work / "big.bin", bench.big)
        up, down = Figure("upload", "s"), Figure("download", "s")
        ref_put, ref_get = Figure("obstore put", "s"), Figure("obstore get", "s")
        with bench.server(env=env) as server:
            key = server.first_key
            assert key
            direct = s3.url("bench", prefix="direct")
            for i in range(runs):
                row = transfer(bench, server, key, big)
                up.values.append(row["upload_s"])
                down.values.append(row["download_s"])
                ref_put.values.append(
                    run_worker("s3-put", direct, str(big), f"direct/ref-{i}", env=env, retries=1)[
                        "seconds"
                    ]
                )
                ref_get.values.append(
                    run_worker(
                        "s3-get",
                        direct,
                        f"direct/ref-{i}",
                        str(bench.work / "s3.bin"),
                        env=env,
                        retries=1,
                    )["seconds"]
                )
    return {
        "runs": runs,
        "what": f"rows 1 and 2 ({bench.big // MiB} MiB) on PostgreSQL + S3",
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
