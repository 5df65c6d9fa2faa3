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

import base64
import dataclasses
import hashlib
import hmac
import mimetypes
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError, NotFound
from .ids import is_file_id
from .purposes import UPLOADABLE_PURPOSES, refused_download_purposes
from .routes.files import _service, content_response, etag_matches, request_key
from .routes.uploads import _json_body, _params
from .settings import Settings
from .stores import KeyRecord, MetadataStore, Owner

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
            "no_download_purposes": list(refused_download_purposes(settings)),
        },
        headers={"cache-control": "no-store"},
    )


# -- the console API --


#: The request's key, checked as on /v1.
_key = request_key


def _owner_of(key: KeyRecord) -> Owner:
    return Owner(key.org_id, key.project_id)


async def usage(request: Request) -> Response:
    """The organization's bytes against its quota, and the project's pending uploads."""
    key = await _key(request)
    service, now = _service(request), int(time.time())
    return JSONResponse(
        {
            "object": "console.usage",
            "organization": key.org_id,
            "project": key.project_id,
            "bytes_used": await service.meta.committed_bytes(key.org_id, now),
            "quota_bytes": service.settings.org_quota_bytes,
            "pending_uploads": await service.meta.count_pending_uploads(_owner_of(key), now),
        },
        headers={"cache-control": "no-store"},
    )


# -- download links --

#: Where download links begin; the token follows.
DOWNLOAD_PREFIX = "/console/download/"
#: How long a download link works.
LINK_SECONDS = 60
#: The name of the links' signing secret in the metadata store (shared by every server).
SECRET_NAME = "console-download-links"
#: Signed before the token's fields, so that a signature made for anything else never fits.
_SIGNED_PREFIX = b"openai-files console download v1\n"
INVALID_LINK_MESSAGE = (
    "This download link is invalid or has expired (links work for {seconds} seconds). "
    "Ask the console for a new one."
)


class InvalidLink(APIError):
    """A download link that is malformed, tampered with, expired, or whose key is gone."""

    status_code = 403

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or INVALID_LINK_MESSAGE.format(seconds=LINK_SECONDS),
            code="invalid_download_link",
        )


#: A link's token anywhere in a path (`/console//download/…` too, or behind a proxy that
#: rewrites the prefix): the fields before the signature, then the signature.
_SIGNED_TOKEN = re.compile(r"([^/.]+\.key_[^/.]+\.\d+\.)[A-Za-z0-9_-]+")


def loggable_path(path: str) -> str:
    """A request path as the access log writes it: a download link without its signature,
    so that a log reader cannot use the link (the file, key id and expiry stay).

    Example:
        >>> loggable_path("/console/download/file-abc.key_01.1700000000.c2lnbmF0dXJl")
        '/console/download/file-abc.key_01.1700000000.<signature>'
    """
    return _SIGNED_TOKEN.sub(r"\1<signature>", path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _SIGNED_PREFIX + payload.encode("ascii"), "sha256").digest())


def sign_link(secret: bytes, file_id: str, key_id: str, expires_at: int) -> str:
    """The token of a link to `file_id` for the key `key_id`, working until `expires_at`:
    `<file id>.<key id>.<expiry>.<HMAC-SHA256 of those, base64url>`.

    Example:
        >>> sign_link(b"k" * 32, "file-abc", "key_0123", 1700000000)[:34]
        'file-abc.key_0123.1700000000.5Gaot'
    """
    payload = f"{file_id}.{key_id}.{expires_at}"
    return f"{payload}.{_signature(secret, payload)}"


def read_link(secret: bytes, token: str) -> tuple[str, str, int]:
    """The file id, key id and expiry of a token this secret signed; InvalidLink for any
    other string (the signature compared in constant time)."""
    fields = token.split(".")
    if len(fields) != 4 or not token.isascii():
        raise InvalidLink()
    file_id, key_id, expiry, signature = fields
    payload = f"{file_id}.{key_id}.{expiry}"
    if not hmac.compare_digest(_signature(secret, payload), signature):
        raise InvalidLink()
    if not (is_file_id(file_id) and expiry.isdigit()):
        raise InvalidLink()  # signed by us, so never; checked all the same
    return file_id, key_id, int(expiry)


class DownloadLinks:
    """Signs and checks download links with the deployment's shared secret (read from the
    metadata store once, made there by the first server that needs it). `clock` is the
    time in Unix seconds (tests move it)."""

    def __init__(self, clock: Callable[[], float] = time.time, extra_secret: str = "") -> None:
        self.clock = clock
        self.extra_secret = extra_secret
        self._secret: bytes | None = None

    async def secret(self, meta: MetadataStore) -> bytes:
        """The signing key: the database's shared secret, mixed with `--console-link-secret`
        when one is set (then reading the database alone cannot sign a link). Checking a
        link may make the database's secret, on a deployment that has none yet."""
        if self._secret is None:
            stored = await meta.server_secret(SECRET_NAME, secrets.token_hex(32), int(self.clock()))
            key = stored.encode("ascii")
            if self.extra_secret:
                key = hmac.new(self.extra_secret.encode(), key, "sha256").digest()
            self._secret = key
        return self._secret

    async def make(self, meta: MetadataStore, file_id: str, key: KeyRecord) -> tuple[str, int]:
        """A token for `file_id` and `key`, and when it stops working."""
        expires_at = int(self.clock()) + LINK_SECONDS
        return sign_link(await self.secret(meta), file_id, key.id, expires_at), expires_at

    async def check(self, meta: MetadataStore, token: str) -> tuple[str, KeyRecord]:
        """The file id and the key of a valid, unexpired token whose key is still active;
        InvalidLink otherwise."""
        file_id, key_id, expires_at = read_link(await self.secret(meta), token)
        if self.clock() >= expires_at:
            raise InvalidLink()
        key = await meta.get_api_key(key_id)
        if key is None or key.revoked_at is not None:
            raise InvalidLink(
                "The API key that made this download link was revoked. Open the console "
                "with an active key and download the file again."
            )
        return file_id, key


def _links(request: Request) -> DownloadLinks:
    links: DownloadLinks = request.app.state.console_links
    return links


async def create_download_link(request: Request) -> Response:
    """A link to one file the key may download, for the browser's own download."""
    key = await _key(request)
    file_id: str = _params(await _json_body(request), {"file_id": str}, {})["file_id"]
    service = _service(request)
    record = await service.for_download(_owner_of(key), file_id)
    token, expires_at = await _links(request).make(service.meta, record.id, key)
    return JSONResponse(
        {
            "object": "console.download_link",
            "url": DOWNLOAD_PREFIX + token,
            "expires_at": expires_at,
        },
        headers={"cache-control": "no-store"},
    )


async def download(request: Request) -> Response:
    """The file a link names, streamed as `/v1/files/{id}/content` streams it; the token
    is the credential (no Authorization header)."""
    service = _service(request)
    file_id, key = await _links(request).check(service.meta, request.path_params["token"])
    request.scope.setdefault("state", {})["org_id"] = key.org_id
    record = await service.for_download(_owner_of(key), file_id)
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
        Route("/console/api/download-links", create_download_link, methods=["POST"]),
        Route("/console/download/{token}", download, methods=["GET", "HEAD"]),
    ]
