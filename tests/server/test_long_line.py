"""One JSON line that would parse into far more memory than its text (`{"a":[{},{},…]}`,
63 MiB: 22 million dicts, about 1.6 GB as Python objects) is refused without being parsed:
the server's peak memory grows by less than 128 MiB, and /healthz answers within 250 ms
throughout, on each deployment."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from .._server import Deployment, ServerProcess
from ._util import MiB, auth, memory, reset_peak, upload

pytestmark = pytest.mark.slow

LINE_BYTES = 63 * MiB
MAX_GROWTH = 128 * MiB
MAX_HEALTHZ_SECONDS = 0.25


def dense_line(size: int) -> bytes:
    """`{"a":[{},{},…]}` of about `size` bytes."""
    count = (size - 8) // 3
    return b'{"a":[' + b"{}," * (count - 1) + b"{}]}\n"


#: Run in a process of its own, so that the test's own work (sending 63 MiB) does not slow it:
#: asks for /healthz every 20 ms until its stdin closes, then prints the slowest answer's time
#: and how many answers there were.
PROBE = """
import sys, threading, time, httpx
done = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
slowest, answers = 0.0, 0
with httpx.Client(timeout=30) as http:
    print("ready", flush=True)
    while not done.is_set():
        started = time.perf_counter()
        assert http.get(sys.argv[1]).status_code == 200
        slowest = max(slowest, time.perf_counter() - started)
        answers += 1
        done.wait(0.02)
print(slowest, answers)
"""


class HealthzProbe:
    """/healthz asked again and again while the block runs; `slowest` and `answers` after."""

    def __init__(self, server: ServerProcess) -> None:
        self.url = server.root_url + "/healthz"
        self.slowest = 0.0
        self.answers = 0

    def __enter__(self) -> HealthzProbe:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", PROBE, self.url],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline() == "ready\n"
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self.proc.communicate(timeout=60)
        slowest, answers = out.split()
        self.slowest, self.answers = float(slowest), int(answers)


@pytest.fixture
def server(deployment: Deployment) -> Iterator[ServerProcess]:
    """A dedicated server, so that its memory is this test's alone."""
    server = deployment.server()
    try:
        yield server
    finally:
        server.stop()


def test_a_dense_63_mib_line_is_refused_in_bounded_memory_and_time(
    server: ServerProcess,
) -> None:
    key = server.create_key("org-line", "proj_line")
    line = dense_line(LINE_BYTES)
    with httpx.Client(base_url=server.base_url, timeout=300) as http:
        # Warm-up: the upload and validation paths and the thread pool exist already.
        warm = upload(http, key, b'{"a": [{}, {}]}\n', "warm.jsonl", purpose="batch")
        assert warm.status_code == 200, warm.text
        baseline = reset_peak(server.pid)
        with HealthzProbe(server) as probe:
            response = upload(http, key, line, "dense.jsonl", purpose="batch")
            time.sleep(0.1)  # an answer after the upload's too
        growth = memory(server.pid)["VmHWM"] - baseline
        listed = http.get("/files", headers=auth(key)).json()["data"]
    assert probe.answers > 5
    assert growth <= MAX_GROWTH, f"peak RSS grew by {growth / MiB:.0f} MiB"
    assert probe.slowest <= MAX_HEALTHZ_SECONDS, f"/healthz took {probe.slowest:.3f} s"
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == "file"
    assert error["message"] == (
        "Line 1 holds more than 1000000 JSON values (keys count too), the most this "
        "server reads in one line; split the example or request."
    )
    assert [f["filename"] for f in listed] == ["warm.jsonl"]
