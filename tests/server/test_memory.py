"""Streaming both ways: a 256 MB upload and download do not grow the server's peak memory
by more than 64 MB (measured as the growth of its VmHWM over its RSS after a warm-up)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import httpx
import pytest

from .._server import Deployment, ServerProcess
from ._util import auth, memory, multipart_headers, multipart_parts, reset_peak, streamed_body

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
BIG = 256 * MiB
MAX_GROWTH = 64 * MiB


def random_chunks(size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """`size` random bytes, one MiB at a time, hashed as they go: the test holds one chunk."""
    for _ in range(size // MiB):
        chunk = os.urandom(MiB)
        digest.update(chunk)
        yield chunk


def stream_upload(http: httpx.Client, key: str, size: int) -> tuple[str, str]:
    """Upload `size` random bytes from a generator; returns the file id and the sha256."""
    digest = hashlib.sha256()
    head, tail, length = multipart_parts("big.bin", size)
    response = http.post(
        "/files",
        content=streamed_body(head, random_chunks(size, digest), tail),
        headers=multipart_headers(key, length),
    )
    assert response.status_code == 200, response.text
    assert response.json()["bytes"] == size
    return response.json()["id"], digest.hexdigest()


def stream_download(http: httpx.Client, key: str, file_id: str) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with http.stream("GET", f"/files/{file_id}/content", headers=auth(key)) as response:
        assert response.status_code == 200
        expected = int(response.headers["content-length"])
        for chunk in response.iter_bytes(MiB):
            digest.update(chunk)
            size += len(chunk)
    assert size == expected
    return size, digest.hexdigest()


class Measured:
    def __init__(self, server: ServerProcess, key: str, http: httpx.Client) -> None:
        self.server = server
        self.key = key
        self.http = http
        self.file_id = ""
        self.sha256 = ""
        self.upload_growth = 0


@pytest.fixture(scope="module")
def measured(deployment: Deployment) -> Iterator[Measured]:
    """A dedicated server, warmed up, that has received the big file (peak measured), on
    each deployment: a local folder, and S3 (multipart uploads, ranged reads)."""
    server = deployment.server()
    try:
        key = server.create_key("org-memory", "proj_memory")
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            state = Measured(server, key, http)
            # Warm-up: thread pools, buffers and code paths of both directions exist already.
            warm_id, warm_sha = stream_upload(http, key, 16 * MiB)
            assert stream_download(http, key, warm_id) == (16 * MiB, warm_sha)
            baseline = reset_peak(server.pid)
            state.file_id, state.sha256 = stream_upload(http, key, BIG)
            state.upload_growth = memory(server.pid)["VmHWM"] - baseline
            yield state
    finally:
        server.stop()


def test_upload_of_256_mb_streams(measured: Measured) -> None:
    growth = measured.upload_growth
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MiB:.1f} MiB during the upload"


def test_download_of_256_mb_streams(measured: Measured) -> None:
    pid = measured.server.pid
    baseline = reset_peak(pid)
    size, sha256 = stream_download(measured.http, measured.key, measured.file_id)
    growth = memory(pid)["VmHWM"] - baseline
    assert (size, sha256) == (BIG, measured.sha256), "the downloaded bytes differ"
    assert growth < MAX_GROWTH, f"peak RSS grew by {growth / MiB:.1f} MiB during the download"
