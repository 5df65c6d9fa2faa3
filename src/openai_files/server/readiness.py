"""Readiness: whether this replica's stores answer now (`GET /readyz`).

Liveness (`/healthz`) says the process runs; readiness says it can serve: its database and
its blob store each answered a cheap request (`ping`). An orchestrator or load balancer
sends a replica requests only while it is ready, and a replica whose PostgreSQL or S3 is
out of reach is taken out of rotation rather than restarted (a restart would not bring the
store back).

Bounds, so that probes can never load the stores nor hang:

- one check at a time: probes that arrive while a check runs wait for that check;
- its answer stands for READY_CACHE_SECONDS after it ended: probes, however many, check the
  stores at most once in that time;
- each store gets `timeout` seconds (`--ready-timeout-seconds`), the stores side by side:
  a store that hangs answers "timeout" in bounded time. A check that runs in a worker
  thread (the data folder's, SQLite's) cannot be stopped: the store keeps that call, and
  the checks after it wait for it (answering "timeout") rather than start another thread.

The answer names which store failed and how ("error" or "timeout"), never why: the log says
why (once when a store stops answering, once when it answers again), since the endpoint
asks no key.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

import anyio

from . import settings as S
from .metrics import Metrics

log = logging.getLogger("openai_files.server")

#: What a store's check may say: it answered, it raised, or it did not answer in time.
CheckResult = Literal["ok", "error", "timeout"]


@dataclasses.dataclass(frozen=True)
class ReadyReport:
    """The result of one check of every store: each store's name and what it said."""

    checks: Mapping[str, CheckResult]

    @property
    def ready(self) -> bool:
        return all(result == "ok" for result in self.checks.values())

    def body(self) -> dict[str, object]:
        """The JSON of `/readyz`: `{"status": "ok" | "unavailable", "checks": {...}}`."""
        return {"status": "ok" if self.ready else "unavailable", "checks": dict(self.checks)}


class Readiness:
    """Checks `checks` (a name and a coroutine function that raises when its store does not
    answer), at most once per `cache_seconds`, each within `timeout` seconds."""

    def __init__(
        self,
        checks: Mapping[str, Callable[[], Awaitable[None]]],
        timeout: float,
        metrics: Metrics | None = None,
        *,
        cache_seconds: float = S.READY_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checks = dict(checks)
        self.timeout = timeout
        self.metrics = metrics
        self.cache_seconds = cache_seconds
        self.clock = clock
        self._last: ReadyReport | None = None
        self._last_at = 0.0
        self._running: asyncio.Future[ReadyReport] | None = None
        #: What each store said last, so that the log has a line per change, not per check.
        self._said: dict[str, CheckResult] = dict.fromkeys(self.checks, "ok")

    async def report(self) -> ReadyReport:
        """The stores' state: the last check's when it ended less than `cache_seconds`
        ago, that of the check running when there is one, else that of a new check."""
        if self._last is not None and self.clock() - self._last_at < self.cache_seconds:
            return self._last
        if self._running is None:
            self._running = asyncio.ensure_future(self._check())
        # Shielded: a probe that gives up (its client went away) leaves the check to the
        # others that wait for it.
        return await asyncio.shield(self._running)

    async def _check(self) -> ReadyReport:
        try:
            names = list(self.checks)
            results = await asyncio.gather(*(self._one(name) for name in names))
            report = ReadyReport(dict(zip(names, results, strict=True)))
            self._last, self._last_at = report, self.clock()
            return report
        finally:
            self._running = None

    async def _one(self, name: str) -> CheckResult:
        result: CheckResult = "ok"
        why = ""
        try:
            with anyio.fail_after(self.timeout):
                await self.checks[name]()
        except TimeoutError:
            result, why = "timeout", f"no answer in {self.timeout:g} s"
        except Exception as exc:  # any failure of the store is an answer: not ready
            # One line, whatever the driver's message holds.
            result, why = "error", " ".join(str(exc).split()) or type(exc).__name__
        if self.metrics is not None:
            self.metrics.readiness_checked(name, result)
        if result != self._said[name]:
            if result == "ok":
                log.info("readiness: the %s answers again", name)
            else:
                log.warning("readiness: the %s does not answer (%s): %s", name, result, why)
            self._said[name] = result
        return result
