"""A 2 GiB file through the Uploads API (4 parallel parts of 64 MB) and back, on both
deployments: the bytes come back intact, and neither the client's nor the server's peak
memory grows by 64 MB."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from openai_files import Client

from .._server import Deployment
from ..server._util import memory, reset_peak

MiB = 1024 * 1024
SIZE = 2048 * MiB
MAX_GROWTH = 64 * MiB

# A fresh process, so nothing of pytest's weighs on the measure: warmed up by a small
# upload in parts, its peak RSS reset, then the 2 GiB upload (the default settings: 64 MB
# parts, 4 at once, over the 512 MB threshold) and its download.
CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    from openai_files import Client

    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    src, dst, warm = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with Client(max_retries=0, part_size=1024 * 1024) as warmup:
        w = warmup.upload(warm, purpose="vision", use_uploads=True)  # 3 parts
        warmup.delete(w.id)
    with Client(max_retries=0) as client:
        client.list(limit=1)
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to VmRSS
        before = status("VmRSS")
        start = time.monotonic()
        f = client.upload(src, purpose="vision")
        up = time.monotonic() - start
        assert f.bytes == src.stat().st_size, f
        done = client.list_uploads(status="completed").data
        assert [u.file.id for u in done if u.bytes == f.bytes] == [f.id]  # made by an upload
        start = time.monotonic()
        assert client.download(f.id, dst) == f.bytes
        down = time.monotonic() - start
        client.delete(f.id)
    print(status("VmHWM") - before, round(up, 1), round(down, 1))
    """
)


def write_big(path: Path, size: int) -> str:
    """A 1 MiB random block repeated with a counter in front: cheap, never sparse, no two
    MiB alike; returns the sha256."""
    block = os.urandom(MiB)
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for i in range(size // MiB):
            chunk = i.to_bytes(8, "big") + block[8:]
            digest.update(chunk)
            fh.write(chunk)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


@pytest.mark.slow
def test_2_gib_in_parallel_parts_keeps_both_sides_memory_flat(
    deployment: Deployment, tmp_path: Path
) -> None:
    src, dst, warm = tmp_path / "big.bin", tmp_path / "copy.bin", tmp_path / "warm.bin"
    expected = write_big(src, SIZE)
    warm.write_bytes(os.urandom(3 * MiB))
    # A server of its own, with the default settings, whose memory only this test moves.
    server = deployment.server()
    try:
        key = server.create_key("org-big-upload", "proj_big_upload")
        env = {"OPENAI_API_KEY": key, "OPENAI_BASE_URL": server.base_url, "PATH": ""}
        with Client(key, base_url=server.base_url, part_size=MiB) as client:
            # The server's warm-up: an upload in parts, its completion, a download.
            w = client.upload(warm, purpose="vision", use_uploads=True)
            assert client.content(w.id) == warm.read_bytes()
            client.delete(w.id)
        baseline = reset_peak(server.pid)
        start = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(src), str(dst), str(warm)],
            capture_output=True, text=True, env=env, timeout=600, check=False,
        )  # fmt: skip
        elapsed = time.monotonic() - start
        server_growth = memory(server.pid)["VmHWM"] - baseline
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    client_growth, up, down = done.stdout.split()
    print(
        f"2 GiB on {deployment.name}: upload {up} s, download {down} s, all {elapsed:.1f} s; "
        f"server peak grew {server_growth / MiB:.1f} MiB"
    )
    assert dst.stat().st_size == SIZE
    assert sha256_of(dst) == expected
    assert int(client_growth) < MAX_GROWTH, f"client peak grew {int(client_growth) / MiB:.1f} MiB"
    assert server_growth < MAX_GROWTH, f"server peak grew {server_growth / MiB:.1f} MiB"
