"""When PostgreSQL or S3 is down: 503 with retry-after, nothing half-written, recovery."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .._server import Deployment, ServerProcess
from .._services import PostgresCluster, SeaweedS3
from ..api._contract import assert_error

UNAVAILABLE = "The service is temporarily unable to reach its storage. Please retry shortly."


@pytest.fixture
def own() -> Iterator[tuple[PostgresCluster, SeaweedS3]]:
    """Services of this test alone, so that it can stop them."""
    pg, s3 = PostgresCluster().start(), SeaweedS3().start()
    try:
        yield pg, s3
    finally:
        pg.stop()
        s3.stop()


def _assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503, UNAVAILABLE, error_type="server_error")
    assert int(response.headers["retry-after"]) >= 1


def test_outages_answer_503_and_recover(
    own: tuple[PostgresCluster, SeaweedS3], tmp_path: Path
) -> None:
    pg, s3 = own
    server: ServerProcess = Deployment("scaleout", tmp_path, postgres=pg, s3=s3).server()
    try:
        headers = {"Authorization": f"Bearer {server.create_key('org-o', 'proj_o')}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as c:

            def upload(content: bytes) -> httpx.Response:
                return c.post(
                    "/files", files={"file": ("a.bin", content)}, data={"purpose": "vision"}
                )

            kept = upload(b"kept").json()["id"]

            s3.halt()
            _assert_unavailable(upload(b"y" * 100_000))  # one PUT, at the end
            _assert_unavailable(upload(b"w" * (20 * 1024 * 1024)))  # a multipart upload
            _assert_unavailable(c.get(f"/files/{kept}/content"))
            listed = c.get("/files").json()["data"]  # metadata still answers
            assert [f["id"] for f in listed] == [kept]
            s3.start()
            assert c.get(f"/files/{kept}/content").content == b"kept"
            assert upload(b"back").status_code == 200

            pg.halt()
            _assert_unavailable(c.get("/files"))
            _assert_unavailable(upload(b"z"))
            assert httpx.get(server.root_url + "/healthz").status_code == 200
            pg.resume()
            for _ in range(3):  # the pool drops connections that died with the server
                if c.get("/files").status_code == 200:
                    break
            names = sorted(f["filename"] for f in c.get("/files").json()["data"])
            assert len(names) == 2
    finally:
        server.stop()
