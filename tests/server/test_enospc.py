"""A full disk: uploads get a 507 in the envelope with retry-after (never a 500), leave no
temp file, and DELETE keeps working, so space can be freed through the API.

The data folder is a real 8 MB tmpfs (the test runs as root, as CI does); elsewhere the
full disk comes from an injected ENOSPC in the local store."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from openai_files.server import create_app
from openai_files.server.errors import is_disk_full
from openai_files.server.settings import Settings
from openai_files.server.stores.local import RESERVE_BYTES, RESERVE_NAME, LocalBlobStore

from .._server import ServerProcess, openai_files_cli
from ..api._contract import assert_error
from ._util import auth, blob_names, download, temp_names, upload

MiB = 1024 * 1024
FILE_BYTES = MiB
DISK = "8m"
FULL_MESSAGE = "The server's storage is full. Delete files you no longer need, or retry later."


#: Mounting a tmpfs needs root (CI runs as root); elsewhere the injected test below stands in.
#: With CI=true a missing root is a failure, never a skip: CI must run the real disk.
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and not os.environ.get("CI"),
    reason="mounts a tmpfs: root only (the injected-ENOSPC test runs instead)",
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MB tmpfs mounted on a fresh folder, unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def full_server(small_disk: Path) -> Iterator[ServerProcess]:
    # The data folder is the mount itself: the server's log lies beside it, off the tmpfs.
    proc = ServerProcess(small_disk).start()
    try:
        yield proc
    finally:
        proc.stop()


def _content(i: int) -> bytes:
    return bytes([i % 251]) * FILE_BYTES


def _fill_with_uploads(
    http: httpx.Client, key: str, data_dir: Path
) -> tuple[list[str], httpx.Response]:
    """Upload 1 MB files until the server refuses one; the ids kept and the refusal."""
    ids: list[str] = []
    for i in range(20):
        response = upload(http, key, _content(i), f"f{i}.bin")
        if response.status_code != 200:
            return ids, response
        ids.append(response.json()["id"])
    raise AssertionError(f"20 MB went onto an {DISK} disk: {os.statvfs(data_dir)}")


def _fill_rest(path: Path) -> None:
    """Take every byte left on the disk, as another program would."""
    with open(path, "wb", buffering=0) as fh:
        block = b"\0" * 4096
        while True:
            try:
                fh.write(block)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                return


@needs_root
def test_full_disk_is_507_and_delete_frees_space(full_server: ServerProcess) -> None:
    server, data_dir = full_server, full_server.data_dir
    assert (data_dir / RESERVE_NAME).stat().st_size == RESERVE_BYTES
    key = server.create_key("org-full", "proj_full")
    with httpx.Client(base_url=server.base_url, timeout=30, headers=auth(key)) as http:
        ids, refused = _fill_with_uploads(http, key, data_dir)
        assert len(ids) >= 3, refused.text
        assert_error(
            refused, 507, FULL_MESSAGE, error_type="server_error", code="insufficient_storage"
        )
        assert int(refused.headers["retry-after"]) > 0
        assert temp_names(data_dir) == []  # the refused upload left nothing
        # The reserve went back to the disk; the files kept are whole.
        assert not (data_dir / RESERVE_NAME).exists()
        assert download(http, key, ids[0]).content == _content(0)

        # Refused again while the disk is full, and still in the envelope.
        again = upload(http, key, _content(99), "again.bin")
        assert again.status_code == 507, again.text

        # DELETE works on the full disk, first time, and makes room for an upload.
        wal = data_dir / "files.sqlite3-wal"
        wal_before = wal.stat().st_size if wal.exists() else 0
        for file_id in ids[:3]:
            deleted = http.delete(f"/files/{file_id}")
            assert deleted.status_code == 200, deleted.text
            assert deleted.json()["deleted"] is True
        wal_after = wal.stat().st_size if wal.exists() else 0
        assert wal_after - wal_before < RESERVE_BYTES  # measured room a delete needs
        assert not set(ids[:3]) & blob_names(data_dir)
        assert (data_dir / RESERVE_NAME).exists()  # back, now that there is room
        stored = upload(http, key, _content(7), "after.bin")
        assert stored.status_code == 200, stored.text
        assert download(http, key, stored.json()["id"]).content == _content(7)


@needs_root
def test_delete_works_when_another_program_filled_the_disk(full_server: ServerProcess) -> None:
    server, data_dir = full_server, full_server.data_dir
    key = server.create_key("org-filled", "proj_filled")
    with httpx.Client(base_url=server.base_url, timeout=30, headers=auth(key)) as http:
        ids = []
        for i in range(3):
            response = upload(http, key, _content(i), f"f{i}.bin")
            assert response.status_code == 200, response.text
            ids.append(response.json()["id"])
        _fill_rest(data_dir / "filler")
        statuses = []
        for file_id in ids:
            response = http.delete(f"/files/{file_id}")
            statuses.append(response.status_code)
            if response.status_code == 507:  # the reserve is released: the retry works
                assert int(response.headers["retry-after"]) > 0
                response = http.delete(f"/files/{file_id}")
            assert response.status_code == 200, response.text
        assert 500 not in statuses
        assert statuses.count(507) <= 1
        assert blob_names(data_dir) == set()
        listed = http.get("/files")
        assert listed.status_code == 200 and listed.json()["data"] == []


def test_injected_enospc_is_507_where_no_tmpfs_can_be_mounted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same answers without root: the store meets an injected ENOSPC on its first write
    (as on a full disk), in the app itself."""
    data_dir = tmp_path / "data"
    made = openai_files_cli(
        "keys", "create", "--init", "--json", "--data-dir", str(data_dir), env=dict(os.environ)
    )
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["key"]

    def full(self: LocalBlobStore, nbytes: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with TestClient(create_app(Settings(data_dir=data_dir))) as http:
        http.headers.update(auth(key))
        kept = http.post(
            "/v1/files", files={"file": ("a.bin", _content(1))}, data={"purpose": "evals"}
        )
        assert kept.status_code == 200, kept.text
        assert (data_dir / RESERVE_NAME).exists()
        monkeypatch.setattr(LocalBlobStore, "check_room", full)
        refused = http.post(
            "/v1/files", files={"file": ("b.bin", _content(2))}, data={"purpose": "evals"}
        )
        assert_error(
            refused, 507, FULL_MESSAGE, error_type="server_error", code="insufficient_storage"
        )
        assert int(refused.headers["retry-after"]) > 0
        assert not (data_dir / RESERVE_NAME).exists()  # released for the database
        assert temp_names(data_dir) == []
        monkeypatch.undo()
        deleted = http.delete(f"/v1/files/{kept.json()['id']}")
        assert deleted.status_code == 200, deleted.text
        assert (data_dir / RESERVE_NAME).exists()  # back once a delete made room
    assert is_disk_full(sqlite3.OperationalError("database or disk is full"))
    assert not is_disk_full(FileNotFoundError(errno.ENOENT, "gone"))


def test_sweep_meeting_a_full_disk_releases_the_reserve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the sweeper's database write is the first to find the disk full, the reserve
    is released as for a request, so that deletes can still run."""
    from openai_files.server._app import _Sweeper
    from openai_files.server.service import FilesService

    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir))

    async def full(self: FilesService, grace_seconds: float | None = None) -> dict[str, int]:
        raise sqlite3.OperationalError("database or disk is full")

    with TestClient(app) as http:
        assert (data_dir / RESERVE_NAME).exists()
        monkeypatch.setattr(FilesService, "sweep", full)
        sweeper = _Sweeper(app.state.service, 60, app.state.metrics)
        with pytest.raises(sqlite3.OperationalError):
            http.portal.call(sweeper.sweep)  # type: ignore[union-attr]
        assert not (data_dir / RESERVE_NAME).exists()
