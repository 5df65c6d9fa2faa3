"""Restores of a backup (`backup.py`) into an empty deployment of either kind, every byte
checked against the manifest, and resumable when stopped.

The order, so that a restore stopped anywhere (Ctrl-C, SIGKILL, a full disk) leaves a
deployment that looks empty, never one that looks whole but is not, and that the same
command run again finishes:

1. The backup is checked before the target is touched: its manifest, its metadata file's
   SHA-256, the rows per table, and that every blob its rows need is in the manifest. A
   backup of an older schema version is migrated, in a copy, to this code's; a newer one
   is refused.
2. The target must be empty: no row in any table (a schema with no row is empty), and no
   object in its storage but the backup's own, which an earlier run of the restore put
   there (so a second run goes on where the first stopped).
3. The blobs: each is streamed from the backup into the target, its size and SHA-256
   checked against the manifest before it is committed (a blob that does not match is
   never written; the restore stops and names it). Blobs already in the target are not
   copied again: an object exists there only once a restore has checked and committed it.
4. The rows, last: every table in one transaction (`MetadataStore.load`). Until it
   commits the deployment holds no row, so no server shows anything of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import anyio
import anyio.to_thread

from . import settings as S
from .backup import (
    METADATA,
    BackupCorrupt,
    BackupError,
    BlobEntry,
    Manifest,
    Progress,
    QuietProgress,
    abort_writer,
    as_bytes,
    each,
    list_keys,
    open_backup_file,
    open_blob_file,
    read_manifest,
)
from .stores import BlobStore, MetadataStore, RowsRefused, StoreNotEmpty
from .stores import _sql_copy as _copy
from .stores._sql_schema import SCHEMA_VERSION


class TargetNotEmpty(BackupError):
    """The deployment restored into holds rows or objects of its own."""


@dataclasses.dataclass(frozen=True)
class Restored:
    """What a restore did: blobs copied now, blobs an earlier run had copied, their bytes,
    and the rows inserted per table."""

    copied: int
    present: int
    bytes: int
    rows: Mapping[str, int]
    schema_version: int
    #: The deployment held this backup already (a restore of it had finished): nothing done.
    already: bool = False


async def restore_backup(
    backup: Path,
    meta: MetadataStore,
    blobs: BlobStore,
    *,
    progress: Progress | None = None,
    workdir: Path | None = None,
) -> Restored:
    """Restore the backup folder `backup` into the deployment of `meta` and `blobs`
    (opened, empty; no server running on them).

    Raises BackupError when the backup is not one (or not whole), BackupCorrupt when a byte
    of it is not what its manifest records, TargetNotEmpty when the deployment holds rows
    or objects the backup does not have, SchemaMismatch when the backup or the database is
    newer than this code. `workdir` holds the working copy of the metadata (the system's
    temporary folder by default).

    Example (the command line's `openai-files restore OUT` does this)::

        restored = await restore_backup(Path("backup-1"), meta, blobs)
    """
    progress = progress or QuietProgress()
    manifest = read_manifest(backup)
    _copy.check_version(manifest.schema_version, "the backup")
    with tempfile.TemporaryDirectory(dir=workdir, prefix="openai-files-restore-") as tmp:
        rows = Path(tmp) / METADATA
        expected = await anyio.to_thread.run_sync(_check_backup, backup, manifest, rows)
        if await _check_empty(meta, blobs, manifest, expected):
            return Restored(
                copied=0,
                present=len(manifest.blobs),
                bytes=manifest.total_bytes,
                rows=expected,
                schema_version=SCHEMA_VERSION,
                already=True,
            )
        await meta.migrate()
        present = await _copy_blobs(backup, blobs, manifest, progress)
        try:
            counts = await meta.load(rows)
        except StoreNotEmpty as exc:
            raise TargetNotEmpty(_not_empty(exc)) from None
        except RowsRefused as exc:
            raise BackupCorrupt(
                f"{exc}; no row was restored (the deployment holds none): mend the source and "
                "take the backup again"
            ) from None
    return Restored(
        copied=len(manifest.blobs) - present,
        present=present,
        bytes=manifest.total_bytes,
        rows=counts,
        schema_version=SCHEMA_VERSION,
    )


def _check_backup(backup: Path, manifest: Manifest, rows: Path) -> dict[str, int]:
    """Copy the backup's metadata file to `rows`, checked against its manifest, and bring
    the copy to this code's schema version (blocking: run in a worker thread); the rows
    per table of the copy. Only the copy is read as a database: the backup's file is read
    once, as bytes, at most one byte more than the manifest records."""
    try:
        fd = open_backup_file(backup / METADATA, METADATA)
    except FileNotFoundError:
        raise BackupCorrupt(f"the backup has no {METADATA}") from None
    digest = hashlib.sha256()
    size = 0
    try:
        with open(rows, "wb") as dst:
            limit = manifest.metadata_bytes + 1
            while size < limit and (chunk := os.read(fd, min(S.IO_CHUNK_BYTES, limit - size))):
                digest.update(chunk)
                dst.write(chunk)
                size += len(chunk)
    finally:
        os.close(fd)
    if (size, digest.hexdigest()) != (manifest.metadata_bytes, manifest.metadata_sha256):
        raise BackupCorrupt(
            f"the backup's {METADATA} is not the one its manifest records "
            + (
                f"({size} bytes, SHA-256 {digest.hexdigest()}; "
                if size <= manifest.metadata_bytes
                else "(more bytes than recorded; "
            )
            + f"recorded: {manifest.metadata_bytes} bytes, {manifest.metadata_sha256})"
        )
    conn = _copy.connect(rows, read_only=True)
    try:
        version = _copy.version_of(conn)
        counts = _copy.row_counts(conn)
        needed = set(_copy.blobs_needed(conn))
        sizes = _copy.blob_sizes(conn)
    except (sqlite3.DatabaseError, RowsRefused) as exc:
        raise BackupCorrupt(f"the backup's {METADATA} cannot be read ({exc})") from None
    finally:
        conn.close()
    if version != manifest.schema_version or counts != dict(manifest.rows):
        raise BackupCorrupt(
            f"the backup's {METADATA} holds schema version {version} and rows {counts}; "
            f"its manifest records version {manifest.schema_version} and {dict(manifest.rows)}"
        )
    if lacking := sorted(needed - {b.key for b in manifest.blobs}):
        raise BackupCorrupt(
            f"the backup's rows need blob {lacking[0]}, which it does not hold "
            f"({len(lacking)} such blob{'s' if len(lacking) > 1 else ''})"
        )
    for entry in manifest.blobs:
        if (recorded := sizes.get(entry.key)) and recorded[0] != entry.bytes:
            raise BackupCorrupt(
                f"the backup's blob {entry.key} is {entry.bytes} bytes by its manifest, but "
                f"its {recorded[1]} records {recorded[0]}"
            )
    del sizes
    conn = _copy.connect(rows)
    try:
        _copy.migrate(conn)  # an older backup: at this code's schema version from here on
        return _copy.row_counts(conn)
    except (sqlite3.DatabaseError, RowsRefused) as exc:
        raise BackupCorrupt(f"the backup's {METADATA} cannot be migrated ({exc})") from None
    finally:
        conn.close()


async def _check_empty(
    meta: MetadataStore, blobs: BlobStore, manifest: Manifest, expected: Mapping[str, int]
) -> bool:
    """TargetNotEmpty unless the target holds no row and no object but the backup's (an
    earlier run's). True when it holds the backup already: exactly its objects, and as many
    rows in each table as it (a restore that finished, run again)."""
    found = await meta.schema_version()
    _copy.check_version(found or SCHEMA_VERSION, "the target database")
    counts = await meta.row_counts() if found else {}
    held = [(table, n) for table, n in counts.items() if n]
    ours = {b.key for b in manifest.blobs}
    keys: set[str] = set()
    strangers: list[str] = []
    async for key in list_keys(blobs):
        keys.add(key)
        if key not in ours:
            strangers.append(key)
            if len(strangers) >= 3:
                break
    if held and not strangers and keys == ours and counts == dict(expected):
        return True
    if held:
        raise TargetNotEmpty(_not_empty(StoreNotEmpty(*held[0])))
    if strangers:
        raise TargetNotEmpty(
            f"the target storage holds objects that are not this backup's "
            f"({', '.join(strangers)}{', ...' if len(strangers) >= 3 else ''}): "
            "restore into an empty deployment"
        )
    return False


def _not_empty(exc: StoreNotEmpty) -> str:
    return f"the target database is not empty ({exc}): restore into an empty deployment"


async def _copy_blobs(
    backup: Path, blobs: BlobStore, manifest: Manifest, progress: Progress
) -> int:
    """Copy the blobs the target does not hold yet; how many it held already."""
    present = {key async for key in list_keys(blobs)}
    todo = [b for b in manifest.blobs if b.key not in present]
    progress.add(len(manifest.blobs))
    for entry in manifest.blobs:
        if entry.key in present:
            progress.advance(entry.bytes)

    async def copy(entry: BlobEntry) -> None:
        await _restore_blob(backup, blobs, entry)
        progress.advance(entry.bytes)

    await each(todo, copy, S.BACKUP_CONCURRENT_OBJECTS)
    return len(manifest.blobs) - len(todo)


async def _restore_blob(backup: Path, blobs: BlobStore, entry: BlobEntry) -> None:
    """Stream one blob into the target, committed only when its size and SHA-256 are the
    manifest's."""
    writer = blobs.writer(entry.key, buffer_bytes=S.BACKUP_BUFFER_BYTES)
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in _read_blob(backup, entry):
            size += len(chunk)
            if size > entry.bytes:
                break
            await anyio.to_thread.run_sync(digest.update, chunk)
            await writer.write(as_bytes(chunk))
        if size != entry.bytes or digest.hexdigest() != entry.sha256:
            raise BackupCorrupt(
                f"blob {entry.key} of the backup is not the one its manifest records "
                + (
                    f"(its SHA-256 is {digest.hexdigest()}, not {entry.sha256})"
                    if size == entry.bytes
                    else f"({'more than' if size > entry.bytes else size} of its "
                    f"{entry.bytes} bytes)"
                )
                + ": nothing of it was written"
            )
    except FileNotFoundError:
        await abort_writer(writer)
        raise BackupCorrupt(f"the backup has no bytes for blob {entry.key}") from None
    except BaseException:
        await abort_writer(writer)
        raise
    await writer.commit()


async def _read_blob(backup: Path, entry: BlobEntry) -> AsyncIterator[bytes]:
    """The bytes of a blob's file in the backup, a chunk at a time, at most one byte more
    than the manifest records (`open_blob_file`: a regular file, no link on the way)."""
    with anyio.CancelScope(shield=True):  # else a cancel during the open loses `fd`
        fd = await anyio.to_thread.run_sync(open_blob_file, backup, entry.key)
    try:
        left = entry.bytes + 1
        while left > 0:
            chunk = await anyio.to_thread.run_sync(os.read, fd, min(S.IO_CHUNK_BYTES, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
    finally:
        os.close(fd)
