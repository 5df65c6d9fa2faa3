"""Every row of docs/api.md's error table, through one assertion helper."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from .._inprocess import AppServer
from .._server import Deployment, openai_files_cli
from ._contract import assert_error

ALLOWED = "['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals']"
MISSING = "file-qvrjsmEk7yPElJzMOegsf0xf"


@pytest.fixture
def http(server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    with server.http(api_key) as c:
        yield c


@pytest.fixture(scope="module")
def small(deployment: Deployment) -> Iterator[AppServer]:
    """An app with tiny limits: 1000 bytes a file, 300 a batch file, 2500 an organization."""
    app = deployment.app(
        env={
            "OPENAI_FILES_MAX_FILE_BYTES": "1000",
            "OPENAI_FILES_MAX_BATCH_FILE_BYTES": "300",
            "OPENAI_FILES_ORG_QUOTA_BYTES": "2500",
        },
    )
    try:
        yield app
    finally:
        app.stop()


def _upload(
    http: httpx.Client, name: str, content: bytes, auth: tuple[str, str] | None = None, **data: str
) -> httpx.Response:
    return http.post(
        "/files",
        files={"file": (name, content)},
        data=data,
        auth=httpx.USE_CLIENT_DEFAULT if auth is None else auth,
    )


def test_unknown_file_is_404_on_every_route(http: httpx.Client) -> None:
    expected = f"No such File object: {MISSING}"
    assert_error(http.get(f"/files/{MISSING}"), 404, expected, param="id")
    assert_error(http.delete(f"/files/{MISSING}"), 404, expected, param="id")
    assert_error(http.get(f"/files/{MISSING}/content"), 404, expected, param="id")


@pytest.mark.parametrize("purpose", ["assistants", "user_data"])
def test_download_refused_for_purpose(http: httpx.Client, purpose: str) -> None:
    file_id = _upload(http, "a.txt", b"x", purpose=purpose).json()["id"]
    assert_error(
        http.get(f"/files/{file_id}/content"),
        400,
        f"Not allowed to download files of purpose: {purpose}",
    )


def test_download_allowed_by_setting(deployment: Deployment) -> None:
    app = deployment.app(env={"OPENAI_FILES_ALLOW_DOWNLOAD_ALL_PURPOSES": "true"})
    try:
        with app.http(app.create_key("org-all", "proj_all")) as c:
            file_id = _upload(c, "a.txt", b"mine", purpose="assistants").json()["id"]
            assert c.get(f"/files/{file_id}/content").content == b"mine"
    finally:
        app.stop()


def test_no_api_key(server: AppServer) -> None:
    with server.http() as c:
        for response in (c.get("/files"), c.post("/files"), c.get(f"/files/{MISSING}")):
            assert_error(
                response,
                401,
                re.compile(
                    r"You didn't provide an API key\. You need to provide your API key .+ "
                    r"Create a key on this server with `openai-files keys create` .+"
                ),
            )
        assert_error(
            c.get("/files", headers={"Authorization": "Token abc"}),
            401,
            re.compile(r"You didn't provide an API key\..+"),
        )


BASIC_HINT = re.escape(
    "With Basic auth, send the API key as the password and a blank user name "
    '(i.e. curl -u ":YOUR_KEY").'
)


def _basic(credentials: bytes) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(credentials).decode()}


def test_basic_auth_takes_the_key_as_password(server: AppServer, api_key: str) -> None:
    # As the 401 says (and OpenAI does): the key as the password, with a blank user name.
    with server.http() as c:
        file_id = _upload(c, "a.txt", b"x", purpose="evals", auth=("", api_key)).json()["id"]
        assert c.get("/files", auth=("", api_key)).json()["data"][0]["id"] == file_id
        # A browser's prompt may be given any user name: the password is the key.
        assert c.get(f"/files/{file_id}", auth=("me", api_key)).status_code == 200
        assert_error(
            c.get("/files", auth=("", "sk-abc1" + "x" * 40 + "wxyz")),
            401,
            re.compile(r"Incorrect API key provided: sk-abc1\*\*\*\*wxyz\. .+"),
            code="invalid_api_key",
        )


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param(
            "Basic !!not-base64!!",
            r"Invalid Authorization header: the Basic credentials are not base64 of UTF-8 "
            r"'user:password'\. " + BASIC_HINT,
            id="not-base64",
        ),
        pytest.param(
            "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
            r"Invalid Authorization header: the Basic credentials are not base64 .+",
            id="not-utf8",
        ),
        pytest.param(
            _basic(b"no-colon")["Authorization"],
            r"Invalid Authorization header: the Basic credentials hold no ':'\. " + BASIC_HINT,
            id="no-colon",
        ),
        pytest.param(
            _basic(b"sk-in-the-user-name:")["Authorization"],
            r"You didn't provide an API key: the Basic auth password is blank\. " + BASIC_HINT,
            id="key-as-user-name",
        ),
        pytest.param(
            _basic(b":")["Authorization"], r"You didn't provide an API key\. .+", id="blank"
        ),
    ],
)
def test_basic_auth_refused_clearly(server: AppServer, authorization: str, expected: str) -> None:
    with server.http() as c:
        error = assert_error(
            c.get("/files", headers={"Authorization": authorization}), 401, re.compile(expected)
        )
    assert "sk-in-the-user-name" not in error["message"]


def test_curl_basic_auth(deployment: Deployment) -> None:
    # `curl -u ":$KEY"`, as the 401 offers it, against a real server.
    server = deployment.server()
    try:
        api_key = server.create_key("org-basic", "proj_basic")
        done = subprocess.run(
            ["curl", "-sS", "-u", f":{api_key}", f"{server.base_url}/files"],
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_wrong_key_is_masked(server: AppServer) -> None:
    bad = "sk-abc1" + "x" * 40 + "wxyz"
    with server.http() as c:
        error = assert_error(
            c.get("/files", headers={"Authorization": f"Bearer {bad}"}),
            401,
            "Incorrect API key provided: sk-abc1****wxyz. Create a key on this server with "
            "`openai-files keys create` (see `openai-files keys --help`).",
            code="invalid_api_key",
        )
    assert bad not in error["message"]
    assert bad not in server.log_text()


def test_revoked_key(server: AppServer, new_key: Callable[..., str]) -> None:
    key = new_key()
    with server.http(key) as c:
        assert c.get("/files").status_code == 200
        listed = openai_files_cli(
            "keys", "list", "--json", "--data-dir", str(server.data_dir), env=server.env
        )
        assert key not in listed.stdout
        records = json.loads(listed.stdout)
        key_id = next(r["id"] for r in records if r["hint"] == f"{key[:7]}****{key[-4:]}")
        done = openai_files_cli(
            "keys", "revoke", key_id, "--data-dir", str(server.data_dir), env=server.env
        )
        assert done.returncode == 0, done.stderr
        # A checked key is trusted for --key-cache-seconds (1 s by default), no longer.
        revoked_at = time.monotonic()
        while c.get("/files").status_code == 200:
            assert time.monotonic() - revoked_at < 1.5, "the revoked key still works"
            time.sleep(0.05)
        assert_error(
            c.get("/files"),
            401,
            re.compile(r"Incorrect API key provided: sk-\S{4}\*\*\*\*\S{4}\. .+"),
            code="invalid_api_key",
        )


def test_purpose_missing(http: httpx.Client) -> None:
    assert_error(
        http.post("/files", files={"file": ("a.txt", b"x")}),
        400,
        "'purpose' is a required property",
        param="purpose",
    )


@pytest.mark.parametrize(
    "purpose", ["assistants_output", "batch_output", "fine-tune-results", "x", "ASSISTANTS"]
)
def test_purpose_not_allowed(http: httpx.Client, purpose: str) -> None:
    assert_error(
        _upload(http, "a.jsonl", b"{}\n", purpose=purpose),
        400,
        f"'{purpose}' is not one of {ALLOWED} - 'purpose'",
        param="purpose",
    )
    assert http.get("/files").json()["data"] == []


def test_file_missing(http: httpx.Client) -> None:
    assert_error(
        http.post("/files", data={"purpose": "assistants"}, files={"other": ("x", b"")}),
        400,
        "'file' is a required property",
        param="file",
    )


@pytest.mark.parametrize(
    ("purpose", "api"), [("fine-tune", "Fine-Tuning API"), ("batch", "Batch API")]
)
def test_jsonl_required(http: httpx.Client, purpose: str, api: str) -> None:
    assert_error(
        _upload(http, "data.json", b"{}", purpose=purpose),
        400,
        f"Invalid file format for {api}. Must be .jsonl",
        param="file",
    )


def test_fields_in_any_order(http: httpx.Client) -> None:
    # purpose after the file part, as `curl -F file=@x -F purpose=batch` sends it
    boundary = "XyZ"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.jsonl"\r\n'
        "Content-Type: application/jsonl\r\n\r\n{}\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f"--{boundary}--\r\n"
    ).encode()
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    r = http.post("/files", content=body, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["purpose"] == "batch"
    bad = body.replace(b"\r\nbatch\r\n", b"\r\nbatch_output\r\n")
    assert_error(
        http.post("/files", content=bad, headers=headers),
        400,
        f"'batch_output' is not one of {ALLOWED} - 'purpose'",
        param="purpose",
    )
    wrong_name = body.replace(b"in.jsonl", b"in.txt")
    assert_error(
        http.post("/files", content=wrong_name, headers=headers),
        400,
        "Invalid file format for Batch API. Must be .jsonl",
        param="file",
    )
    assert [f["id"] for f in http.get("/files").json()["data"]] == [r.json()["id"]]


def test_not_multipart(http: httpx.Client) -> None:
    assert_error(
        http.post("/files", json={"purpose": "batch"}),
        400,
        re.compile(r"Invalid Content-Type header .+, expected multipart/form-data\."),
    )


def test_file_too_large(small: AppServer, deployment: Deployment) -> None:
    with small.http(small.create_key("org-big", "proj_big")) as c:
        assert _upload(c, "ok.bin", b"x" * 1000, purpose="vision").status_code == 200
        assert_error(
            _upload(c, "big.bin", b"x" * 1001, purpose="vision"),
            413,
            "File is too large. The maximum size is 1000 bytes.",
            param="file",
            code="file_too_large",
        )
        assert_error(
            _upload(c, "big.jsonl", b"x" * 301, purpose="batch"),
            413,
            "Batch file is too large. The maximum size is 300 bytes.",
            param="file",
            code="file_too_large",
        )
        assert len(c.get("/files").json()["data"]) == 1
    if deployment.name == "embedded":
        assert list((small.data_dir / "tmp").iterdir()) == []


def test_storage_limit(small: AppServer) -> None:
    headers = {"Authorization": f"Bearer {small.create_key('org-quota', 'proj_q')}"}
    other = {"Authorization": f"Bearer {small.create_key('org-quota', 'proj_other')}"}
    with small.http() as c:
        for _ in range(2):
            r = c.post(
                "/files",
                headers=headers,
                files={"file": ("a", b"x" * 1000)},
                data={"purpose": "vision"},
            )
            assert r.status_code == 200
        # The quota is the organization's: another project of it shares it.
        error = assert_error(
            c.post(
                "/files",
                headers=other,
                files={"file": ("a", b"x" * 600)},
                data={"purpose": "vision"},
            ),
            400,
            re.compile(
                r"Organization storage limit exceeded: 2000 bytes used or reserved, "
                r"\d+ more requested, 2500 bytes allowed\."
            ),
            param="file",
            code="storage_limit_exceeded",
        )
        assert "2500" in error["message"]
        ok = c.post(
            "/files", headers=other, files={"file": ("a", b"x" * 400)}, data={"purpose": "vision"}
        )
        assert ok.status_code == 200, ok.text


@pytest.mark.parametrize(
    ("params", "message", "param"),
    [
        (
            {"limit": "0"},
            "Invalid 'limit': expected an integer between 1 and 10000, got '0'.",
            "limit",
        ),
        (
            {"limit": "abc"},
            "Invalid 'limit': expected an integer between 1 and 10000, got 'abc'.",
            "limit",
        ),
        (
            {"order": "up"},
            "Invalid value for 'order': 'up'. Supported values are: 'asc' and 'desc'.",
            "order",
        ),
    ],
)
def test_bad_list_params(
    http: httpx.Client, params: dict[str, str], message: str, param: str
) -> None:
    assert_error(http.get("/files", params=params), 400, message, param=param)


@pytest.mark.parametrize(
    ("fields", "message", "param"),
    [
        (
            {"expires_after[anchor]": "created_at", "expires_after[seconds]": "3599"},
            "Invalid 'expires_after[seconds]': expected an integer between 3600 and 2592000, "
            "got '3599'.",
            "expires_after[seconds]",
        ),
        (
            {"expires_after[anchor]": "created_at", "expires_after[seconds]": "2592001"},
            "Invalid 'expires_after[seconds]': expected an integer between 3600 and 2592000, "
            "got '2592001'.",
            "expires_after[seconds]",
        ),
        (
            {"expires_after[anchor]": "created_at"},
            "Invalid 'expires_after[seconds]': expected an integer between 3600 and 2592000, "
            "got None.",
            "expires_after[seconds]",
        ),
        (
            {"expires_after[anchor]": "last_used", "expires_after[seconds]": "3600"},
            "Invalid value for 'expires_after[anchor]': 'last_used'. Supported values are: "
            "'created_at'.",
            "expires_after[anchor]",
        ),
        (
            {"expires_after[seconds]": "3600"},
            "Missing required parameter: 'expires_after[anchor]'.",
            "expires_after[anchor]",
        ),
    ],
)
def test_bad_expires_after(
    http: httpx.Client, fields: dict[str, str], message: str, param: str
) -> None:
    assert_error(
        http.post(
            "/files", files={"file": ("a.txt", b"x")}, data={"purpose": "user_data", **fields}
        ),
        400,
        message,
        param=param,
    )
    assert http.get("/files").json()["data"] == []


def test_after_names_no_file_of_the_caller(http: httpx.Client) -> None:
    assert_error(
        http.get("/files", params={"after": MISSING}),
        400,
        f"No such File object: {MISSING}",
        param="after",
    )


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/nothing"),
        ("POST", "/v1/files/file-abc"),
        ("PUT", "/v1/files"),
        ("GET", "/index.html"),
        ("PATCH", "/v1/files/file-abc/content"),
        ("GET", "/v1/files/"),
        ("DELETE", "/v1/files/"),
    ],
)
def test_unknown_routes(server: AppServer, method: str, path: str) -> None:
    with server.http(base_url=server.root_url) as c:
        assert_error(c.request(method, path), 404, f"Invalid URL ({method} {path})")


def test_internal_error_is_generic(tmp_path: Path) -> None:
    # Not per deployment: the fault (a removed temp folder) is one the local store has.
    app = AppServer(tmp_path / "data").start()
    try:
        key = app.create_key("org-fault", "proj_fault")
        shutil.rmtree(app.data_dir / "tmp")
        with app.http(key) as c:
            error = assert_error(
                _upload(c, "a.bin", b"x", purpose="vision"),
                500,
                re.compile(r"The server had an error while processing your request\..*"),
                error_type="server_error",
            )
            assert c.get("/files").json()["data"] == []
    finally:
        app.stop()
    assert str(app.data_dir) not in error["message"]
    assert "Traceback" not in error["message"]
    assert "Traceback" in app.log_text()  # the server's log keeps the details


def test_form_fields_are_bounded(http: httpx.Client) -> None:
    fields = {f"extra{i}": "v" * 1000 for i in range(100)}  # 100 kB of unknown fields
    assert_error(
        http.post("/files", data={"purpose": "vision", **fields}, files={"file": ("a", b"x")}),
        400,
        "The form fields other than 'file' are too large together (at most 65536 bytes).",
    )
    few = {f"extra{i}": "v" for i in range(10)}  # unknown fields are ignored
    ok = http.post("/files", data={"purpose": "vision", **few}, files={"file": ("a", b"x")})
    assert ok.status_code == 200, ok.text


def test_bytes_gone_under_a_row_is_a_404(tmp_path: Path) -> None:
    # A download that races a delete: the row was read, then the bytes went away.
    app = AppServer(tmp_path / "data").start()
    try:
        with app.http(app.create_key("org-gone", "proj_gone")) as c:
            file_id = _upload(c, "a.bin", b"x", purpose="vision").json()["id"]
            (app.data_dir / "blobs" / file_id[-2:] / file_id).unlink()
            assert_error(
                c.get(f"/files/{file_id}/content"),
                404,
                f"No such File object: {file_id}",
                param="id",
            )
    finally:
        app.stop()
