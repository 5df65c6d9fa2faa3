"""The real `openai-files serve` under each `--http-server`, uvicorn and granian, on the
embedded deployment (SQLite + a local folder): files, the Uploads API, Range requests,
errors and connections, through a socket.

tests/api runs the app in the test process, with no HTTP server; these are the API tests
that go through each HTTP server (docs/deploy.md, "The HTTP server", says what they cover).
The connection bounds that differ under granian are in tests/server/test_connections.py
(uvicorn) and docs/deploy.md's table."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection
from pathlib import Path

import httpx
import openai
import pytest

from .._server import ServerProcess
from ..api._contract import assert_error, assert_schema
from ._util import PURPOSE, auth, no_such_file, upload

MiB = 1024 * 1024
HTTP_SERVERS = ("uvicorn", "granian")
MISSING = "file-" + "0" * 24


@pytest.fixture(scope="module", params=HTTP_SERVERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server a module under each HTTP server, with a fresh data folder."""
    proc = ServerProcess(
        tmp_path_factory.mktemp(request.param) / "data", "--http-server", request.param
    ).start()
    try:
        yield proc
    finally:
        proc.stop()
    assert "Traceback" not in proc.log_text(), proc.log_text()[-3000:]


@pytest.fixture
def key(server: ServerProcess) -> str:
    """A key of a fresh organization and project."""
    suffix = os.urandom(5).hex()
    return server.create_key(f"org-{suffix}", f"proj_{suffix}")


@pytest.fixture
def http(server: ServerProcess, key: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as client:
        yield client


@pytest.fixture
def sdk(server: ServerProcess, key: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        yield client


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- files --


def test_which_http_server_answers(server: ServerProcess, http: httpx.Client) -> None:
    """The module's server is the one it was started with: each names itself."""
    name = server.args[server.args.index("--http-server") + 1]
    answer = http.get("/files")
    assert answer.status_code == 200
    assert answer.headers["server"] == name


def test_files_round_trip_with_the_official_sdk(sdk: openai.OpenAI, tmp_path: Path) -> None:
    content = os.urandom(9 * MiB + 7)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    with path.open("rb") as fh:
        made = sdk.files.create(file=fh, purpose=PURPOSE)
    assert made.bytes == len(content) and made.filename == "data.bin"
    assert sdk.files.retrieve(made.id).bytes == len(content)
    assert [f.id for f in sdk.files.list()] == [made.id]
    raw = sdk.files.with_raw_response.content(made.id)
    assert raw.headers["content-length"] == str(len(content))
    assert raw.headers["x-request-id"].startswith("req_")
    assert _sha(raw.content) == _sha(content)
    assert sdk.files.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(made.id)
    assert list(sdk.files.list()) == []


def test_a_chunked_upload_and_its_download(server: ServerProcess, key: str) -> None:
    """A body with no Content-Length (chunked), stored whole."""
    content = os.urandom(3 * MiB + 1)
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        made = upload(client, key, content, "chunked.bin", chunked=True, purpose="vision")
        assert made.status_code == 200, made.text
        assert_schema("OpenAIFile", made.json())
        got = client.get(f"/files/{made.json()['id']}/content", headers=auth(key))
    assert got.status_code == 200 and _sha(got.content) == _sha(content)


# -- the Uploads API --


def test_uploads_api_parts_and_completion_with_md5(sdk: openai.OpenAI) -> None:
    parts = [os.urandom(MiB), os.urandom(MiB), os.urandom(12345)]
    content = b"".join(parts)
    made = sdk.uploads.create(
        bytes=len(content),
        filename="parts.bin",
        mime_type="application/octet-stream",
        purpose=PURPOSE,
    )
    assert made.status == "pending"
    # Parts sent out of order; their order is the one given at completion.
    ids = {i: sdk.uploads.parts.create(made.id, data=parts[i]).id for i in (2, 0, 1)}
    done = sdk.uploads.complete(
        made.id, part_ids=[ids[0], ids[1], ids[2]], md5=hashlib.md5(content).hexdigest()
    )
    assert done.status == "completed"
    assert done.file is not None and done.file.bytes == len(content)
    assert _sha(sdk.files.content(done.file.id).content) == _sha(content)


def test_uploads_api_cancel_and_a_wrong_md5(http: httpx.Client, sdk: openai.OpenAI) -> None:
    made = sdk.uploads.create(
        bytes=4, filename="x.bin", mime_type="application/octet-stream", purpose=PURPOSE
    )
    part = sdk.uploads.parts.create(made.id, data=b"abcd")
    wrong = http.post(f"/uploads/{made.id}/complete", json={"part_ids": [part.id], "md5": "0" * 32})
    assert_error(
        wrong,
        400,
        f"The md5 given ({'0' * 32}) does not match the md5 of the uploaded parts "
        f"({hashlib.md5(b'abcd').hexdigest()}): the upload stays pending; send the parts "
        "again or complete it with the right ones.",
        param="md5",
    )
    assert sdk.uploads.cancel(made.id).status == "cancelled"
    assert list(sdk.files.list()) == []


# -- Range, conditionals, HEAD --


def test_ranges_conditionals_and_head(http: httpx.Client, key: str) -> None:
    content = os.urandom(3 * MiB)
    made = upload(http, key, content, "r.bin").json()
    url = f"/files/{made['id']}/content"
    part = http.get(url, headers={"Range": "bytes=100-1048675"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1048675/{len(content)}"
    assert part.content == content[100:1048676]
    tail = http.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == content[-10:]
    opened = http.get(url, headers={"Range": f"bytes={len(content) - 5}-"})
    assert opened.status_code == 206 and opened.content == content[-5:]
    etag = part.headers["etag"]
    same = http.get(url, headers={"If-None-Match": etag})
    assert same.status_code == 304 and same.content == b""
    head = http.head(url)
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(content)) and head.content == b""
    whole = http.get(url)
    assert whole.status_code == 200 and whole.headers["etag"] == etag
    assert _sha(whole.content) == _sha(content)
    bad = http.get(url, headers={"Range": f"bytes={len(content)}-"})
    assert bad.status_code == 416
    assert bad.json()["error"]["type"] == "invalid_request_error"
    assert bad.headers["content-range"] == f"bytes */{len(content)}"


# -- errors: OpenAI's envelope from either server --


def test_errors_in_openais_envelope(server: ServerProcess, http: httpx.Client) -> None:
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        assert_error(anonymous.get("/files"), 401, re.compile(r"You didn't provide an API key\..+"))
        assert_error(
            anonymous.get("/files", headers={"Authorization": "Bearer sk-abc1" + "x" * 40}),
            401,
            re.compile(r"Incorrect API key provided: .+"),
            code="invalid_api_key",
        )
    expected = no_such_file(MISSING)
    assert_error(http.get(f"/files/{MISSING}"), 404, expected, param="id")
    assert_error(http.get(f"/files/{MISSING}/content"), 404, expected, param="id")
    assert_error(http.delete(f"/files/{MISSING}"), 404, expected, param="id")
    assert_error(
        http.post("/files", files={"file": ("a.txt", b"x")}),
        400,
        "'purpose' is a required property",
        param="purpose",
    )
    assert_error(
        http.post("/files", data={"purpose": PURPOSE}, files={"other": ("x", b"")}),
        400,
        "'file' is a required property",
        param="file",
    )
    assert_error(
        http.post("/files", content=b"x", headers={"content-type": "text/plain"}),
        400,
        "Invalid Content-Type header (text/plain), expected multipart/form-data.",
    )


def test_a_file_gone_from_the_folder_is_a_404(server: ServerProcess, http: httpx.Client) -> None:
    """The row is still there but the bytes are not: an error in OpenAI's envelope, not a
    cut connection (under granian the path is checked before it is handed over)."""
    key = http.headers["authorization"].removeprefix("Bearer ")
    made = upload(http, key, b"g" * 1001, "gone.bin").json()
    [blob] = [p for p in (server.data_dir / "blobs").rglob(made["id"]) if p.is_file()]
    blob.unlink()
    assert_error(
        http.get(f"/files/{made['id']}/content"), 404, no_such_file(made["id"]), param="id"
    )


# -- connections --


def test_requests_share_a_keep_alive_connection(server: ServerProcess, key: str) -> None:
    host, port = server.root_url.removeprefix("http://").rsplit(":", 1)
    conn = HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("GET", "/v1/files", headers=auth(key))
        first = conn.getresponse()
        assert first.status == 200 and first.read()
        sock = conn.sock
        for _ in range(10):
            conn.request("GET", "/v1/files", headers=auth(key))
            again = conn.getresponse()
            assert again.status == 200 and again.read()
            assert conn.sock is sock  # the same connection, not a new one
    finally:
        conn.close()


def test_concurrent_uploads_and_downloads(server: ServerProcess, key: str) -> None:
    def round_trip(i: int) -> None:
        content = os.urandom(MiB + i)
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            made = upload(client, key, content, f"c{i}.bin", chunked=i % 2 == 1)
            assert made.status_code == 200, made.text
            got = client.get(f"/files/{made.json()['id']}/content", headers=auth(key))
            assert got.status_code == 200 and _sha(got.content) == _sha(content)

    with ThreadPoolExecutor(12) as pool:
        list(pool.map(round_trip, range(12)))


def test_a_client_gone_mid_download_leaves_the_server_serving(
    server: ServerProcess, http: httpx.Client, key: str
) -> None:
    content = os.urandom(32 * MiB)
    made = upload(http, key, content, "big.bin").json()
    host, port = server.root_url.removeprefix("http://").rsplit(":", 1)
    for _ in range(3):
        with socket.create_connection((host, int(port)), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(
                f"GET /v1/files/{made['id']}/content HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {key}\r\n\r\n".encode()
            )
            assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        # closed, with most of the body unread
    whole = http.get(f"/files/{made['id']}/content")
    assert whole.status_code == 200 and _sha(whole.content) == _sha(content)
    # The four downloads' access lines are written, the last one whole; none is an error.
    line = re.compile(rf"GET /v1/files/{made['id']}/content 200 in=0 out=\d+ [^\n]*")
    deadline = time.monotonic() + 30
    while len(lines := line.findall(server.log_text())) < 4:
        assert time.monotonic() < deadline, lines
        time.sleep(0.05)
    assert sum(f" out={len(content)} " in x and "incomplete" not in x for x in lines) >= 1
    log = server.log_text()
    assert "unhandled error" not in log and "Traceback" not in log, log[-3000:]


def test_a_file_made_of_parts_is_streamed_across_them(server: ServerProcess, key: str) -> None:
    """A completed upload is a manifest over its parts, which no one path holds: the app
    streams it across them (whole, a Range over a boundary, HEAD), under granian too
    (instead of a pathsend)."""
    pieces = [os.urandom(MiB + 3), os.urandom(5), os.urandom(2 * MiB)]
    whole = b"".join(pieces)
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=30) as http:
        r = http.post(
            "/uploads",
            json={"filename": "p.bin", "purpose": PURPOSE, "bytes": len(whole),
                  "mime_type": "application/octet-stream"},
        )  # fmt: skip
        uid = r.json()["id"]
        ids = [
            http.post(f"/uploads/{uid}/parts", files={"data": ("b", p)}).json()["id"]
            for p in pieces
        ]
        done = http.post(f"/uploads/{uid}/complete", json={"part_ids": ids}).json()
        url = f"/files/{done['file']['id']}/content"
        got = http.get(url)
        assert got.status_code == 200 and got.content == whole
        assert got.headers["content-length"] == str(len(whole))
        start, end = MiB, MiB + 10  # across the first part's end and the second part
        part = http.get(url, headers={"Range": f"bytes={start}-{end - 1}"})
        assert part.status_code == 206 and part.content == whole[start:end]
        head = http.head(url)
        assert head.headers["content-length"] == str(len(whole)) and head.content == b""
        assert http.delete(f"/files/{done['file']['id']}").status_code == 200
        assert http.get(url).status_code == 404
