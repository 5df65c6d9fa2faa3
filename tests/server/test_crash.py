"""Crash safety: a server killed with SIGKILL mid-upload or mid-delete loses nothing it
acknowledged, shows nothing half-written, and leaves no bytes, temp files or quota
reservations behind once it starts again on the same data folder."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from .._server import ServerProcess
from ..api._contract import assert_error
from ._util import (
    STORAGE_LIMIT,
    auth,
    blob_names,
    download,
    list_files,
    multipart_headers,
    multipart_parts,
    no_such_file,
    streamed_body,
    temp_names,
    upload,
)

MiB = 1024 * 1024
QUOTA = 64 * MiB
BIG_FILE = 48 * MiB  # announced by the upload that is killed; reserved against QUOTA
KILL_AFTER = 20 * MiB  # sent before the kill
ENV = {"OPENAI_FILES_ORG_QUOTA_BYTES": str(QUOTA)}


def content_for(name: str, size: int = 2048) -> bytes:
    """Bytes that only `name` has, so a file's bytes can be checked from its name."""
    seed = hashlib.sha256(name.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


@pytest.fixture
def crash_server(tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own on a fresh data folder (it is killed, so never shared)."""
    proc = ServerProcess(tmp_path / "data", env=ENV).start()
    try:
        yield proc
    finally:
        proc.kill()


def restart(old: ServerProcess) -> ServerProcess:
    assert old.proc is not None and old.proc.poll() is not None, "the server is still running"
    return ServerProcess(old.data_dir, env=ENV).start()


def assert_consistent(
    server: ServerProcess,
    key: str,
    *,
    must_exist: dict[str, bytes],
    may_exist: dict[str, bytes],
    must_be_gone: set[str],
) -> list[dict[str, Any]]:
    """The list, the bytes and the data folder agree after a restart."""
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        listed = list_files(http, key)
        ids = [f["id"] for f in listed]
        assert len(ids) == len(set(ids)), "a file is listed twice"
        missing = set(must_exist) - set(ids)
        assert not missing, f"{len(missing)} acknowledged files were lost"
        unexpected = set(ids) - set(must_exist) - set(may_exist)
        assert not unexpected, f"files nobody uploaded are listed: {unexpected}"
        assert not set(ids) & must_be_gone, "a file whose delete was acknowledged is listed"
        for f in listed:
            expected = must_exist.get(f["id"], may_exist.get(f["id"]))
            assert expected is not None, f  # listed, so uploaded (checked above)
            assert f["bytes"] == len(expected), f
            response = download(http, key, f["id"])
            assert response.status_code == 200, response.text
            assert response.content == expected, f"the bytes of {f['id']} differ"
        for file_id in must_be_gone:
            assert_error(
                http.get(f"/files/{file_id}", headers=auth(key)),
                404,
                no_such_file(file_id),
                param="id",
            )
            assert_error(download(http, key, file_id), 404, no_such_file(file_id), param="id")
    # The sweep on start (grace 0: the server holds the folder's lock) removed every leftover.
    assert blob_names(server.data_dir) == set(ids), "orphan or missing bytes in blobs/"
    assert temp_names(server.data_dir) == [], "temp files survived the restart"
    return listed


def assert_quota_free(server: ServerProcess, key: str, used: int) -> None:
    """Nothing but the listed files counts against the quota: no reservation survived."""
    with openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0) as client:
        # Announced with a Content-Length, so it reserves; a leftover 48 MiB would refuse it.
        big = os.urandom(30 * MiB)
        f = client.files.create(file=("after-restart.bin", big), purpose="evals")
        assert client.files.content(f.id).content == big
    used += len(big)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        # Exactly the free space fits (the usage counter matches the rows); one byte more does not.
        rest = content_for("rest", QUOTA - used)
        r = upload(http, key, rest, "rest.bin", chunked=True)
        assert r.status_code == 200, r.text
        over = upload(http, key, b"x", "over.bin", chunked=True)
        assert_error(over, 400, STORAGE_LIMIT, code="storage_limit_exceeded", param="file")


def test_sigkill_mid_upload(crash_server: ServerProcess) -> None:
    server = crash_server
    key = server.create_key("org-crash-upload", "proj_crash")
    data_dir = server.data_dir
    acknowledged: dict[str, bytes] = {}
    in_doubt: dict[str, bytes] = {}  # filename -> bytes of uploads cut by the kill
    lock = threading.Lock()
    stop = threading.Event()

    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        for i in range(5):
            content = content_for(f"before-{i}")
            r = upload(http, key, content, f"before-{i}.bin")
            assert r.status_code == 200, r.text
            acknowledged[r.json()["id"]] = content

    def small_uploads(worker: int) -> None:
        # Small uploads keep going while the big one is killed: some are cut at every stage.
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                name = f"w{worker}-{n}.bin"
                content = content_for(name, 64 * 1024)
                with lock:
                    in_doubt[name] = content
                try:
                    r = upload(http, key, content, name, chunked=n % 2 == 1)
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                with lock:
                    acknowledged[r.json()["id"]] = in_doubt.pop(name)
                n += 1

    killed = threading.Event()
    in_flight: list[int] = []  # sizes of the big body's temp file seen before the kill
    caught: list[int] = []  # its size when it was seen growing (or 8 MiB long): the kill
    head, tail, length = multipart_parts("big.bin", BIG_FILE)

    def big_body() -> Iterator[bytes]:
        chunk = os.urandom(MiB)
        for _ in range(KILL_AFTER // MiB):
            yield chunk
        # Kill only once the server is visibly writing this body to a temp file (one past
        # 1 MiB: no small upload's): seen growing (it still has bytes of it to read), or
        # already 8 MiB long.
        deadline = time.monotonic() + 60
        last = -1
        while time.monotonic() < deadline:
            sizes = [p.stat().st_size for p in (data_dir / "tmp").glob("*.part")]
            size = max((n for n in sizes if n > MiB), default=-1)
            if size >= 0:
                in_flight.append(size)
            if size >= 8 * MiB or 0 <= last < size:
                caught.append(size)
                break
            last = size
            time.sleep(0.01)
        server.kill()
        killed.set()

    with ThreadPoolExecutor(4) as pool:
        workers = [pool.submit(small_uploads, i) for i in range(4)]
        time.sleep(0.3)
        with (
            httpx.Client(base_url=server.base_url, timeout=30) as http,
            pytest.raises(httpx.TransportError),
        ):
            http.post(
                "/files",
                content=streamed_body(head, big_body(), tail),
                headers=multipart_headers(key, length),
            )
        stop.set()
        for w in workers:
            w.result()
    assert killed.is_set()
    assert in_flight, "the big body's temp file never appeared before the kill"
    assert caught, f"the big body's temp file was never seen growing: sizes {in_flight[-5:]}"
    assert len(acknowledged) > 5, "no small upload finished before the kill"
    # The kill left the big body's temp file behind: the restart has something to sweep.
    assert any(name.startswith("file-") for name in temp_names(data_dir))

    restarted = restart(server)
    try:
        # An upload cut by the kill may have made it (its row was written) or not: if it is
        # listed, its bytes must be whole. The big one cannot have: half its body never came.
        with httpx.Client(base_url=restarted.base_url, timeout=30) as http:
            by_name = {f["filename"]: f["id"] for f in list_files(http, key)}
        maybe = {by_name[n]: c for n, c in in_doubt.items() if n in by_name}
        listed = assert_consistent(
            restarted, key, must_exist=acknowledged, may_exist=maybe, must_be_gone=set()
        )
        assert "big.bin" not in {f["filename"] for f in listed}
        assert_quota_free(restarted, key, used=sum(f["bytes"] for f in listed))
    finally:
        restarted.stop()


def test_sigkill_mid_delete(crash_server: ServerProcess) -> None:
    server = crash_server
    key = server.create_key("org-crash-delete", "proj_crash")
    contents: dict[str, bytes] = {}

    def create(i: int) -> tuple[str, bytes]:
        content = content_for(f"file-{i}")
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            r = upload(http, key, content, f"file-{i}.bin")
        assert r.status_code == 200, r.text
        return r.json()["id"], content

    with ThreadPoolExecutor(8) as pool:
        contents = dict(pool.map(create, range(200)))
    assert len(contents) == 200

    order = list(contents)
    next_index = 0
    deleted: set[str] = set()  # acknowledged with 200
    in_doubt: set[str] = set()  # sent, answer cut by the kill
    lock = threading.Lock()
    enough = threading.Event()

    def deleter() -> None:
        nonlocal next_index
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while True:
                with lock:
                    if next_index >= len(order):
                        return
                    file_id = order[next_index]
                    next_index += 1
                    in_doubt.add(file_id)
                try:
                    r = http.delete(f"/files/{file_id}", headers=auth(key))
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                assert r.json() == {"id": file_id, "object": "file", "deleted": True}
                with lock:
                    in_doubt.discard(file_id)
                    deleted.add(file_id)
                    if len(deleted) >= 80:
                        enough.set()

    with ThreadPoolExecutor(8) as pool:
        workers = [pool.submit(deleter) for _ in range(8)]
        assert enough.wait(30), "the deletes did not get going"
        server.kill()
        for w in workers:
            w.result()
    untouched = set(order[next_index:])
    assert untouched, "the kill came after every delete: nothing was cut"

    restarted = restart(server)
    try:
        listed = assert_consistent(
            restarted,
            key,
            must_exist={i: contents[i] for i in untouched},
            may_exist={i: contents[i] for i in in_doubt},
            must_be_gone=deleted,
        )
        # The usage counter went down with every row that went: the free space is exact.
        used = sum(f["bytes"] for f in listed)
        assert_quota_free(restarted, key, used)
    finally:
        restarted.stop()


def test_sigkill_mid_completion(crash_server: ServerProcess) -> None:
    """A server killed while it completes an upload leaves it "completing": the server that
    starts next on the folder (the only writer) knows no completion runs, so the upload is
    pending again at once (a manifest the cut completion wrote is removed, its parts kept);
    completing it makes the file, counted once. (Both deployments, many kills at once:
    tests/server/test_upload_crash.py.)"""
    server = crash_server
    key = server.create_key("org-crash-complete", "proj_crash")
    parts = [content_for(f"part-{i}", 3 * MiB) for i in range(8)]
    whole = b"".join(parts)
    with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as http:
        body = {"filename": "big.bin", "purpose": "vision", "bytes": len(whole)}
        r = http.post("/uploads", json={**body, "mime_type": "application/octet-stream"})
        assert r.status_code == 200, r.text
        uid = r.json()["id"]

        def send(data: bytes) -> str:
            with httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as h:
                r = h.post(f"/uploads/{uid}/parts", files={"data": ("blob", data)})
            assert r.status_code == 200, r.text
            part_id: str = r.json()["id"]
            return part_id

        # Sent at once, so that completion reads the joined bytes back for their md5.
        with ThreadPoolExecutor(4) as pool:
            part_ids = list(pool.map(send, parts))
    complete = {"part_ids": part_ids, "md5": hashlib.md5(whole).hexdigest()}
    database = server.data_dir / "files.sqlite3"

    def status() -> str:
        with sqlite3.connect(database, timeout=30) as db:
            return str(db.execute("SELECT status FROM uploads WHERE id = ?", (uid,)).fetchone()[0])

    def completion() -> None:
        with (
            httpx.Client(base_url=server.base_url, headers=auth(key), timeout=60) as http,
            pytest.raises(httpx.TransportError),
        ):
            http.post(f"/uploads/{uid}/complete", json=complete)

    with ThreadPoolExecutor(1) as pool:
        cut = pool.submit(completion)
        deadline = time.monotonic() + 30
        while status() != "completing" and time.monotonic() < deadline:
            time.sleep(0.002)
        time.sleep(0.02)  # into the joining of the parts
        server.kill()
        cut.result()
    assert status() == "completing", "the kill did not come mid-completion"

    restarted = restart(server)
    try:
        assert status() == "pending"
        with httpx.Client(base_url=restarted.base_url, headers=auth(key), timeout=60) as http:
            assert http.get("/uploads?status=pending").json()["data"][0]["id"] == uid
            r = http.post(f"/uploads/{uid}/complete", json=complete)
            assert r.status_code == 200, r.text
            file_id = r.json()["file"]["id"]
            assert download(http, key, file_id).content == whole
        # The file is its parts, named by its manifest: no other bytes are left.
        assert blob_names(restarted.data_dir) == {f"{file_id}.{p}" for p in part_ids}
        assert {p.name for p in (restarted.data_dir / "manifests").glob("*/*")} == {file_id}
        assert_quota_free(restarted, key, used=len(whole))
    finally:
        restarted.stop()


def test_second_server_on_the_same_folder_refuses_to_start(
    crash_server: ServerProcess,
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "openai_files",
            "serve",
            "--data-dir",
            str(crash_server.data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=crash_server.env,
    )
    assert done.returncode == 1
    assert "serving" not in done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("openai-files: error: ")
    assert "in use by another openai-files server" in lines[0]
    assert f"pid {crash_server.pid}" in lines[0]
    assert crash_server.healthy(), "the running server was disturbed"
