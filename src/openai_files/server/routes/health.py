"""`/healthz` (liveness) and `/readyz` (readiness): no key asked, nothing told but whether
the process runs and which of its stores answer (readiness.py)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..readiness import Readiness
from ._common import route_table

#: Probes must see each answer as it is now (a cache between would hide a change).
_NO_STORE = {"cache-control": "no-store"}


async def healthz(request: Request) -> Response:
    """200 while the process runs and its event loop answers: asks no store."""
    return JSONResponse({"status": "ok"}, headers=_NO_STORE)


async def readyz(request: Request) -> Response:
    """200 when the database and the blob store answered, 503 naming the one that did not:
    `{"status": "ok" | "unavailable", "checks": {"database": ..., "storage": ...}}`, each
    check "ok", "error" or "timeout"."""
    readiness: Readiness = request.app.state.readiness
    report = await readiness.report()
    return JSONResponse(report.body(), status_code=200 if report.ready else 503, headers=_NO_STORE)


routes = route_table({"/healthz": {"GET": healthz}, "/readyz": {"GET": readyz}})
