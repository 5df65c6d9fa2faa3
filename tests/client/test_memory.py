"""A 256 MB upload and download, from and to paths, keep the client's memory flat."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .._server import ServerProcess

SIZE = 256 * 1024 * 1024
MAX_GROWTH = 32 * 1024 * 1024

# Runs in a fresh process, so nothing of pytest's weighs on the measure. Peak RSS
# (VmHWM) is reset once the client is imported and made, then read after the transfers.
CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from openai_files import Client

    def status(field):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
        raise LookupError(field)

    src, dst = Path(sys.argv[1]), Path(sys.argv[2])
    with Client() as client:
        client.list(limit=1)  # warm up: connection, imports, first parse
        try:
            Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to VmRSS
        except OSError:
            pass
        before = status("VmRSS")
        f = client.upload(src, purpose="vision")
        assert f.bytes == src.stat().st_size, f
        assert client.download(f.id, dst) == f.bytes
        client.delete(f.id)
    print(status("VmHWM") - before)
    """
)


@pytest.mark.slow
def test_256_mb_round_trip_keeps_peak_rss_growth_under_32_mb(
    server: ServerProcess, api_key: str, tmp_path: Path
) -> None:
    src, dst = tmp_path / "big.bin", tmp_path / "copy.bin"
    block = bytes(range(256)) * 4096  # 1 MiB, written 256 times: no 256 MB buffer here either
    with src.open("wb") as fh:
        for i in range(SIZE // len(block)):
            fh.write(i.to_bytes(4, "big") + block[4:])
    env = {"OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dst)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    growth = int(done.stdout.strip())
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / 2**20:.1f} MiB"
    assert dst.stat().st_size == SIZE
    with src.open("rb") as a, dst.open("rb") as b:
        while chunk := a.read(1 << 20):
            assert chunk == b.read(1 << 20)
