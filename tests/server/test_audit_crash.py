"""The audit log's promise under SIGKILL, on both deployments: a server killed while clients
upload and delete files is started again, and then every file gone has exactly one
`file.deleted`, every `file.deleted` names a file gone, every file there has exactly one
`file.created` and no `file.deleted`: a change and its event were committed together, or
neither was."""

from __future__ import annotations

import collections
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from .._server import Deployment, ServerProcess
from ._util import auth, list_files, upload

FILES = 200
DELETERS = 6
UPLOADERS = 2
#: Deletes acknowledged before the kill.
KILL_AFTER = 60


def _events(server: ServerProcess, admin_key: str) -> list[dict[str, Any]]:
    """Every event of the organization, newest first."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    with httpx.Client(base_url=server.base_url, headers=auth(admin_key), timeout=30) as http:
        while True:
            response = http.get("/organization/audit_logs", params=params)
            assert response.status_code == 200, response.text
            page = response.json()
            out += page["data"]
            if not page["has_more"]:
                return out
            params["after"] = page["last_id"]


def test_sigkill_during_deletes_and_uploads_keeps_each_change_with_its_event(
    deployment: Deployment,
) -> None:
    server = deployment.server()
    org = "org-audit-crash"
    key = server.create_key(org, "proj_crash")
    admin_key = server.create_admin_key(org)

    def create(i: int) -> str:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            r = upload(http, key, f"content {i}".encode(), f"file-{i}.txt")
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    with ThreadPoolExecutor(8) as pool:
        order = list(pool.map(create, range(FILES)))

    lock = threading.Lock()
    next_index = 0
    deleted: set[str] = set()  # acknowledged
    made: set[str] = set()  # uploads acknowledged during the deletes
    enough = threading.Event()
    stop = threading.Event()

    def deleter() -> None:
        nonlocal next_index
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while True:
                with lock:
                    if next_index >= len(order):
                        return
                    file_id = order[next_index]
                    next_index += 1
                try:
                    r = http.delete(f"/files/{file_id}", headers=auth(key))
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                with lock:
                    deleted.add(file_id)
                    if len(deleted) >= KILL_AFTER:
                        enough.set()

    def uploader(n: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            i = 0
            while not stop.is_set():
                try:
                    r = upload(http, key, b"more", f"more-{n}-{i}.txt")
                except httpx.TransportError:
                    return
                assert r.status_code == 200, r.text
                with lock:
                    made.add(r.json()["id"])
                i += 1

    try:
        with ThreadPoolExecutor(DELETERS + UPLOADERS) as pool:
            workers = [pool.submit(deleter) for _ in range(DELETERS)]
            workers += [pool.submit(uploader, n) for n in range(UPLOADERS)]
            assert enough.wait(60), "the deletes did not get going"
            server.kill()
            stop.set()
            for w in workers:
                w.result()
        assert next_index < FILES, "the kill came after every delete: nothing was cut"
    finally:
        server.kill()

    restarted = ServerProcess(server.data_dir, env=server.env).start()
    try:
        with httpx.Client(base_url=restarted.base_url, timeout=30) as http:
            there = {f["id"] for f in list_files(http, key)}
        events = _events(restarted, admin_key)
    finally:
        restarted.stop()

    by_type: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for event in events:
        by_type[event["type"]][event[event["type"]]["id"]] += 1
    created, gone_events = by_type["file.created"], by_type["file.deleted"]
    gone = set(order) - there
    # Every delete acknowledged is done; every file gone has exactly one event, and every
    # event names a file gone.
    assert deleted <= gone
    assert set(gone_events) == gone
    assert set(gone_events.values()) == {1}
    # Every file there was made once, with its event; none of them has a delete's event.
    assert made <= there
    assert set(created) == set(order) | (there - set(order))
    assert set(created.values()) == {1}
    assert not there & set(gone_events)
    # The events were written by the key that acted.
    for event in events:
        if event["type"].startswith("file."):
            assert event["actor"]["type"] == "api_key"
