"""What every benchmark shares: servers, memory readings, timing, statistics."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[1]
#: Connections wrk keeps open in rows 6 and 7 (and in the server-stack section): the
#: servers that take wrk's uploads allow this many at once for its one key.
WRK_CONNECTIONS = 32
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests._server import ServerProcess  # noqa: E402  (the repo's own test harness)

from ._results import Summary  # noqa: E402

if TYPE_CHECKING:
    from openai_files.testing.services import PostgresCluster, SeaweedS3

MiB = 1024 * 1024


def status_kib(pid: int | str, field_name: str) -> int:
    """A `VmRSS`/`VmHWM` reading of /proc/<pid>/status, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def reset_peak(pid: int | str) -> None:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@contextmanager
def peak_growth(pid: int) -> Iterator[dict[str, int]]:
    """Measure how far a process's peak RSS rises above its RSS at the start, in KiB."""
    reset_peak(pid)
    base = status_kib(pid, "VmRSS")
    out: dict[str, int] = {}
    yield out
    out["growth_kib"] = max(0, status_kib(pid, "VmHWM") - base)
    out["base_kib"] = base


@dataclass
class Figure:
    """One measured quantity over several runs."""

    name: str
    unit: str
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def summary(self) -> Summary:
        return {
            "unit": self.unit,
            "min": min(self.values),
            "median": self.median,
            "max": max(self.values),
            "runs": self.values,
        }


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind the run as an error does: its servers and services are stopped
    and its temporary folders removed (a second SIGTERM does not cut that cleanup short)."""

    def stop(signum: int, frame: Any) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def run_worker(
    *args: str,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    module: str = "bench._worker",
    retries: int = 0,
) -> dict[str, Any]:
    """Run `python -m MODULE ARGS` (a separate client process, bench._worker by default);
    its JSON answer: the last line it prints. A failed run is run again up to `retries`
    times (for references that another program can fail, such as the S3 server's 500)."""
    for attempt in range(retries + 1):
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            check=False,
        )
        if done.returncode == 0:
            answer = json.loads(done.stdout.strip().splitlines()[-1])
            if not isinstance(answer, dict):
                raise RuntimeError(f"{module} {args[0]} answered no JSON object: {answer!r}")
            return answer
        if attempt < retries:
            print(f"[bench] {module} {args[0]} failed, once more:\n{done.stderr[-600:]}")
    raise RuntimeError(f"{module} {args[0]} failed:\n{done.stderr[-3000:]}")


@contextmanager
def scaleout_services() -> Iterator[tuple[PostgresCluster, SeaweedS3]]:
    """A throwaway PostgreSQL cluster and SeaweedFS S3 server, stopped on the way out, even
    when the run is stopped while they start."""
    from openai_files.testing.services import PostgresCluster, SeaweedS3

    pg, s3 = PostgresCluster(), SeaweedS3()
    try:
        pg.start()
        s3.start()
        yield pg, s3
    finally:
        pg.stop()
        s3.stop()


def scaleout_env(pg: PostgresCluster, s3: SeaweedS3, prefix: str = "files") -> dict[str, str]:
    """The environment of a server on a fresh, migrated PostgreSQL database and an S3
    prefix of its own."""
    env = {
        "OPENAI_FILES_DATABASE": pg.create_database(),
        "OPENAI_FILES_STORAGE": s3.url("bench", prefix=prefix),
        **s3.env,
    }
    subprocess.run(
        [sys.executable, "-m", "openai_files", "migrate"],
        check=True,
        env={**os.environ, **env},
        capture_output=True,
    )
    return env


def make_file(path: Path, size: int) -> Path:
    """A file of `size` random-ish bytes (cheap to make, not compressible by accident)."""
    if path.exists() and path.stat().st_size == size:
        return path
    block = os.urandom(MiB)
    with path.open("wb") as fh:
        left = size
        while left:
            n = min(left, MiB)
            fh.write(block[:n])
            left -= n
    return path


class BenchServer(ServerProcess):
    """`openai-files serve` plus a constant-JSON route, on the same stack (bench._serve)."""

    command = (sys.executable, "-m", "bench._serve")
