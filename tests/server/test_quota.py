"""Limits: the organization quota holds under racing uploads, and a file over the size
limit is refused before its body is read or cut off with nothing kept."""

from __future__ import annotations

import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from openai_files.server.settings import MULTIPART_OVERHEAD_BYTES

from .._server import ServerProcess
from ..api._contract import assert_error
from ._util import (
    BOUNDARY,
    PURPOSE,
    STORAGE_LIMIT,
    auth,
    blob_names,
    download,
    list_files,
    multipart_headers,
    multipart_parts,
    temp_names,
    upload,
)

QUOTA = 10_000
MAX_FILE = 5_000
FILE_SIZE = 1_000
ENV = {
    "OPENAI_FILES_ORG_QUOTA_BYTES": str(QUOTA),
    "OPENAI_FILES_MAX_FILE_BYTES": str(MAX_FILE),
    "OPENAI_FILES_MAX_UPLOADS_PER_KEY": "0",  # the race's 30 uploads share one key
}


@pytest.fixture
def small_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own whose folder holds only this test's files."""
    proc = ServerProcess(tmp_path / "data", env=ENV).start()
    try:
        yield proc
    finally:
        proc.stop()


def assert_folder_holds_exactly(server: ServerProcess, ids: set[str]) -> None:
    assert blob_names(server.data_dir) == ids
    assert temp_names(server.data_dir) == []


def test_racing_uploads_never_pass_the_quota(small_server: ServerProcess) -> None:
    server = small_server
    key = server.create_key("org-race", "proj_race")
    n = 30
    contents = {f"race-{i:02}.bin": os.urandom(FILE_SIZE) for i in range(n)}
    start = threading.Barrier(n)

    def race(i: int) -> tuple[str, int, Any]:
        name = f"race-{i:02}.bin"
        content = contents[name]
        if i % 5 == 0:
            # The official SDK (it announces a Content-Length).
            with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
                start.wait()
                try:
                    f = client.files.create(file=(name, content), purpose=PURPOSE)
                except openai.APIStatusError as exc:
                    return name, exc.status_code, exc.response.json()
                return name, 200, f.model_dump()
        # Every third httpx upload is chunked: no Content-Length, so nothing to reserve.
        chunked = i % 3 == 0
        head, tail, length = multipart_parts(name, len(content))

        def slow_body() -> Iterator[bytes]:
            yield head + content[:500]
            time.sleep(0.2)  # all bodies are in flight at once: the checks overlap
            yield content[500:] + tail

        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            start.wait()
            r = http.post(
                "/files",
                content=slow_body(),
                headers=multipart_headers(key, None if chunked else length),
            )
            return name, r.status_code, r.json()

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(race, range(n)))

    succeeded: dict[str, str] = {}
    for name, status, body in results:
        if status == 200:
            assert body["bytes"] == FILE_SIZE and body["filename"] == name, body
            succeeded[body["id"]] = name
        else:
            assert status == 400, body
            error = body["error"]
            assert error["type"] == "invalid_request_error"
            assert (error["code"], error["param"]) == ("storage_limit_exceeded", "file"), body
    assert 1 <= len(succeeded) <= QUOTA // FILE_SIZE

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        listed = list_files(http, key)
        assert {f["id"] for f in listed} == set(succeeded), "the list and the successes differ"
        assert sum(f["bytes"] for f in listed) <= QUOTA
        for file_id, name in succeeded.items():
            r = download(http, key, file_id)
            assert r.status_code == 200 and r.content == contents[name]
        assert_folder_holds_exactly(server, set(succeeded))

        # The failures gave their reservations back: the free space fills to the byte.
        while True:
            r = upload(http, key, os.urandom(FILE_SIZE), "fill.bin", chunked=True)
            if r.status_code != 200:
                assert_error(r, 400, STORAGE_LIMIT, code="storage_limit_exceeded", param="file")
                break
        listed = list_files(http, key)
        assert sum(f["bytes"] for f in listed) == QUOTA

        # Deleting gives the space back.
        for f in listed[:3]:
            assert http.delete(f"/files/{f['id']}", headers=auth(key)).status_code == 200
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        again = client.files.create(file=("again.bin", b"a" * FILE_SIZE), purpose=PURPOSE)
        assert client.files.content(again.id).content == b"a" * FILE_SIZE
        with pytest.raises(openai.BadRequestError) as exc_info:
            client.files.create(file=("more.bin", b"m" * (2 * FILE_SIZE + 1)), purpose=PURPOSE)
        assert exc_info.value.code == "storage_limit_exceeded"
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        final = list_files(http, key)
        assert sum(f["bytes"] for f in final) == QUOTA - 2 * FILE_SIZE
        assert_folder_holds_exactly(server, {f["id"] for f in final})


def test_a_file_that_fits_the_free_space_exactly_is_accepted(small_server: ServerProcess) -> None:
    # The quota counts the bytes of files, not the multipart framing around them.
    server = small_server
    key = server.create_key("org-exact", "proj_exact")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for i in range(QUOTA // FILE_SIZE - 1):
            r = upload(http, key, os.urandom(FILE_SIZE), f"f{i}.bin", chunked=True)
            assert r.status_code == 200, r.text
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        last = client.files.create(file=("last.bin", b"z" * FILE_SIZE), purpose=PURPOSE)
        assert last.bytes == FILE_SIZE
        with pytest.raises(openai.BadRequestError) as exc_info:
            client.files.create(file=("one-more.bin", b"z"), purpose=PURPOSE)
        assert exc_info.value.code == "storage_limit_exceeded"


TOO_LARGE = f"File is too large. The maximum size is {MAX_FILE} bytes."


class RawResponse:
    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status_code = int(status_line.split()[1])
        self.headers = {
            k.strip().lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)
        }

    def as_httpx(self) -> httpx.Response:
        """The same answer as an httpx response, for the one error-envelope helper."""
        return httpx.Response(self.status_code, headers=self.headers, content=self.body)


def read_response(sock: socket.socket) -> RawResponse:
    """Read one response with a Content-Length body (the server sends one for errors)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {raw!r}"
        raw += chunk
    response = RawResponse(raw)
    while len(response.body) < int(response.headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-response"
        response.body += chunk
    return response


def connect(server: ServerProcess) -> socket.socket:
    url = urlsplit(server.base_url)
    assert url.hostname == "127.0.0.1" and url.port
    sock = socket.create_connection((url.hostname, url.port), timeout=10)
    return sock


def request_head(key: str, extra: str) -> bytes:
    return (
        "POST /v1/files HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
        f"{extra}"
        "\r\n"
    ).encode()


def test_an_announced_size_over_the_limit_is_refused_before_the_body(
    small_server: ServerProcess,
) -> None:
    key = small_server.create_key("org-huge", "proj_huge")
    with connect(small_server) as sock:
        # Headers only: the answer must come without a byte of the (terabyte) body.
        sock.sendall(request_head(key, f"Content-Length: {10**12}\r\n"))
        response = read_response(sock)
    assert_error(response.as_httpx(), 413, TOO_LARGE, param="file", code="file_too_large")
    with httpx.Client(base_url=small_server.base_url, timeout=30) as http:
        assert list_files(http, key) == []
    assert_folder_holds_exactly(small_server, set())


@pytest.mark.parametrize(
    ("chunked", "size"),
    [
        pytest.param(True, 40 * MAX_FILE, id="chunked"),
        # Announced, but within the framing allowance: only the count mid-body can stop it.
        pytest.param(False, MAX_FILE + MULTIPART_OVERHEAD_BYTES - 2048, id="content-length"),
    ],
)
def test_a_body_past_the_limit_is_cut_off_and_nothing_kept(
    small_server: ServerProcess, chunked: bool, size: int
) -> None:
    key = small_server.create_key("org-long", "proj_long")
    head, tail, length = multipart_parts("long.bin", size)
    content = os.urandom(size)
    body = [head] + [content[i : i + 1000] for i in range(0, size, 1000)] + [tail]
    limit_passed_at = len(head) + MAX_FILE

    def frame(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

    extra = "Transfer-Encoding: chunked\r\n" if chunked else f"Content-Length: {length}\r\n"
    sent = 0
    with connect(small_server) as sock:
        sock.sendall(request_head(key, extra))
        # Once past the limit, give the server time to answer before each further piece,
        # and stop sending when it has: it must not wait for the end of the body.
        for data in body:
            wait = 0.05 if sent > limit_passed_at else 0
            if select.select([sock], [], [], wait)[0]:
                break
            sock.sendall(frame(data))
            sent += len(data)
        else:
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        response = read_response(sock)
    assert_error(response.as_httpx(), 413, TOO_LARGE, param="file", code="file_too_large")
    assert sent < length // 2, f"the server read {sent} of {length} bytes before refusing"
    with httpx.Client(base_url=small_server.base_url, timeout=30) as http:
        assert list_files(http, key) == []
        ok = upload(http, key, b"k" * FILE_SIZE, "kept.bin")
        assert ok.status_code == 200, ok.text
        # Nothing of the cut upload counts against the quota either.
        assert len(list_files(http, key)) == 1
    assert_folder_holds_exactly(small_server, {ok.json()["id"]})
