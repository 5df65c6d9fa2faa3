"""The HTTP connection layer, over raw sockets against a real server: bounded request heads
(414/431), header, body idle and keep-alive timeouts, the connection cap, early answers that
close the connection instead of reading a large body, and HTTP framing errors answered in
OpenAI's error envelope. Timeouts are set to a second so that the tests are quick."""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .._server import Deployment, ServerProcess
from ._util import BOUNDARY, multipart_parts, temp_names

MiB = 1024 * 1024
TIMEOUT = 1.0
#: How long past a timeout the server may take to act on it.
SLACK = 2.0
QUOTA = 4 * MiB
#: Flags of the servers below: every timeout a second.
FAST = (
    "--header-timeout-seconds",
    str(TIMEOUT),
    "--body-idle-timeout-seconds",
    str(TIMEOUT),
    "--keep-alive-timeout-seconds",
    str(TIMEOUT),
    "--org-quota-bytes",
    str(QUOTA),
)


@pytest.fixture(scope="module")
def fast(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server on the deployment under test whose timeouts are one second."""
    proc = deployment.server(*FAST)
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """An embedded server with one-second timeouts and files of at most 1 MiB, for what
    involves no store."""
    proc = ServerProcess(
        tmp_path_factory.mktemp("connections") / "data", *FAST, "--max-file-bytes", str(MiB)
    ).start()
    try:
        yield proc
    finally:
        proc.stop()


def _address(server: ServerProcess) -> tuple[str, int]:
    url = httpx.URL(server.root_url)
    assert url.port is not None
    return url.host, url.port


def _connect(server: ServerProcess, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(_address(server), timeout=timeout)
    return sock


class Answer:
    """What the server sent back on one connection: a response, and whether the
    connection was then closed (and how long after the read began)."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self) -> dict[str, Any]:
        """OpenAI's error envelope, checked field by field."""
        assert self.headers["content-type"] == "application/json", self.headers
        payload = json.loads(self.body)
        assert set(payload) == {"error"}, payload
        error: dict[str, Any] = payload["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        assert isinstance(error["message"], str) and error["message"]
        assert self.headers["x-request-id"].startswith("req_")
        return error


def _read_response(sock: socket.socket) -> Answer:
    """Read one response whose body has a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "the connection closed inside a response body"
        rest += chunk
    return Answer(status, headers, rest[:length])


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Wait for the server to close the connection (EOF or reset), sending nothing more;
    return how long it took."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        extra = sock.recv(65536)
    except ConnectionResetError:
        extra = b""
    except TimeoutError:
        pytest.fail(f"the connection was still open after {seconds}s")
    assert extra == b"", f"unexpected bytes after the response: {extra[:200]!r}"
    return time.monotonic() - started


def _upload_head(key: str, length: int) -> bytes:
    return (
        "POST /v1/files HTTP/1.1\r\n"
        "Host: test\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"Content-Length: {length}\r\n\r\n"
    ).encode()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


# -- bounded request heads --


def test_huge_header_line_is_a_431_in_the_envelope(local: ServerProcess) -> None:
    with _connect(local) as sock:
        sock.sendall(
            b"GET /v1/files HTTP/1.1\r\nHost: test\r\nX-Big: " + b"a" * 150_000 + b"\r\n\r\n"
        )
        answer = _read_response(sock)
        assert answer.status == 431
        assert answer.headers["connection"] == "close"
        error = answer.error()
        assert error["code"] == "request_header_fields_too_large"
        assert "65536 bytes" in error["message"]
        _closed_within(sock, SLACK)


def test_many_headers_over_the_limit_are_a_431(local: ServerProcess) -> None:
    """Headers each small but many, arriving in one piece, count together."""
    headers = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(700))
    with _connect(local) as sock:
        sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: test\r\n" + headers + b"\r\n")
        answer = _read_response(sock)
    assert answer.status == 431
    assert answer.error()["code"] == "request_header_fields_too_large"


def test_huge_url_is_a_414_in_the_envelope(local: ServerProcess) -> None:
    with _connect(local) as sock:
        sock.sendall(b"GET /v1/files?after=" + b"x" * 100_000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
        answer = _read_response(sock)
    assert answer.status == 414
    assert answer.error()["code"] == "uri_too_long"


def test_huge_header_does_not_grow_the_server(local: ServerProcess) -> None:
    """50 MiB of one header line: the server stops reading past the limit, answers 431
    and closes, instead of holding it all (it grew by 155 MB for 100 MiB before)."""
    before = _rss(local.pid)
    answers: list[Answer] = []
    with _connect(local) as sock:

        def read() -> None:
            answers.append(_read_response(sock))

        reader = threading.Thread(target=read)
        reader.start()
        sock.sendall(b"GET /v1/files HTTP/1.1\r\nHost: test\r\nX-Big: ")
        piece = b"a" * MiB
        sent = 0
        with pytest.raises(OSError):  # broken pipe or reset: the server closed
            for _ in range(50):
                sock.sendall(piece)
                sent += len(piece)
        reader.join(10)
    assert sent < 50 * MiB
    assert answers and answers[0].status == 431
    assert _rss(local.pid) - before < 8 * MiB
    assert local.healthy()


# -- framing errors in the envelope --


@pytest.mark.parametrize(
    ("request_bytes", "words"),
    [
        (
            b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n",
            "Content-Length",
        ),
        (
            b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            "Content-Length",
        ),
        (
            b"POST /v1/files HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "chunk size",
        ),
        (b"GET /v1/files HTTP/1.1\r\nBad Header\r\n\r\n", "Invalid HTTP request"),
    ],
    ids=["bad-content-length", "chunked-and-content-length", "bad-chunk-size", "bad-header"],
)
def test_framing_errors_are_400s_in_the_envelope(
    local: ServerProcess, request_bytes: bytes, words: str
) -> None:
    with _connect(local) as sock:
        sock.sendall(request_bytes)
        answer = _read_response(sock)
        assert answer.status == 400
        error = answer.error()
        assert error["type"] == "invalid_request_error"
        assert error["code"] == "invalid_http_request"
        assert words in error["message"]
        assert answer.headers["connection"] == "close"
        _closed_within(sock, SLACK)
    assert local.healthy()


# -- header and keep-alive timeouts --


def test_bare_connect_is_closed_after_the_header_timeout(local: ServerProcess) -> None:
    with _connect(local) as sock:
        took = _closed_within(sock, TIMEOUT + SLACK)
    assert took >= TIMEOUT * 0.8


@pytest.mark.parametrize(
    "partial",
    [b"GET /v1/fi", b"GET /v1/files HTTP/1.1\r\nHost: test\r\nX-Part"],
    ids=["partial-request-line", "partial-headers"],
)
def test_partial_head_is_a_408_after_the_header_timeout(
    local: ServerProcess, partial: bytes
) -> None:
    with _connect(local) as sock:
        sock.sendall(partial)
        started = time.monotonic()
        sock.settimeout(TIMEOUT + SLACK)
        answer = _read_response(sock)
        assert time.monotonic() - started >= TIMEOUT * 0.8
        assert answer.status == 408
        assert answer.error()["code"] == "request_timeout"
        _closed_within(sock, SLACK)


def test_trickled_head_is_cut_at_the_header_timeout(local: ServerProcess) -> None:
    """The header timeout is a deadline for the whole head, not a gap between bytes."""
    with _connect(local) as sock:
        started = time.monotonic()
        for byte in b"GET /v1/files HTTP/1.1\r\nHost: test\r\nX-Slow: " + b"s" * 100:
            sock.sendall(bytes([byte]))
            readable, _, _ = select.select([sock], [], [], 0.1)
            if readable:
                break
        else:
            pytest.fail("the server let a head trickle in for 10 seconds")
        assert TIMEOUT * 0.8 <= time.monotonic() - started < TIMEOUT + SLACK
        answer = _read_response(sock)
        assert answer.status == 408
        assert answer.error()["code"] == "request_timeout"


def test_idle_keep_alive_connection_is_closed(local: ServerProcess) -> None:
    with _connect(local) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _read_response(sock).status == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")  # still open
        answer = _read_response(sock)
        assert answer.status == 200
        assert "connection" not in answer.headers
        took = _closed_within(sock, TIMEOUT + SLACK)
    assert took >= TIMEOUT * 0.8


# -- the body idle timeout --


@pytest.mark.parametrize("shape", ["stalled", "short"])
def test_stalled_upload_ends_and_frees_its_quota_at_once(fast: ServerProcess, shape: str) -> None:
    """An upload that stops sending (mid-file, or all but its last bytes: shorter than
    its Content-Length) ends with a 408 after the body idle timeout; its reservation is
    freed at once (an upload that needs the quota fits right after) and its temp file is
    gone."""
    key = fast.create_key(f"org-stall-{shape}", "proj_stall")
    size = 3 * MiB
    head, tail, length = multipart_parts("stalled.bin", size)
    sent = head + b"s" * (size // 2) if shape == "stalled" else head + b"s" * size + tail[:-4]
    with _connect(fast) as sock:
        sock.sendall(_upload_head(key, length) + sent)
        started = time.monotonic()
        sock.settimeout(TIMEOUT + SLACK + 5)
        answer = _read_response(sock)
        took = time.monotonic() - started
        assert answer.status == 408, answer.body
        assert took >= TIMEOUT * 0.8
        error = answer.error()
        assert error["code"] == "request_timeout"
        assert answer.headers["connection"] == "close"
        _closed_within(sock, SLACK)
    if fast.data_dir.exists():  # the local folder keeps temp files
        assert temp_names(fast.data_dir) == []
    # The stalled upload announced 3 MiB of the 4 MiB quota: only freed, another fits.
    head, tail, length = multipart_parts("after.bin", size)
    with httpx.Client(base_url=fast.base_url, timeout=30) as http:
        after = http.post(
            "/files",
            content=head + b"a" * size + tail,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )
        assert after.status_code == 200, after.text
        assert after.json()["bytes"] == size
        assert http.delete(
            f"/files/{after.json()['id']}", headers={"Authorization": f"Bearer {key}"}
        ).is_success


def test_body_idle_timeout_must_be_shorter_than_the_sweep_grace(tmp_path: Path) -> None:
    proc = ServerProcess(
        tmp_path / "data", "--sweep-grace-seconds", "30", "--body-idle-timeout-seconds", "30"
    )
    with pytest.raises(RuntimeError) as failed:
        proc.start()
    message = str(failed.value)
    assert "--body-idle-timeout-seconds" in message
    assert "shorter than --sweep-grace-seconds (30)" in message
    assert "Traceback" not in message


# -- early answers close the connection --


def test_early_413_closes_instead_of_reading_the_body(fast: ServerProcess) -> None:
    """A Content-Length over the limit is refused before the body is read; the server
    then closes, so the client cannot push the rest of a large body into it."""
    key = fast.create_key("org-early", "proj_early")
    with _connect(fast) as sock:
        sock.sendall(_upload_head(key, 600 * MiB) + b"x" * 65536)
        answer = _read_response(sock)
        assert answer.status == 413
        assert answer.error()["code"] == "file_too_large"
        assert answer.headers["connection"] == "close"
        _closed_within(sock, SLACK)
        sock.settimeout(5)
        piece = b"x" * MiB
        with pytest.raises(OSError):  # broken pipe or reset, never 100 MiB taken in
            for _ in range(100):
                sock.sendall(piece)


def test_early_401_closes_instead_of_reading_the_body(local: ServerProcess) -> None:
    with _connect(local) as sock:
        sock.sendall(_upload_head("sk-wrong", 100 * MiB) + b"x" * 1000)
        answer = _read_response(sock)
        assert answer.status == 401
        assert answer.headers["connection"] == "close"
        _closed_within(sock, SLACK)


def test_client_sending_a_large_refused_body_still_reads_the_413(local: ServerProcess) -> None:
    """The close after an early answer lets a client that sends its whole body before
    reading (httpx, the SDK) read the 413, not a reset."""
    key = local.create_key("org-big", "proj_big")
    with httpx.Client(base_url=local.base_url, timeout=30) as http:
        for _ in range(3):
            refused = http.post(
                "/files",
                headers={"Authorization": f"Bearer {key}"},
                files={"file": ("big.bin", b"x" * (30 * MiB))},
                data={"purpose": "assistants"},
            )
            assert refused.status_code == 413
            assert refused.json()["error"]["code"] == "file_too_large"
            assert refused.headers["connection"] == "close"


# -- slow clients and the connection cap --


def test_slow_clients_do_not_delay_others(local: ServerProcess) -> None:
    """While slow clients hold connections (a trickled head, a stalled body), another
    client's requests are answered at once."""
    key = local.create_key("org-slow", "proj_slow")
    holders = []
    try:
        for _ in range(10):
            trickle = _connect(local)
            trickle.sendall(b"GET /v1/files HTTP/1.1\r\nHost: t\r\n")
            stall = _connect(local)
            stall.sendall(_upload_head(key, 2 * MiB) + b"--")
            holders += [trickle, stall]
        times = []
        with httpx.Client(base_url=local.base_url, timeout=10) as http:
            for _ in range(20):
                started = time.monotonic()
                listed = http.get("/files", headers={"Authorization": f"Bearer {key}"})
                times.append(time.monotonic() - started)
                assert listed.status_code == 200
        assert max(times) < 0.5, times
    finally:
        for sock in holders:
            sock.close()


def test_connection_over_the_cap_is_a_503_while_others_work(tmp_path: Path) -> None:
    cap = 4
    proc = ServerProcess(
        tmp_path / "data", "--max-connections", str(cap), "--header-timeout-seconds", "30"
    ).start()
    idle = []
    try:
        time.sleep(0.5)  # the start's own health checks have closed
        with httpx.Client(base_url=proc.root_url, timeout=10) as working:
            assert working.get("/healthz").status_code == 200  # one kept-alive connection
            idle = [_connect(proc) for _ in range(cap - 1)]
            time.sleep(0.3)
            with _connect(proc) as over:
                answer = _read_response(over)
                assert answer.status == 503
                assert answer.headers["retry-after"] == "1"
                assert answer.error()["code"] == "too_many_connections"
                _closed_within(over, SLACK)
            # The connections within the cap still work.
            assert working.get("/healthz").status_code == 200
            idle[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert _read_response(idle[0]).status == 200
            # Once one closes, a new connection is served.
            idle.pop().close()
            time.sleep(0.3)
            with _connect(proc) as fresh:
                fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                assert _read_response(fresh).status == 200
    finally:
        for sock in idle:
            sock.close()
        proc.stop()


def test_slow_download_with_a_short_request_body_is_not_cut(fast: ServerProcess) -> None:
    """A GET whose announced body never fully arrives is not a stalled upload: once the
    response started, the body idle timeout no longer counts, so a download read slower
    than it completes and nothing is logged as an error."""
    key = fast.create_key("org-slow-read", "proj_slow_read")
    content = bytes(range(256)) * (3 * MiB // 256)
    head, tail, _ = multipart_parts("slow.bin", 0)
    with httpx.Client(base_url=fast.base_url, timeout=30) as http:
        made = http.post(
            "/files",
            content=head + content + tail,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
            },
        )
        assert made.status_code == 200, made.text
    file_id = made.json()["id"]
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the server must wait on us
    sock.settimeout(10)
    try:
        sock.connect(_address(fast))
        sock.sendall(
            (
                f"GET /v1/files/{file_id}/content HTTP/1.1\r\nHost: t\r\n"
                f"Authorization: Bearer {key}\r\nContent-Length: 10\r\n\r\n12345"
            ).encode()
        )
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, data
            data += chunk
        status_line, _, body = data.partition(b"\r\n\r\n")
        assert status_line.startswith(b"HTTP/1.1 200"), status_line
        time.sleep(TIMEOUT * 2.5)  # slower than the body idle timeout
        while len(body) < len(content):
            chunk = sock.recv(65536)
            assert chunk, f"the download was cut after {len(body)} of {len(content)} bytes"
            body += chunk
        assert body[: len(content)] == content
        # The app logs the request's access line as it returns: the response went out whole.
        line = fast.wait_for_log(rf"GET /v1/files/{file_id}/content \S+ in=[^\n]*")
        assert f" 200 in=5 out={len(content)} " in line and "incomplete" not in line, line
        time.sleep(TIMEOUT * 2.5)  # the connection stays open past the body idle timeout
    finally:
        sock.close()
    # A later request is answered, then the server stops: all it had to say of that
    # connection is in the log by then.
    with httpx.Client(base_url=fast.base_url, timeout=30) as http:
        assert http.get("/files", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    fast.stop()
    log = fast.log_text()
    assert "Finished server process" in log, log[-3000:]
    assert "unhandled error" not in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert " ERROR " not in log and " 500 " not in log, log[-3000:]
