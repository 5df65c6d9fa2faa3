"""The application factory: stores opened in the lifespan, error handlers, request context."""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import anyio
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import settings as S
from ._timeouts import BodyTimeouts
from ._upload_slots import UploadSlots
from .admin import AdminService
from .auth import KeyCache
from .batch_engine import Engines
from .batch_runner import BatchRunner
from .batches import BatchesService
from .console.assets import StaticFiles
from .console.headers import ConsoleHeaders
from .console.links import DownloadLinks, loggable_path
from .console.routes import console_routes
from .errors import (
    APIError,
    InsufficientStorage,
    InternalError,
    NotFound,
    ServiceUnavailable,
    is_disk_full,
)
from .metrics import Metrics, MetricsEndpoint
from .readiness import Readiness
from .routes.admin import routes as admin_routes
from .routes.batches import routes as batch_routes
from .routes.files import routes as file_routes
from .routes.health import routes as health_routes
from .routes.uploads import routes as upload_routes
from .service import FilesService
from .settings import Settings
from .stores import (
    BlobStore,
    MetadataStore,
    StoreUnavailable,
    ensure_schema,
    one_writer,
    open_blob_store,
    open_metadata_store,
)
from .stores.cached import FileRowCache

log = logging.getLogger("openai_files.server")
access_log = logging.getLogger("openai_files.access")


class RequestContext:
    """Request ids, OpenAI's response headers, one log line per request, and the last
    word on unexpected errors (a 500 in the envelope, never a trace)."""

    def __init__(self, app: ASGIApp, metrics: Metrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(16)
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 0  # of the response the app started (0: none yet)
        sent_status = 0  # of the status line that went out
        complete = False  # whether the last body message went out
        sent = received = announced = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            return message

        async def send_with_headers(message: Message) -> None:
            nonlocal status, sent_status, complete, sent, announced
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                headers["openai-version"] = S.OPENAI_VERSION
                elapsed = int((time.perf_counter() - started) * 1000)
                headers["openai-processing-ms"] = str(elapsed)
                org_id = state.get("org_id")
                if org_id:
                    headers["openai-organization"] = org_id
                length = headers.get("content-length", "")
                announced = int(length) if length.isdigit() else 0
            await send(message)
            if message["type"] == "http.response.start":
                sent_status = message["status"]
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
                complete = not message.get("more_body", False)
            elif message["type"] == "http.response.pathsend":
                # The HTTP server sends the whole file (responses.py), as long as the
                # Content-Length the response announced.
                sent += announced
                complete = True

        if self.metrics:
            self.metrics.request_started(scope)
        try:
            await self.app(scope, counting_receive, send_with_headers)
        except Exception as exc:
            if status == 0 and is_disk_full(exc):
                # A 507 the client may retry; the store gives its reserve back so that a
                # DELETE can free space (stores/local.py).
                if self.metrics:
                    self.metrics.store_error("disk_full")
                log.warning(
                    "disk full in %s %s (%s): %s",
                    *_request_line(scope),
                    request_id,
                    log_safe(str(exc), keep_spaces=True),
                )
                await release_reserve_if_full(
                    getattr(getattr(scope["app"].state, "service", None), "blobs", None), exc
                )
                await InsufficientStorage().response()(scope, counting_receive, send_with_headers)
                return
            if self.metrics:
                self.metrics.store_error("other")
            log.exception("unhandled error in %s %s (%s)", *_request_line(scope), request_id)
            if status == 0:
                await InternalError().response()(scope, counting_receive, send_with_headers)
        finally:
            # The status handed to the server ("-": none), and "incomplete" when the body
            # was cut short (an error after the status line, a body shorter than announced).
            # A limit: once the client is gone, uvicorn's send returns without writing, so a
            # response started after the disconnect is logged as if it went out.
            access_log.info(
                "%s %s %s in=%d out=%d %.1fms %s%s",
                *_request_line(scope),
                sent_status or "-",
                received,
                sent,
                (time.perf_counter() - started) * 1000,
                request_id,
                "" if complete or not sent_status else " incomplete",
            )
            if self.metrics:
                self.metrics.request_done(scope, sent_status, received, sent)


#: How `log_safe` writes the characters it escapes that have a short form.
_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", " ": "\\x20"}


def log_safe(text: str, *, keep_spaces: bool = False) -> str:
    r"""A value the request controls, written so that it stays one token of one log line:
    control characters, line and paragraph separators and other non-printables, the
    backslash and (unless `keep_spaces`) the space are escaped as Python writes them.

    Example:
        >>> log_safe("/v1/files/x\nINFO forged \x1b[2J")
        '/v1/files/x\\nINFO\\x20forged\\x20\\x1b[2J'
    """
    if text.isprintable() and "\\" not in text and (keep_spaces or " " not in text):
        return text
    out = []
    for ch in text:
        if ch == " " and keep_spaces:
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        else:  # as repr() writes it: \x1b, \u2028
            out.append(ascii(ch)[1:-1])
    return "".join(out)


def _request_line(scope: Scope) -> tuple[str, str]:
    """The method and path of a request, safe to log (a download link's signature left out)."""
    return log_safe(scope["method"]), log_safe(loggable_path(scope["path"]))


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        return NotFound(f"Invalid URL ({request.method} {request.url.path})").response()
    error = APIError(str(exc.detail))
    error.status_code = exc.status_code  # type: ignore[misc]
    return error.response()


async def _store_down(request: Request, exc: Exception) -> Response:
    request.app.state.metrics.store_error("unavailable")
    log.warning(
        "storage unavailable for %s %s: %s",
        *_request_line(request.scope),
        log_safe(str(exc), keep_spaces=True),
    )
    return ServiceUnavailable(
        "The service is temporarily unable to reach its storage. Please retry shortly.",
        retry_after=2,
    ).response()


async def _client_gone(request: Request, exc: Exception) -> Response:
    # The client went away mid-body; nothing was kept (see FilesService.upload).
    return Response(status_code=499)


class _Sweeper:
    def __init__(self, service: FilesService, interval: float, metrics: Metrics) -> None:
        self.service = service
        self.interval = interval
        self.metrics = metrics

    async def sweep(self, grace_seconds: float | None = None) -> None:
        """One sweep, counted in the metrics (a failure too, then raised)."""
        try:
            counts = await self.service.sweep(grace_seconds)
        except Exception as exc:
            self.metrics.sweep_failed(_error_kind(exc))
            await release_reserve_if_full(self.service.blobs, exc)
            raise
        self.metrics.sweep_done(counts)

    async def run(self) -> None:
        while True:
            await anyio.sleep(self.interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("sweep failed; trying again in %.0fs", self.interval)


async def release_reserve_if_full(blobs: BlobStore | None, exc: BaseException) -> None:
    """When `exc` says the disk is full, the blob store (a local folder) gives its reserve
    back, so that the database can still write and a DELETE can free space."""
    if blobs is not None and is_disk_full(exc):
        await anyio.to_thread.run_sync(blobs.release_reserve)


def _error_kind(exc: Exception) -> str:
    """The kind of a storage error, as the metrics count it."""
    if isinstance(exc, StoreUnavailable):
        return "unavailable"
    return "disk_full" if is_disk_full(exc) else "other"


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the ASGI app. Stores are opened when the app starts (its lifespan).

    The web console is served when `settings.console_enabled`: by default, when
    `settings.host` is a loopback address. That is the host the settings name, not the one
    an ASGI server given this app binds: running it under another server on a public
    address, give `Settings(console=False)` (or `True`) explicitly.

    Example:
        >>> import uvicorn
        >>> app = create_app(Settings(data_dir=Path("./data")))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    settings = settings or Settings.from_env()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        meta = open_metadata_store(settings.database_url, settings)
        blobs = open_blob_store(settings.storage_url, settings)
        async with contextlib.AsyncExitStack() as stack:
            await meta.open()
            stack.push_async_callback(meta.close)
            await ensure_schema(meta)
            await blobs.open()
            stack.push_async_callback(blobs.close)
            # A local folder becomes this process's alone (a second server stops here).
            stack.callback(await anyio.to_thread.run_sync(blobs.lock_exclusive))
            alone = one_writer(meta, blobs)
            if alone and not settings.database and settings.file_cache_rows:
                # The embedded default: the database lies in the folder this process holds,
                # so it alone writes file rows and may cache them.
                meta = cast(MetadataStore, FileRowCache(meta, settings.file_cache_rows))
            service = FilesService(settings, meta, blobs)
            sweeper = _Sweeper(service, settings.sweep_interval_seconds, metrics)
            if alone:
                # Nobody else writes to the database: every reservation is a leftover. (A
                # shared one holds the reservations of other servers' uploads in flight.)
                await meta.purge_reservations(None)
                # Nor does any completion run yet: one left "completing" had its server die
                # (it would refuse complete and cancel for ten minutes).
                await service.uploads.reopen_completions(int(time.time()), alone=True)
            if not blobs.shared:
                # Nobody else writes to the folder: every temp file and unnamed object in
                # it is a leftover.
                await sweeper.sweep(grace_seconds=0)
            else:
                try:
                    await sweeper.sweep()
                except StoreUnavailable as exc:  # serve anyway: requests answer 503 meanwhile
                    log.warning("first sweep failed, storage unavailable: %s", exc)
            app.state.service = service
            app.state.readiness = Readiness(
                {"database": meta.ping, "storage": blobs.ping},
                settings.ready_timeout_seconds,
                metrics,
            )
            app.state.admin = AdminService(meta, app.state.key_cache, settings)
            engines = Engines(settings)
            await engines.open()
            stack.push_async_callback(engines.aclose)
            app.state.engines = engines
            app.state.batches = BatchesService(settings, meta, engines.configured)
            runner = None
            if engines.configured and settings.batch_runner:
                runner = BatchRunner(settings, meta, blobs, engines, alone=alone)
            app.state.batch_runner = runner
            metrics.watch_batches(runner, engines)
            async with anyio.create_task_group() as tg:
                tg.start_soon(sweeper.run)
                if runner is not None:
                    tg.start_soon(runner.run)
                yield {}
                tg.cancel_scope.cancel()

    routes = [*health_routes, *file_routes, *upload_routes, *batch_routes, *admin_routes]
    if settings.metrics != "off":
        routes.append(Route("/metrics", MetricsEndpoint(metrics, settings).serve, methods=["GET"]))
    console = settings.console_enabled
    if console:
        routes.extend(console_routes())
    app = Starlette(
        routes=routes,
        middleware=[
            # The console's security headers go on every response of its paths, errors too.
            *([Middleware(ConsoleHeaders)] if console else []),
            Middleware(RequestContext, metrics=metrics),
            Middleware(
                BodyTimeouts,
                idle=settings.body_idle_timeout_seconds,
                min_rate=settings.min_body_bytes_per_second,
                window=settings.body_rate_window_seconds,
            ),
        ],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            ClientDisconnect: _client_gone,
            StoreUnavailable: _store_down,
        },
        lifespan=lifespan,
    )
    # `/v1/files/` is not a route: answer 404 in the envelope, not a redirect.
    app.router.redirect_slashes = False
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.key_cache = KeyCache(settings.key_cache_seconds)
    app.state.upload_slots = UploadSlots(settings.max_uploads_per_key)
    if console:
        app.state.console_files = StaticFiles()
        app.state.console_links = DownloadLinks(extra_secret=settings.console_link_secret)
    return app
