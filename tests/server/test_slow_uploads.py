"""Slow uploads cannot hold the server: a body below the minimum rate ends with a 408 and
leaves nothing stored, and one key streams at most `--max-uploads-per-key` uploads at once
(a 429 past it, other keys unaffected). Over raw sockets against a real server on each
deployment, with small settings so that the tests are quick."""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from .._server import Deployment, ServerProcess
from ..api._contract import assert_error
from ._util import BOUNDARY, auth, list_files, multipart_headers, multipart_parts, temp_names

MiB = 1024 * 1024
RATE = 2000  # bytes per second
WINDOW = 1.0
QUOTA = 4 * MiB
SLOTS = 2
TOO_SLOW = re.compile(
    rf"The request body arrived too slowly: under {RATE} bytes per second over "
    r"1 seconds, the least this server accepts, .*"
)
TOO_MANY = (
    f"Too many uploads at once for this API key: at most {SLOTS} may stream at the same "
    "time on this server (its --max-uploads-per-key setting). Retry once one of them has "
    "finished."
)


@pytest.fixture(scope="module")
def rated(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server that wants 2000 bytes a second of a body, averaged over 1 s of waiting."""
    proc = deployment.server(
        "--min-body-bytes-per-second",
        str(RATE),
        "--body-rate-window-seconds",
        str(WINDOW),
        "--body-idle-timeout-seconds",
        "20",
        "--org-quota-bytes",
        str(QUOTA),
    )
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def limited(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server on which a key streams at most two uploads at once."""
    proc = deployment.server("--max-uploads-per-key", str(SLOTS))
    try:
        yield proc
    finally:
        proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    url = httpx.URL(server.root_url)
    assert url.port is not None
    return socket.create_connection((url.host, url.port), timeout=10)


def _post_head(path: str, key: str, length: int) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _read_response(sock: socket.socket) -> httpx.Response:
    """One response with a Content-Length, as an httpx response for `assert_error`."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = [
        (name.strip(), value.strip())
        for name, _, value in (line.partition(":") for line in lines[1:])
    ]
    length = int(dict((k.lower(), v) for k, v in headers)["content-length"])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a response body"
        body += chunk
    return httpx.Response(int(lines[0].split()[1]), headers=headers, content=body[:length])


# -- the minimum body rate --


def test_a_body_below_the_minimum_rate_ends_and_keeps_nothing(rated: ServerProcess) -> None:
    """200 bytes every 0.25 s (800 B/s, never a pause near the 20 s idle timeout) is under
    the 2000 B/s minimum: a 408 within a window or two, the connection closed, no file, no
    temp file, and the quota its announced 3 MiB reserved is free at once."""
    key = rated.create_key("org-trickle", "proj_trickle")
    size = 3 * MiB
    head, tail, length = multipart_parts("trickle.bin", size)
    with _connect(rated) as sock:
        sock.sendall(_post_head("/v1/files", key, length) + head)
        started = time.monotonic()
        answer = None
        while time.monotonic() - started < 10:
            try:
                sock.sendall(b"t" * 200)
            except OSError:  # the server answered and closed
                break
            time.sleep(0.25)
            sock.settimeout(0.01)
            try:
                if sock.recv(1, socket.MSG_PEEK):
                    break
            except TimeoutError:
                pass
            finally:
                sock.settimeout(10)
        took = time.monotonic() - started
        answer = _read_response(sock)
    assert_error(answer, 408, TOO_SLOW, code="request_timeout")
    assert answer.headers["connection"] == "close"
    assert WINDOW * 0.8 <= took < WINDOW * 3 + 1, took
    with httpx.Client(base_url=rated.base_url, timeout=30) as http:
        assert list_files(http, key) == []
        if rated.data_dir.exists():  # the local folder keeps temp files
            assert temp_names(rated.data_dir) == []
        # 3 of the 4 MiB quota were reserved by the abandoned upload: only freed, this fits.
        fits = http.post(
            "/files",
            content=head + b"f" * size + tail,
            headers=multipart_headers(key, length),
        )
        assert fits.status_code == 200, fits.text
        assert http.delete(f"/files/{fits.json()['id']}", headers=auth(key)).is_success


def test_a_body_above_the_minimum_rate_with_pauses_is_kept(rated: ServerProcess) -> None:
    """5000 bytes every 0.4 s (12,500 B/s) pauses between chunks yet averages over the
    minimum: the upload completes."""
    key = rated.create_key("org-steady", "proj_steady")
    size = 40_000
    head, tail, length = multipart_parts("steady.bin", size)
    with _connect(rated) as sock:
        sock.sendall(_post_head("/v1/files", key, length) + head)
        for _ in range(size // 5000):
            time.sleep(0.4)
            sock.sendall(b"s" * 5000)
        sock.sendall(tail)
        answer = _read_response(sock)
    assert answer.status_code == 200, answer.text
    assert answer.json()["bytes"] == size


# -- concurrent uploads per key --


def _hold_file_upload(server: ServerProcess, key: str) -> socket.socket:
    """A POST /v1/files whose body has begun and stays open: it holds one of key's slots."""
    head, _, length = multipart_parts("held.bin", MiB)
    sock = _connect(server)
    sock.sendall(_post_head("/v1/files", key, length) + head + b"h" * 1000)
    return sock


def _hold_part_upload(server: ServerProcess, http: httpx.Client, key: str) -> socket.socket:
    """A POST /v1/uploads/{id}/parts whose body has begun and stays open."""
    made = http.post(
        "/uploads",
        json={
            "filename": "p.bin",
            "purpose": "assistants",
            "bytes": MiB,
            "mime_type": "text/plain",
        },
        headers=auth(key),
    )
    assert made.status_code == 200, made.text
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="data"; filename="blob"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    sock = _connect(server)
    path = f"/v1/uploads/{made.json()['id']}/parts"
    sock.sendall(_post_head(path, key, len(head) + MiB + 100) + head + b"p" * 1000)
    return sock


def _small_upload(http: httpx.Client, key: str) -> httpx.Response:
    head, tail, length = multipart_parts("small.txt", 10)
    return http.post(
        "/files", content=head + b"0123456789" + tail, headers=multipart_headers(key, length)
    )


def test_a_key_streams_at_most_its_uploads_at_once(limited: ServerProcess) -> None:
    """With two uploads of key A streaming (a file, a part), a third of A is a 429 in the
    envelope, files and parts alike, before its body is read; key B and A's other requests
    are served; once one of A's ends, whether it completes or its client goes away, A may
    upload again."""
    key_a = limited.create_key("org-busy", "proj_busy")
    key_b = limited.create_key("org-other", "proj_other")
    with httpx.Client(base_url=limited.base_url, timeout=30) as http:
        first = _hold_file_upload(limited, key_a)
        second = _hold_part_upload(limited, http, key_a)
        try:
            time.sleep(0.5)  # both are in their routes
            refused = _small_upload(http, key_a)
            assert_error(refused, 429, TOO_MANY, code="rate_limit_exceeded", error_type="requests")
            assert refused.headers["retry-after"] == "1"
            third = _hold_part_upload(limited, http, key_a)
            with third:
                assert_error(
                    _read_response(third),
                    429,
                    TOO_MANY,
                    code="rate_limit_exceeded",
                    error_type="requests",
                )
            assert _small_upload(http, key_b).status_code == 200
            assert http.get("/files", headers=auth(key_a)).status_code == 200

            # The first completes: a slot is free again.
            _, tail, _ = multipart_parts("held.bin", MiB)
            first.sendall(b"h" * (MiB - 1000) + tail)
            assert _read_response(first).status_code == 200
            assert _small_upload(http, key_a).status_code == 200

            # Two streaming again; the client of one goes away: its slot is freed.
            first.close()
            first = _hold_file_upload(limited, key_a)
            time.sleep(0.5)
            assert _small_upload(http, key_a).status_code == 429
            second.close()
            deadline = time.monotonic() + 10
            while (answer := _small_upload(http, key_a)).status_code == 429:
                assert time.monotonic() < deadline, "the slot of a gone client was not freed"
                time.sleep(0.2)
            assert answer.status_code == 200, answer.text
        finally:
            first.close()
            second.close()
