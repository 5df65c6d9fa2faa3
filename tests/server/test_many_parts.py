"""An upload of more parts than the server may open files: completing it opens the parts one
after another, so it never fails for want of file descriptors (a real server, started
under a low open-file limit, on both deployments)."""

from __future__ import annotations

import hashlib
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from .._server import Deployment, ServerProcess

#: The server's open-file limit (soft and hard, so that it cannot raise it).
FD_LIMIT = 256
#: More parts than FD_LIMIT, of bytes that add up past S3's smallest part (5 MiB), so that
#: S3 composes them as a multipart upload rather than in one PUT.
PARTS = 320
PART_BYTES = 20 * 1024


class LowFdServer(ServerProcess):
    """`openai-files serve` in a process whose open-file limit is FD_LIMIT."""

    command = (
        sys.executable,
        "-c",
        "import resource, runpy, sys; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, ({FD_LIMIT}, {FD_LIMIT})); "
        "sys.argv = ['openai-files', *sys.argv[1:]]; "
        "runpy.run_module('openai_files', run_name='__main__')",
        "serve",
    )


@pytest.fixture
def low_fd_server(deployment: Deployment) -> Any:
    server = deployment.server("--max-connections", "64", process=LowFdServer)
    try:
        yield server
    finally:
        server.stop()


def test_completing_more_parts_than_open_files(low_fd_server: ServerProcess) -> None:
    server = low_fd_server
    key = server.create_key("org-many-parts", "proj_many_parts")
    parts = [bytes([i % 251]) * PART_BYTES for i in range(PARTS)]
    whole = b"".join(parts)
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as http:
        r = http.post(
            "/uploads",
            json={
                "filename": "many.bin",
                "purpose": "vision",
                "bytes": len(whole),
                "mime_type": "application/octet-stream",
            },
        )
        assert r.status_code == 200, r.text
        uid = r.json()["id"]

        def send(data: bytes) -> str:
            r = http.post(f"/uploads/{uid}/parts", files={"data": ("blob", data)})
            assert r.status_code == 200, r.text
            part_id: str = r.json()["id"]
            return part_id

        with ThreadPoolExecutor(4) as pool:
            part_ids = list(pool.map(send, parts))
        r = http.post(
            f"/uploads/{uid}/complete",
            json={"part_ids": part_ids, "md5": hashlib.md5(whole).hexdigest()},
        )
        assert r.status_code == 200, r.text
        file_id = r.json()["file"]["id"]
        assert http.get(f"/files/{file_id}/content").content == whole
    assert "Too many open files" not in server.log_text()
