"""Backups and restores on the stores themselves (the embedded kind, in this process): a blob
deleted while it is copied, one lost while its row stays, every byte checked on the way
back, a restore stopped midway and run again, a target that is not empty, and backups of
an older or a newer schema. tests/server/test_backup_commands.py runs the commands on
both kinds of deployment under load."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import stat
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from openai_files.server.backup import (
    MANIFEST,
    MANIFEST_BASE_BYTES,
    METADATA,
    BackupCorrupt,
    BackupError,
    Manifest,
    read_manifest,
    take_backup,
)
from openai_files.server.restore import Restored, TargetNotEmpty, restore_backup
from openai_files.server.stores import FileRecord, Owner, SchemaMismatch
from openai_files.server.stores._manifest import part_key
from openai_files.server.stores._sql_schema import SCHEMA_VERSION
from openai_files.server.stores.local import LocalBlobStore
from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing._records import key_row

pytestmark = pytest.mark.anyio

OWNER = Owner("org-b", "proj_b")


class Deployment:
    """The embedded stores of a folder, opened."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.meta = SQLiteMetadataStore(root / "files.sqlite3")
        self.blobs = LocalBlobStore(root)

    async def open(self, version: int = SCHEMA_VERSION) -> Deployment:
        await self.meta.open()
        await self.meta.migrate(to=version)
        await self.blobs.open()
        return self

    async def close(self) -> None:
        await self.blobs.close()
        await self.meta.close()

    async def put(self, data: bytes) -> FileRecord:
        """A file, its bytes first, then its row (as the service writes them)."""
        file_id = "file-" + secrets.token_hex(12)
        writer = self.blobs.writer(file_id)
        await writer.write(data)
        await writer.commit()
        record = FileRecord(
            file_id, OWNER.org_id, OWNER.project_id, len(data), int(time.time()), None,
            "a.txt", "user_data", "text/plain", file_id,
        )  # fmt: skip
        await self.meta.insert_file(record, None, 10**12)
        return record

    async def put_composed(self, pieces: list[bytes]) -> FileRecord:
        """A file completed from an upload's parts: the parts, their manifest under the
        file's key (`compose`), then its row."""
        file_id = "file-" + secrets.token_hex(12)
        sources = []
        for piece in pieces:
            name = part_key(file_id, "part_" + secrets.token_hex(8))
            writer = self.blobs.writer(name)
            await writer.write(piece)
            await writer.commit()
            sources.append((name, len(piece)))
        assert await self.blobs.compose(file_id, sources)
        record = FileRecord(
            file_id, OWNER.org_id, OWNER.project_id, sum(map(len, pieces)), int(time.time()),
            None, "a.bin", "user_data", "application/octet-stream", file_id,
        )  # fmt: skip
        await self.meta.insert_file(record, None, 10**12)
        return record

    async def content(self, key: str) -> bytes:
        return b"".join([bytes(c) async for c in self.blobs.read(key)])

    def objects(self) -> set[str]:
        return {p.name for p in (self.root / "blobs").glob("*/*")}


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Deployment]:
    d = await Deployment(tmp_path / "source").open()
    yield d
    await d.close()


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[Deployment]:
    d = await Deployment(tmp_path / "target").open()
    yield d
    await d.close()


async def _backup(d: Deployment, out: Path, **kw: Any) -> Manifest:
    return await take_backup(d.meta, d.blobs, out, source={"database": "test"}, **kw)


async def _restore(out: Path, d: Deployment, **kw: Any) -> Restored:
    return await restore_backup(out, d.meta, d.blobs, **kw)


def _blob_path(out: Path, key: str) -> Path:
    return out / "blobs" / key[-2:] / key


class DeletingBlobs:
    """A blob store whose first read of `victim` finds that a client deleted its file just
    before: the row, then the bytes, as the service deletes."""

    def __init__(self, d: Deployment, victim: FileRecord) -> None:
        self.d = d
        self.victim = victim

    def __getattr__(self, name: str) -> Any:
        return getattr(self.d.blobs, name)

    def read(self, key: str, start: int = 0, end: int | None = None) -> Any:
        if key == self.victim.blob_key:
            return self._deleted_then_read(key)
        return self.d.blobs.read(key, start, end)

    async def _deleted_then_read(self, key: str) -> AsyncIterator[bytes]:
        await self.d.meta.delete_file(OWNER, self.victim.id, int(time.time()))
        await self.d.blobs.delete(key)
        async for chunk in self.d.blobs.read(key):
            yield bytes(chunk)


async def test_a_blob_deleted_while_it_is_copied_takes_a_new_snapshot(
    source: Deployment, tmp_path: Path
) -> None:
    kept = [await source.put(f"kept {i}".encode()) for i in range(3)]
    victim = await source.put(b"deleted while the backup runs")
    snapshots: list[Path] = []
    snapshot = source.meta.snapshot

    async def counted(dest: Path) -> int:
        snapshots.append(dest)
        return await snapshot(dest)

    source.meta.snapshot = counted  # type: ignore[method-assign]
    out = tmp_path / "backup"
    blobs: Any = DeletingBlobs(source, victim)
    manifest = await take_backup(source.meta, blobs, out, source={})
    # The first snapshot named the victim's bytes, gone when they were copied: a second
    # one does not name them, and the blobs copied for the first were not copied again.
    assert len(snapshots) == 2
    assert {b.key for b in manifest.blobs} == {r.blob_key for r in kept}
    assert {p.name for p in (out / "blobs").glob("*/*")} == {r.blob_key for r in kept}
    with sqlite3.connect(out / METADATA) as db:
        files = {row[0] for row in db.execute("SELECT id FROM files")}
    assert files == {r.id for r in kept}
    assert manifest.rows["files"] == 3
    assert not (out / "tmp").exists() and not (out / f"{METADATA}.part").exists()


async def test_a_blob_lost_while_its_row_stays_is_named(source: Deployment, tmp_path: Path) -> None:
    await source.put(b"fine")
    lost = await source.put(b"its bytes go, its row stays")
    await source.blobs.delete(lost.blob_key)
    out = tmp_path / "backup"
    with pytest.raises(BackupError, match=f"lost the bytes of blob {lost.blob_key}"):
        await _backup(source, out)
    assert not (out / MANIFEST).exists()
    with pytest.raises(BackupError, match=r"has no manifest\.json"):
        read_manifest(out)


async def test_a_backup_goes_into_a_new_folder(source: Deployment, tmp_path: Path) -> None:
    out = tmp_path / "backup"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(BackupError, match="exists and is not an empty folder"):
        await _backup(source, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


async def test_a_file_made_of_parts_is_backed_up_and_restored_whole(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    """A completed upload (a manifest over its parts) goes into the backup as the file's
    bytes, under the file's key, and is restored whole: one object, read back the same."""
    pieces = [b"a" * 70_000, b"", b"b" * 5, bytes(range(256)) * 400]
    composed = await source.put_composed(pieces)
    plain = await source.put(b"plain")
    out = tmp_path / "backup"
    manifest = await _backup(source, out)
    entries = {b.key: b.bytes for b in manifest.blobs}
    assert entries == {composed.blob_key: composed.bytes, plain.blob_key: 5}
    assert _blob_path(out, composed.blob_key).read_bytes() == b"".join(pieces)
    restored = await _restore(out, target)
    assert restored.copied == 2
    assert await target.content(composed.blob_key) == b"".join(pieces)
    assert await target.blobs.parts_of(composed.blob_key) is None  # one object now
    assert target.objects() == {composed.blob_key, plain.blob_key}
    assert await target.meta.get_file(OWNER, composed.id, int(time.time())) == composed


async def test_restore_checks_every_byte_and_goes_on_once_fixed(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    files = [await source.put(bytes([i]) * (1000 + i)) for i in range(6)]
    out = tmp_path / "backup"
    await _backup(source, out)
    victim = _blob_path(out, files[2].blob_key)
    good = victim.read_bytes()
    victim.write_bytes(good[:500] + bytes([good[500] ^ 1]) + good[501:])
    with pytest.raises(BackupCorrupt, match=f"blob {files[2].blob_key} of the backup"):
        await _restore(out, target)
    # Nothing of the bad blob was written, and no row: the target looks empty.
    assert files[2].blob_key not in target.objects()
    assert set((await target.meta.row_counts()).values()) == {0}
    victim.write_bytes(good)
    restored = await _restore(out, target)
    assert restored.copied + restored.present == 6 and restored.copied >= 1
    for record in files:
        assert await target.content(record.blob_key) == await source.content(record.blob_key)
    assert await target.meta.get_file(OWNER, files[2].id, int(time.time())) == files[2]


async def test_a_damaged_metadata_file_is_refused_before_the_target_is_touched(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    data = bytearray((out / METADATA).read_bytes())
    data[-1] ^= 1
    (out / METADATA).write_bytes(bytes(data))
    with pytest.raises(BackupCorrupt, match=f"the backup's {METADATA} is not the one"):
        await _restore(out, target)
    assert target.objects() == set()


class Stopped(Exception):
    pass


class StopAfter:
    """A progress that stops the restore once `n` blobs are done (the commands' own tests
    stop it with SIGINT and SIGKILL)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done = 0

    def add(self, objects: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        self.done += 1
        if self.done == self.n:
            raise Stopped


async def test_a_restore_stopped_midway_goes_on_without_copying_again(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    files = [await source.put(secrets.token_bytes(2000 + i)) for i in range(20)]
    await source.meta.add_api_key(key_row())
    out = tmp_path / "backup"
    await _backup(source, out)
    with pytest.raises(Stopped):
        await _restore(out, target, progress=StopAfter(5))
    first = target.objects()
    assert 5 <= len(first) < 20
    assert set((await target.meta.row_counts()).values()) == {0}  # looks empty, not whole
    mtimes = {k: _blob_path(target.root, k).stat().st_mtime_ns for k in first}
    restored = await _restore(out, target)
    assert (restored.present, restored.copied) == (len(first), 20 - len(first))
    assert {k: _blob_path(target.root, k).stat().st_mtime_ns for k in first} == mtimes
    assert target.objects() == {r.blob_key for r in files}
    assert restored.rows["files"] == 20 and restored.rows["api_keys"] == 1
    # Run once more: the deployment holds the backup already.
    again = await _restore(out, target)
    assert again.already and again.copied == 0


async def test_a_target_that_is_not_empty_is_refused(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    await target.meta.add_api_key(key_row())
    with pytest.raises(TargetNotEmpty, match=r"the target database is not empty \(table api_keys "
                       r"holds 1 row\): restore into an empty deployment"):  # fmt: skip
        await _restore(out, target)
    assert target.objects() == set()
    # No row, but an object of its own in the storage.
    other = await Deployment(tmp_path / "other").open()
    try:
        writer = other.blobs.writer("file-stranger")
        await writer.write(b"the target's own")
        await writer.commit()
        with pytest.raises(TargetNotEmpty, match=r"the target storage holds objects that are "
                           r"not this backup's \(file-stranger\)"):  # fmt: skip
            await _restore(out, other)
        assert other.objects() == {"file-stranger"}
        assert set((await other.meta.row_counts()).values()) == {0}
    finally:
        await other.close()


async def test_a_backup_of_an_older_schema_is_restored_then_migrated(
    tmp_path: Path, target: Deployment
) -> None:
    old = await Deployment(tmp_path / "old").open(version=SCHEMA_VERSION - 1)
    try:
        record = await old.put(b"from an older version")
        out = tmp_path / "backup"
        manifest = await _backup(old, out)
    finally:
        await old.close()
    assert manifest.schema_version == SCHEMA_VERSION - 1
    restored = await _restore(out, target)
    assert restored.schema_version == SCHEMA_VERSION
    assert await target.meta.schema_version() == SCHEMA_VERSION
    assert await target.meta.get_file(OWNER, record.id, int(time.time())) == record


async def test_a_newer_schema_is_refused_both_ways(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    data = json.loads((out / MANIFEST).read_text())
    data["schema_version"] = SCHEMA_VERSION + 1
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(SchemaMismatch, match=r"newer than this openai-files.*upgrade"):
        await _restore(out, target)
    assert target.objects() == set()
    with sqlite3.connect(source.meta.path) as db:
        db.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaMismatch, match="newer than this openai-files"):
        await _backup(source, tmp_path / "newer")
    assert not (tmp_path / "newer" / MANIFEST).exists()
    assert not (tmp_path / "newer" / "metadata.sqlite3.part").exists()  # no copy left


class ChurningBlobs(DeletingBlobs):
    """A blob store whose every file is deleted just before it is read, and replaced by a
    new one: each snapshot names bytes that are gone by the time they are copied."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> Any:
        return self._replaced_then_read(key)

    async def _replaced_then_read(self, key: str) -> AsyncIterator[bytes]:
        await self.d.put(b"a newer file")
        await self.d.meta.delete_file(OWNER, key, int(time.time()))
        await self.d.blobs.delete(key)
        async for chunk in self.d.blobs.read(key):
            yield bytes(chunk)


async def test_a_backup_of_files_deleted_faster_than_it_copies_them_stops(
    source: Deployment, tmp_path: Path
) -> None:
    first = await source.put(b"the first")
    blobs: Any = ChurningBlobs(source, first)
    with pytest.raises(BackupError, match="deleted faster than they were copied, through 3 "):
        await take_backup(source.meta, blobs, tmp_path / "backup", source={}, max_snapshots=3)
    assert not (tmp_path / "backup" / MANIFEST).exists()


@pytest.mark.parametrize("umask", [0o022, 0o000])
async def test_a_backup_is_its_owners_alone_whatever_the_umask(
    source: Deployment, tmp_path: Path, umask: int
) -> None:
    # It holds every tenant's bytes and the console's link-signing secret.
    await source.meta.server_secret("console-download-links", "s3cret", int(time.time()))
    for i in range(3):
        await source.put(f"tenant bytes {i}".encode())
    out = tmp_path / "backup"
    old = os.umask(umask)
    try:
        await _backup(source, out)
    finally:
        os.umask(old)
    modes = {
        str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in [out, *out.rglob("*")]
    }
    assert len([m for m in modes if m.startswith("backup/blobs/") and m.count("/") == 3]) == 3
    wrong = {
        name
        for name, mode in modes.items()
        if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)
    }
    assert wrong == set()
    assert {"backup/manifest.json", "backup/metadata.sqlite3"} <= modes.keys()


# -- a backup folder is untrusted input: restore reads nothing but what it wrote --


def _rewrite_manifest(out: Path, change: Any) -> None:
    data = json.loads((out / MANIFEST).read_text())
    change(data)
    (out / MANIFEST).write_text(json.dumps(data))


def _rewrite_metadata(out: Path, sql: str) -> None:
    """Change the backup's metadata file by `sql`, and its manifest to match."""
    with sqlite3.connect(out / METADATA) as db:
        db.executescript(sql)
    db.close()
    data = (out / METADATA).read_bytes()

    def change(manifest: dict[str, Any]) -> None:
        manifest["metadata"]["bytes"] = len(data)
        manifest["metadata"]["sha256"] = hashlib.sha256(data).hexdigest()

    _rewrite_manifest(out, change)


@pytest.mark.parametrize("key", ["../../../etc/passwd", "/etc/passwd", "a/b", "..x", ""])
async def test_a_manifest_naming_a_path_not_a_key_is_refused(
    source: Deployment, target: Deployment, tmp_path: Path, key: str
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    _rewrite_manifest(out, lambda m: m["blobs"][0].update(key=key))
    with pytest.raises(BackupCorrupt, match=r"manifest\.json names a blob .*: not a key"):
        await _restore(out, target)
    assert target.objects() == set()


async def test_a_manifest_far_bigger_than_its_rows_is_refused_unparsed(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    held = (out / METADATA).stat().st_size
    text = (out / MANIFEST).read_text()
    (out / MANIFEST).write_text(text + " " * (MANIFEST_BASE_BYTES + 4 * held))
    with pytest.raises(BackupCorrupt, match=r"manifest\.json is bigger than a backup of its"):
        await _restore(out, target)


async def test_a_manifest_takes_a_fraction_of_what_it_is_allowed(
    source: Deployment, tmp_path: Path
) -> None:
    # The bound is generous: a real backup's manifest per blob is well under the bytes
    # its rows take in the metadata file (the smallest rows there are: a file's).
    for i in range(300):
        await source.put(b"%d" % i)
    out = tmp_path / "backup"
    await _backup(source, out)
    per_blob = (out / MANIFEST).stat().st_size / 300
    per_row = (out / METADATA).stat().st_size / 300
    assert per_blob < per_row * 4 / 2, (per_blob, per_row)


@pytest.mark.parametrize("what", ["blob", "metadata", "manifest"])
@pytest.mark.parametrize("kind", ["symlink", "fifo", "dev-zero"])
async def test_a_backup_file_that_is_not_a_regular_file_is_refused(
    source: Deployment, target: Deployment, tmp_path: Path, what: str, kind: str
) -> None:
    record = await source.put(b"the bytes")
    out = tmp_path / "backup"
    await _backup(source, out)
    path = {
        "blob": _blob_path(out, record.blob_key),
        "metadata": out / METADATA,
        "manifest": out / MANIFEST,
    }[what]
    real = tmp_path / "elsewhere"
    real.write_bytes(path.read_bytes())  # the very bytes: only the kind of file is wrong
    path.unlink()
    if kind == "symlink":
        path.symlink_to(real)
    elif kind == "fifo":
        os.mkfifo(path)  # no writer: opened for reading without O_NONBLOCK, it would hang
    else:
        path.symlink_to("/dev/zero")  # endless bytes
    with anyio.fail_after(20), pytest.raises(BackupCorrupt) as caught:
        await _restore(out, target)
    assert ("symbolic link" if kind != "fifo" else "not a regular file") in str(caught.value)
    assert set((await target.meta.row_counts()).values()) <= {0}
    assert record.blob_key not in target.objects()


async def test_a_table_of_the_backup_that_is_a_view_is_refused(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    _rewrite_metadata(
        out, "ALTER TABLE files RENAME TO files_kept; CREATE VIEW files AS SELECT * FROM files_kept"
    )
    with pytest.raises(BackupCorrupt, match="files is a view, not a table"):
        await _restore(out, target)
    assert set((await target.meta.row_counts()).values()) == {0}


async def test_the_columns_restored_are_this_codes_not_the_backups(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    # Names read from the backup's file never reach the SQL: a column added there, named to
    # break out of a statement, is not read.
    record = await source.put(b"x")
    out = tmp_path / "backup"
    await _backup(source, out)
    _rewrite_metadata(out, """ALTER TABLE files ADD COLUMN "id) SELECT 1; --" TEXT""")
    await _restore(out, target)
    assert await target.meta.get_file(OWNER, record.id, int(time.time())) == record


async def test_rows_postgresql_refuses_end_in_one_line_and_no_row(
    source: Deployment, tmp_path: Path, postgres: Any
) -> None:
    # SQLite keeps a NUL in a text; PostgreSQL refuses it (older releases let it in).
    for i in range(4):
        await source.put(b"fine %d" % i)
    bad = await source.put(b"named with a NUL")
    await source.put(b"fine too")
    await source.meta.close()
    with sqlite3.connect(source.meta.path) as db:
        db.execute("UPDATE files SET filename = ? WHERE id = ?", ("a\x00b.txt", bad.id))
    db.close()
    await source.meta.open()
    out = tmp_path / "backup"
    await _backup(source, out)
    meta = PostgresMetadataStore(postgres.create_database())
    blobs = LocalBlobStore(tmp_path / "pg-target")
    await meta.open()
    await blobs.open()
    try:
        with pytest.raises(BackupCorrupt) as caught:
            await restore_backup(out, meta, blobs)
        message = str(caught.value)
        assert "\n" not in message
        assert f"PostgreSQL refused a row of table files, row id = '{bad.id}'" in message
        assert "no row was restored" in message
        assert set((await meta.row_counts()).values()) == {0}
    finally:
        await blobs.close()
        await meta.close()


async def test_a_blob_whose_size_is_not_its_rows_is_named_by_backup(
    source: Deployment, tmp_path: Path
) -> None:
    await source.put(b"fine")
    short = await source.put(b"twelve bytes")
    writer = source.blobs.writer(short.blob_key)  # its bytes replaced by fewer
    await writer.write(b"seven b")
    await writer.commit()
    out = tmp_path / "backup"
    with pytest.raises(
        BackupError,
        match=f"blob {short.blob_key} holds 7 bytes, but its files row {short.id} records 12",
    ):
        await _backup(source, out)
    assert not (out / MANIFEST).exists()


async def test_a_blob_whose_size_is_not_its_rows_is_refused_by_restore(
    source: Deployment, target: Deployment, tmp_path: Path
) -> None:
    record = await source.put(b"twelve bytes")
    out = tmp_path / "backup"
    await _backup(source, out)
    # The manifest and the blob agree with each other, not with the row.
    _blob_path(out, record.blob_key).write_bytes(b"seven b")

    def change(manifest: dict[str, Any]) -> None:
        manifest["blobs"][0].update(bytes=7, sha256=hashlib.sha256(b"seven b").hexdigest())

    _rewrite_manifest(out, change)
    with pytest.raises(
        BackupCorrupt,
        match=f"blob {record.blob_key} is 7 bytes .* files row {record.id} records 12",
    ):
        await _restore(out, target)
    assert target.objects() == set()


async def _peak(fn: Any) -> int:
    tracemalloc.start()
    try:
        await fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


async def test_memory_grows_by_under_a_kibibyte_per_blob(tmp_path: Path) -> None:
    # Backup and restore keep every blob's key, size and SHA-256 in memory (the manifest,
    # sets of keys): what docs/deploy.md states per file is measured here, as the growth
    # of Python's peak from 200 files to 2,200.
    peaks: dict[int, tuple[int, int]] = {}
    for n in (200, 2200):
        src = await Deployment(tmp_path / f"source-{n}").open()
        dst = await Deployment(tmp_path / f"target-{n}").open()
        try:
            for i in range(n):
                await src.put(b"%d" % i)
            out = tmp_path / f"backup-{n}"
            backup = await _peak(lambda: _backup(src, out))  # noqa: B023
            restore = await _peak(lambda: _restore(out, dst))  # noqa: B023
            peaks[n] = (backup, restore)
        finally:
            await src.close()
            await dst.close()
    per_blob = [(peaks[2200][i] - peaks[200][i]) / 2000 for i in (0, 1)]
    assert max(per_blob) < 2048, per_blob


@pytest.mark.parametrize("folder", ["blobs", "shard"])
async def test_a_blob_folder_that_is_a_symbolic_link_is_refused(
    source: Deployment, target: Deployment, tmp_path: Path, folder: str
) -> None:
    record = await source.put(b"the bytes")
    out = tmp_path / "backup"
    await _backup(source, out)
    path = out / "blobs" if folder == "blobs" else _blob_path(out, record.blob_key).parent
    real = tmp_path / "elsewhere"
    shutil.copytree(path, real)  # the very files: only the way to them is wrong
    shutil.rmtree(path)
    path.symlink_to(real)
    with pytest.raises(BackupCorrupt, match="is not a folder"):
        await _restore(out, target)
    assert record.blob_key not in target.objects()
