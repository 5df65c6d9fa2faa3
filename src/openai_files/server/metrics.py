"""What one server process counts, served at `/metrics` in Prometheus's text format.

Not behind an API key: `--metrics` chooses who may read it (requests from this machine,
any client with a separate admin token, or nobody). Labels take only values the server
knows in advance (route templates, not paths; known methods), so that no request can make
the series grow.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from .batch_engine import Engines
    from .batch_runner import BatchRunner

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from .errors import APIError, Unauthorized
from .settings import Settings

#: Methods counted under their own name; any other is counted as `other`.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: What the sweeper removes (FilesService.sweep's counts; `uploads`: unfinished S3
#: multipart uploads, always 0 on a local folder; `expired_uploads`: Uploads API uploads
#: not completed within their hour; `finished_uploads`: rows of uploads finished longer
#: than --upload-retention-seconds ago).
SWEPT_KINDS = (
    "expired",
    "temp",
    "orphans",
    "uploads",
    "expired_uploads",
    "finished_uploads",
    "audit_logs",
)
#: Kinds of storage errors: the store unreachable (a 503), the disk full (a 507), or any
#: other unexpected error (a 500; the log has the details).
STORE_ERROR_KINDS = ("unavailable", "disk_full", "other")
#: The stores `/readyz` checks, and what a check may say (readiness.py).
READY_STORES = ("database", "storage")
READY_RESULTS = ("ok", "error", "timeout")
#: The route label of a request that matched no route.
NO_ROUTE = "none"


class Forbidden(APIError):
    status_code = 403


class Metrics:
    """The counters of one app, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter(
            "openai_files_http_requests",
            "HTTP requests answered, by method, route and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.received_bytes = Counter(
            "openai_files_http_received_bytes",
            "Bytes of request bodies received, by route",
            ["route"],
            registry=registry,
        )
        self.sent_bytes = Counter(
            "openai_files_http_sent_bytes",
            "Bytes of response bodies sent, by route",
            ["route"],
            registry=registry,
        )
        self.requests_in_flight = Gauge(
            "openai_files_http_requests_in_flight",
            "Requests being answered",
            registry=registry,
        )
        self.uploads_in_flight = Gauge(
            "openai_files_uploads_in_flight",
            "Uploads (POST /v1/files) being received",
            registry=registry,
        )
        self._connections: Callable[[], int] | None = None
        self.open_connections = Gauge(
            "openai_files_open_connections",
            "Open client connections (NaN when the server is not run by openai-files serve)",
            registry=registry,
        )
        self.open_connections.set_function(self._count_connections)
        self.sweeps = Counter(
            "openai_files_sweeps",
            "Sweeper runs, by result (ok or failed)",
            ["result"],
            registry=registry,
        )
        self.swept = Counter(
            "openai_files_swept",
            "What the sweeper removed: expired files, stale temp files, orphan objects, "
            "unfinished S3 multipart uploads, expired uploads of the Uploads API",
            ["kind"],
            registry=registry,
        )
        self.last_sweep = Gauge(
            "openai_files_sweep_last_run_timestamp_seconds",
            "When the last sweeper run ended, ok or failed (Unix time; 0: none yet)",
            registry=registry,
        )
        self.last_ok_sweep = Gauge(
            "openai_files_sweep_last_success_timestamp_seconds",
            "When the last sweeper run that succeeded ended (Unix time; 0: none yet)",
            registry=registry,
        )
        self.last_swept = Gauge(
            "openai_files_sweep_last_removed",
            "What the last sweeper run that succeeded removed, by kind (as swept_total)",
            ["kind"],
            registry=registry,
        )
        self.store_errors = Counter(
            "openai_files_store_errors",
            "Storage errors, by kind: unavailable (503), disk_full (507), other (500)",
            ["kind"],
            registry=registry,
        )
        self.readiness_checks = Counter(
            "openai_files_readiness_checks",
            "Checks of a store made for /readyz (at most one a second, however many probes), "
            "by store (database, storage) and result (ok, error, timeout)",
            ["store", "result"],
            registry=registry,
        )
        for result in ("ok", "failed"):
            self.sweeps.labels(result=result)
        for store in READY_STORES:
            for result in READY_RESULTS:
                self.readiness_checks.labels(store=store, result=result)
        for kind in SWEPT_KINDS:
            self.swept.labels(kind=kind)
            self.last_swept.labels(kind=kind)
        for kind in STORE_ERROR_KINDS:
            self.store_errors.labels(kind=kind)
        ProcessCollector(registry=registry)  # memory, CPU, open files (on Linux)

    def watch_batches(self, runner: BatchRunner | None, engines: Engines) -> None:
        """Count the batch worker's work and the engines' answers (read at each scrape)."""
        self.registry.register(_BatchCollector(runner, engines))

    def count_connections(self, count: Callable[[], int]) -> None:
        """Where the open connections are counted (the HTTP server knows them)."""
        self._connections = count

    def _count_connections(self) -> float:
        return float("nan") if self._connections is None else float(self._connections())

    def request_started(self, scope: Scope) -> None:
        self.requests_in_flight.inc()
        if _is_upload(scope):
            self.uploads_in_flight.inc()

    def request_done(self, scope: Scope, status: int, received: int, sent: int) -> None:
        """Count a request answered with `status` (0: no status line went out)."""
        self.requests_in_flight.dec()
        if _is_upload(scope):
            self.uploads_in_flight.dec()
        route_obj = scope.get("route")
        route = getattr(route_obj, "path", None) or NO_ROUTE
        method = scope["method"] if scope["method"] in METHODS else "other"
        self.requests.labels(method=method, route=route, status=str(status or "none")).inc()
        if received:
            self.received_bytes.labels(route=route).inc(received)
        if sent:
            self.sent_bytes.labels(route=route).inc(sent)

    def sweep_done(self, counts: Mapping[str, int]) -> None:
        now = time.time()
        self.sweeps.labels(result="ok").inc()
        self.last_sweep.set(now)
        self.last_ok_sweep.set(now)
        for kind in {*SWEPT_KINDS, *counts}:
            count = counts.get(kind, 0)
            self.last_swept.labels(kind=kind).set(count)
            if count:
                self.swept.labels(kind=kind).inc(count)

    def sweep_failed(self, kind: str) -> None:
        self.sweeps.labels(result="failed").inc()
        self.last_sweep.set(time.time())
        self.store_error(kind)

    def readiness_checked(self, store: str, result: str) -> None:
        self.readiness_checks.labels(store=store, result=result).inc()

    def store_error(self, kind: str) -> None:
        self.store_errors.labels(kind=kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class MetricsEndpoint:
    """`GET /metrics`, for the readers `--metrics` allows."""

    #: The text format every Prometheus reads (the names here are all plain ASCII).
    content_type: ClassVar[str] = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, metrics: Metrics, settings: Settings) -> None:
        self.metrics = metrics
        self.mode = settings.metrics
        self._token = settings.metrics_token.encode()

    async def serve(self, request: Request) -> Response:
        if self.mode == "token":
            self._check_token(request.headers.get("authorization"))
        elif not _from_loopback(request.scope):
            raise Forbidden(
                "Metrics are served to this machine only (--metrics loopback). To read them "
                "from elsewhere, start the server with --metrics token and a "
                "--metrics-token, and send it as a Bearer token."
            )
        return Response(self.metrics.render(), media_type=self.content_type)

    def _check_token(self, header: str | None) -> None:
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized(
                "Metrics need the server's metrics token (--metrics-token), sent as "
                "Authorization: Bearer TOKEN; API keys do not open them.",
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )
        if not secrets.compare_digest(token.strip().encode(), self._token):
            raise Unauthorized(
                "Incorrect metrics token: send the server's --metrics-token as "
                "Authorization: Bearer TOKEN.",
                headers={"www-authenticate": 'Bearer realm="metrics"'},
            )


def _is_upload(scope: Scope) -> bool:
    method: str = scope["method"]
    path: str = scope["path"]
    return method == "POST" and path == "/v1/files"


def _from_loopback(scope: Scope) -> bool:
    """Whether the client is this machine (127.0.0.0/8, ::1, or ::ffff:127.x.x.x).

    Behind a proxy on this machine, the client is the proxy unless the proxy sends
    `X-Forwarded-For`, which uvicorn honours from loopback: use `--metrics token` there.
    """
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


#: The statuses of a batch not yet ended, as a worker last saw them.
BATCH_ACTIVE_STATUSES = ("validating", "in_progress", "finalizing", "cancelling")


class _BatchCollector(Collector):
    """Batches and their requests, read from the worker and the engines at each scrape:
    nothing is counted twice and no lock is taken (the numbers are this process's)."""

    def __init__(self, runner: BatchRunner | None, engines: Engines) -> None:
        self.runner = runner
        self.engines = engines

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        active = GaugeMetricFamily(
            "openai_files_batches",
            "Batches not yet ended, by status, as this process's batch worker last read them "
            "(every replica's worker reads them all)",
            labels=["status"],
        )
        by_status = self.runner.active_by_status() if self.runner is not None else {}
        for status in BATCH_ACTIVE_STATUSES:
            active.add_metric([status], by_status.get(status, 0))
        yield active
        ended = CounterMetricFamily(
            "openai_files_batches_ended",
            "Batches this process ended, by final status",
            labels=["status"],
        )
        finished = self.runner.ended if self.runner is not None else {}
        for status in ("completed", "failed", "cancelled", "expired"):
            ended.add_metric([status], finished.get(status, 0))
        yield ended
        requests = CounterMetricFamily(
            "openai_files_batch_requests",
            "Batch requests sent to the engines, by what came of them: sent (each attempt), "
            "retried, failed (no usable answer after the last attempt)",
            labels=["result"],
        )
        requests.add_metric(["sent"], self.engines.sent)
        requests.add_metric(["retried"], self.engines.retried)
        requests.add_metric(["failed"], self.engines.failed)
        yield requests
        latency = CounterMetricFamily(
            "openai_files_batch_engine_latency_seconds",
            "Time the engines took to answer batch requests (sum and count of answers)",
            labels=["part"],
        )
        latency.add_metric(["sum"], self.engines.latency_seconds_sum)
        latency.add_metric(["count"], self.engines.latency_count)
        yield latency
