"""The web console: its static files, the headers that guard them, and the few routes the
`/v1` API lacks (the console's configuration, usage, download links).

`GET /` serves `static/index.html` with `__ASSETS__` replaced by `/console/assets/<hash>`,
where `<hash>` covers every static file: a new release gets new asset URLs, so assets are
cached for a year and the page itself is revalidated (`no-cache` and an ETag). The files
are read once, when the app is built, and served from memory by name: a path names a file
of the folder or nothing, so no path can reach outside it.

Every response under `/` and `/console` carries a strict Content-Security-Policy (scripts
and styles from this server only, no inline script or style attribute), refuses framing
and sniffing, and sends no referrer. The console API answers in OpenAI's error envelope,
with the same keys and tenant rules as `/v1` (docs/api.md, "Extensions for the console").
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import NotFound
from .purposes import UPLOADABLE_PURPOSES
from .routes.files import etag_matches
from .settings import Settings

#: The console's files, shipped in the package.
STATIC_DIR = Path(__file__).parent / "static"
#: Where the page's asset URLs begin; the content hash follows.
ASSETS_PREFIX = "/console/assets/"
#: The literal in index.html that becomes `/console/assets/<hash>`.
ASSETS_MARK = b"__ASSETS__"

SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data:; connect-src 'self'; form-action 'self'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}
IMMUTABLE = "public, max-age=31536000, immutable"

#: Content types by suffix, fixed here rather than taken from the system's tables.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
}


def is_console_path(path: str) -> bool:
    """Whether a request path is the console's: `/`, `/console` and what lies under it."""
    return path == "/" or path == "/console" or path.startswith("/console/")


class ConsoleHeaders:
    """Adds the security headers to every response of a console path, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console_path(scope["path"]):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


@dataclasses.dataclass(frozen=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _content_type(name: str) -> str:
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


class StaticFiles:
    """The console's files, read once: the page, and the assets under their hash.

    Example:
        >>> files = StaticFiles(STATIC_DIR)
        >>> files.assets_url.startswith("/console/assets/")
        True
    """

    def __init__(self, folder: Path = STATIC_DIR) -> None:
        found: dict[str, bytes] = {}
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if not path.is_file() or any(
                part.startswith(".") or part == "__pycache__" for part in relative.parts
            ):
                continue  # dotfiles and caches are not the console's
            found[relative.as_posix()] = path.read_bytes()
        if "index.html" not in found:
            raise RuntimeError(f"the console's index.html is missing from {folder}")
        digest = hashlib.sha256()
        for name, data in found.items():
            digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
        #: A short hash of every file together: the assets' folder in URLs.
        self.hash = digest.hexdigest()[:16]
        self.assets_url = ASSETS_PREFIX + self.hash
        page = found.pop("index.html").replace(ASSETS_MARK, self.assets_url.encode())
        self.index = Asset(page, CONTENT_TYPES[".html"], _etag(page))
        self.assets = {
            name: Asset(data, _content_type(name), _etag(data)) for name, data in found.items()
        }

    def asset(self, asset_hash: str, name: str) -> Asset:
        """The asset `name` of this release; a 404 for any other hash or name."""
        asset = self.assets.get(name) if asset_hash == self.hash else None
        if asset is None:
            raise NotFound(f"No such console file: {name}")
        return asset


def _serve(request: Request, asset: Asset, cache_control: str) -> Response:
    headers = {"etag": asset.etag, "cache-control": cache_control}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


def _static(request: Request) -> StaticFiles:
    files: StaticFiles = request.app.state.console_files
    return files


async def index(request: Request) -> Response:
    return _serve(request, _static(request).index, "no-cache")


async def asset(request: Request) -> Response:
    found = _static(request).asset(request.path_params["hash"], request.path_params["name"])
    return _serve(request, found, IMMUTABLE)


async def to_index(request: Request) -> Response:
    return RedirectResponse("/", status_code=307)


async def config(request: Request) -> Response:
    """What the console needs to know before a key is entered; no auth."""
    settings: Settings = request.app.state.settings
    return JSONResponse(
        {
            "upload_threshold_bytes": settings.console_upload_threshold_bytes,
            "part_bytes": settings.max_part_bytes,
            "max_file_bytes": settings.max_file_bytes,
            "max_upload_bytes": settings.max_upload_bytes,
            "purposes": list(UPLOADABLE_PURPOSES),
        },
        headers={"cache-control": "no-store"},
    )


def console_routes() -> list[Route]:
    """The console's routes (wired only when the console is on)."""
    return [
        Route("/", index, methods=["GET"]),
        Route("/console", to_index, methods=["GET"]),
        Route("/console/", to_index, methods=["GET"]),
        Route("/console/assets/{hash}/{name:path}", asset, methods=["GET"]),
        Route("/console/api/config", config, methods=["GET"]),
    ]
