"""What the client's commands share: their common flags, a client whose errors end as one
line and an exit code, and how an answer is printed (JSON for scripts, text for people).

Errors: 2 for what the user can fix (no key, a missing local file, a 4xx, a state file that
cannot be resumed), 1 for the server or the network (5xx, 408, 409, 429, unreachable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._client import Client
from .._config import (
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_BASE_URL,
    LOCAL_BASE_URL,
    is_retryable_status,
)
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    MissingAPIKeyError,
    UploadResumeError,
)
from ._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CLIError

# --- parsers -----------------------------------------------------------------------------


def base_url_note() -> str:
    """Which server the commands talk to, for their `--help`: people's first mistake is
    to talk to OpenAI's service when they meant their own server."""
    configured = os.environ.get(ENV_BASE_URL, "").strip()
    if configured:
        return f"base URL: {configured.rstrip('/')} (from {ENV_BASE_URL}; --base-url overrides it)"
    return (
        f"base URL: {DEFAULT_BASE_URL} (the default: OpenAI's own service)\n"
        f"  for a local server (`openai-files serve`), set {ENV_BASE_URL}={LOCAL_BASE_URL}\n"
        "  or pass --base-url"
    )


def help_layout() -> dict[str, Any]:
    """A client command's `add_parser` keywords: the base URL note as its epilog, its lines
    (and a long URL) kept whole."""
    return {"epilog": base_url_note(), "formatter_class": argparse.RawDescriptionHelpFormatter}


def common_parser() -> argparse.ArgumentParser:
    """The flags every client command takes (a parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        help=f"API root [env {ENV_BASE_URL}; default {DEFAULT_BASE_URL}]",
    )
    common.add_argument("--api-key", help=f"API key [env {ENV_API_KEY}]")
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    return common


# --- errors ------------------------------------------------------------------------------


@contextlib.contextmanager
def client_for(args: argparse.Namespace) -> Iterator[Client]:
    """A client for the command, with every error turned into one line and an exit code."""
    try:
        with Client(args.api_key, base_url=args.base_url) as client:
            try:
                yield client
            except APIStatusError as exc:
                code = EXIT_FAILURE if is_retryable_status(exc.status_code) else EXIT_USAGE
                message = exc.message.removeprefix(f"Error code: {exc.status_code} - ")
                message += _missing_v1_hint(exc, client.base_url)
                rid = f" [request {exc.request_id}]" if exc.request_id else ""
                raise CLIError(f"{exc.status_code}: {message}{rid}", code) from None
            except APIConnectionError as exc:
                raise CLIError(_connection_message(exc, client.base_url), EXIT_FAILURE) from None
    except (MissingAPIKeyError, UploadResumeError) as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError, FileExistsError) as exc:
        raise CLIError(
            f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_USAGE
        ) from None


def _missing_v1_hint(exc: APIStatusError, base_url: str) -> str:
    """A 404 for a path the server does not have, on a base URL without `/v1`: the
    usual slip (a "no such file" 404 names its `param` and gets no hint)."""
    if exc.status_code != 404 or exc.param is not None:
        return ""
    if urlsplit(base_url).path.rstrip("/").endswith("/v1"):
        return ""
    return f" (did you mean {base_url}/v1?)"


def _connection_message(exc: APIConnectionError, base_url: str) -> str:
    """One line naming the server that could not be reached and how to pick another."""
    detail = exc.message.removeprefix("Connection error: ").rstrip(".")
    fix = f"set {ENV_BASE_URL} or --base-url"
    if isinstance(exc.__cause__, httpx.ConnectError):
        return f"cannot connect to {base_url}: {detail} (is the server running? {fix})"
    if isinstance(exc.__cause__, httpx.UnsupportedProtocol):
        return f"bad base URL {base_url}: {detail} ({fix}, e.g. to {LOCAL_BASE_URL})"
    return f"{exc.message} ({base_url})"


# --- output ------------------------------------------------------------------------------


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def answer(args: argparse.Namespace, data: Any, for_people: Callable[[], None]) -> int:
    """Print a command's answer: `data` as JSON with `--json`, else `for_people()`."""
    if args.json:
        print_json(data)
    else:
        for_people()
    return EXIT_OK


def when(ts: int | None) -> str:
    """A time stamp as UTC date and time ("" for None)."""
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def size(n: int) -> str:
    """A byte count for people: `999 B`, `1.5 MB`, `12.0 GB`."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
