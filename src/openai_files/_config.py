"""The client's settings: every default and limit a named constant, resolved in one place.

A setting comes from the argument when given, else from its environment variable, else
from the default below.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping
from typing import TextIO

from ._exceptions import MissingAPIKeyError

DEFAULT_BASE_URL = "https://api.openai.com/v1"
#: Where `openai-files serve` listens by default (its port 8000), for hints to users.
LOCAL_BASE_URL = "http://127.0.0.1:8000/v1"
#: Seconds for the whole of each phase (connect, each read, each write), as the SDK uses.
DEFAULT_TIMEOUT = 600.0
#: Attempts after the first one, as the official SDK does.
DEFAULT_MAX_RETRIES = 2
#: The first retry waits about this long; each further one twice as long, up to the cap.
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
#: Statuses worth another attempt besides 5xx: timeout, lock conflict, rate limit.
RETRY_STATUSES = frozenset({408, 409, 429})
#: A server's `retry-after` longer than this is not honoured (the backoff is used instead).
MAX_RETRY_AFTER = 60.0
#: Size of the chunks read from a file to upload and written to a file downloaded.
CHUNK_SIZE = 64 * 1024
#: `iter_files` asks for pages of this many files.
PAGE_SIZE = 10_000
#: Files from a path larger than this go through the Uploads API (POST /files takes 512 MB).
DEFAULT_UPLOAD_THRESHOLD = 512 * 1024 * 1024
#: The size of each part sent to the Uploads API: its maximum, 64 MB.
DEFAULT_PART_SIZE = 64 * 1024 * 1024
#: Parts of one upload sent at the same time.
DEFAULT_UPLOAD_CONCURRENCY = 4

ENV_API_KEY = "OPENAI_API_KEY"
ENV_BASE_URL = "OPENAI_BASE_URL"
ENV_ORGANIZATION = "OPENAI_ORG_ID"
ENV_PROJECT = "OPENAI_PROJECT_ID"
ENV_UPLOAD_THRESHOLD = "OPENAI_FILES_UPLOAD_THRESHOLD"
ENV_PART_SIZE = "OPENAI_FILES_PART_SIZE"
ENV_UPLOAD_CONCURRENCY = "OPENAI_FILES_UPLOAD_CONCURRENCY"

USER_AGENT = "openai-files-python"


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _int_setting(
    name: str, given: int | None, env_name: str, default: int, minimum: int, env: Mapping[str, str]
) -> int:
    """An integer setting: the argument, else its environment variable, else the default."""
    if given is None:
        raw = _env(env_name, env)
        if raw is None:
            return default
        try:
            given = int(raw)
        except ValueError:
            raise ValueError(f"{env_name} must be an integer, got {raw!r}") from None
    if given < minimum:
        raise ValueError(f"{name} must be {minimum} or more, got {given}")
    return given


def resolve_base_url(base_url: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The API root: the argument, else OPENAI_BASE_URL, else OpenAI's own service."""
    env = os.environ if environ is None else environ
    return (base_url or _env(ENV_BASE_URL, env) or DEFAULT_BASE_URL).rstrip("/")


def is_openai(base_url: str) -> bool:
    """Whether `base_url` is OpenAI's own service (not a server of this package, say)."""
    host = urllib.parse.urlsplit(base_url).hostname or ""
    return host == "openai.com" or host.endswith(".openai.com")


@dataclasses.dataclass(frozen=True)
class Config:
    """What every request needs, resolved once per client."""

    api_key: str
    base_url: str
    organization: str | None = None
    project: str | None = None
    timeout: float | None = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    debug: bool = False
    #: Files from a path over this many bytes go through the Uploads API.
    upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD
    #: Bytes per part of an upload (the last part may be smaller).
    part_size: int = DEFAULT_PART_SIZE
    #: Parts of one upload in flight at once.
    upload_concurrency: int = DEFAULT_UPLOAD_CONCURRENCY
    #: Where `debug` output goes: stderr by default, so that stdout stays the program's.
    debug_stream: Callable[[], TextIO] = dataclasses.field(default=lambda: sys.stderr)

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        headers: Mapping[str, str] | None = None,
        debug: bool = False,
        upload_threshold: int | None = None,
        part_size: int | None = None,
        upload_concurrency: int | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Config:
        """Fill what was not given from the environment; fail early without a key."""
        env = os.environ if environ is None else environ
        url = resolve_base_url(base_url, env)
        key = api_key or _env(ENV_API_KEY, env)
        if not key:
            # A server of this package makes its keys itself: say how, rather than leave
            # the user looking for one on OpenAI's site.
            where = (
                ""
                if is_openai(url)
                else f" For the server at {url}, create one on the server with "
                "`openai-files keys create`."
            )
            raise MissingAPIKeyError(
                "No API key was given: pass it as `api_key=...` (`openai_api_key=...` to the "
                f"files_* functions, `--api-key` to the CLI) or set the {ENV_API_KEY} "
                f"environment variable.{where}"
            )
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        return cls(
            api_key=key,
            base_url=url,
            organization=organization or _env(ENV_ORGANIZATION, env),
            project=project or _env(ENV_PROJECT, env),
            timeout=timeout,
            max_retries=max_retries,
            headers=dict(headers or {}),
            debug=debug,
            upload_threshold=_int_setting(
                "upload_threshold", upload_threshold, ENV_UPLOAD_THRESHOLD,
                DEFAULT_UPLOAD_THRESHOLD, 0, env,
            ),
            part_size=_int_setting(
                "part_size", part_size, ENV_PART_SIZE, DEFAULT_PART_SIZE, 1, env
            ),
            upload_concurrency=_int_setting(
                "upload_concurrency", upload_concurrency, ENV_UPLOAD_CONCURRENCY,
                DEFAULT_UPLOAD_CONCURRENCY, 1, env,
            ),
        )  # fmt: skip


def is_retryable_status(status: int) -> bool:
    """A status that is the server's trouble, not the caller's: worth trying again later."""
    return status in RETRY_STATUSES or status >= 500


def mask_key(key: str) -> str:
    """`sk-abc1****wxyz`: enough to recognise a key, never enough to use it."""
    return f"{key[:7]}****{key[-4:]}" if len(key) > 12 else "****"
