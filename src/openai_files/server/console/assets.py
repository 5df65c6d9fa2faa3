"""The console's static files: the page and its assets, read once when the app is built and
served from memory by name.

`GET /` serves `static/index.html` with `__ASSETS__` replaced by `/console/assets/<hash>`,
where `<hash>` covers every static file: a new release gets new asset URLs, so assets are
cached for a year and the page itself is revalidated (`no-cache` and an ETag). A path names
a file of the folder or nothing, so no path can reach outside it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import mimetypes
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from ..errors import NotFound
from ..responses import etag_matches

#: The console's files, shipped in the package.
STATIC_DIR = Path(__file__).parent.parent / "static"
#: Where the page's asset URLs begin; the content hash follows.
ASSETS_PREFIX = "/console/assets/"
#: The literal in index.html that becomes `/console/assets/<hash>`.
ASSETS_MARK = b"__ASSETS__"
#: How the page's assets are cached: for good, as their URL changes with their content.
IMMUTABLE = "public, max-age=31536000, immutable"
#: How the page is cached: revalidated each time (its ETag), so a release shows at once.
REVALIDATE = "no-cache"

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


@dataclasses.dataclass(frozen=True)
class Asset:
    """One file as served: its bytes, content type and ETag."""

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


def serve(request: Request, asset: Asset, cache_control: str) -> Response:
    """`asset` as the answer to `request`: a 304 when the browser's copy is current."""
    headers = {"etag": asset.etag, "cache-control": cache_control}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match and etag_matches(if_none_match, asset.etag):
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)
