"""Several stateless replicas on one PostgreSQL and one S3 bucket."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .._server import Deployment, ServerProcess
from .._services import PostgresCluster, SeaweedS3


@pytest.fixture
def scaleout(postgres: PostgresCluster, s3: SeaweedS3, tmp_path: Path) -> Deployment:
    return Deployment("scaleout", tmp_path, postgres=postgres, s3=s3)


def _stop(servers: list[ServerProcess]) -> None:
    for proc in servers:
        proc.stop()


@pytest.fixture
def pair(scaleout: Deployment) -> Iterator[tuple[ServerProcess, ServerProcess, str]]:
    a, b = scaleout.replicas(2)
    try:
        yield a, b, a.create_key("org-pair", "proj_pair")
    finally:
        _stop([a, b])


def _objects(s3: SeaweedS3, server: ServerProcess) -> set[str]:
    """Keys of the objects under a server's storage prefix."""
    storage = server.env["OPENAI_FILES_STORAGE"]
    prefix = storage.split("?")[0].removeprefix("s3://files/") + "/"
    client = s3.client()
    found: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="files", Prefix=prefix):
        found.update(o["Key"].removeprefix(prefix) for o in page.get("Contents", []))
    return found


def _sdk(server: ServerProcess, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)


def test_a_file_crosses_replicas(pair: tuple[ServerProcess, ServerProcess, str]) -> None:
    a, b, key = pair
    content = os.urandom(3 * 1024 * 1024 + 11)
    with _sdk(a, key) as via_a, _sdk(b, key) as via_b:
        made = via_a.files.create(file=("x.bin", content), purpose="vision")
        assert via_b.files.retrieve(made.id) == made
        assert [f.id for f in via_b.files.list()] == [made.id]
        assert via_b.files.content(made.id).content == content
        assert via_b.files.delete(made.id).deleted
        with pytest.raises(openai.NotFoundError):
            via_a.files.retrieve(made.id)


def test_racing_uploads_through_both_replicas_respect_the_quota(scaleout: Deployment) -> None:
    servers = scaleout.replicas(2, env={"OPENAI_FILES_ORG_QUOTA_BYTES": "10000"})
    try:
        key = servers[0].create_key("org-race", "proj_race")
        barrier = threading.Barrier(30)

        def upload(i: int) -> tuple[int, dict[str, Any], bytes]:
            content = bytes([i]) * 1000
            barrier.wait()
            with httpx.Client(base_url=servers[i % 2].base_url, timeout=60) as c:
                r = c.post(
                    "/files",
                    headers={"Authorization": f"Bearer {key}"},
                    files={"file": (f"{i}.bin", content)},
                    data={"purpose": "vision"},
                )
            return r.status_code, r.json(), content

        with concurrent.futures.ThreadPoolExecutor(30) as pool:
            results = list(pool.map(upload, range(30)))
        ok = {body["id"]: content for status, body, content in results if status == 200}
        refused = [body for status, body, _ in results if status != 200]
        assert len(ok) + len(refused) == 30
        assert all(e["error"]["code"] == "storage_limit_exceeded" for e in refused), refused
        assert 0 < len(ok) <= 10
        with _sdk(servers[1], key) as client:
            listed = list(client.files.list())
            assert {f.id for f in listed} == set(ok)
            assert sum(f.bytes for f in listed) <= 10_000
            for file_id, content in ok.items():
                assert client.files.content(file_id).content == content
    finally:
        _stop(servers)


def test_sigkill_mid_upload_leaves_the_other_replica_whole(
    scaleout: Deployment, s3: SeaweedS3
) -> None:
    fast = {
        "OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "1",
        "OPENAI_FILES_SWEEP_GRACE_SECONDS": "2",
        # The upload below stalls until its server is killed: no body idle timeout.
        "OPENAI_FILES_BODY_IDLE_TIMEOUT_SECONDS": "0",
        "OPENAI_FILES_RESERVATION_TTL_SECONDS": "6",
        "OPENAI_FILES_ORG_QUOTA_BYTES": str(48 * 1024 * 1024),
    }
    victim, survivor = scaleout.replicas(2, env=fast)
    try:
        key = victim.create_key("org-kill", "proj_kill")
        with _sdk(survivor, key) as client:
            kept = client.files.create(file=("kept.bin", b"k" * 1000), purpose="vision")
            sent = threading.Event()
            boundary = "killboundary"
            size = 40 * 1024 * 1024

            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
                f"vision\r\n--{boundary}\r\nContent-Disposition: form-data; "
                f'name="file"; filename="big.bin"\r\n\r\n'
            ).encode()
            tail = f"\r\n--{boundary}--\r\n".encode()

            def body() -> Iterator[bytes]:
                yield head
                for i in range(size // (1024 * 1024)):
                    if i == 20:
                        sent.set()
                        time.sleep(30)  # the server dies meanwhile
                    yield b"b" * (1024 * 1024)
                yield tail

            def upload() -> None:
                headers = {
                    "Authorization": f"Bearer {key}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                    # Announced: the victim reserves 40 MiB of the 48 MiB quota for it.
                    "Content-Length": str(len(head) + size + len(tail)),
                }
                with contextlib.suppress(httpx.HTTPError):
                    httpx.post(
                        victim.base_url + "/files", content=body(), headers=headers, timeout=60
                    )

            thread = threading.Thread(target=upload, daemon=True)
            thread.start()
            assert sent.wait(30)
            time.sleep(1.0)  # let the server take in what was sent
            victim.kill()

            # The survivor serves on, and nothing partial is ever visible.
            assert [f.id for f in client.files.list()] == [kept.id]
            other = client.files.create(file=("after.bin", b"a" * 10), purpose="vision")
            # The dead upload's reservation holds 40 MiB until its lease lapses; then a
            # file of 40 MiB fits.
            with pytest.raises(openai.BadRequestError, match="storage limit"):
                client.files.create(file=("no.bin", b"n" * (40 * 1024 * 1024)), purpose="vision")
            deadline = time.monotonic() + 20
            while True:
                try:
                    big = client.files.create(
                        file=("big2.bin", b"c" * (40 * 1024 * 1024)), purpose="vision"
                    )
                    break
                except openai.BadRequestError:
                    assert time.monotonic() < deadline, "the dead upload's quota never lapsed"
                    time.sleep(1)
            assert {f.id for f in client.files.list()} == {kept.id, other.id, big.id}

            # The reconciler removes an object that no row names (as a crash between the
            # object's completion and its row would leave), and keeps every named one.
            orphan = "file-" + secrets.token_hex(12)
            prefix = survivor.env["OPENAI_FILES_STORAGE"].split("?")[0]
            prefix = prefix.removeprefix("s3://files/")
            s3.client().put_object(Bucket="files", Key=f"{prefix}/{orphan}", Body=b"orphan")
            assert orphan in _objects(s3, survivor)
            deadline = time.monotonic() + 20
            while orphan in _objects(s3, survivor):
                assert time.monotonic() < deadline, "the orphan object was never removed"
                time.sleep(0.5)
            assert _objects(s3, survivor) == {kept.id, other.id, big.id}
            assert client.files.content(big.id).response.headers["content-length"] == str(
                40 * 1024 * 1024
            )
    finally:
        _stop([victim, survivor])


def test_paging_across_replicas_while_files_are_added(
    pair: tuple[ServerProcess, ServerProcess, str],
) -> None:
    a, b, key = pair
    headers = {"Authorization": f"Bearer {key}"}

    def upload(server: ServerProcess, i: int) -> str:
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as c:
            r = c.post("/files", files={"file": (f"{i}.txt", b"x")}, data={"purpose": "vision"})
            assert r.status_code == 200, r.text
            file_id: str = r.json()["id"]
            return file_id

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        before = set(pool.map(lambda i: upload((a, b)[i % 2], i), range(300)))

    stop = threading.Event()

    def keep_adding() -> None:
        i = 1000
        while not stop.is_set():
            upload((a, b)[i % 2], i)
            i += 1

    adder = threading.Thread(target=keep_adding)
    adder.start()
    try:
        for order in ("desc", "asc"):
            seen: list[tuple[int, str]] = []
            after = None
            with httpx.Client(base_url=b.base_url, headers=headers) as c:
                for page_no in range(10_000):
                    params: dict[str, Any] = {"limit": 7, "order": order}
                    if after:
                        params["after"] = after
                    server = (a, b)[page_no % 2]  # alternate replicas page by page
                    page = c.get(server.base_url + "/files", params=params).json()
                    seen.extend((f["created_at"], f["id"]) for f in page["data"])
                    if not page["has_more"]:
                        break
                    after = page["last_id"]
            ids = [i for _, i in seen]
            assert len(ids) == len(set(ids)), "a file was seen twice"
            assert before <= set(ids), "a file that existed before the listing was skipped"
            assert seen == sorted(seen, reverse=order == "desc")
    finally:
        stop.set()
        adder.join()


def _pg(server: ServerProcess, sql: str, *args: Any) -> Any:
    """The first value of one statement on the replicas' database ($n placeholders)."""
    import asyncio

    import asyncpg

    async def run() -> Any:
        conn = await asyncpg.connect(server.env["OPENAI_FILES_DATABASE"])
        try:
            return await conn.fetchval(sql, *args)
        finally:
            await conn.close()

    return asyncio.run(run())


def _multipart_uploads(s3: SeaweedS3, server: ServerProcess) -> list[str]:
    """Keys of the unfinished S3 multipart uploads under a server's storage prefix."""
    prefix = server.env["OPENAI_FILES_STORAGE"].split("?")[0].removeprefix("s3://files/") + "/"
    listed = s3.client().list_multipart_uploads(Bucket="files", Prefix=prefix)
    return [u["Key"].removeprefix(prefix) for u in listed.get("Uploads", [])]


def test_a_replica_killed_mid_part_leaves_the_upload_resumable(
    scaleout: Deployment, s3: SeaweedS3
) -> None:
    """SIGKILL a replica while a part streams to it: the upload takes its remaining parts
    (and the lost one again) through the other replica and completes with the right bytes;
    another upload left behind expires and, swept, leaves no part, no multipart upload and
    no reservation."""
    fast = {
        "OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "1",
        "OPENAI_FILES_SWEEP_GRACE_SECONDS": "2",
        "OPENAI_FILES_BODY_IDLE_TIMEOUT_SECONDS": "0",  # the part stalls until the kill
        "OPENAI_FILES_RESERVATION_TTL_SECONDS": "6",
    }
    victim, survivor = scaleout.replicas(2, env=fast)
    org = "org-kill-part"
    try:
        key = victim.create_key(org, "proj_kill_part")
        mib = 1024 * 1024
        pieces = [os.urandom(2 * mib), os.urandom(20 * mib), os.urandom(3 * mib + 1)]
        content = b"".join(pieces)
        with _sdk(survivor, key) as client, _sdk(victim, key) as via_victim:
            upload = client.uploads.create(
                bytes=len(content), filename="big.bin", mime_type="image/png", purpose="vision"
            )
            first = client.uploads.parts.create(upload.id, data=pieces[0])
            abandoned = via_victim.uploads.create(
                bytes=4 * mib, filename="left.bin", mime_type="image/png", purpose="vision"
            )
            left_part = via_victim.uploads.parts.create(abandoned.id, data=os.urandom(mib))

            # The second part streams to the victim, which dies with 12 MiB of it taken in.
            sent = threading.Event()
            boundary = "partkillboundary"
            head = (
                f'--{boundary}\r\nContent-Disposition: form-data; name="data"; '
                'filename="blob"\r\nContent-Type: application/octet-stream\r\n\r\n'
            ).encode()
            tail = f"\r\n--{boundary}--\r\n".encode()

            def body() -> Iterator[bytes]:
                yield head
                for i in range(20):
                    if i == 12:
                        sent.set()
                        time.sleep(30)  # the server dies meanwhile
                    yield pieces[1][i * mib : (i + 1) * mib]
                yield tail

            def send() -> None:
                headers = {
                    "Authorization": f"Bearer {key}",
                    "Content-Type": f"multipart/form-data; boundary={boundary}",
                }
                with contextlib.suppress(httpx.HTTPError):
                    httpx.post(
                        f"{victim.base_url}/uploads/{upload.id}/parts",
                        content=body(),
                        headers=headers,
                        timeout=60,
                    )

            thread = threading.Thread(target=send, daemon=True)
            thread.start()
            assert sent.wait(30)
            time.sleep(1.0)  # let the server take in what was sent
            assert _multipart_uploads(s3, victim), "the part did not reach S3 before the kill"
            victim.kill()

            # The upload is still pending and takes the rest through the survivor.
            listed = httpx.get(
                f"{survivor.base_url}/uploads",
                headers={"Authorization": f"Bearer {key}"},
                params={"status": "pending"},
            ).json()
            assert {u["id"] for u in listed["data"]} == {upload.id, abandoned.id}
            third = client.uploads.parts.create(upload.id, data=pieces[2])
            second = client.uploads.parts.create(upload.id, data=pieces[1])
            md5 = hashlib.md5(content).hexdigest()
            done = client.uploads.complete(
                upload.id, part_ids=[first.id, second.id, third.id], md5=md5
            )
            assert done.status == "completed" and done.file is not None
            got = client.files.content(done.file.id).content
            assert hashlib.sha256(got).digest() == hashlib.sha256(content).digest()

            # The abandoned upload expires (its hour and the sweeper's margin passed): the
            # survivor's sweeper takes it, the part's multipart upload the victim left is
            # aborted once its lease lapses, and nothing of either remains.
            _pg(
                survivor,
                "UPDATE uploads SET expires_at = $1 WHERE id = $2",
                int(time.time()) - 601,
                abandoned.id,
            )
            client.files.delete(done.file.id)
            deadline = time.monotonic() + 60
            while True:
                status = _pg(survivor, "SELECT status FROM uploads WHERE id = $1", abandoned.id)
                leftovers = (_objects(s3, survivor), _multipart_uploads(s3, survivor))
                if status == "expired" and leftovers == (set(), []):
                    break
                assert time.monotonic() < deadline, (status, leftovers)
                time.sleep(0.5)
            assert left_part.id not in _objects(s3, survivor)
            held = _pg(survivor, "SELECT COUNT(*) FROM reservations WHERE org_id = $1", org)
            used = _pg(survivor, "SELECT used_bytes FROM org_usage WHERE org_id = $1", org)
            assert (held, used or 0) == (0, 0)
            assert _pg(survivor, "SELECT COUNT(*) FROM upload_parts") == 0
    finally:
        _stop([victim, survivor])
