"""The web console's server side: its static files and their caching, the security headers
on every console answer, the on/off setting, and the console API (config, usage, download
links) with its auth and tenant rules, on both deployments where the stores matter."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from openai_files.server.console import STATIC_DIR, StaticFiles
from openai_files.server.settings import Settings

from .._inprocess import AppServer
from .._server import ServerProcess
from ..api._contract import assert_error

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def assert_guarded(response: httpx.Response) -> None:
    """The console's security headers, exactly."""
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppServer]:
    """The embedded app with its defaults (loopback: the console is on)."""
    server = AppServer(tmp_path_factory.mktemp("console") / "data").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def root(app: AppServer) -> Iterator[httpx.Client]:
    """A client of the server's root (not /v1), with no key."""
    with app.http(base_url=app.root_url) as c:
        yield c


def asset_urls(page: str) -> list[str]:
    return re.findall(r'(?:href|src)="(/console/assets/[^"]+)"', page)


# -- the page and its assets --


def test_index_is_served_with_its_assets_under_the_content_hash(root: httpx.Client) -> None:
    response = root.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["cache-control"] == "no-cache"
    assert_guarded(response)
    page = response.text
    assert "__ASSETS__" not in page
    urls = asset_urls(page)
    assert urls, page[:500]
    files = StaticFiles(STATIC_DIR)
    for url in urls:
        assert url.startswith(f"/console/assets/{files.hash}/")
    # No inline script: every <script> has a src.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)


def test_index_answers_304_to_its_etag(root: httpx.Client) -> None:
    first = root.get("/")
    etag = first.headers["etag"]
    again = root.get("/", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert_guarded(again)
    assert root.get("/", headers={"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.parametrize(
    ("name", "content_type"),
    [("app.js", "text/javascript; charset=utf-8"), ("app.css", "text/css; charset=utf-8")],
)
def test_assets_are_immutable_with_their_type(
    root: httpx.Client, name: str, content_type: str
) -> None:
    files = StaticFiles(STATIC_DIR)
    response = root.get(f"/console/assets/{files.hash}/{name}")
    assert response.status_code == 200
    assert response.content == (STATIC_DIR / name).read_bytes()
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["etag"]
    assert_guarded(response)
    again = root.get(
        f"/console/assets/{files.hash}/{name}",
        headers={"If-None-Match": response.headers["etag"]},
    )
    assert again.status_code == 304


def test_every_asset_the_page_names_is_served(root: httpx.Client) -> None:
    for url in asset_urls(root.get("/").text):
        assert root.get(url).status_code == 200, url


def test_the_hash_covers_every_file(tmp_path: Path) -> None:
    folder = tmp_path / "static"
    folder.mkdir()
    (folder / "index.html").write_text('<script type="module" src="__ASSETS__/a.js"></script>')
    (folder / "a.js").write_text("export const a = 1;\n")
    first = StaticFiles(folder)
    assert first.index.body == (
        f'<script type="module" src="/console/assets/{first.hash}/a.js"></script>'.encode()
    )
    (folder / "a.js").write_text("export const a = 2;\n")
    assert StaticFiles(folder).hash != first.hash


@pytest.mark.parametrize(
    "path",
    [
        "/console/assets/0123456789abcdef/app.js",  # another release's hash
        "/console/assets/{hash}/nothing.js",
        "/console/assets/{hash}/index.html",  # the page is served at / only
        "/console/assets/{hash}/../settings.py",
        "/console/assets/{hash}/%2e%2e/settings.py",
        "/console/assets/{hash}/..%2fconsole.py",
        "/console/nothing",
    ],
)
def test_unknown_hash_name_or_traversal_is_a_404(root: httpx.Client, path: str) -> None:
    path = path.replace("{hash}", StaticFiles(STATIC_DIR).hash)
    response = root.get(httpx.URL(path))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert_guarded(response)


@pytest.mark.parametrize("path", ["/console", "/console/"])
def test_console_redirects_to_the_root(root: httpx.Client, path: str) -> None:
    response = root.get(path, follow_redirects=False)
    assert response.status_code == 307
    assert response.headers["location"] == "/"
    assert_guarded(response)


def test_the_api_has_no_console_headers(root: httpx.Client) -> None:
    response = root.get("/healthz")
    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


# -- on and off --


def test_console_is_on_by_default_on_loopback_only() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"):
        assert Settings(host=host).console_enabled, host
    for host in ("0.0.0.0", "::", "192.168.1.20", "files.example.com"):
        assert not Settings(host=host).console_enabled, host
    assert Settings(host="0.0.0.0", console=True).console_enabled
    assert not Settings(host="127.0.0.1", console=False).console_enabled
    assert Settings.from_env({"OPENAI_FILES_CONSOLE": "off"}).console is False
    assert Settings.from_env({"OPENAI_FILES_CONSOLE": "on", "OPENAI_FILES_HOST": "0.0.0.0"}).console


@pytest.mark.parametrize("env", [{"OPENAI_FILES_CONSOLE": "false"}, {"OPENAI_FILES_HOST": "::"}])
def test_without_the_console_its_paths_are_404s(tmp_path: Path, env: dict[str, str]) -> None:
    server = AppServer(tmp_path / "data", env).start()
    try:
        with server.http(base_url=server.root_url) as c:
            for path in ("/", "/console", "/console/api/config", "/console/download/x"):
                assert_error(c.get(path), 404, f"Invalid URL (GET {path})")
            assert "content-security-policy" not in c.get("/").headers
    finally:
        server.stop()


def test_serve_flags_turn_the_console_off(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--no-console").start()
    try:
        assert httpx.get(server.root_url + "/").status_code == 404
    finally:
        server.stop()
    server = ServerProcess(tmp_path / "data2").start()  # loopback: on
    try:
        response = httpx.get(server.root_url + "/")
        assert response.status_code == 200
        assert_guarded(response)
    finally:
        server.stop()


# -- config --


def test_config_needs_no_key_and_says_the_limits(tmp_path: Path) -> None:
    env = {
        "OPENAI_FILES_CONSOLE_UPLOAD_THRESHOLD_BYTES": "8388608",
        "OPENAI_FILES_MAX_FILE_BYTES": "1000000",
        "OPENAI_FILES_MAX_PART_BYTES": "2000000",
        "OPENAI_FILES_MAX_UPLOAD_BYTES": "3000000",
    }
    server = AppServer(tmp_path / "data", env).start()
    try:
        with server.http(base_url=server.root_url) as c:
            response = c.get("/console/api/config")
    finally:
        server.stop()
    assert response.status_code == 200
    assert_guarded(response)
    assert response.json() == {
        "upload_threshold_bytes": 8388608,
        "part_bytes": 2000000,
        "max_file_bytes": 1000000,
        "max_upload_bytes": 3000000,
        "purposes": ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"],
    }


def test_config_defaults(root: httpx.Client) -> None:
    body = root.get("/console/api/config").json()
    assert body["upload_threshold_bytes"] == 64 * 1024 * 1024
    assert body["part_bytes"] == 64 * 1024 * 1024
