"""LiteLLM's proxy as an engine for the tests: a real third-party OpenAI-compatible server,
answering from mock responses (no model, no network beyond 127.0.0.1).

It runs from `.venv-litellm` (made by `make test`, pinned by LITELLM_VERSION in the Makefile),
a venv of its own so that LiteLLM's dependencies never move the project's. `start_proxy()`
writes a config, starts `litellm --config ... --host 127.0.0.1 --port <free>` in a process
group of its own, waits until it lists its models and hands back a `LiteLLMProxy`, whose
`stop()` ends that process group by its PID.

The models it serves (names in MODELS):
- CHAT_MODEL: every chat completion answers CHAT_REPLY, with usage (10 prompt, 20 completion
  tokens, fixed).
- EMBEDDING_MODEL: every embeddings request answers one vector, EMBEDDING (whatever the
  number of inputs: LiteLLM's mock embeds once), with usage.
- RATE_LIMITED_MODEL: every request answers 429; FAILING_MODEL: every request answers 500.

Offline: LITELLM_LOCAL_MODEL_COST_MAP=True (otherwise the proxy fetches its cost map from
GitHub at start), a minimal environment (no DATABASE_URL: no database, no UI, no key
store), HOME and the working folder in the proxy's own temporary folder, and any HTTP proxy
variables pointed at a closed loopback port so that an outbound call fails rather than
leaves the machine. The master key (required by LiteLLM to start) is made afresh.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest
import yaml

from ._services import LOOPBACK, free_port

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-litellm"

#: How long the proxy may take to answer after it is started (about 5 s on an idle machine;
#: imports dominate, and the test machines are shared).
START_TIMEOUT_SECONDS = 120.0
#: How long it has to exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 15.0

CHAT_MODEL = "mock-gpt"
CHAT_REPLY = "Hello from the mock engine."
EMBEDDING_MODEL = "mock-embedding"
EMBEDDING = [0.25, 0.5, 0.75]
RATE_LIMITED_MODEL = "mock-rate-limited"
FAILING_MODEL = "mock-failing"
MODELS = (CHAT_MODEL, EMBEDDING_MODEL, RATE_LIMITED_MODEL, FAILING_MODEL)

# LiteLLM turns these mock_response strings into the provider error they name.
_RATE_LIMIT_ERROR = "litellm.RateLimitError"
_SERVER_ERROR = "litellm.InternalServerError"


def pinned_version() -> str:
    """The LiteLLM release the Makefile installs (LITELLM_VERSION)."""
    found = re.search(r"^LITELLM_VERSION\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert found, "the Makefile names no LITELLM_VERSION"
    return found.group(1)


def litellm_bin() -> Path:
    """The proxy's command: OPENAI_FILES_LITELLM if set, else .venv-litellm's."""
    return Path(os.environ.get("OPENAI_FILES_LITELLM") or VENV / "bin" / "litellm")


def config(master_key: str) -> dict[str, object]:
    """The proxy's config: the mock models, the master key, nothing stored, no retries
    (a test sees each answer as the engine gave it) and no cooldown of failing models."""

    def model(name: str, mock_response: object) -> dict[str, object]:
        return {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{name}",
                "api_key": "sk-unused",
                "mock_response": mock_response,
            },
        }

    return {
        "model_list": [
            model(CHAT_MODEL, CHAT_REPLY),
            model(EMBEDDING_MODEL, EMBEDDING),
            model(RATE_LIMITED_MODEL, _RATE_LIMIT_ERROR),
            model(FAILING_MODEL, _SERVER_ERROR),
        ],
        "litellm_settings": {"num_retries": 0, "request_timeout": 30},
        "router_settings": {"num_retries": 0, "disable_cooldowns": True},
        "general_settings": {"master_key": master_key},
    }


def _environment(root: Path) -> dict[str, str]:
    closed = f"http://{LOOPBACK}:9"  # the discard port: nothing listens there
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "TMPDIR": str(root),
        "LANG": "C.UTF-8",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_DONT_SHOW_FEEDBACK_BOX": "true",
        "NO_COLOR": "1",
        "NO_PROXY": f"{LOOPBACK},localhost",
    }
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = env[name.lower()] = closed
    env["no_proxy"] = env["NO_PROXY"]
    return env


@dataclasses.dataclass
class LiteLLMProxy:
    """A running proxy: `base_url` ends in /v1; `api_key` is its master key."""

    proc: subprocess.Popen[bytes]
    root: Path
    port: int
    api_key: str
    started_in: float  # seconds from start to its first answer

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/v1"

    def log_text(self) -> str:
        path = self.root / "litellm.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """End the proxy's process group (SIGTERM, then SIGKILL after the grace) and remove
        its folder."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(STOP_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def _ready(base_url: str, api_key: str) -> bool:
    """The proxy lists every mock model."""
    try:
        answer = httpx.get(
            f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"}, timeout=5
        )
    except httpx.HTTPError:
        return False
    if answer.status_code != 200:
        return False
    return {m["id"] for m in answer.json()["data"]} >= set(MODELS)


def start_proxy(timeout: float = START_TIMEOUT_SECONDS) -> LiteLLMProxy:
    """Start the proxy on a free loopback port and wait until it answers. Raises RuntimeError
    (with the end of its log) if it exits or does not answer within `timeout` seconds."""
    command = litellm_bin()
    root = Path(tempfile.mkdtemp(prefix="openai-files-litellm-"))
    api_key = "sk-" + secrets.token_hex(32)
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config(api_key), sort_keys=False))
    port = free_port()
    started = time.monotonic()
    with open(root / "litellm.log", "wb") as log:
        proc = subprocess.Popen(
            [str(command), "--config", str(config_path), "--host", LOOPBACK, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_environment(root),
            cwd=root,
            start_new_session=True,
        )
    proxy = LiteLLMProxy(proc, root, port, api_key, started_in=0.0)
    deadline = started + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log_tail = proxy.log_text()[-4000:]
            proxy.stop()
            raise RuntimeError(f"LiteLLM's proxy exited ({proc.returncode}):\n{log_tail}")
        if _ready(proxy.base_url, api_key):
            proxy.started_in = time.monotonic() - started
            return proxy
        time.sleep(0.2)
    log_tail = proxy.log_text()[-4000:]
    proxy.stop()
    raise RuntimeError(f"LiteLLM's proxy did not answer in {timeout}s:\n{log_tail}")


def proxy_or_skip() -> LiteLLMProxy:
    """`start_proxy()`, for a fixture. When the proxy is not installed the test is skipped,
    or fails under CI=true (where `make test` must have installed it); a proxy that is
    installed but does not start always fails."""
    if not litellm_bin().exists():
        reason = (
            f"LiteLLM's proxy is not installed ({litellm_bin()} is missing): "
            "`make test` installs it (or set OPENAI_FILES_LITELLM to a litellm command)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        return start_proxy()
    except RuntimeError as e:
        pytest.fail(str(e))
