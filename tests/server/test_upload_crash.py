"""Completing uploads (a manifest over their parts) under SIGKILL, on both deployments: a
server killed while it completes uploads is started again, and then each upload is either
completed with its file whole, or completable again (its parts all there); once the files
are deleted, the sweeper leaves no byte of them, parts and manifests included."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from .._server import Deployment, ServerProcess, sql
from ._util import auth

MiB = 1024 * 1024
ORG = "org-upload-crash"
UPLOADS = 8
PARTS = 6
#: A sweep five times a second, with a second's grace: what the deletes leave goes fast.
SWEEPING = (
    "--sweep-grace-seconds",
    "1",
    "--sweep-interval-seconds",
    "0.2",
    "--body-idle-timeout-seconds",
    "0.5",
)


def _content(upload: int, part: int) -> bytes:
    seed = hashlib.sha256(f"{upload}-{part}".encode()).digest()
    size = MiB + 1000 * part + upload  # sizes that no two parts share
    return (seed * (size // len(seed) + 1))[:size]


def stored_keys(server: ServerProcess, deployment: Deployment) -> set[str]:
    """Every object of the server's blob store, manifests included (their paths)."""
    if deployment.name == "embedded":
        root = server.data_dir
        return {
            str(p.relative_to(root))
            for folder in ("blobs", "manifests")
            for p in (root / folder).glob("*/*")
        }
    assert deployment.s3 is not None
    url = urlsplit(server.env["OPENAI_FILES_STORAGE"])
    client: Any = deployment.s3.client()
    pages = client.get_paginator("list_objects_v2").paginate(
        Bucket=url.netloc, Prefix=url.path.strip("/") + "/"
    )
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def test_sigkill_during_completions_leaves_each_upload_completable_or_whole(
    deployment: Deployment,
) -> None:
    server = deployment.server(*SWEEPING)
    key = server.create_key(ORG, "proj_crash")
    wholes: dict[str, bytes] = {}
    parts: dict[str, list[str]] = {}
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as http:
        for u in range(UPLOADS):
            pieces = [_content(u, p) for p in range(PARTS)]
            whole = b"".join(pieces)
            r = http.post(
                "/uploads",
                json={
                    "filename": f"u{u}.bin",
                    "purpose": "vision",
                    "bytes": len(whole),
                    "mime_type": "application/octet-stream",
                },
            )
            assert r.status_code == 200, r.text
            uid = r.json()["id"]
            ids = []
            for piece in pieces:
                r = http.post(f"/uploads/{uid}/parts", files={"data": ("blob", piece)})
                assert r.status_code == 200, r.text
                ids.append(r.json()["id"])
            # Completed in reverse order of arrival: the file's order is the one given.
            wholes[uid] = b"".join(reversed(pieces))
            parts[uid] = list(reversed(ids))

    def body(uid: str, n: int) -> dict[str, Any]:
        # With an md5 for every other one: those read their parts back, for longer.
        md5 = {"md5": hashlib.md5(wholes[uid]).hexdigest()} if n % 2 else {}
        return {"part_ids": parts[uid], **md5}

    answered: dict[str, int] = {}
    first = threading.Event()

    def complete(n: int, uid: str) -> None:
        with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as http:
            try:
                r = http.post(f"/uploads/{uid}/complete", json=body(uid, n))
            except httpx.TransportError:
                return
        answered[uid] = r.status_code
        first.set()

    try:
        with ThreadPoolExecutor(UPLOADS) as pool:
            futures = [pool.submit(complete, n, uid) for n, uid in enumerate(wholes)]
            assert first.wait(60), "no completion answered"
            server.kill()
            for f in futures:
                f.result()
    finally:
        server.kill()
    assert set(answered.values()) <= {200}, answered
    assert len(answered) < UPLOADS, "every completion answered before the kill"

    restarted = ServerProcess(server.data_dir, *SWEEPING, env=server.env).start()
    try:
        with httpx.Client(base_url=restarted.base_url, headers=auth(key), timeout=60) as http:
            for n, uid in enumerate(wholes):
                status = sql(restarted, "SELECT status FROM uploads WHERE id = ?", uid)
                if uid in answered:  # acknowledged: completed, whatever came after
                    assert status == "completed", (uid, status)
                if status == "completing":
                    # Another server's completion (PostgreSQL: shared) is taken over once
                    # its lease is old: as if ten minutes had passed.
                    assert deployment.name == "scaleout", uid
                    sql(
                        restarted,
                        "UPDATE uploads SET completing_since = ? WHERE id = ?",
                        int(time.time()) - 3600,
                        uid,
                    )
                if status != "completed":  # completable again, from the same parts
                    r = http.post(f"/uploads/{uid}/complete", json=body(uid, n))
                    assert r.status_code == 200, r.text
                file_id = sql(restarted, "SELECT file_id FROM uploads WHERE id = ?", uid)
                got = http.get(f"/files/{file_id}/content")
                assert got.status_code == 200, got.text
                assert got.content == wholes[uid], uid
                r = http.get(f"/files/{file_id}/content", headers={"range": "bytes=1000-"})
                assert r.status_code == 206 and r.content == wholes[uid][1000:]
            # Each file counted once.
            used = sql(restarted, "SELECT used_bytes FROM org_usage WHERE org_id = ?", ORG)
            assert used == sum(len(w) for w in wholes.values())
            assert stored_keys(restarted, deployment), "the files' bytes are stored"
            for uid in wholes:
                file_id = sql(restarted, "SELECT file_id FROM uploads WHERE id = ?", uid)
                assert http.delete(f"/files/{file_id}").status_code == 200
        # Deleting a file removed its parts and its manifest; the sweeper takes what a
        # cut completion left (none may be left by then).
        deadline = time.monotonic() + 30
        while (left := stored_keys(restarted, deployment)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not left
        assert sql(restarted, "SELECT used_bytes FROM org_usage WHERE org_id = ?", ORG) == 0
    finally:
        restarted.stop()
