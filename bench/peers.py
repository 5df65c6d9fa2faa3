"""`make bench PEERS=1`: rows 1 to 4 against a peer, llama-stack's Files API, side by side;
and row 10 against its Batches API.

The peer runs from a venv of its own (`make bench PEERS=1` makes it: llama-stack 0.7.3 on
Python 3.12, its dependencies pinned in bench/peers/llama-stack-constraints.txt), serving its
Files API alone (local files and SQLite, no model; bench/peers/llama-stack.yaml) on
127.0.0.1, with its 100 MiB upload limit raised by bench/peers/llama_stack_serve.py. The
client is the official openai SDK, the one its users would use; each run also measures, beside
the peer, the references of rows 1 and 2 again and the same SDK against our server, and
`curl -o` from both.

python -m bench.peers sdk-upload BASE_URL KEY PATH PURPOSE   # worker: one JSON line
python -m bench.peers sdk-download BASE_URL KEY FILE_ID OUT
python -m bench.peers delete BASE_URL KEY FILE_ID
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._format import fig
from ._harness import ROOT, BenchServer, Figure, MiB, make_file, peak_growth, run_worker
from ._results import (
    PeerBatch,
    PeerDownload,
    PeerMemory,
    PeerSdk,
    PeerUpload,
    Result,
    Row1,
    Row2,
    Row10,
)
from ._run import Bench

if TYPE_CHECKING:
    from openai.types import FilePurpose

NAME = "llama-stack 0.7.3"
HERE = Path(__file__).with_name("peers")
VENV = ROOT / ".venv" / "peer-llama-stack"
# Above any file the bench sends (512 MiB): the limit is raised, not removed.
MAX_UPLOAD = 4096 * MiB


class PeerServer:
    """llama-stack's server on a free loopback port, its data in a fresh folder; `config`
    (in bench/peers/) says what it serves, `env` fills the config's variables."""

    def __init__(
        self, data: Path, config: str = "llama-stack.yaml", env: dict[str, str] | None = None
    ) -> None:
        self.data = data
        self.config = HERE / config
        self.env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 180.0) -> PeerServer:
        python = VENV / "bin" / "python"
        if not python.exists():
            raise RuntimeError(
                f"the peer is not installed ({python} is missing): run make bench PEERS=1"
            )
        import httpx

        self.data.mkdir(parents=True, exist_ok=True)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        log = (self.data / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [str(python), str(HERE / "llama_stack_serve.py"), str(self.config),
             str(port), str(MAX_UPLOAD)],
            cwd=self.data,
            env={**os.environ, **self.env, "PEER_DATA": str(self.data)},
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        self.base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.data / "server.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{NAME} exited at start ({self.proc.returncode}):\n{tail}")
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"{NAME} did not answer /v1/health within {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)


def _peer_worker(*args: str) -> dict[str, Any]:
    return run_worker(*args, module="bench.peers", timeout=900)


@dataclass
class Peers:
    """The peer's entries of rows 1 to 4 (each row's "peer")."""

    row1: PeerUpload
    row2: PeerDownload
    row3: PeerMemory
    row4: PeerSdk


def peer_transfers(bench: Bench, row1: Row1, row2: Row2) -> Peers:
    """Rows 1 to 4 against the peer, beside ours (`row1`, `row2`): each row's "peer" entry.

    Each run measures, one after the other: the references of rows 1 and 2 again, the SDK's
    upload and download on our server, the same on the peer, and `curl -o` from both; so
    that the two servers, with the same client, meet the same moment's load."""
    bench.log(f"rows 1-4 on the peer, {NAME}, and on ours, both through the official SDK")
    big = make_file(bench.work / "big.bin", bench.big)
    sides = ("peer", "ours")
    names = ["dd_s", "socket_s"] + [
        f"{side}_{k}"
        for side in sides
        for k in (
            "upload_s",
            "download_s",
            "curl_s",
            "upload_server_kib",
            "upload_client_kib",
            "download_server_kib",
            "download_client_kib",
        )
    ]
    figs = {k: Figure(k, "KiB" if k.endswith("kib") else "s") for k in names}
    peer = PeerServer(bench.work / f"peer-{time.monotonic_ns()}").start()
    try:
        with bench.server() as ours:
            # llama-stack takes the purposes assistants and batch only; ours serves no
            # download of assistants files (as OpenAI), and vision is what rows 1-4 send it.
            servers: dict[str, tuple[PeerServer | BenchServer, str, str]] = {
                "peer": (peer, "none", "assistants"),
                "ours": (ours, ours.first_key or "", "vision"),
            }
            for _ in range(bench.runs):
                figs["dd_s"].values.append(bench.dd(big))
                figs["socket_s"].values.append(
                    run_worker("socket-file", str(bench.big), str(bench.work / "sock.bin"))[
                        "seconds"
                    ]
                )
                for side, (server, key, purpose) in servers.items():
                    with peak_growth(server.pid) as up_mem:
                        up = _peer_worker("sdk-upload", server.base_url, key, str(big), purpose)
                    with peak_growth(server.pid) as down_mem:
                        down = _peer_worker(
                            "sdk-download",
                            server.base_url,
                            key,
                            up["result"],
                            str(bench.work / "sdk.bin"),
                        )
                    curl = bench.curl(server.base_url, key, up["result"])
                    _peer_worker("delete", server.base_url, key, up["result"])
                    for k, v in (
                        ("upload_s", up["seconds"]),
                        ("download_s", down["seconds"]),
                        ("curl_s", curl),
                        ("upload_server_kib", up_mem["growth_kib"]),
                        ("download_server_kib", down_mem["growth_kib"]),
                        ("upload_client_kib", up["rss_growth_kib"]),
                        ("download_client_kib", down["rss_growth_kib"]),
                    ):
                        figs[f"{side}_{k}"].values.append(v)
    finally:
        peer.stop()
    med = {k: f.median for k, f in figs.items()}
    summary = {k: f.summary() for k, f in figs.items()}
    peaks = {k: max(f.values) / 1024 for k, f in figs.items() if k.endswith("kib")}
    return Peers(
        row1={
            "name": NAME,
            "ours": summary["peer_upload_s"],
            "reference": summary["dd_s"],
            "sdk_on_ours": summary["ours_upload_s"],
            "ratio": med["peer_upload_s"] / med["dd_s"],
            "vs_sdk_on_ours": med["peer_upload_s"] / med["ours_upload_s"],
            "vs_ours": med["peer_upload_s"] / row1["ours"]["median"],
        },
        row2={
            "name": NAME,
            "ours": summary["peer_download_s"],
            "curl": summary["peer_curl_s"],
            "reference": summary["socket_s"],
            "sdk_on_ours": summary["ours_download_s"],
            "curl_on_ours": summary["ours_curl_s"],
            "ratio": med["socket_s"] / med["peer_download_s"],
            "ratio_curl": med["socket_s"] / med["peer_curl_s"],
            "vs_sdk_on_ours": med["peer_download_s"] / med["ours_download_s"],
            "curl_vs_ours": med["peer_curl_s"] / med["ours_curl_s"],
            "vs_ours": med["peer_download_s"] / row2["ours"]["median"],
        },
        row3={
            "name": NAME,
            "ours": {k: summary[k] for k in summary if k.endswith("kib")},
            "peaks_mib": peaks,
        },
        row4={
            "name": NAME,
            "ours": summary["peer_upload_s"],
            "sdk_on_ours": summary["ours_upload_s"],
            "ratio": med["peer_upload_s"] / med["ours_upload_s"],
            "sdk_client_peak_mib": peaks["peer_upload_client_kib"],
        },
    )


def peer_batches(bench: Bench, row10: Row10) -> PeerBatch:
    """Row 10 on the peer: llama-stack's Batches API (its `inline::reference` provider, the
    requests of a batch run in chunks of 64) over its Files API, its inference the same fake
    engine (`remote::openai`; bench/peers/llama-stack-batches.yaml). The same input file,
    through the official SDK: upload, create, retrieve until completed; the floor of row 10
    is measured again beside it, on the same engine. A peer that cannot run the batch is
    reported as not run, with why."""
    from openai_files.testing.engine import EngineProcess

    from . import batches

    count = row10["requests"]
    bench.log(f"row 10 on the peer, {NAME}: {count} chat requests in one batch")
    path = batches.make_input(bench.work, count)
    peer_s, floor_s = Figure("peer", "s"), Figure("floor", "s")
    growth: list[int] = []
    try:
        with EngineProcess(
            bench.work / "peer-engine.log", latency=batches.ENGINE_LATENCY
        ) as engine:
            env = {
                "PEER_ENGINE_URL": engine.url,
                "PEER_BATCH_CONCURRENCY": str(batches.CONCURRENCY),
            }
            peer = PeerServer(
                bench.work / f"peer-{time.monotonic_ns()}", "llama-stack-batches.yaml", env
            ).start()
            try:
                for _ in range(bench.runs):
                    floor_s.values.append(batches.floor_seconds(engine, path))
                    with peak_growth(peer.pid) as mem:
                        out = batches.batch_worker("sdk-batch", peer.base_url, "none", str(path))
                    if out["status"] != "completed" or out["completed"] != count:
                        raise RuntimeError(f"the batch did not complete every request: {out}")
                    peer_s.values.append(out["seconds"])
                    growth.append(mem["growth_kib"])
            finally:
                peer.stop()
    except RuntimeError as exc:
        bench.log(f"row 10: the peer did not run the batch: {exc}")
        lines = str(exc).strip().splitlines() or ["(no message)"]
        return {"name": NAME, "run": False, "reason": lines[-1][-300:]}
    return {
        "name": NAME,
        "run": True,
        "ours": peer_s.summary(),
        "reference": floor_s.summary(),
        "concurrency": batches.CONCURRENCY,
        "requests_per_s": count / peer_s.median,
        "ratio": peer_s.median / floor_s.median,
        "vs_ours": peer_s.median / row10["ours"]["local"]["median"],
        "growth_kib": max(growth),
    }


def peer_column(rows: dict[str, Any]) -> str | None:
    """The table's peer column header, when the run measured a peer."""
    names = {r["peer"]["name"] for r in rows.values() if "peer" in r}
    return f"peer: {', '.join(sorted(names))}" if names else None


def peer_cell(number: str, row: dict[str, Any]) -> str:
    """Row `number`'s peer cell: its figure, and how it compares with ours, both through the
    official SDK in the same runs."""
    peer = row.get("peer")
    if peer is None:
        return "—"
    if number == "1":
        return (
            f"SDK upload {fig(peer['ours'])}, ours through the SDK beside it "
            f"{fig(peer['sdk_on_ours'])}: {peer['vs_sdk_on_ours']:.2f} times our time; "
            f"{peer['ratio']:.2f} of dd conv=fsync beside it ({fig(peer['reference'])}, time)"
        )
    if number == "2":
        return (
            f"SDK download {fig(peer['ours'])}, ours {fig(peer['sdk_on_ours'])}: "
            f"{peer['vs_sdk_on_ours']:.2f} times our time; curl -o {fig(peer['curl'])}, "
            f"from ours {fig(peer['curl_on_ours'])}: {peer['curl_vs_ours']:.2f} times; "
            f"SDK {peer['ratio']:.2f} of the socket beside it ({fig(peer['reference'])}, "
            "throughput)"
        )
    if number == "3":
        p = peer["peaks_mib"]
        return (
            f"server: upload {p['peer_upload_server_kib']:.1f}, download "
            f"{p['peer_download_server_kib']:.1f} (ours, same SDK runs: "
            f"{p['ours_upload_server_kib']:.1f}, {p['ours_download_server_kib']:.1f}); "
            f"SDK client: upload {p['peer_upload_client_kib']:.1f}, download "
            f"{p['peer_download_client_kib']:.1f}"
        )
    if number == "10":
        if not peer["run"]:
            return f"not run: {peer['reason']}"
        return (
            f"{fig(peer['ours'])} create to completed (official SDK), "
            f"{peer['requests_per_s']:,.0f} requests/s, its chunks of {peer['concurrency']}: "
            f"{peer['vs_ours']:.2f} times our embedded time; {peer['ratio']:.2f} of the floor "
            f"beside it ({fig(peer['reference'])}, time); server peak growth "
            f"+{peer['growth_kib'] / 1024:.0f} MiB"
        )
    if number == "4":
        return (
            f"{fig(peer['ours'])}, client peak +{peer['sdk_client_peak_mib']:.0f} MiB: "
            f"{peer['ratio']:.2f} times the SDK's time on ours beside it "
            f"({fig(peer['sdk_on_ours'])})"
        )
    return "—"


def save(result: Result, stamp: str) -> Path:
    """Keep a run with a peer beside the full runs (bench/results/STAMP-COMMIT-peers.json)."""
    path = ROOT / "bench" / "results" / f"{stamp}-{result['machine']['commit']}-peers.json"
    path.write_text(json.dumps(result, indent=2))
    return path


# -- workers, each in a process of its own (our venv, the official SDK) --
#: The purposes the SDK's uploads are sent with (the peer's, ours), as the SDK types them.
SDK_PURPOSES: dict[str, FilePurpose] = {"assistants": "assistants", "vision": "vision"}


def cmd_sdk_upload(base_url: str, key: str, path: str, purpose: str) -> dict[str, Any]:
    import openai

    from ._worker import measure

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=900) as client:
        client.files.list(limit=1)  # warm: connection and imports
        return measure(
            lambda: client.files.create(file=Path(path), purpose=SDK_PURPOSES[purpose]).id
        )


def cmd_sdk_download(base_url: str, key: str, file_id: str, dest: str) -> dict[str, Any]:
    """The SDK's streamed download into a file (page cache, no fsync, as curl -o)."""
    import openai

    from ._worker import measure

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=900) as client:
        client.files.retrieve(file_id)

        def download() -> int:
            with client.files.with_streaming_response.content(file_id) as response:
                response.stream_to_file(dest)
            return os.path.getsize(dest)

        out = measure(download)
    os.unlink(dest)
    return out


def cmd_delete(base_url: str, key: str, file_id: str) -> dict[str, Any]:
    import openai

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=900) as client:
        return {"deleted": client.files.delete(file_id).deleted}


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "sdk-upload": cmd_sdk_upload,
    "sdk-download": cmd_sdk_download,
    "delete": cmd_delete,
}


def main() -> None:
    name, *args = sys.argv[1:]
    print(json.dumps(COMMANDS[name](*args)))


if __name__ == "__main__":
    main()
