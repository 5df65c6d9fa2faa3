"""Response header names as they go out on the wire: under uvicorn (the default), every
name in its canonical spelling (`Content-Type`, `ETag`, `X-Request-Id`), on every route,
errors and downloads included, as nginx and OpenAI's edge send them on HTTP/1.1. Clients
may depend on it: Java's `HttpURLConnection` keeps names as sent and its header map is
case-sensitive (a JVM `openai` library found no `Content-Type` in lower-cased heads).

Under granian, hyper writes every name lower-cased and granian offers no setting to change
it; the test pins that, so that docs/deploy.md is revised when it changes."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .._server import ServerProcess
from ._util import BOUNDARY, multipart_parts

#: Title-Case, or one of the names whose canonical spelling is not (RFC 9110, 1864).
CANONICAL = re.compile(r"[A-Z][a-z0-9]*(-[A-Z][a-z0-9]*)*")
EXCEPTIONS = {"ETag", "WWW-Authenticate", "Content-MD5", "X-XSS-Protection"}
JAVA_CLIENT = Path(__file__).parent / "java" / "HeaderNames.java"


def _serve(tmp_path_factory: pytest.TempPathFactory, http_server: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp(http_server) / "data", "--http-server", http_server
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory, "uvicorn")


@pytest.fixture(scope="module")
def granian_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    yield from _serve(tmp_path_factory, "granian")


def _raw_head(server: ServerProcess, request: bytes) -> tuple[int, list[str]]:
    """Send one request on a fresh connection; the status and the header names of the
    answer, exactly as spelled on the wire."""
    url = httpx.URL(server.root_url)
    assert url.port is not None
    with socket.create_connection((url.host, url.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed before a response head: {data!r}"
            data += chunk
    lines = data.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
    return int(lines[0].split()[1]), [line.partition(":")[0] for line in lines[1:]]


def _request(method: str, path: str, key: str | None, *extra: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: test"]
    if key:
        head.append(f"Authorization: Bearer {key}")
    head += extra
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _heads(server: ServerProcess) -> dict[str, tuple[int, list[str]]]:
    """The heads of one request per kind of answer: API routes, a download (whole, a
    range, HEAD), the errors of the app and of the connection layer, the console page."""
    key = server.first_key
    assert key
    head, tail, _ = multipart_parts("names.txt", 0)
    form = head + b"x" * 5000 + tail
    content_type = f"Content-Type: multipart/form-data; boundary={BOUNDARY}"
    heads = {
        "upload": _raw_head(server, _request("POST", "/v1/files", key, content_type, body=form))
    }
    with httpx.Client(base_url=server.base_url, timeout=10) as http:
        listed = http.get("/files", headers={"Authorization": f"Bearer {key}"})
    file_id = listed.json()["data"][0]["id"]
    content = f"/v1/files/{file_id}/content"
    heads |= {
        "list": _raw_head(server, _request("GET", "/v1/files", key)),
        "retrieve": _raw_head(server, _request("GET", f"/v1/files/{file_id}", key)),
        "download": _raw_head(server, _request("GET", content, key)),
        "range": _raw_head(server, _request("GET", content, key, "Range: bytes=10-99")),
        "head": _raw_head(server, _request("HEAD", content, key)),
        "not-found": _raw_head(server, _request("GET", "/v1/files/file-nope", key)),
        "unauthorized": _raw_head(server, _request("GET", "/v1/files", None)),
        "too-large": _raw_head(
            server,
            _request("POST", "/v1/files", key, content_type, f"Content-Length: {2**40}"),
        ),
        "healthz": _raw_head(server, _request("GET", "/healthz", None)),
        "console": _raw_head(server, _request("GET", "/", None)),
    }
    return heads


def test_uvicorn_sends_canonical_header_names(server: ServerProcess) -> None:
    heads = _heads(server)
    statuses = {name: status for name, (status, _) in heads.items()}
    assert statuses == {
        "upload": 200,
        "list": 200,
        "retrieve": 200,
        "download": 200,
        "range": 206,
        "head": 200,
        "not-found": 404,
        "unauthorized": 401,
        "too-large": 413,
        "healthz": 200,
        "console": 200,
    }
    for route, (_, names) in heads.items():
        odd = [n for n in names if n not in EXCEPTIONS and not CANONICAL.fullmatch(n)]
        assert not odd, f"{route}: names not in their canonical spelling: {odd}"
        assert {"Content-Type", "X-Request-Id", "Openai-Version", "Date", "Server"} <= set(names), (
            route,
            names,
        )
    for route in ("upload", "list", "retrieve", "download", "not-found"):
        assert "Openai-Organization" in heads[route][1], route
    for route in ("download", "range", "head"):
        assert {"ETag", "Last-Modified", "Content-Disposition", "Accept-Ranges"} <= set(
            heads[route][1]
        ), route
    assert "Content-Range" in heads["range"][1]
    assert "Connection" in heads["too-large"][1]  # answered by the connection layer


def test_granian_sends_lower_case_header_names(granian_server: ServerProcess) -> None:
    """hyper, granian's HTTP/1 layer, keeps names lower-cased and writes them so unless
    its `title_case_headers` is set, which granian (2.8) does not expose."""
    for route, (_, names) in _heads(granian_server).items():
        assert "content-type" in names, route
        assert all(n == n.lower() for n in names), (route, names)


def test_java_http_url_connection_finds_content_type(server: ServerProcess) -> None:
    """The seed's own JVM client reads `Content-Type` by that name from the header map of
    `HttpURLConnection`: the five calls and an error, each with its media type."""
    java = shutil.which("java")
    if java is None:
        reason = (
            "java is not installed: this test runs a JVM client "
            "(apt-get install default-jdk-headless)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    assert server.first_key
    done = subprocess.run(
        [java, str(JAVA_CLIENT), server.base_url, server.first_key],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split()[0] + " " + line.split()[2] for line in lines] == [
        "POST 200",
        "GET 200",
        "GET 200",
        "GET 200",
        "DELETE 200",
        "GET 404",
    ], lines
    for line in lines:
        media = line.partition(" [")[2].rstrip("]")
        assert media in ("application/json", "text/plain"), line
    assert lines[3].endswith("[text/plain]"), lines[3]  # the download, as uploaded
