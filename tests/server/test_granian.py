"""`--http-server granian`: the server under granian, whole files sent by path (ASGI
pathsend), everything else as under uvicorn. What both HTTP servers must do alike (files,
the Uploads API, Range, errors, connections) is in tests/server/test_http_servers.py, run
under each; here is what is granian's own."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from .._inprocess import AppServer, asgi_scope
from .._server import ServerProcess, openai_files_cli
from ._util import PURPOSE, upload

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


def test_a_file_made_of_parts_is_streamed_not_handed_over_by_path(app: AppServer) -> None:
    """A completed upload is a manifest over its parts: no one path holds it, so the app
    streams it across them even where the server offers pathsend."""
    key = app.create_key("org-pathsend", "proj_b")
    pieces = [os.urandom(MiB + 1), os.urandom(7)]
    with app.http(key) as http:
        r = http.post(
            "/uploads",
            json={"filename": "p.bin", "purpose": PURPOSE, "bytes": MiB + 8,
                  "mime_type": "application/octet-stream"},
        )  # fmt: skip
        uid = r.json()["id"]
        ids = [
            http.post(f"/uploads/{uid}/parts", files={"data": ("b", p)}).json()["id"]
            for p in pieces
        ]
        done = http.post(f"/uploads/{uid}/complete", json={"part_ids": ids}).json()
    path = f"/v1/files/{done['file']['id']}/content"
    sent = app.portal.call(_call, app.app, path, key, {PATHSEND: {}})
    assert PATHSEND not in [m["type"] for m in sent]
    assert sent[0]["status"] == 200
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert body == b"".join(pieces)
