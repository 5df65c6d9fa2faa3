"""Backups of a deployment, taken while it runs: its rows as of one instant, and the bytes of
every blob those rows need, each with its SHA-256 in a manifest.

A backup is a folder:

    manifest.json      written last (its presence says the backup is whole): the schema
                       version, the rows per table, and every blob's key, size and SHA-256
    metadata.sqlite3   every table of the schema as of one instant (`MetadataStore.snapshot`:
                       SQLite's online backup API, or one REPEATABLE READ transaction on
                       PostgreSQL), whichever database it came from
    blobs/<xy>/<key>   the bytes, as a local folder keeps them (`LocalBlobStore`'s layout)

Why the rows and the bytes agree. A server writes a blob's bytes before the row that names
them commits, and deletes a row before its bytes (`stores/base.py`). So every blob the rows
of a snapshot need existed when it was taken, and can go only once the row that needed it
is gone. A blob found missing while it is copied had its row deleted after the snapshot:
the backup then takes a new snapshot and copies what that one needs (blobs copied already
are kept: keys are never reused, so a key's bytes never change), until all of one
snapshot's blobs are copied. That snapshot and those bytes are the deployment at one
instant. A blob missing from two snapshots in a row was lost while its row stayed: the
backup stops and names it.

Which blobs rows need is said once, beside the schema (`BLOBS_NEEDED`), and which tables
there are comes from the schema's steps (`tables_at`): a table a later step adds travels
with no change here. `restore.py` reads a backup back into a deployment of either kind.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import re
import shutil
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol, TypeVar

import anyio
import anyio.to_thread

from .._version import __version__
from . import settings as S
from .stores import BlobStore, BlobWriter, Chunk, MetadataStore
from .stores import _sql_copy as _copy
from .stores.local import LocalBlobStore, is_safe_key

T = TypeVar("T")

#: What `manifest.json` says it is, and the version of this layout (a newer one is refused).
FORMAT = "openai-files-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "metadata.sqlite3"
#: The snapshot while its blobs are copied: renamed to METADATA once they all are.
_METADATA_PART = "metadata.sqlite3.part"


class BackupError(Exception):
    """A backup that cannot be taken or restored; the message says why in one line."""


class BackupCorrupt(BackupError):
    """A file of the backup whose bytes are not those its manifest records."""


#: A blob's SHA-256 as the manifest records it.
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: The most `manifest.json` may hold: this, plus MANIFEST_BYTES_PER_METADATA_BYTE per byte
#: of the metadata file beside it. Every blob of a backup is named by a row of that file
#: (a file, a part, a batch), and a row takes more bytes there than the blob's entry (key,
#: size, SHA-256: about 150 bytes) takes in the manifest; so a manifest bigger than this
#: was not written by `take_backup`, and a restore refuses it before parsing it.
MANIFEST_BASE_BYTES = 1 << 20
MANIFEST_BYTES_PER_METADATA_BYTE = 4


def _entry(b: Any) -> BlobEntry:
    entry = BlobEntry(str(b["key"]), int(b["bytes"]), str(b["sha256"]))
    if not is_safe_key(entry.key):
        raise BackupCorrupt(f"the backup's {MANIFEST} names a blob {entry.key!r}: not a key")
    if entry.bytes < 0 or not _SHA256.match(entry.sha256):
        raise BackupCorrupt(
            f"the backup's {MANIFEST} records blob {entry.key} as {entry.bytes} bytes of "
            f"SHA-256 {entry.sha256!r}: not a size and a SHA-256"
        )
    return entry


def open_backup_file(path: Path | str, name: str, *, dir_fd: int | None = None) -> int:
    """A read-only descriptor of the backup's file `path` (`name` in messages; relative to
    the folder `dir_fd` when given): BackupCorrupt unless it is a regular file: a symbolic
    link is not followed, and a FIFO or a device is not read (nor waited on).
    FileNotFoundError when there is none."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BackupCorrupt(
                f"the backup's {name} is a symbolic link: a backup holds files only"
            ) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BackupCorrupt(f"the backup's {name} is not a regular file: a backup holds files only")
    return fd


def open_blob_file(backup: Path, key: str) -> int:
    """A read-only descriptor of blob `key`'s file in the backup `backup`, found through
    its folders `blobs/` and `blobs/<xy>/` with no symbolic link followed on the way
    (`open_backup_file`); FileNotFoundError when there is none."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    folders: list[int] = []
    try:
        for name, path in (("blobs", backup / "blobs"), (f"blobs/{key[-2:]}", key[-2:])):
            try:
                folders.append(os.open(path, flags, dir_fd=folders[-1] if folders else None))
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise BackupCorrupt(
                        f"the backup's {name} is not a folder (a symbolic link?): a backup "
                        "holds folders and files only"
                    ) from None
                raise
        return open_backup_file(key, f"blob {key}", dir_fd=folders[-1])
    finally:
        for fd in folders:
            os.close(fd)


def read_at_most(fd: int, limit: int) -> bytes:
    """The bytes of `fd` from where it is, at most `limit` of them (a chunk at a time)."""
    parts: list[bytes] = []
    left = limit
    while left > 0 and (chunk := os.read(fd, min(S.IO_CHUNK_BYTES, left))):
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


class Progress(Protocol):
    """What a backup or a restore reports as it copies (the command line draws a bar)."""

    def add(self, objects: int) -> None:
        """`objects` more blobs are to be copied."""

    def advance(self, nbytes: int) -> None:
        """One blob is done (copied, found there already, or found deleted), of `nbytes`."""


class QuietProgress:
    """A Progress that shows nothing."""

    def add(self, objects: int) -> None:
        pass

    def advance(self, nbytes: int) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class BlobEntry:
    """One blob of a backup: its key, size and SHA-256 (hex)."""

    key: str
    bytes: int
    sha256: str


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What a backup holds (`manifest.json`)."""

    created_at: int
    schema_version: int
    #: Where it was taken from: the database and storage URLs, passwords masked.
    source: Mapping[str, str]
    #: The metadata file's size and SHA-256, and the rows of each table in it.
    metadata_bytes: int
    metadata_sha256: str
    rows: Mapping[str, int]
    blobs: tuple[BlobEntry, ...]
    openai_files_version: str = __version__

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "openai_files_version": self.openai_files_version,
            "created_at": self.created_at,
            "schema_version": self.schema_version,
            "source": dict(self.source),
            "metadata": {
                "file": METADATA,
                "bytes": self.metadata_bytes,
                "sha256": self.metadata_sha256,
                "rows": dict(self.rows),
            },
            "blobs": [dataclasses.asdict(b) for b in self.blobs],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        """The manifest of `data` (parsed JSON); BackupError when it is not one this code
        reads."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError("not an openai-files backup (its manifest.json says otherwise)")
        if data.get("format_version") != FORMAT_VERSION:
            raise BackupError(
                f"backup format version {data.get('format_version')!r}: this openai-files "
                f"reads version {FORMAT_VERSION}; use the openai-files that took it"
            )
        try:
            metadata = data["metadata"]
            return cls(
                created_at=int(data["created_at"]),
                schema_version=int(data["schema_version"]),
                source={str(k): str(v) for k, v in data["source"].items()},
                metadata_bytes=int(metadata["bytes"]),
                metadata_sha256=str(metadata["sha256"]),
                rows={str(k): int(v) for k, v in metadata["rows"].items()},
                blobs=tuple(_entry(b) for b in data["blobs"]),
                openai_files_version=str(data.get("openai_files_version", "")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise BackupCorrupt(f"the backup's manifest.json is damaged ({exc!r})") from None

    @property
    def total_bytes(self) -> int:
        return sum(b.bytes for b in self.blobs)


def read_manifest(backup: Path) -> Manifest:
    """The manifest of the backup folder `backup`; BackupError when there is none (not a
    backup, or one that did not finish) or it cannot be read, BackupCorrupt when it is not
    a regular file or is bigger than its metadata file allows (`MANIFEST_BASE_BYTES`)."""
    path = backup / MANIFEST
    try:
        fd = open_backup_file(path, MANIFEST)
    except FileNotFoundError:
        if not backup.is_dir():
            raise BackupError(f"no backup at {backup}: no such folder") from None
        raise BackupError(
            f"no backup at {backup}: it has no {MANIFEST} (a backup writes it last, so one "
            "that was stopped has none: take it again)"
        ) from None
    try:
        try:
            metadata = os.lstat(backup / METADATA)
            held = metadata.st_size if stat.S_ISREG(metadata.st_mode) else 0
        except FileNotFoundError:
            held = 0
        limit = MANIFEST_BASE_BYTES + MANIFEST_BYTES_PER_METADATA_BYTE * held
        data = read_at_most(fd, limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise BackupCorrupt(
            f"the backup's {MANIFEST} is bigger than a backup of its {held}-byte {METADATA} "
            f"makes (at most {limit} bytes): it is not one `openai-files backup` wrote"
        )
    try:
        return Manifest.from_json(json.loads(data.decode("utf-8")))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise BackupCorrupt(f"the backup's {MANIFEST} is damaged ({exc})") from None


# -- taking one --


async def take_backup(
    meta: MetadataStore,
    blobs: BlobStore,
    out: Path,
    *,
    source: Mapping[str, str],
    progress: Progress | None = None,
    max_snapshots: int = S.BACKUP_MAX_SNAPSHOTS,
) -> Manifest:
    """Back up the deployment of `meta` and `blobs` (opened; servers may write meanwhile)
    into the new folder `out` (it must not exist, or be empty); its manifest.

    `source` names the deployment in the manifest (URLs with passwords masked). Raises
    BackupError (nothing is left to take for a backup: no manifest is written) when `out`
    holds anything, when a blob that rows need is missing from the store, or when blobs
    went on being deleted through `max_snapshots` snapshots; SchemaMismatch for a database
    newer than this code.

    Example (the command line's `openai-files backup OUT` does this)::

        manifest = await take_backup(meta, blobs, Path("backup-1"), source={})
    """
    progress = progress or QuietProgress()
    _prepare(out)
    store = LocalBlobStore(out)  # each blob: temp file, fsync, rename, as the embedded store
    snapshot = out / _METADATA_PART
    copied: dict[str, BlobEntry] = {}
    missing: set[str] = set()
    for _ in range(max_snapshots):
        snapshot.unlink(missing_ok=True)
        version = await meta.snapshot(snapshot)
        await anyio.to_thread.run_sync(_private, snapshot)
        needed, sizes = await anyio.to_thread.run_sync(_needed, snapshot)
        if lost := sorted(missing & needed):
            raise BackupError(
                f"the storage has lost the bytes of blob {lost[0]}, which rows still name "
                f"({len(lost)} such blob{'s' if len(lost) > 1 else ''}): this deployment is "
                "damaged"
            )
        todo = sorted(needed - copied.keys())
        progress.add(len(todo))
        missing = await _copy_blobs(blobs, store, todo, copied, progress, sizes)
        if not missing:
            break
    else:
        raise BackupError(
            f"blobs were deleted faster than they were copied, through {max_snapshots} "
            "snapshots: take the backup at a quieter time"
        )
    for key in sorted(copied.keys() - needed):  # copied for an earlier snapshot only
        await anyio.to_thread.run_sync(store.path_of(key).unlink)
        del copied[key]
    size, digest, rows = await anyio.to_thread.run_sync(_describe, snapshot)
    manifest = Manifest(
        created_at=int(time.time()),
        schema_version=version,
        source=dict(source),
        metadata_bytes=size,
        metadata_sha256=digest,
        rows=rows,
        blobs=tuple(copied[key] for key in sorted(copied)),
    )
    await anyio.to_thread.run_sync(_finish, out, snapshot, manifest)
    return manifest


async def _copy_blobs(
    blobs: BlobStore,
    store: LocalBlobStore,
    keys: list[str],
    copied: dict[str, BlobEntry],
    progress: Progress,
    sizes: Mapping[str, tuple[int, str]],
) -> set[str]:
    """Copy the blobs `keys` into the backup (each into `copied`); those the source does
    not have: their rows were deleted after the snapshot."""
    missing: set[str] = set()

    async def copy(key: str) -> None:
        entry = await _copy_blob(blobs, store, key, sizes.get(key))
        if entry is None:
            missing.add(key)
            progress.advance(0)
        else:
            copied[key] = entry
            progress.advance(entry.bytes)

    await each(keys, copy, S.BACKUP_CONCURRENT_OBJECTS)
    return missing


#: A backup holds every tenant's bytes and the deployment's secrets (`server_secrets`):
#: its folders are its owner's alone, and so are its files, whatever the umask.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def _prepare(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} exists and is not an empty folder: a backup goes into a new one")
    out.parent.mkdir(parents=True, exist_ok=True)
    for folder in (out, out / "blobs", out / "tmp"):
        folder.mkdir(mode=PRIVATE_DIR, exist_ok=True)
        os.chmod(folder, PRIVATE_DIR)  # the umask may have taken bits, or `out` existed


def _private(path: Path) -> None:
    """Make the backup's file (or folder) `path` its owner's alone."""
    os.chmod(path, PRIVATE_DIR if path.is_dir() else PRIVATE_FILE)


def _needed(snapshot: Path) -> tuple[set[str], dict[str, tuple[int, str]]]:
    """The blobs the snapshot's rows need, and the sizes its rows record."""
    conn = _copy.connect(snapshot, read_only=True)
    try:
        return set(_copy.blobs_needed(conn)), _copy.blob_sizes(conn)
    finally:
        conn.close()


def _describe(path: Path) -> tuple[int, str, dict[str, int]]:
    """A finished copy's size, SHA-256 and rows per table (its bytes made durable)."""
    conn = _copy.connect(path, read_only=True)
    try:
        rows = _copy.row_counts(conn)
    finally:
        conn.close()
    size, digest = file_digest(path, sync=True)
    return size, digest, rows


def file_digest(path: Path, *, sync: bool = False) -> tuple[int, str]:
    """The size and SHA-256 of a file, read in chunks (`sync`: fsync it too)."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(S.IO_CHUNK_BYTES):
            digest.update(chunk)
            size += len(chunk)
        if sync:
            os.fsync(fh.fileno())
    return size, digest.hexdigest()


def _finish(out: Path, snapshot: Path, manifest: Manifest) -> None:
    """Put the metadata in place, then the manifest, each durably: the manifest last."""
    os.replace(snapshot, out / METADATA)
    shutil.rmtree(out / "tmp", ignore_errors=True)
    _fsync_dir(out)
    staging = out / f"{MANIFEST}.part"
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    os.fchmod(fd, PRIVATE_FILE)
    with open(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest.to_json(), fh, indent=1)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(staging, out / MANIFEST)
    _fsync_dir(out)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _copy_blob(
    source: BlobStore, store: LocalBlobStore, key: str, recorded: tuple[int, str] | None
) -> BlobEntry | None:
    """Copy one blob into the backup, hashing it on the way; None when the source has no
    such blob (any more). BackupError when its size is not the one its row records
    (`recorded`: the size, and which row): the deployment is damaged."""
    writer = store.writer(key)
    digest = hashlib.sha256()
    size = 0
    try:
        async for chunk in source.read(key):
            await anyio.to_thread.run_sync(digest.update, chunk)  # hashlib lets the GIL go
            await writer.write(as_bytes(chunk))
            size += len(chunk)
        if recorded is not None and size != recorded[0]:
            raise BackupError(
                f"blob {key} holds {size} bytes, but its {recorded[1]} records "
                f"{recorded[0]}: this deployment is damaged (the backup stops here)"
            )
    except FileNotFoundError:
        await abort_writer(writer)
        return None
    except BaseException:
        await abort_writer(writer)
        raise
    await writer.commit()
    path = store.path_of(key)
    await anyio.to_thread.run_sync(_private_blob, path)
    return BlobEntry(key, size, digest.hexdigest())


def _private_blob(path: Path) -> None:
    _private(path)
    _private(path.parent)  # its shard's folder, made by its first blob


def as_bytes(chunk: Chunk) -> bytes:
    """A chunk as a writer takes it (a store's read may hand out a view of its buffer)."""
    return bytes(chunk) if isinstance(chunk, memoryview) else chunk


async def abort_writer(writer: BlobWriter) -> None:
    """Abort a writer, also in a cancelled scope (Ctrl-C): its temp data goes."""
    with anyio.CancelScope(shield=True):
        await writer.abort()


async def each(items: Iterable[T], fn: Callable[[T], Awaitable[None]], limit: int) -> None:
    """`fn` of every item, `limit` at a time; the first error cancels the others."""
    it = iter(items)

    async def worker() -> None:
        for item in it:  # one iterator shared: each item goes to one worker
            await fn(item)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(limit):
                group.start_soon(worker)
    except BaseExceptionGroup as errors:
        raise _first(errors) from None


def _first(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error that stopped a task group: its first, not a cancellation it caused."""
    leaves: list[BaseException] = []
    stack: list[BaseException] = [errors]
    while stack:
        error = stack.pop(0)
        if isinstance(error, BaseExceptionGroup):
            stack[:0] = error.exceptions
        else:
            leaves.append(error)
    cancelled = anyio.get_cancelled_exc_class()
    return next((e for e in leaves if not isinstance(e, cancelled)), leaves[0])


async def list_keys(blobs: BlobStore) -> AsyncIterator[str]:
    """Every committed object of a store, however recent."""
    async for key in blobs.list_object_keys(time.time() + 86400):
        yield key
