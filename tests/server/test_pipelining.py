"""Pipelined requests over raw sockets against a real server: a client that sends requests
without reading the answers cannot grow the server (each connection queues a few, then is
not read until answers go out), and one that reads them gets every answer, in order. Under
uvicorn (server/_http.py) and granian alike: granian's HTTP/1 layer reads one request at a
time."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .._server import ServerProcess
from ._util import BOUNDARY, multipart_parts

MiB = 1024 * 1024
#: What the server may grow by while clients pipeline without reading.
MAX_GROWTH = 32 * MiB
HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"


@pytest.fixture(scope="module", params=["uvicorn", "granian"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server under each HTTP server: granian (hyper) reads one request at a time."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("pipelining") / "data", "--http-server", request.param
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _connect(server: ServerProcess) -> socket.socket:
    url = httpx.URL(server.root_url)
    assert url.port is not None
    return socket.create_connection((url.host, url.port), timeout=10)


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _flood(sock: socket.socket, sent: list[int]) -> None:
    """Pipeline GET /healthz, reading nothing, until the server stops taking them."""
    batch = HEALTHZ * 1000
    sock.settimeout(3)
    try:
        for _ in range(500):  # 500,000 requests at most, 19 MB
            sock.sendall(batch)
            sent[0] += 1000
    except OSError:  # a timeout: the server no longer reads this connection
        pass


def test_unread_pipelined_requests_do_not_grow_the_server(server: ServerProcess) -> None:
    """Four connections pipeline requests and never read an answer: the server's memory
    stays within MAX_GROWTH (it grew 650 MB per connection before), it answers other
    clients meanwhile, and once they close it holds nothing for them."""
    with httpx.Client(base_url=server.root_url, timeout=10) as http:
        for _ in range(50):  # warm-up
            assert http.get("/healthz").status_code == 200
        before = _rss(server.pid)
        socks = [_connect(server) for _ in range(4)]
        try:
            for sock in socks:  # the server must stop sending, not we stop reading
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sent = [[0] for _ in socks]
            floods = [
                threading.Thread(target=_flood, args=(sock, count))
                for sock, count in zip(socks, sent, strict=True)
            ]
            for flood in floods:
                flood.start()
            times = []
            while any(flood.is_alive() for flood in floods):
                started = time.monotonic()
                assert http.get("/healthz").status_code == 200
                times.append(time.monotonic() - started)
                time.sleep(0.2)
            for flood in floods:
                flood.join()
            time.sleep(1)
            growth = _rss(server.pid) - before
            assert growth < MAX_GROWTH, (
                f"the server grew by {growth / MiB:.0f} MiB for {sum(s[0] for s in sent)} "
                "unread pipelined requests"
            )
            assert max(times) < 1, times
        finally:
            for sock in socks:
                sock.close()
        time.sleep(1)
        assert http.get("/healthz").status_code == 200
        assert _rss(server.pid) - before < MAX_GROWTH


def _read_answers(sock: socket.socket, count: int, answers: list[tuple[int, bytes]]) -> None:
    """Read `count` responses (each with a Content-Length) off `sock`."""
    buffer = b""
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the connection closed after {len(answers)} answers"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.partition(":")[2])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "the connection closed inside an answer"
            buffer += chunk
        answers.append((int(lines[0].split()[1]), buffer[:length]))
        buffer = buffer[length:]


def test_pipelined_requests_are_all_answered_in_order(server: ServerProcess) -> None:
    """3,000 requests sent in one go, uploads with bodies among them, while the answers
    are read: every one is answered, in the order asked."""
    key = server.first_key
    assert key
    head, tail, _ = multipart_parts("p.bin", 0)
    form = head + b"u" * (200 * 1024) + tail  # over uvicorn's 64 KiB high-water mark
    requests, expected = [], []
    for i in range(3000):
        if i % 500 == 250:
            requests.append(
                (
                    "POST /v1/files HTTP/1.1\r\nHost: t\r\n"
                    f"Authorization: Bearer {key}\r\n"
                    f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
                    f"Content-Length: {len(form)}\r\n\r\n"
                ).encode()
                + form
            )
            expected.append((200, "file"))
        else:
            requests.append(
                f"GET /v1/files/file-{i} HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {key}\r\n\r\n".encode()
            )
            expected.append((404, f"No such File object: file-{i}"))
    answers: list[tuple[int, bytes]] = []
    with _connect(server) as sock:
        reader = threading.Thread(target=_read_answers, args=(sock, len(requests), answers))
        reader.start()
        sock.sendall(b"".join(requests))
        reader.join(120)
    assert len(answers) == len(expected)
    for (status, body), (want_status, want) in zip(answers, expected, strict=True):
        payload = json.loads(body)
        assert status == want_status, payload
        if status == 200:
            assert payload["object"] == want and payload["bytes"] == 200 * 1024
        else:
            assert payload["error"]["message"] == want
