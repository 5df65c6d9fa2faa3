"""glibc's malloc, told to keep the memory a streamed body churns through.

A streamed upload allocates and frees a few buffers of 64 KiB to 1 MiB for every MiB it
moves (a socket read, the HTTP parser's body, the multipart parser's slices, the write
buffer). glibc serves those from mmap at first and gives the top of its heap back to the
system as soon as 128 KiB or more of it is free, so the same memory is unmapped and
faulted back in, zeroed page by page, all through the upload: a profile of a 512 MiB
upload on the embedded server spent a third of the server's CPU in page faults, brk and
munmap, and the upload took 1.7 times as long as with the thresholds below (2.32 s
against 1.34 s, medians of 7 rounds alternating between two servers).

`openai-files serve` sets them once at start, in its own process only (an app mounted in
another server leaves that server's allocator alone): allocations up to 4 MiB come from the
heap, and up to 16 MiB of free heap top is kept. Memory in use is bounded as before; only
what was freed stays mapped, up to that much per malloc arena (about one per busy thread).
Larger values measured no faster and cost memory: with 32 MiB and 64 MiB, the server's peak
on a 2 GiB upload in parallel parts to S3 grew 79 MiB instead of 43 (the S3 client's
threads, each with its arena, then kept their 8 MiB part buffers, most likely). Environment
settings of the allocator (MALLOC_TRIM_THRESHOLD_, MALLOC_MMAP_THRESHOLD_, a
`glibc.malloc.` tunable in GLIBC_TUNABLES) win: nothing is set then. With
MALLOC_ARENA_MAX=2 (docs/deploy.md), at most two arenas keep freed memory.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform

log = logging.getLogger(__name__)

#: mallopt's parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 4 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 16 * 1024 * 1024
_USER_SETTINGS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_heap() -> bool:
    """Set glibc's mmap and trim thresholds (see the module); whether they were set."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS):
        return False
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done: bool = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    done = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and done
    if not done:
        log.debug("mallopt refused the mmap and trim thresholds")
    return done
