"""The console's routes: the page and its assets, and the console API the `/v1` API lacks
(the console's configuration, usage, download links, who an admin key is). The console API
answers in OpenAI's error envelope, with the same keys and tenant rules as `/v1`
(docs/api.md, "Extensions for the console")."""

from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..audit import Actor, file_downloaded
from ..batches import BatchesService
from ..responses import content_response
from ..routes._common import json_body, params, request_admin_key, request_key, service_of
from ..settings import Settings
from ..stores import KeyRecord, Owner
from .assets import IMMUTABLE, REVALIDATE, StaticFiles, serve
from .config import console_config
from .links import DOWNLOAD_PREFIX, DownloadLinks

#: The console API's answers are about this moment: never cached.
_NO_STORE = {"cache-control": "no-store"}


def _static(request: Request) -> StaticFiles:
    files: StaticFiles = request.app.state.console_files
    return files


async def index(request: Request) -> Response:
    return serve(request, _static(request).index, REVALIDATE)


async def asset(request: Request) -> Response:
    found = _static(request).asset(request.path_params["hash"], request.path_params["name"])
    return serve(request, found, IMMUTABLE)


async def to_index(request: Request) -> Response:
    return RedirectResponse("/", status_code=307)


async def config(request: Request) -> Response:
    """What the console needs to know before a key is entered; no auth."""
    settings: Settings = request.app.state.settings
    batches: BatchesService = request.app.state.batches
    return JSONResponse(console_config(settings, batches.runs_batches), headers=_NO_STORE)


# -- the console API --


def _owner_of(key: KeyRecord) -> Owner:
    return Owner(key.org_id, key.project_id)


async def usage(request: Request) -> Response:
    """The organization's bytes against its quota, and the project's pending uploads."""
    key = await request_key(request)
    service, now = service_of(request), int(time.time())
    return JSONResponse(
        {
            "object": "console.usage",
            "organization": key.org_id,
            "project": key.project_id,
            "bytes_used": await service.meta.committed_bytes(key.org_id, now),
            "quota_bytes": service.settings.org_quota_bytes,
            "pending_uploads": await service.meta.count_pending_uploads(_owner_of(key), now),
        },
        headers=_NO_STORE,
    )


async def organization(request: Request) -> Response:
    """Who an admin key is: its organization and its own id (the administration view shows
    the one and marks the other among the admin keys). A project's key is refused as on the
    Administration API (403)."""
    key = await request_admin_key(request)
    return JSONResponse(
        {"object": "console.organization", "organization": key.org_id, "admin_key_id": key.id},
        headers=_NO_STORE,
    )


def _links(request: Request) -> DownloadLinks:
    links: DownloadLinks = request.app.state.console_links
    return links


async def create_download_link(request: Request) -> Response:
    """A link to one file the key may download, for the browser's own download."""
    key = await request_key(request)
    file_id: str = params(await json_body(request), {"file_id": str}, {})["file_id"]
    service = service_of(request)
    record = await service.for_download(_owner_of(key), file_id)
    token, expires_at = await _links(request).make(service.meta, record.id, key)
    return JSONResponse(
        {
            "object": "console.download_link",
            "url": DOWNLOAD_PREFIX + token,
            "expires_at": expires_at,
        },
        headers=_NO_STORE,
    )


async def download(request: Request) -> Response:
    """The file a link names, streamed as `/v1/files/{id}/content` streams it; the token
    is the credential (no Authorization header). A GET is recorded in the audit log
    (`file.downloaded`, by the key that asked for the link) before a byte is sent."""
    service = service_of(request)
    file_id, key = await _links(request).check(service.meta, request.path_params["token"])
    request.scope.setdefault("state", {})["org_id"] = key.org_id
    record = await service.for_download(_owner_of(key), file_id)
    if request.method == "GET":
        await service.meta.add_audit_logs([file_downloaded(record, Actor.of(key))])
    return await content_response(request, service, record)


def console_routes() -> list[Route]:
    """The console's routes (wired only when the console is on)."""
    return [
        Route("/", index, methods=["GET"]),
        Route("/console", to_index, methods=["GET"]),
        Route("/console/", to_index, methods=["GET"]),
        Route("/console/assets/{hash}/{name:path}", asset, methods=["GET"]),
        Route("/console/api/config", config, methods=["GET"]),
        Route("/console/api/usage", usage, methods=["GET"]),
        Route("/console/api/organization", organization, methods=["GET"]),
        Route("/console/api/download-links", create_download_link, methods=["POST"]),
        Route("/console/download/{token}", download, methods=["GET", "HEAD"]),
    ]
