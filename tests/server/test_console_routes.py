"""The web console's server side: its static files and their caching, the security headers
on every console answer, the on/off setting, and the console API (config, usage, download
links) with its auth and tenant rules, on both deployments where the stores matter."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from openai_files.server.auth import hash_key
from openai_files.server.console.assets import STATIC_DIR, StaticFiles
from openai_files.server.console.links import LINK_SECONDS, SECRET_NAME, sign_link
from openai_files.server.errors import NotFound
from openai_files.server.ids import FILE_ID
from openai_files.server.settings import Settings
from openai_files.server.stores import KeyRecord, MetadataStore

from .._inprocess import AppServer
from .._server import Deployment, ServerProcess
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
        "/console/assets/{hash}/..%2fconsole%2froutes.py",
        "/console/nothing",
    ],
)
def test_unknown_hash_name_or_traversal_is_a_404(root: httpx.Client, path: str) -> None:
    path = path.replace("{hash}", StaticFiles(STATIC_DIR).hash)
    response = root.get(httpx.URL(path))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert_guarded(response)


def test_only_files_of_the_folder_are_assets(tmp_path: Path) -> None:
    folder = tmp_path / "static"
    (folder / "js").mkdir(parents=True)
    (folder / "index.html").write_text("__ASSETS__/js/a.js")
    (folder / "js" / "a.js").write_text("export {};\n")
    (folder / ".hidden").write_text("no")
    (tmp_path / "secret.txt").write_text("no")
    files = StaticFiles(folder)
    assert set(files.assets) == {"js/a.js"}
    assert files.asset(files.hash, "js/a.js").body == b"export {};\n"
    for name in ("../secret.txt", "js/../../secret.txt", "/etc/passwd", ".hidden", "index.html"):
        with pytest.raises(NotFound):
            files.asset(files.hash, name)


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
        "OPENAI_FILES_MAX_UPLOADS_PER_KEY": "3",
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
        "no_download_purposes": ["assistants", "user_data"],
        "file_id_pattern": FILE_ID.pattern,
        "list_limit_max": 10000,
        "page_files": 100,
        "search_matches_max": 1000,
        "preview_bytes": 65536,
        "preview_lines": 20,
        "preview_image_max_bytes": 20 * 1024 * 1024,
        # Parts first, files within what is left of the 3 uploads a key may stream at once.
        "parallel_files": 1,
        "parallel_parts": 3,
        "part_attempts": 4,
        "parallel_deletes": 4,
        # No engine: the batches view says batches do not run here.
        "runs_batches": False,
        "page_batches": 20,
        "batch_poll_seconds": 2.0,
        # The administration view: how an admin key begins, its tables' page, its names.
        "admin_key_prefix": "sk-admin-",
        "page_admin": 20,
        "admin_list_limit_max": 100,
        "admin_name_max_chars": 256,
        # The audit log's filter: the event types this server records, OpenAI's then ours.
        "audit_event_types": [
            "api_key.created",
            "api_key.deleted",
            "project.created",
            "project.updated",
            "project.archived",
            "service_account.created",
            "service_account.deleted",
            "file.created",
            "file.deleted",
            "file.downloaded",
            "upload.created",
            "upload.completed",
            "upload.cancelled",
            "batch.created",
            "batch.cancelled",
        ],
        "audit_projects_max": 1000,
    }


def test_config_defaults(root: httpx.Client) -> None:
    body = root.get("/console/api/config").json()
    assert body["upload_threshold_bytes"] == 64 * 1024 * 1024
    assert body["part_bytes"] == 64 * 1024 * 1024
    assert (body["parallel_files"], body["parallel_parts"]) == (2, 4)


def test_config_says_batches_run_when_an_engine_is_set(tmp_path: Path) -> None:
    # Nothing listens there: the config only says an engine is set, it does not call it.
    env = {"OPENAI_FILES_BATCH_UPSTREAM_URL": "http://127.0.0.1:9/v1"}
    server = AppServer(tmp_path / "data", env).start()
    try:
        with server.http(base_url=server.root_url) as c:
            body = c.get("/console/api/config").json()
    finally:
        server.stop()
    assert body["runs_batches"] is True
    assert body["page_batches"] == 20 and body["batch_poll_seconds"] == 2.0


def test_config_says_no_purpose_is_refused_when_the_server_serves_all(tmp_path: Path) -> None:
    env = {"OPENAI_FILES_ALLOW_DOWNLOAD_ALL_PURPOSES": "true"}
    server = AppServer(tmp_path / "data", env).start()
    try:
        with server.http(base_url=server.root_url) as c:
            assert c.get("/console/api/config").json()["no_download_purposes"] == []
    finally:
        server.stop()


# -- usage and download links, on both deployments --

INVALID = re.compile(
    r"This download link is invalid or has expired .*Ask the console for a new one\."
)


@pytest.fixture(scope="module")
def console(deployment: Deployment) -> Iterator[AppServer]:
    """The app of the deployment under test (fresh stores), console on."""
    server = deployment.app()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant(console: AppServer) -> Callable[..., str]:
    """A key of a fresh organization and project (or of the ones given)."""

    def make(org: str | None = None, project: str | None = None) -> str:
        suffix = uuid.uuid4().hex[:10]
        return console.create_key(org or f"org-{suffix}", project or f"proj_{suffix}")

    return make


def _meta(server: AppServer) -> MetadataStore:
    meta: MetadataStore = server.app.state.service.meta
    return meta


def key_record(server: AppServer, key: str) -> KeyRecord:
    record = server.portal.call(_meta(server).find_api_key, hash_key(key))
    assert record is not None
    return record


def upload(http: httpx.Client, name: str, data: bytes, purpose: str = "vision") -> str:
    response = http.post("/files", files={"file": (name, data)}, data={"purpose": purpose})
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def link(http: httpx.Client, file_id: str) -> httpx.Response:
    return http.post("/console/api/download-links", json={"file_id": file_id})


def console_api(server: AppServer, key: str | None) -> httpx.Client:
    """A client of the server's root, as `key` (none: no Authorization header)."""
    return server.http(key, base_url=server.root_url)


def test_usage_needs_a_key(console: AppServer) -> None:
    with console_api(console, None) as c:
        response = c.get("/console/api/usage")
        error = assert_error(response, 401, re.compile(r"You didn't provide an API key\..*"))
        assert error["code"] is None
        assert_guarded(response)
    with console_api(console, "sk-wrong") as c:
        assert c.get("/console/api/usage").status_code == 401


def test_organization_names_an_admin_keys_organization_and_refuses_other_keys(
    console: AppServer, tenant: Callable[..., str]
) -> None:
    org = f"org-{uuid.uuid4().hex[:10]}"
    admin_key = console.create_admin_key(org)
    with console_api(console, admin_key) as c:
        response = c.get("/console/api/organization")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        assert_guarded(response)
        body = response.json()
        with console.http(admin_key) as v1:
            (listed,) = v1.get("/organization/admin_api_keys").json()["data"]
        assert body == {
            "object": "console.organization",
            "organization": org,
            "admin_key_id": listed["id"],
        }
        # An admin key still reads no file, on the console's routes neither.
        assert c.get("/console/api/usage").status_code == 401
    # A project's key is refused as on the Administration API; no key, or a wrong one, 401.
    with console_api(console, tenant(org, "proj_a")) as c:
        assert_error(
            c.get("/console/api/organization"),
            403,
            re.compile(r"You have insufficient permissions for this operation\. Missing "
                       r"scopes: api\.management\.read\. .*"),
        )  # fmt: skip
    for key in (None, "sk-admin-" + "x" * 43):
        with console_api(console, key) as c:
            assert c.get("/console/api/organization").status_code == 401
    with console.http(admin_key) as v1:
        assert v1.delete(f"/organization/admin_api_keys/{body['admin_key_id']}").status_code == 200
    with console_api(console, admin_key) as c:
        assert_error(
            c.get("/console/api/organization"),
            401,
            re.compile(r"Incorrect API key provided: .*"),
            code="invalid_api_key",
        )


def test_usage_counts_files_and_reservations_of_the_organization(
    console: AppServer, tenant: Callable[..., str]
) -> None:
    org = f"org-{uuid.uuid4().hex[:10]}"
    key = tenant(org, "proj_a")
    neighbour = tenant(org, "proj_b")  # same organization, another project
    stranger = tenant()
    with console_api(console, key) as c:
        body = c.get("/console/api/usage").json()
        assert body == {
            "object": "console.usage",
            "organization": org,
            "project": "proj_a",
            "bytes_used": 0,
            "quota_bytes": console.settings.org_quota_bytes,
            "pending_uploads": 0,
        }
        with console.http(key) as v1:
            upload(v1, "a.png", b"x" * 1000)
            made = v1.post(
                "/uploads",
                json={"filename": "big.png", "purpose": "vision", "bytes": 5000,
                      "mime_type": "image/png"},
            )  # fmt: skip
            assert made.status_code == 200, made.text
        response = c.get("/console/api/usage")
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["openai-organization"] == org
        assert_guarded(response)
        body = response.json()
        # The file's bytes and the upload's reservation: what the quota counts.
        assert (body["bytes_used"], body["pending_uploads"]) == (6000, 1)
        # A mismatched organization header is refused, as on /v1.
        refused = c.get("/console/api/usage", headers={"OpenAI-Organization": "org-other"})
        assert_error(
            refused,
            401,
            "OpenAI-Organization header should match organization for API key",
            code="mismatched_organization",
        )
        with console.http(key) as v1:
            assert v1.post(f"/uploads/{made.json()['id']}/cancel").status_code == 200
        body = c.get("/console/api/usage").json()
        assert (body["bytes_used"], body["pending_uploads"]) == (1000, 0)
    with console_api(console, neighbour) as c:
        body = c.get("/console/api/usage").json()
        # The organization's bytes; the project's own pending uploads.
        assert (body["organization"], body["project"]) == (org, "proj_b")
        assert (body["bytes_used"], body["pending_uploads"]) == (1000, 0)
    with console_api(console, stranger) as c:
        body = c.get("/console/api/usage").json()
        assert body["organization"] != org
        assert (body["bytes_used"], body["pending_uploads"]) == (0, 0)


def test_a_download_link_streams_the_file_without_the_key(
    console: AppServer, tenant: Callable[..., str]
) -> None:
    key = tenant()
    data = bytes(range(256)) * 4000
    with console.http(key) as v1:
        file_id = upload(v1, "photo été.png", data)
    with console_api(console, key) as c:
        before = int(time.time())
        response = link(c, file_id)
        assert response.status_code == 200, response.text
        assert_guarded(response)
        assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert list(body) == ["object", "url", "expires_at"]
    assert body["object"] == "console.download_link"
    assert before + LINK_SECONDS <= body["expires_at"] <= int(time.time()) + LINK_SECONDS
    url = body["url"]
    assert url.startswith("/console/download/")
    assert key not in url and key_record(console, key).key_hash not in url
    with console_api(console, None) as anonymous:
        got = anonymous.get(url)
        assert got.status_code == 200
        assert got.content == data
        assert got.headers["content-disposition"] == (
            "attachment; filename=\"photo _t_.png\"; filename*=UTF-8''"
            + quote("photo été.png", safe="")
        )
        assert got.headers["content-length"] == str(len(data))
        assert got.headers["openai-organization"] == key_record(console, key).org_id
        assert_guarded(got)
        # A range, as the content route serves one (a browser resuming a download).
        part = anonymous.get(url, headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == data[10:20]
        # A link is not one use only: it works until it expires.
        assert anonymous.get(url).content == data
        # Under another path (a doubled slash, a proxy's prefix) it is a 404, and logged
        # without its signature all the same.
        assert anonymous.get("/console/" + url).status_code == 404
    # The access log names the file, not a link one could use.
    token = url.removeprefix("/console/download/")
    log = console.log_text()
    assert token not in log
    assert token.rpartition(".")[2] not in log
    assert f"GET /console/download/{token.rpartition('.')[0]}.<signature> 200" in log
    assert f"GET /console//console/download/{token.rpartition('.')[0]}.<signature> 404" in log


def test_a_link_needs_a_key_and_a_file_the_key_sees(
    console: AppServer, tenant: Callable[..., str]
) -> None:
    owner, stranger = tenant(), tenant()
    with console.http(owner) as v1:
        file_id = upload(v1, "a.png", b"abc")
        private = upload(v1, "notes.txt", b"secret", purpose="assistants")
    with console_api(console, None) as c:
        assert_error(link(c, file_id), 401, re.compile(r"You didn't provide an API key\..*"))
    with console_api(console, stranger) as c:
        # Another tenant's file is missing, as on /v1.
        assert_error(link(c, file_id), 404, f"No such File object: {file_id}", param="id")
        assert_error(link(c, "file-nope"), 404, "No such File object: file-nope", param="id")
        assert_error(link(c, "../x"), 404, "No such File object: ../x", param="id")
    with console_api(console, owner) as c:
        assert_error(link(c, private), 400, "Not allowed to download files of purpose: assistants")
        assert_error(
            c.post("/console/api/download-links", json={}),
            400,
            "Missing required parameter: 'file_id'.",
            param="file_id",
        )
        assert_error(
            c.post("/console/api/download-links", json={"file_id": 7}),
            400,
            "Invalid type for 'file_id': expected a string, but got an integer instead.",
            param="file_id",
        )
        assert_error(
            c.post("/console/api/download-links", json={"file_id": file_id, "zzz": 1}),
            400,
            "Unknown parameter: 'zzz'.",
            param="zzz",
        )
        bad_json = c.post("/console/api/download-links", content=b"{", headers={
            "content-type": "application/json"})  # fmt: skip
        assert bad_json.status_code == 400


def _link_url(console: AppServer, key: str, file_id: str) -> str:
    with console_api(console, key) as c:
        response = link(c, file_id)
    assert response.status_code == 200, response.text
    url: str = response.json()["url"]
    return url


def test_a_tampered_or_made_up_link_is_refused(
    console: AppServer, tenant: Callable[..., str]
) -> None:
    key = tenant()
    with console.http(key) as v1:
        file_id = upload(v1, "a.png", b"abc")
        other_id = upload(v1, "b.png", b"def")
    token = _link_url(console, key, file_id).removeprefix("/console/download/")
    fid, key_id, expiry, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    forged = [
        f"{fid}.{key_id}.{expiry}.{flipped}",  # another signature
        f"{other_id}.{key_id}.{expiry}.{signature}",  # another file
        f"{fid}.{key_id}.{int(expiry) + 3600}.{signature}",  # a later expiry
        f"{fid}.{key_id}.{expiry}",  # no signature
        f"{fid}.{key_id}.{expiry}.{signature}.x",
        "nothing",
        "%00",
    ]
    with console_api(console, None) as c:
        for bad in forged:
            response = c.get(f"/console/download/{bad}")
            assert_error(response, 403, INVALID, code="invalid_download_link")
            assert_guarded(response)
        # The key is no credential here, and no token is no route.
        with_key = c.get(f"/console/download/{flipped}", headers={"Authorization": f"Bearer {key}"})
        assert with_key.status_code == 403
        assert c.get("/console/download/").status_code == 404


def test_an_expired_link_is_refused(console: AppServer, tenant: Callable[..., str]) -> None:
    key = tenant()
    with console.http(key) as v1:
        file_id = upload(v1, "a.png", b"abc")
    url = _link_url(console, key, file_id)
    links = console.app.state.console_links
    with console_api(console, None) as c:
        assert c.get(url).status_code == 200
        # The server's clock a minute on: the link has expired.
        links.clock = lambda: time.time() + LINK_SECONDS
        try:
            assert_error(c.get(url), 403, INVALID, code="invalid_download_link")
        finally:
            links.clock = time.time
        # A token signed with the deployment's own secret, but with a past expiry.
        secret = console.portal.call(_meta(console).server_secret, SECRET_NAME, "unused", 0)
        past = sign_link(
            secret.encode(), file_id, key_record(console, key).id, int(time.time()) - 1
        )
        assert_error(c.get(f"/console/download/{past}"), 403, INVALID, code="invalid_download_link")
        fresh = sign_link(
            secret.encode(), file_id, key_record(console, key).id, int(time.time()) + 30
        )
        assert c.get(f"/console/download/{fresh}").content == b"abc"


def test_a_revoked_key_kills_its_links(console: AppServer, tenant: Callable[..., str]) -> None:
    key, other = tenant(), tenant()
    with console.http(key) as v1:
        file_id = upload(v1, "a.png", b"abc")
    url = _link_url(console, key, file_id)
    with console.http(other) as v1:
        other_url = _link_url(console, other, upload(v1, "b.png", b"def"))
    assert console.portal.call(_meta(console).revoke_api_key, key_record(console, key).id, 1)
    with console_api(console, None) as c:
        response = c.get(url)
        assert_error(
            response,
            403,
            "The API key that made this download link was revoked. Open the console with an "
            "active key and download the file again.",
            code="invalid_download_link",
        )
        assert c.get(other_url).content == b"def"  # another key's links still work


def test_a_deleted_file_kills_its_links(console: AppServer, tenant: Callable[..., str]) -> None:
    key = tenant()
    with console.http(key) as v1:
        file_id = upload(v1, "a.png", b"abc")
        url = _link_url(console, key, file_id)
        assert v1.delete(f"/files/{file_id}").status_code == 200
    with console_api(console, None) as c:
        assert_error(c.get(url), 404, f"No such File object: {file_id}", param="id")


def test_a_link_made_by_one_server_works_on_another(deployment: Deployment, tmp_path: Path) -> None:
    """Replicas share the signing secret through the database (scale-out: two apps on one
    PostgreSQL and S3 at once); the embedded server keeps it across a restart."""
    first = deployment.app()
    try:
        key = first.create_key("org-replicas", "proj_replicas")
        with first.http(key) as v1:
            file_id = upload(v1, "a.png", b"shared bytes")
        url = _link_url(first, key, file_id)
        if deployment.name == "scaleout":
            second = AppServer(tmp_path / "second", first.env).start()
        else:
            first.stop()
            second = AppServer(first.data_dir, first.env).start()
        try:
            with console_api(second, None) as c:
                got = c.get(url)
                assert got.status_code == 200, got.text
                assert got.content == b"shared bytes"
        finally:
            second.stop()
    finally:
        if deployment.name == "scaleout":
            first.stop()


def test_a_link_secret_setting_is_needed_to_sign_and_check_links(tmp_path: Path) -> None:
    """With --console-link-secret, the database's secret alone neither makes nor checks a
    link: a server with another setting, or none, refuses the link."""
    data = tmp_path / "data"
    first = AppServer(data, {"OPENAI_FILES_CONSOLE_LINK_SECRET": "one"}).start()
    try:
        key = first.create_key("org-secret", "proj_secret")
        with first.http(key) as v1:
            file_id = upload(v1, "a.png", b"bytes")
        url = _link_url(first, key, file_id)
    finally:
        first.stop()
    for env, status in (
        ({"OPENAI_FILES_CONSOLE_LINK_SECRET": "two"}, 403),
        ({"OPENAI_FILES_CONSOLE_LINK_SECRET": ""}, 403),
        ({"OPENAI_FILES_CONSOLE_LINK_SECRET": "one"}, 200),
    ):
        again = AppServer(data, env).start()
        try:
            with console_api(again, None) as c:
                assert c.get(url).status_code == status, env
        finally:
            again.stop()
