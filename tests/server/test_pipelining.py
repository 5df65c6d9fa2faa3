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


def _flood(sock: socket.socket, sent: list[int], batch: bytes = HEALTHZ * 1000) -> None:
    """Pipeline `batch`, reading nothing, until the server stops taking it: the send times
    out. Anything else (the server closed) fails the flood."""
    requests = batch.count(b" HTTP/1.1\r\n")
    sock.settimeout(3)
    try:
        for _ in range(500_000 // requests):  # 500,000 requests at most
            sock.sendall(batch)
            sent[0] += requests
    except TimeoutError:  # the server no longer reads this connection
        pass
    except OSError as exc:
        sent.append(-1)
        raise AssertionError(f"the server closed a flooding connection: {exc!r}") from exc


def _post(key: str, body: bytes, *, chunked: bool) -> bytes:
    """A POST with `body` (read whole, then refused: it is not JSON), sent with a
    Content-Length or in chunks of 1,000 bytes."""
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    if not chunked:
        return head + b"Content-Length: %d\r\n\r\n" % len(body) + body
    chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)]
    return (
        head
        + b"Transfer-Encoding: chunked\r\n\r\n"
        + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks)
        + b"0\r\n\r\n"
    )


def _unread_pipelining_growth(
    server: ServerProcess, batch: bytes, connections: int = 4
) -> tuple[int, int, int, list[float]]:
    """Pipeline `batch` over `connections` connections, reading nothing,
    while another client asks `/healthz`: the server's growth meanwhile and once they
    closed, the requests sent, and how long the other client's requests took."""
    with httpx.Client(base_url=server.root_url, timeout=10) as http:
        for _ in range(50):  # warm-up
            assert http.get("/healthz").status_code == 200
        before = _rss(server.pid)
        socks = [_connect(server) for _ in range(connections)]
        try:
            for sock in socks:  # the server must stop sending, not we stop reading
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sent = [[0] for _ in socks]
            floods = [
                threading.Thread(target=_flood, args=(sock, count, batch))
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
            assert all(len(count) == 1 for count in sent), "the server closed a flood"
        finally:
            for sock in socks:
                sock.close()
        time.sleep(1)
        assert http.get("/healthz").status_code == 200
        after = _rss(server.pid) - before
    return growth, after, sum(count[0] for count in sent), times


def test_unread_pipelined_requests_do_not_grow_the_server(server: ServerProcess) -> None:
    """Four connections pipeline requests and never read an answer: the server's memory
    stays within MAX_GROWTH (it grew 650 MB per connection before), it answers other
    clients meanwhile, and once they close it holds nothing for them."""
    growth, after, sent, times = _unread_pipelining_growth(server, HEALTHZ * 1000)
    assert growth < MAX_GROWTH, (
        f"the server grew by {growth / MiB:.0f} MiB for {sent} unread pipelined requests"
    )
    assert after < MAX_GROWTH
    assert max(times) < 1, times


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_pipelined_bodies_do_not_lift_the_bound(server: ServerProcess, chunked: bool) -> None:
    """Requests with bodies among the pipelined ones: a body that ends inside what the
    server read at once must not let the requests behind it be queued all together (one
    3,000-byte POST before 7,000 GETs grew the server 10 MiB a connection). Bodies sent
    with a Content-Length and in chunks, one that holds `\r\n0` too."""
    assert server.first_key
    body = b"x" * 1500 + b"\r\n0\r\n\r\n" + b"y" * 1490
    post = _post(server.first_key, body, chunked=chunked)
    batch = (post + HEALTHZ * 1749) * 4  # 7,000 requests, 265 KB
    growth, after, sent, times = _unread_pipelining_growth(server, batch)
    assert growth < MAX_GROWTH, (
        f"the server grew by {growth / MiB:.0f} MiB for {sent} unread pipelined requests, "
        "bodies among them"
    )
    assert after < MAX_GROWTH
    assert max(times) < 1, times


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


@pytest.mark.parametrize("server", ["uvicorn"], indirect=True)
def test_pipelined_bodies_are_framed_right(server: ServerProcess) -> None:
    """POSTs with bodies sent with a Content-Length and in chunks (one holding `\\r\\n0`,
    one of many small chunks), among GETs, all in one go: each is answered, in order.
    (granian closes the connection after a refused chunked body.)"""
    key = server.first_key
    assert key
    head = (
        f"POST /v1/uploads HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
    ).encode()
    body = b"x" * 1500 + b"\r\n0\r\n\r\n" + b"y" * 1490
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 1000]), body[i : i + 1000])
        for i in range(0, len(body), 1000)
    )
    small = b"".join(b"1\r\n%c\r\n" % c for c in b"0\n0\n0\n")
    chunked = head + b"Transfer-Encoding: chunked\r\n\r\n"
    one = [
        head + b"Content-Length: %d\r\n\r\n" % len(body) + body,
        HEALTHZ,
        chunked + chunks + b"0\r\n\r\n",
        HEALTHZ,
        chunked + small + b"0\r\n\r\n",
    ]
    requests = one * 200
    answers: list[tuple[int, bytes]] = []
    with _connect(server) as sock:
        reader = threading.Thread(target=_read_answers, args=(sock, len(requests), answers))
        reader.start()
        sock.sendall(b"".join(requests))
        reader.join(60)
    assert len(answers) == len(requests)
    assert [status for status, _ in answers] == [400, 200, 400, 200, 400] * 200
