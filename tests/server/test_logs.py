"""The server's log: what a request controls can neither forge a line nor send escape
sequences to the terminal, and the access line tells the status that went out."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from .._server import Deployment, ServerProcess
from ._util import auth, upload

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("logs") / "data").start()
    try:
        yield proc
    finally:
        proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    url = urlsplit(server.base_url)
    assert url.hostname is not None and url.port is not None
    return socket.create_connection((url.hostname, url.port), timeout=10)


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    """The status line and headers, and what came after them."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before the headers: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _request_id(head: bytes) -> str:
    match = re.search(rb"(?im)^x-request-id: (req_\w+)\r?$", head)
    assert match, head
    return match.group(1).decode()


def _raw_get(server: ServerProcess, target: str, headers: str = "") -> tuple[bytes, str]:
    """GET `target` exactly as written (no client normalizes it); the status line and
    headers, and the request id."""
    with _connect(server) as sock:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}Connection: close\r\n"
        sock.sendall(request.encode() + b"\r\n")
        head, _ = _read_head(sock)
    return head, _request_id(head)


def _access_lines(server: ServerProcess, request_id: str, timeout: float = 5.0) -> list[str]:
    """The server's access log lines of a request (waiting for them to be written)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = [
            line
            for line in server.log_text().split("\n")
            if " openai_files.access: " in line and request_id in line
        ]
        if lines or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


FORGED = "2026-01-01 00:00:00,000 INFO openai_files.access: GET /forged 200"

#: (raw request target, how its path must appear in the access line)
HOSTILE = [
    (
        "/v1/files/file-abc%0A" + FORGED.replace(" ", "%20"),
        r"/v1/files/file-abc\n" + FORGED.replace(" ", r"\x20"),
    ),
    ("/v1/files/file-abc%0D%0A%0D%0Aforged", r"/v1/files/file-abc\r\n\r\nforged"),
    ("/v1/files/%1B%5B2J%1B%5B31mred%1B%5B0m", r"/v1/files/\x1b[2J\x1b[31mred\x1b[0m"),
    ("/v1/files/a%E2%80%A8b%C2%85c%00d%7Fe", r"/v1/files/a\u2028b\x85c\x00d\x7fe"),
    ("/v1/files/back%5Cslash%5Cn", r"/v1/files/back\\slash\\n"),
]


@pytest.mark.parametrize(("target", "logged"), HOSTILE)
def test_a_hostile_path_stays_one_escaped_log_line(
    server: ServerProcess, target: str, logged: str
) -> None:
    """No key needed: the path is logged before anyone is authenticated."""
    head, request_id = _raw_get(server, target)
    status = head.split()[1].decode()
    assert status in ("401", "404"), head  # no key (or no such route)
    lines = _access_lines(server, request_id)
    assert len(lines) == 1, lines
    assert f" openai_files.access: GET {logged} {status} in=0 " in lines[0], lines[0]
    text = server.log_text()
    for raw in ("\x1b", "\r", "\x00", "\x7f", "\u2028", "\x85"):
        assert raw not in text, f"{raw!r} reached the log"
    assert not any(line.startswith((FORGED, "forged")) for line in text.split("\n"))


def test_an_ordinary_line_is_unchanged(server: ServerProcess) -> None:
    _, request_id = _raw_get(server, "/v1/files/file-abc")
    (line,) = _access_lines(server, request_id)
    assert re.search(r" GET /v1/files/file-abc 401 in=0 out=\d+ [\d.]+ms req_\w+$", line), line


def test_the_access_line_says_when_a_response_was_cut_short(server: ServerProcess) -> None:
    """The status line of a download went out, then its bytes vanished: the access line
    says 200 and `incomplete`, and counts only the bytes that went out."""
    assert server.first_key is not None
    size = 24 * MiB
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        created = upload(http, server.first_key, os.urandom(size), "big.bin")
        assert created.status_code == 200, created.text
    file_id = created.json()["id"]
    (blob,) = Path(server.data_dir, "blobs").glob(f"*/{file_id}")

    with _connect(server) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(
            f"GET /v1/files/{file_id}/content HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {server.first_key}\r\nConnection: close\r\n\r\n".encode()
        )
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        time.sleep(0.5)  # the server fills the socket's buffers and waits
        os.truncate(blob, 0)  # the rest of the file is gone
        received = len(rest)
        while chunk := sock.recv(MiB):
            received += len(chunk)
    assert received < size

    (line,) = _access_lines(server, _request_id(head))
    match = re.search(r" GET \S+ 200 in=0 out=(\d+) [\d.]+ms req_\w+ incomplete$", line)
    assert match, line
    assert int(match.group(1)) < size
    # A download that completes says nothing of the kind.
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        small = upload(http, server.first_key, b"x" * 100, "small.bin").json()["id"]
        done = http.get(
            f"/files/{small}/content", headers={"Authorization": f"Bearer {server.first_key}"}
        )
    assert done.status_code == 200
    (line,) = _access_lines(server, done.headers["x-request-id"])
    assert line.endswith(done.headers["x-request-id"]), line
    assert " 200 in=0 out=100 " in line


def test_one_line_per_request_and_none_of_the_stores_own_calls(deployment: Deployment) -> None:
    """An upload through the Uploads API (composed in S3 by the server's own HTTP calls,
    on the scale-out deployment) logs its access lines and nothing else at INFO."""
    server = deployment.server()
    try:
        key = server.create_key("org-logs", "proj_logs")
        parts = [os.urandom(3 * MiB), os.urandom(3 * MiB)]  # 6 MiB: more than one S3 part
        before = len(server.log_text().splitlines())
        with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as http:
            created = http.post(
                "/uploads",
                json={
                    "purpose": "evals",
                    "filename": "big.bin",
                    "bytes": sum(map(len, parts)),
                    "mime_type": "application/octet-stream",
                },
            )
            assert created.status_code == 200, created.text
            upload_id = created.json()["id"]
            part_ids = []
            for part in parts:
                added = http.post(f"/uploads/{upload_id}/parts", files={"data": part})
                assert added.status_code == 200, added.text
                part_ids.append(added.json()["id"])
            done = http.post(f"/uploads/{upload_id}/complete", json={"part_ids": part_ids})
            assert done.status_code == 200, done.text
            file_id = done.json()["file"]["id"]
            got = http.get(f"/files/{file_id}/content")
            assert got.content == b"".join(parts)
        assert len(_access_lines(server, got.headers["x-request-id"])) == 1
        lines = server.log_text().splitlines()[before:]
    finally:
        server.stop()
    assert len([line for line in lines if " openai_files.access: " in line]) == 5, lines
    assert not [line for line in lines if " openai_files.access: " not in line], lines
