"""`openai-files backup` and `restore` as a user runs them, on both kinds of deployment: a
backup of each kind taken while a writer uploads and deletes, restored into the other kind,
then every file compared byte for byte through the SDK, the keys, an upload and batches
checked; a restore stopped midway (SIGINT, SIGKILL) and run again; a damaged byte found;
a deployment that is not empty refused. tests/server/test_backup.py has the finer cases."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, Final, TypeVar

import httpx
import openai
import pytest

from openai_files.server.settings import Settings
from openai_files.server.stores import FileRecord, open_blob_store, open_metadata_store
from openai_files.server.stores.local import LocalBlobStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing.engine import FakeEngine

from .._extras import import_or_skip
from .._server import Deployment, ServerProcess, openai_files_cli

KINDS = ["embedded", "scaleout"]
#: Every server here lets its files be read back, user_data too (to compare their bytes).
READABLE = {"OPENAI_FILES_ALLOW_DOWNLOAD_ALL_PURPOSES": "true"}
ENDPOINT: Final = "/v1/chat/completions"


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    with FakeEngine().start() as e:
        yield e


def _deployment(kind: str, root: Path, request: pytest.FixtureRequest) -> Deployment:
    if kind == "scaleout":
        return Deployment(
            kind,
            root,
            postgres=request.getfixturevalue("postgres"),
            s3=request.getfixturevalue("s3"),
        )
    return Deployment(kind, root)


class Target:
    """An empty deployment of `kind` (fresh stores, nothing run on them yet)."""

    def __init__(self, kind: str, root: Path, request: pytest.FixtureRequest) -> None:
        self.deployment = _deployment(kind, root, request)
        self.env = {**os.environ, **self.deployment.env()}
        self.data_dir = root / f"target-{uuid.uuid4().hex[:8]}" / "data"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return openai_files_cli(*args, "--data-dir", str(self.data_dir), env=self.env)

    def restore(self, backup: Path) -> subprocess.CompletedProcess[str]:
        return self.cli("restore", str(backup))

    def popen_restore(self, backup: Path) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "openai_files", "restore", str(backup),
             "--data-dir", str(self.data_dir)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=self.env,
        )  # fmt: skip

    def server(self, **env: str) -> ServerProcess:
        return ServerProcess(self.data_dir, env={**self.env, **READABLE, **env}).start()

    def settings(self) -> Settings:
        return Settings.from_env(self.env, data_dir=self.data_dir)

    def objects(self) -> set[str]:
        """The keys of the objects in its storage."""
        settings = self.settings()

        async def run() -> set[str]:
            blobs = open_blob_store(settings.storage_url)
            try:
                return {k async for k in blobs.list_object_keys(time.time() + 3600)}
            except FileNotFoundError:  # a local folder the restore has not made yet
                return set()

        return _in_env(self.env, run)

    def rows(self) -> dict[str, int]:
        """Rows per table of its database (none when it has no schema)."""
        settings = self.settings()

        async def run() -> dict[str, int]:
            meta = open_metadata_store(settings.database_url)
            await meta.open()
            try:
                return await meta.row_counts()
            finally:
                await meta.close()

        return _in_env(self.env, run)


_ENV_LOCK = threading.Lock()
T = TypeVar("T")


def _in_env(env: dict[str, str], fn: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run `fn()` (a coroutine function) with `env`'s S3 credentials in this process."""
    with _ENV_LOCK:
        saved = dict(os.environ)
        os.environ.update({k: v for k, v in env.items() if k.startswith("AWS_")})
        try:
            return asyncio.run(fn())
        finally:
            os.environ.clear()
            os.environ.update(saved)


_CLIENTS: list[openai.OpenAI] = []


def _sdk(server: ServerProcess, key: str) -> openai.OpenAI:
    """The SDK on `server` with `key` (closed after the test)."""
    client = openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0)
    _CLIENTS.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _CLIENTS:
        _CLIENTS.pop().close()


def _upload(client: openai.OpenAI, name: str, data: bytes, purpose: str = "user_data") -> str:
    return client.files.create(file=(name, io.BytesIO(data)), purpose=purpose).id  # type: ignore[arg-type]


def _line(custom_id: str, **body: Any) -> bytes:
    full = {"model": "m", "messages": [{"role": "user", "content": custom_id}], **body}
    return json.dumps(
        {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": full}
    ).encode()


def _batch(client: openai.OpenAI, lines: list[bytes]) -> str:
    input_id = _upload(client, "in.jsonl", b"\n".join(lines) + b"\n", purpose="batch")
    return client.batches.create(
        input_file_id=input_id, endpoint=ENDPOINT, completion_window="24h"
    ).id


def _wait(client: openai.OpenAI, batch_id: str, until: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if until(batch):
            return batch
        assert time.monotonic() < deadline, batch
        time.sleep(0.05)


def _ended(batch: Any) -> bool:
    return batch.status in ("completed", "failed", "cancelled", "expired")


class Writer(threading.Thread):
    """Uploads files and deletes some of them, with one key, until stopped; remembers each
    file's bytes, when its upload was answered, and when its delete was asked."""

    def __init__(self, client: openai.OpenAI) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.data: dict[str, bytes] = {}
        self.acked: dict[str, float] = {}
        self.delete_asked: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            n = 0
            while not self.stop.is_set():
                data = secrets.token_bytes(1 + (n * 7919) % 150_000)
                file_id = _upload(self.client, f"w{n}.bin", data)
                self.data[file_id] = data
                self.acked[file_id] = time.time()
                if n % 3 == 2:  # every third turn, delete the oldest still there
                    victim = next(i for i in self.acked if i not in self.delete_asked)
                    self.delete_asked[victim] = time.time()
                    self.client.files.delete(victim)
                    self.deleted[victim] = time.time()
                n += 1
        except BaseException as exc:  # the test fails on it
            self.error = exc


def _backup_ids(backup: Path, org: str, project: str) -> list[tuple[str, int, str, int]]:
    with sqlite3.connect(backup / "metadata.sqlite3") as db:
        return sorted(
            db.execute(
                "SELECT id, bytes, filename, created_at FROM files "
                "WHERE org_id = ? AND project_id = ?",
                (org, project),
            ).fetchall()
        )


def _listed(client: openai.OpenAI) -> dict[str, Any]:
    return {f.id: f for f in client.files.list(limit=10_000)}


# Across, both ways: a backup of each kind of deployment, a restore into each (the backup's
# format is one whatever its source, so the same-kind pairs would test nothing more).
@pytest.mark.parametrize(("source", "to"), [("embedded", "scaleout"), ("scaleout", "embedded")])
def test_a_backup_under_writes_restores_elsewhere_whole(
    source: str, to: str, engine: FakeEngine, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    batches = {
        **READABLE,
        "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
        "OPENAI_FILES_BATCH_LEASE_SECONDS": "3",
    }
    origin = _deployment(source, tmp_path / "source", request).server(env=batches)
    target: Target | None = None
    restored: ServerProcess | None = None
    writer: Writer | None = None
    try:
        tag = uuid.uuid4().hex[:6]
        keys = {p: origin.create_key(f"org-{tag}", f"proj_{p}") for p in "abcr"}
        admin = origin.create_admin_key(f"org-{tag}")
        a, b, c = (_sdk(origin, keys[p]) for p in "abc")
        made = openai_files_cli(
            "keys", "create", "--json", "--org", f"org-{tag}", "--project", "proj_r",
            "--data-dir", str(origin.data_dir), env=origin.env,
        )  # fmt: skip
        revoked = json.loads(made.stdout)
        assert openai_files_cli(
            "keys", "revoke", revoked["id"], "--data-dir", str(origin.data_dir), env=origin.env
        ).returncode == 0  # fmt: skip
        # Project b stays quiet: files (one past an S3 part), a pending upload with a part,
        # a finished batch. Project c: a batch whose requests hang at the engine until sent
        # again (by the restored deployment).
        quiet = {
            _upload(b, f"q{n}.bin", data): data
            for n, data in enumerate([b"", b"x" * 3_000_000, secrets.token_bytes(9 << 20)])
        }
        upload = b.uploads.create(
            bytes=20, filename="up.txt", purpose="user_data", mime_type="text/plain"
        )
        part1 = b.uploads.parts.create(upload.id, data=b"first half")
        done_batch = _batch(b, [_line(f"d{i}") for i in range(5)])
        done = _wait(b, done_batch, _ended)
        assert done.status == "completed"
        held = [_line(f"h{i}", fault={"hang": True, "fail_first": 1, "key": f"{tag}-h{i}"})
                for i in range(5)]  # fmt: skip
        held_batch = _batch(c, held)
        deadline = time.monotonic() + 30
        while not all(engine.attempts(f"{tag}-h{i}") for i in range(5)):
            assert time.monotonic() < deadline, "the held requests should reach the engine"
            time.sleep(0.05)
        seeded = {_upload(a, f"s{n}.txt", f"seed {n}".encode() * 50): n for n in range(5)}

        writer = Writer(a)
        writer.start()
        while len(writer.acked) < 5 and writer.error is None:
            time.sleep(0.02)
        began = time.time()
        backup = tmp_path / "backup"
        took = openai_files_cli(
            "backup", str(backup), "--data-dir", str(origin.data_dir), env=origin.env
        )
        ended = time.time()
        uploaded_during = sum(began <= t <= ended for t in writer.acked.values())
        writer.stop.set()
        writer.join(30)
        assert writer.error is None, writer.error
        assert took.returncode == 0, took.stderr
        assert took.stdout.startswith("backed up "), took.stdout
        assert uploaded_during >= 1, "the writer should upload while the backup runs"
        quiet_listing = _listed(b)
        quiet_events = _audit_log(origin, admin, {"project_ids[]": "proj_b"})
        revoked_events = _audit_log(origin, admin, {"resource_ids[]": revoked["id"]})

        target = Target(to, tmp_path / "target", request)
        put = target.restore(backup)
        assert put.returncode == 0, put.stderr
        assert put.stdout.startswith("restored "), put.stdout
        restored = target.server(**batches)
        assert restored.first_key is None  # its keys came with the backup: none is made

        # Keys: each works, the revoked one stays revoked.
        a2, b2, c2 = (_sdk(restored, keys[p]) for p in "abc")
        with pytest.raises(openai.AuthenticationError):
            _sdk(restored, revoked["key"]).files.list()
        assert _sdk(restored, keys["r"]).files.list().data == []
        # The audit log came too: the quiet project's events, the revoked key's.
        assert _audit_log(restored, admin, {"project_ids[]": "proj_b"}) == quiet_events
        assert {"file.created", "upload.created", "batch.created"} <= {
            e["type"] for e in quiet_events
        }
        assert _audit_log(restored, admin, {"resource_ids[]": revoked["id"]}) == revoked_events
        assert [e["type"] for e in revoked_events] == ["api_key.deleted", "api_key.created"]

        # The busy project: exactly the files of the backup, every byte as written.
        listing = _listed(a2)
        rows = _backup_ids(backup, f"org-{tag}", "proj_a")
        assert sorted((f.id, f.bytes, f.filename, f.created_at) for f in listing.values()) == rows
        known = {**writer.data, **{i: f"seed {n}".encode() * 50 for i, n in seeded.items()}}
        for file_id in listing:
            assert a2.files.content(file_id).read() == known[file_id], file_id
        assert set(seeded) <= set(listing)
        before = {i for i, t in writer.acked.items() if t < began}
        kept = {i for i in before if writer.delete_asked.get(i, ended + 1) > ended}
        assert kept <= set(listing)
        gone = {i for i, t in writer.deleted.items() if t < began}
        assert not gone & set(listing)

        # The quiet project: the SDK sees the same list as on the source, the same bytes.
        assert _listed(b2) == quiet_listing
        for file_id in quiet_listing:
            got = b2.files.content(file_id).read()
            assert got == b.files.content(file_id).read(), file_id
            if file_id in quiet:
                assert got == quiet[file_id]
        # The upload goes on where it was: its part travelled.
        part2 = b2.uploads.parts.create(upload.id, data=b"second one")
        finished = b2.uploads.complete(upload.id, part_ids=[part1.id, part2.id])
        assert finished.file is not None
        assert b2.files.content(finished.file.id).read() == b"first halfsecond one"
        # The batches: the finished one as it was; the held one runs to its end here.
        again = b2.batches.retrieve(done_batch)
        assert (again.status, again.output_file_id) == ("completed", done.output_file_id)
        ran = _wait(c2, held_batch, _ended, timeout=60)
        assert ran.status == "completed", ran
        assert ran.output_file_id is not None
        out = c2.files.content(ran.output_file_id).text.splitlines()
        assert sorted(json.loads(line)["custom_id"] for line in out) == [f"h{i}" for i in range(5)]
    finally:
        if writer is not None:
            writer.stop.set()
        origin.kill()
        if restored is not None:
            restored.stop()


def _audit_log(server: ServerProcess, admin_key: str, query: dict[str, str]) -> list[Any]:
    """The organization's events the query asks for (at most 100), newest first."""
    answer = httpx.get(
        server.base_url + "/organization/audit_logs",
        params={"limit": "100", **query},
        headers={"Authorization": f"Bearer {admin_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    page = answer.json()
    assert page["has_more"] is False
    events: list[Any] = page["data"]
    return events


# -- a restore stopped midway, a damaged byte, a deployment that is not empty --

FILES = 48


@pytest.fixture(scope="module")
def backup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict[str, str]]:
    """A backup of an embedded deployment of FILES files of 1 MiB, made while its server
    ran: its folder, a key of it, and each file's SHA-256 by id."""
    root = tmp_path_factory.mktemp("backup-source")
    server = Deployment("embedded", root).server(env=READABLE)
    try:
        assert server.first_key is not None
        client = _sdk(server, server.first_key)
        digests = {}
        for n in range(FILES):
            data = secrets.token_bytes(1 << 20)
            digests[_upload(client, f"f{n}.bin", data)] = hashlib.sha256(data).hexdigest()
        out = root / "backup"
        took = openai_files_cli("backup", str(out), "--data-dir", str(server.data_dir))
        assert took.returncode == 0, took.stderr
    finally:
        server.stop()
    return out, server.first_key, digests


def _check_restored(target: Target, key: str, digests: dict[str, str]) -> None:
    server = target.server()
    try:
        client = _sdk(server, key)
        listing = _listed(client)
        assert set(listing) == set(digests)
        for file_id, digest in digests.items():
            data = client.files.content(file_id).read()
            assert hashlib.sha256(data).hexdigest() == digest
    finally:
        server.stop()


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "sigkill"])
@pytest.mark.parametrize("to", KINDS)
def test_a_restore_stopped_midway_goes_on_when_run_again(
    to: str,
    how: signal.Signals,
    backup: tuple[Path, str, dict[str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    out, key, digests = backup
    target = Target(to, tmp_path, request)
    proc = target.popen_restore(out)
    try:
        deadline = time.monotonic() + 60
        while len(target.objects()) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the restore should copy files"
            time.sleep(0.01)
        proc.send_signal(how)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if how == signal.SIGINT:
        assert proc.returncode == 130, stderr
        assert "restore stopped: run the same command again to go on" in stderr
        assert "Traceback" not in stderr
    else:
        assert proc.returncode == -signal.SIGKILL
    copied = target.objects()
    assert 2 <= len(copied) < FILES
    # Stopped before its rows: the deployment looks empty, not whole.
    assert set(target.rows().values()) <= {0}
    again = target.restore(out)
    assert again.returncode == 0, again.stderr
    # What was copied is not copied again (on S3, a PUT sent as the process was stopped
    # may land after the listing above: more, never fewer).
    found = re.search(r"; (\d+) copied now, (\d+) were there already\)", again.stdout)
    assert found is not None, again.stdout
    now, there = int(found[1]), int(found[2])
    assert now + there == FILES and len(copied) <= there < FILES
    assert target.objects() == set(digests)
    _check_restored(target, key, digests)


@pytest.mark.parametrize("to", KINDS)
def test_a_damaged_byte_is_found_and_nothing_is_written_of_it(
    to: str,
    backup: tuple[Path, str, dict[str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    out, key, digests = backup
    damaged = tmp_path / "damaged"
    subprocess.run(["cp", "-a", str(out), str(damaged)], check=True)
    victim = sorted((damaged / "blobs").glob("*/*"))[FILES // 2]
    data = bytearray(victim.read_bytes())
    data[12345] ^= 0x10
    victim.write_bytes(bytes(data))
    target = Target(to, tmp_path, request)
    refused = target.restore(damaged)
    assert refused.returncode == 1
    assert refused.stderr.startswith(
        f"openai-files: error: blob {victim.name} of the backup is not the one its manifest "
        "records (its SHA-256 is "
    ), refused.stderr
    assert refused.stderr.rstrip().endswith(": nothing of it was written")
    assert victim.name not in target.objects()
    assert set(target.rows().values()) <= {0}
    # Put right, the same command goes on.
    data[12345] ^= 0x10
    victim.write_bytes(bytes(data))
    assert target.restore(damaged).returncode == 0
    _check_restored(target, key, digests)


@pytest.mark.parametrize("to", KINDS)
def test_a_deployment_that_is_not_empty_is_refused(
    to: str,
    backup: tuple[Path, str, dict[str, str]],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    out, _, _ = backup
    target = Target(to, tmp_path, request)
    if to == "scaleout":
        assert target.cli("migrate").returncode == 0
    server = target.server()  # its first start makes a key
    try:
        first_key = server.first_key
        assert first_key is not None
        refused = target.restore(out)
        assert refused.returncode == 1
        if to == "embedded":  # the server holds the folder
            assert "is in use by another openai-files server" in refused.stderr
            assert refused.stderr.rstrip().endswith(": stop it first")
        else:
            assert refused.stderr == (
                "openai-files: error: the target database is not empty (table api_keys holds "
                "1 row): restore into an empty deployment\n"
            )
    finally:
        server.stop()
    refused = target.restore(out)
    assert refused.returncode == 1
    assert "the target database is not empty (table api_keys holds 1 row)" in refused.stderr
    assert target.objects() == set()
    server = target.server()
    try:
        assert server.first_key is None
        assert _sdk(server, first_key).files.list().data == []
    finally:
        server.stop()


def test_the_progress_bar_counts_files_and_bytes() -> None:
    import_or_skip("rich", "cli")
    from openai_files.cli import _backup_cmds

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with _backup_cmds._bar("restore", True, stream=stream) as bar:
        assert bar is not None
        bar.add(3)
        for _ in range(3):
            bar.advance(1_000_000)
    shown = stream.getvalue()
    assert "restore" in shown and "3/3" in shown and "3.0 MB" in shown
    with _backup_cmds._bar("restore", True, stream=io.StringIO()) as bar:
        assert bar is None  # not a terminal: no bar
    with _backup_cmds._bar("restore", False, stream=Terminal()) as bar:
        assert bar is None


def test_the_commands_are_documented() -> None:
    deploy = (Path(__file__).resolve().parents[2] / "docs" / "deploy.md").read_text()
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "openai-files backup" in deploy and "openai-files restore" in deploy
    assert "docs/deploy.md#back-up-and-restore" in readme
    for command in ("backup", "restore"):
        shown = openai_files_cli(command, "--help")
        assert shown.returncode == 0
        assert "--data-dir" in shown.stdout and "--database" in shown.stdout
        assert "--storage" in shown.stdout


async def _one_file(root: Path, nbytes: int) -> None:
    """An embedded deployment at `root` of one file of `nbytes` (written a MiB at a time)."""
    meta, blobs = SQLiteMetadataStore(root / "files.sqlite3"), LocalBlobStore(root)
    await meta.open()
    await meta.migrate()
    await blobs.open()
    try:
        writer = blobs.writer("file-big")
        chunk = secrets.token_bytes(1 << 20)
        for _ in range(nbytes >> 20):
            await writer.write(chunk)
        await writer.commit()
        record = FileRecord(
            "file-big", "org-m", "proj_m", nbytes, int(time.time()), None, "big.bin",
            "user_data", "application/octet-stream", "file-big",
        )  # fmt: skip
        await meta.insert_file(record, None, 1 << 40)
    finally:
        await meta.close()


#: Runs a command and prints the most memory it held (KiB): a launcher of its own, so that
#: the figure is not that of the big test process it was forked from.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(done.returncode)\n"
)


def _peak_mib(env: dict[str, str], *args: str) -> float:
    """Run `openai-files ARGS`; the most memory (RSS) it held, in MiB."""
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, sys.executable, "-m", "openai_files", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return int(done.stdout) / 1024  # KiB on Linux


def test_a_big_file_moves_in_chunks_not_whole(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Peak memory of each command for a 256 MiB file, against the same for a 1 MiB one:
    backup from the local folder and from S3, restore to S3 and to the local folder."""
    peaks: dict[int, list[float]] = {}
    for size in (1 << 20, 256 << 20):
        root = tmp_path / f"size-{size}"
        asyncio.run(_one_file(root / "source", size))
        s3 = Target("scaleout", root, request)
        local = Target("embedded", root, request)
        steps = [
            _peak_mib(local.env, "backup", str(root / "b1"), "--data-dir", str(root / "source")),
            _peak_mib(s3.env, "restore", str(root / "b1"), "--data-dir", str(s3.data_dir)),
            _peak_mib(s3.env, "backup", str(root / "b2"), "--data-dir", str(s3.data_dir)),
            _peak_mib(local.env, "restore", str(root / "b2"), "--data-dir", str(local.data_dir)),
        ]
        peaks[size] = steps
        assert (local.data_dir / "blobs" / "ig" / "file-big").stat().st_size == size
    grown = [big - small for small, big in zip(peaks[1 << 20], peaks[256 << 20], strict=True)]
    print("peak MiB per step, 1 MiB and 256 MiB:", peaks)
    assert max(grown) < 32, (peaks, grown)


def test_the_manifest_names_the_source_without_its_passwords(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # A PostgreSQL URL carries its password as `user:password@` or as `?password=` (and a
    # client certificate's as `?sslpassword=`): the manifest names neither.
    source = _deployment("scaleout", tmp_path / "source", request)
    env = {**os.environ, **source.env()}
    assert openai_files_cli("migrate", env=env).returncode == 0
    user, rest = env["OPENAI_FILES_DATABASE"].split("://", 1)[1].split("@", 1)
    forms = {  # the URL given: the one the manifest shows
        f"postgresql://{user}:pw-one@{rest}": f"postgresql://{user}:****@{rest}",
        f"postgresql://{user}@{rest}?sslmode=disable&password=pw-two": (
            f"postgresql://{user}@{rest}?sslmode=disable&password=****"
        ),
        f"postgresql://{user}:pw-three@{rest}?password=pw-four&sslpassword=pw-five": (
            f"postgresql://{user}:****@{rest}?password=****&sslpassword=****"
        ),
    }
    for i, (url, shown) in enumerate(forms.items()):
        out = tmp_path / f"backup-{i}"
        done = openai_files_cli("backup", str(out), "--database", url, env=env)
        assert done.returncode == 0, done.stderr
        text = (out / "manifest.json").read_text()
        assert "pw-" not in text
        assert json.loads(text)["source"] == {
            "database": shown,
            "storage": env["OPENAI_FILES_STORAGE"],
        }
