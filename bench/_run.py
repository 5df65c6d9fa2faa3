"""One benchmark run: its size (quick or full), its scratch folder, its log, its servers,
and the references that several rows measure beside ours (dd, curl, warm memory)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._harness import BenchServer, MiB


class Bench:
    """What every row of a run shares: how big and how often (`quick`), where its files go
    (`work`, removed at the end of the run), and how it reports progress."""

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

    def log(self, message: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)

    @contextmanager
    def server(self, *args: str, env: dict[str, str] | None = None) -> Iterator[BenchServer]:
        """Our server (and the constant route) on a fresh data folder, removed after."""
        data = self.work / f"srv-{time.monotonic_ns()}" / "data"
        proc = BenchServer(data, "--log-level", "warning", *args, env=env).start()
        try:
            yield proc
        finally:
            proc.stop()
            shutil.rmtree(data.parent, ignore_errors=True)

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

    def curl(self, base_url: str, key: str, file_id: str) -> float:
        """`curl -o` of the file's content URL: what people compare a download with."""
        curl = shutil.which("curl")
        if curl is None:
            raise RuntimeError("curl is not installed (Debian: apt-get install curl)")
        dest = self.work / "curl.bin"
        start = time.perf_counter()
        subprocess.run(
            [curl, "-sSf", "-o", str(dest), "-H", f"Authorization: Bearer {key}",
             f"{base_url}/files/{file_id}/content"],
            check=True,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        dest.unlink()
        return seconds

    def dd(self, path: Path) -> float:
        """`dd conv=fsync` of the file: what an upload that is durable on return costs."""
        dest = self.work / "dd-copy.bin"
        start = time.perf_counter()
        subprocess.run(
            ["dd", f"if={path}", f"of={dest}", "bs=1M", "conv=fsync", "status=none"], check=True
        )
        seconds = time.perf_counter() - start
        dest.unlink()
        return seconds
