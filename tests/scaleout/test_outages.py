"""When PostgreSQL or S3 is down: 503 with retry-after, nothing half-written, recovery."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx

from .._server import Deployment, ServerProcess
from .._services import PostgresCluster, SeaweedS3
from ..api._contract import assert_error

UNAVAILABLE = "The service is temporarily unable to reach its storage. Please retry shortly."


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
            # ...asked of the replica directly: it is unready, out of a load balancer's
            # rotation (docs/deploy.md says why).
            ready = httpx.get(server.root_url + "/readyz", timeout=10)
            assert (ready.status_code, ready.json()["checks"]["storage"]) == (503, "error")
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


def test_a_database_restart_mid_completion_leaves_the_upload_pending(
    own: tuple[PostgresCluster, SeaweedS3], tmp_path: Path
) -> None:
    """PostgreSQL stops while a completion joins the parts: the completion answers 503 and
    cannot put its upload back to pending then; once the database is back, the sweeper does,
    and the upload completes (it was left "completing", refusing complete and cancel)."""
    pg, s3 = own
    deployment = Deployment("scaleout", tmp_path, postgres=pg, s3=s3)
    server = deployment.server(env={"OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "1"})
    database = server.env["OPENAI_FILES_DATABASE"]

    def status(upload_id: str) -> str:
        async def run() -> str:
            conn = await asyncpg.connect(database)
            try:
                sql = "SELECT status FROM uploads WHERE id = $1"
                return str(await conn.fetchval(sql, upload_id))
            finally:
                await conn.close()

        return asyncio.run(run())

    try:
        headers = {"Authorization": f"Bearer {server.create_key('org-o', 'proj_o')}"}
        parts = [os.urandom(4 * 1024 * 1024) for _ in range(8)]
        whole = b"".join(parts)
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as c:
            body = {"filename": "a.bin", "purpose": "vision", "bytes": len(whole)}
            uid = c.post("/uploads", json={**body, "mime_type": "text/plain"}).json()["id"]

            def send(data: bytes) -> str:
                r = c.post(f"/uploads/{uid}/parts", files={"data": ("blob", data)})
                assert r.status_code == 200, r.text
                return str(r.json()["id"])

            # Sent at once, so that completion reads the joined bytes back for their md5.
            with ThreadPoolExecutor(4) as pool:
                part_ids = list(pool.map(send, parts))
            complete = {"part_ids": part_ids, "md5": hashlib.md5(whole).hexdigest()}
            with ThreadPoolExecutor(1) as pool:
                cut = pool.submit(c.post, f"/uploads/{uid}/complete", json=complete)
                deadline = time.monotonic() + 30
                while status(uid) != "completing" and time.monotonic() < deadline:
                    time.sleep(0.005)
                pg.halt()
                _assert_unavailable(cut.result())
            pg.resume()
            # A sweep a second; the first ones after the restart may meet dead connections.
            deadline = time.monotonic() + 60
            while status(uid) != "pending" and time.monotonic() < deadline:
                time.sleep(0.2)
            assert status(uid) == "pending", "the upload was left being completed"
            assert "could not put upload" in server.log_text()
            r = c.post(f"/uploads/{uid}/complete", json=complete)
            assert r.status_code == 200, r.text
            assert c.get(f"/files/{r.json()['file']['id']}/content").content == whole
    finally:
        server.stop()
