"""`--http-server granian`: the server under granian, whole files sent by path (ASGI
pathsend), everything else as under uvicorn. The whole API suite also runs under it with
`OPENAI_FILES_HTTP_SERVER=granian` (docs/benchmarks.md says what that gave)."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .._inprocess import AppServer, asgi_scope
from .._server import ServerProcess, openai_files_cli
from ._util import PURPOSE, auth, upload

MiB = 1024 * 1024
PATHSEND = "http.response.pathsend"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(
        tmp_path_factory.mktemp("granian") / "data", "--http-server", "granian"
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def sdk(server: ServerProcess) -> Iterator[openai.OpenAI]:
    assert server.first_key
    with openai.OpenAI(base_url=server.base_url, api_key=server.first_key) as client:
        yield client


def test_the_official_sdk_round_trip(
    server: ServerProcess, sdk: openai.OpenAI, tmp_path: Path
) -> None:
    content = os.urandom(9 * MiB + 7)
    path = tmp_path / "data.bin"
    path.write_bytes(content)
    with path.open("rb") as fh:
        made = sdk.files.create(file=fh, purpose=PURPOSE)
    assert made.bytes == len(content)
    assert sdk.files.retrieve(made.id).filename == "data.bin"
    assert made.id in [f.id for f in sdk.files.list()]
    raw = sdk.files.with_raw_response.content(made.id)
    assert raw.headers["server"] == "granian"
    assert raw.headers["content-length"] == str(len(content))
    assert raw.headers["x-request-id"].startswith("req_")
    assert hashlib.sha256(raw.content).digest() == hashlib.sha256(content).digest()
    # The access line counts the bytes the HTTP server sent by path, as a complete answer.
    line = re.search(rf"GET /v1/files/{made.id}/content 200 .*", server.log_text())
    assert line and f"out={len(content)} " in line.group(0)
    assert "incomplete" not in line.group(0)
    assert sdk.files.delete(made.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(made.id)


def test_ranges_conditionals_and_head(server: ServerProcess) -> None:
    assert server.first_key
    content = os.urandom(3 * MiB)
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        made = upload(http, server.first_key, content, "r.bin").json()
        url = f"/files/{made['id']}/content"
        part = http.get(url, headers={**auth(server.first_key), "Range": "bytes=100-1048675"})
        assert part.status_code == 206
        assert part.headers["content-range"] == f"bytes 100-1048675/{len(content)}"
        assert part.content == content[100:1048676]
        tail = http.get(url, headers={**auth(server.first_key), "Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == content[-10:]
        etag = part.headers["etag"]
        same = http.get(url, headers={**auth(server.first_key), "If-None-Match": etag})
        assert same.status_code == 304 and same.content == b""
        head = http.head(url, headers=auth(server.first_key))
        assert head.status_code == 200
        assert head.headers["content-length"] == str(len(content)) and head.content == b""
        bad = http.get(url, headers={**auth(server.first_key), "Range": f"bytes={len(content)}-"})
        assert bad.status_code == 416
        assert bad.json()["error"]["type"] == "invalid_request_error"


def test_a_file_gone_from_the_folder_is_a_404(server: ServerProcess) -> None:
    """The row is still there but the bytes are not: an error in OpenAI's envelope, not a
    cut connection (the path is checked before the status line goes out)."""
    assert server.first_key
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        made = upload(http, server.first_key, b"x" * 1000, "gone.bin").json()
        [blob] = [
            p
            for p in (server.data_dir / "blobs").rglob("*")
            if p.is_file() and p.stat().st_size == 1000
        ]
        blob.unlink()
        answer = http.get(f"/files/{made['id']}/content", headers=auth(server.first_key))
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == f"No such File object: {made['id']}"


def test_sigterm_stops_it_cleanly(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "data", "--http-server", "granian").start()
    assert proc.healthy()
    proc.stop()
    assert proc.proc is not None and proc.proc.returncode == 0, proc.log_text()


def test_an_unknown_http_server_is_refused(tmp_path: Path) -> None:
    done = openai_files_cli(
        "serve", "--data-dir", str(tmp_path / "d"), "--port", "0", "--http-server", "nginx"
    )
    assert done.returncode != 0
    assert "--http-server" in done.stderr and "uvicorn, granian" in done.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was made


# -- the app's side, without a server: what it hands an HTTP server that offers pathsend --


async def _call(
    app: Any,
    path: str,
    key: str,
    extensions: dict[str, Any],
    headers: list[tuple[bytes, bytes]] | None = None,
) -> list[dict[str, Any]]:
    scope = asgi_scope("GET", path, key, headers, extensions)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


@pytest.fixture
def app(tmp_path: Path) -> Iterator[AppServer]:
    started = AppServer(tmp_path / "data").start()
    try:
        yield started
    finally:
        started.stop()


def test_a_whole_file_is_handed_over_by_path(app: AppServer) -> None:
    key = app.create_key("org-pathsend", "proj_a")
    content = os.urandom(2 * MiB + 1)
    with app.http(key) as http:
        made = upload(http, key, content, "p.bin").json()
    path = f"/v1/files/{made['id']}/content"
    sent = app.portal.call(_call, app.app, path, key, {PATHSEND: {}})
    assert [m["type"] for m in sent] == ["http.response.start", PATHSEND]
    assert sent[0]["status"] == 200
    headers = dict(sent[0]["headers"])
    assert headers[b"content-length"] == str(len(content)).encode()
    assert headers[b"etag"] == f'"{made["id"]}"'.encode()
    handed = Path(sent[1]["path"])
    assert handed.is_relative_to(app.data_dir) and handed.read_bytes() == content

    # A Range, and a server without the extension, get the bytes as body messages.
    ranged = app.portal.call(_call, app.app, path, key, {PATHSEND: {}}, [(b"range", b"bytes=0-9")])
    plain = app.portal.call(_call, app.app, path, key, {})
    for messages, expected in ((ranged, content[:10]), (plain, content)):
        assert PATHSEND not in [m["type"] for m in messages]
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
        assert body == expected
