"""`openai-files serve` keeps the memory a streamed body churns through (server/_malloc.py).

Each case runs in a child process: the allocator's thresholds are process-wide.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="glibc's mallopt",
)

# Rounds of four 1 MiB buffers filled then freed together, as a streamed upload's socket
# reads, parser slices and write buffer are: glibc's default thresholds give the freed
# top of the heap back each round and fault it in again; the page faults are counted.
CHILD = """
import json, resource, sys
from openai_files.server._malloc import keep_freed_heap
tuned = keep_freed_heap() if sys.argv[1] == "tuned" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    held = [b"\\x01" * (1024 * 1024) for _ in range(4)]
    del held
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def run_child(mode: str, **env: str) -> dict[str, object]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, mode],
        capture_output=True, text=True, env={**base, **env}, timeout=60, check=True,
    )  # fmt: skip
    result: dict[str, object] = json.loads(done.stdout)
    return result


def test_freed_buffers_are_reused_not_faulted_in_again() -> None:
    plain = run_child("plain")
    tuned = run_child("tuned")
    assert tuned["tuned"] is True
    # 200 rounds of 4 MiB: with 4 KiB pages, about 200,000 faults when each round maps its
    # memory anew and about 1,000 when the first round's memory is kept. Larger pages
    # (64 KiB, or transparent huge pages on the heap) make fewer faults, but still at
    # least one a round against a handful in all.
    assert isinstance(plain["faults"], int) and isinstance(tuned["faults"], int)
    assert plain["faults"] >= 200, plain
    assert tuned["faults"] * 10 < plain["faults"], (plain, tuned)


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MALLOC_TRIM_THRESHOLD_", "131072"),
        ("MALLOC_MMAP_THRESHOLD_", "131072"),
        ("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=131072"),
        ("GLIBC_TUNABLES", "glibc.pthread.rseq=0:glibc.malloc.arena_max=2"),
    ],
)
def test_the_allocator_settings_of_the_environment_win(setting: str, value: str) -> None:
    assert run_child("tuned", **{setting: value})["tuned"] is False


def test_other_glibc_tunables_leave_the_thresholds_to_us() -> None:
    assert run_child("tuned", GLIBC_TUNABLES="glibc.pthread.rseq=0")["tuned"] is True
