"""The container's health check: exit 0 while its openai-files process is alive, 1 otherwise.

The image's `HEALTHCHECK` runs it (the Dockerfile copies it to /app/healthcheck.py), and so
does the batch worker's `livenessProbe` on Kubernetes. It tells the two commands the image
runs apart by the heartbeat file, which only `openai-files batch-worker` writes:

- `batch-worker` serves no HTTP: it touches `$OPENAI_FILES_HEARTBEAT_FILE` every 10 s while
  its event loop runs (`--heartbeat-file`), and is alive while the file is younger than
  `STALE_SECONDS`;
- `serve` (no such file) is alive while its `GET /healthz` answers 2xx on
  127.0.0.1:`$OPENAI_FILES_PORT`, asked without any proxy: `HTTP_PROXY`, which Docker may
  set for every container (from the daemon's or the client's proxy settings), would send
  the request to the proxy, which cannot reach the container's loopback.

Liveness only, never readiness (docs/deploy.md says why). The standard library alone, and
nothing of openai-files: it runs every 10 s, and importing the package takes a few tenths
of a second of CPU.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request

#: A heartbeat older than this (three beats missed) is a worker whose event loop stopped.
STALE_SECONDS = 30.0
#: How long `/healthz` is waited for: under the 5 s Docker gives the command (--timeout),
#: so that it fails by itself, with a reason, rather than be killed.
TIMEOUT_SECONDS = 3.0


def main() -> int:
    beat = os.environ.get("OPENAI_FILES_HEARTBEAT_FILE", "")
    if beat:
        try:
            age = time.time() - os.stat(beat).st_mtime
        except FileNotFoundError:
            pass  # no batch worker here (or not yet): a server, then
        else:
            if age <= STALE_SECONDS:
                return 0
            print(f"the batch worker's heartbeat {beat} is {age:.0f} s old", file=sys.stderr)
            return 1
    port = os.environ.get("OPENAI_FILES_PORT", "8000")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        # A status that is not 2xx raises HTTPError, an OSError too.
        with opener.open(f"http://127.0.0.1:{port}/healthz", timeout=TIMEOUT_SECONDS):
            return 0
    except OSError as exc:
        print(f"GET /healthz on port {port}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
