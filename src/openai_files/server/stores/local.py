"""Local-folder blob store: temp file, fsync, rename, fsync of the folder.

Layout under the root: `blobs/<last two chars of key>/<key>` for committed objects and
`tmp/<key>.<random>.part` for writes in progress. Every file call runs in a worker thread,
in chunks of IO_CHUNK_BYTES, so neither the event loop nor memory grow with the file.

The folder belongs to one process (`lock_exclusive`), so the store knows every write in
progress: `remove_stale_temp` never removes the temp file of a writer still open, however
long its upload pauses. A writer also flushes at least every TOUCH_SECONDS while bytes
arrive, so a temp file's mtime is the time of its last byte.

`compose` of an upload's parts (keys `<key>.<part id>`, `_manifest.py`) writes their list, a
manifest, to `manifests/<last two chars of key>/<key>` (temp file, fsync, rename, fsync of
the folder): no byte is copied, and reading the object reads across the parts. Other
sources are copied with `os.copy_file_range` (the kernel copies, or shares the blocks on a
file system with reflinks), into a temp file, fsync, rename: the bytes never pass through
Python. Where the call is missing (macOS) or refused (EXDEV, ENOSYS, EOPNOTSUPP, EINVAL),
it copies in chunks of IO_CHUNK_BYTES instead.

A full disk: the folder keeps a reserve, `.reserve`, of RESERVE_BYTES. When a write finds
the disk full, the reserve is released (and `release_reserve` lets the app release it when
the database finds the disk full), so that SQLite still has room to grow its write-ahead
log and a DELETE can free space. While the reserve is released, writers refuse to take the
last RESERVE_BYTES of the disk; the reserve comes back once the disk has room again (after
a delete, or at the next sweep).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import secrets
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO, ClassVar

import anyio.to_thread

from ..settings import IO_CHUNK_BYTES
from . import _manifest
from ._errors import StoreUnavailable
from ._records import Chunk
from ._shared_call import SharedCall

#: A writer flushes what it holds when its last flush is older than this, so that the temp
#: file of an upload that trickles in under IO_CHUNK_BYTES still shows its last byte.
TOUCH_SECONDS = 5.0
#: Space held back for the database on a full disk. A DELETE writes a few pages to SQLite's
#: write-ahead log (measured on a full 8 MB tmpfs: three deletes grew it by 74 KB; the test
#: checks the growth stays under the reserve), so 1 MiB leaves room for many.
RESERVE_BYTES = 1 * 1024 * 1024
RESERVE_NAME = ".reserve"
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
#: copy_file_range's refusals that mean "copy another way", not "the copy failed".
_NO_COPY_RANGE = frozenset({errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL})
#: The most one copy_file_range call is asked to copy (the kernel copies less per call
#: anyway, ~2 GiB at most).
_COPY_RANGE_BYTES = 1 << 30
log = logging.getLogger(__name__)
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,200}$")


def is_safe_key(key: str) -> bool:
    """Whether `key` may name an object of a local folder: a file name of its shard, never
    a path (what `path_of` takes; a restore checks a backup's keys by it)."""
    return bool(_SAFE_KEY.match(key)) and ".." not in key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FolderSync:
    """Group commit of folder fsyncs, for writers that have just renamed a file into a
    folder and must not go on until the rename is durable (`sync`, from a worker thread).

    The first caller to find no group running leads one: it takes every folder asked for so
    far and fsyncs each once, while the callers that arrive meanwhile wait; when it is done,
    one of them leads the next group, of all their folders. A caller returns only after an
    fsync of its folder that began after its call, so no rename is reported durable before
    it is; concurrent writers share one fsync per folder, and one journal commit of the
    file system between them, instead of one each.
    """

    #: How many failed groups are remembered for their waiters.
    _FAILURES_KEPT = 64

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: set[Path] = set()
        self._started = 0  # groups begun
        self._finished = 0  # groups ended
        self._running = False
        self._failures: dict[int, dict[Path, OSError]] = {}
        #: Folder fsyncs done, and the syncs they answered (group commit at work).
        self.fsyncs = 0
        self.syncs = 0

    def sync(self, folder: Path) -> None:
        with self._cond:
            self._pending.add(folder)
            self.syncs += 1
            group = self._started + 1  # the next group to begin takes this folder
            while self._finished < group:
                if self._running:
                    self._cond.wait()
                    continue
                self._run_group()
            failure = self._failures.get(group, {}).get(folder)
        if failure is not None:
            raise failure

    def _run_group(self) -> None:
        """Lead one group (called holding the lock, which is let go during the fsyncs)."""
        folders, self._pending = self._pending, set()
        self._started += 1
        number = self._started
        self._running = True
        failed: dict[Path, OSError] = {}
        self._cond.release()
        try:
            for folder in folders:
                try:
                    _fsync_dir(folder)
                except OSError as exc:
                    failed[folder] = exc
        finally:
            self._cond.acquire()
            self.fsyncs += len(folders)
            if failed:
                self._failures[number] = failed
                while len(self._failures) > self._FAILURES_KEPT:
                    del self._failures[min(self._failures)]
            self._finished = number
            self._running = False
            self._cond.notify_all()


class LocalBlobWriter:
    def __init__(self, store: LocalBlobStore, key: str) -> None:
        self._store = store
        self._final = store.path_of(key)
        self._tmp = store.tmp_dir / f"{key}.{secrets.token_hex(8)}.part"
        self._fh: BinaryIO | None = None
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._flushed_at = time.monotonic()
        self._done = False
        store._writing.add(self)

    @property
    def temp_path(self) -> Path:
        return self._tmp

    def _flush_sync(self, parts: list[bytes]) -> None:
        with self._store.releasing_on_full():
            self._store.check_room(sum(len(p) for p in parts))
            if self._fh is None:
                self._fh = open(self._tmp, "xb")  # noqa: SIM115 - closed in commit/abort
            self._fh.writelines(parts)
            self._fh.flush()  # into the file now: its mtime and size say what arrived

    async def _flush(self) -> None:
        parts, self._buffer, self._buffered = self._buffer, [], 0
        self._flushed_at = time.monotonic()
        if parts:  # nothing to write takes no room: a full upload is not refused at commit
            await anyio.to_thread.run_sync(self._flush_sync, parts)

    async def write(self, chunk: bytes) -> None:
        if self._done:
            raise RuntimeError("writer is closed")
        self._buffer.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= IO_CHUNK_BYTES or (
            self._fh is not None and time.monotonic() - self._flushed_at >= TOUCH_SECONDS
        ):
            await self._flush()

    async def commit(self) -> None:
        parts, self._buffer, self._buffered = self._buffer, [], 0

        def finish() -> None:
            # What is still buffered is written in the same thread hop (a small upload's
            # whole body): one hop per commit, not two.
            if parts:
                self._flush_sync(parts)
            if self._fh is None:
                self._fh = open(self._tmp, "xb")  # noqa: SIM115 - an empty object
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            try:
                os.replace(self._tmp, self._final)
            except FileNotFoundError:  # the shard's folder is made by its first object
                self._final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(self._tmp, self._final)
            self._store.folder_sync.sync(self._final.parent)

        def finish_or_release() -> None:
            with self._store.releasing_on_full():
                finish()

        try:
            await anyio.to_thread.run_sync(finish_or_release)
        except BaseException:
            await self.abort()
            raise
        self._done = True
        self._store._writing.discard(self)

    async def abort(self) -> None:
        self._done = True
        self._buffer = []
        # Synchronous: a close and an unlink are quick, and an abort in a cancelled scope
        # (a client gone) must not skip them as an awaited thread would.
        try:
            if self._fh is not None:
                fh, self._fh = self._fh, None
                with contextlib.suppress(OSError):  # a full disk fails the buffer's flush
                    fh.close()
            self._tmp.unlink(missing_ok=True)
        finally:
            self._store._writing.discard(self)


def _check_size(stat: Callable[[], os.stat_result], name: str, size: int) -> None:
    """ValueError unless `stat` finds `size` bytes; FileNotFoundError(name) when missing."""
    try:
        actual = stat().st_size
    except FileNotFoundError:
        raise FileNotFoundError(name) from None
    if actual != size:
        raise ValueError(f"source {name} has {actual} bytes, not {size}")


def _copy_source(path: Path, name: str, size: int, dst: int, at: int) -> None:
    """Copy the source `name` (at `path`, of `size` bytes) to `dst` at offset `at`, its
    file open only meanwhile."""
    try:
        src = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        raise FileNotFoundError(name) from None
    try:
        _check_size(lambda: os.fstat(src), name, size)
        _copy_range(src, dst, size, at, name)
    finally:
        os.close(src)


def _copy_range(src: int, dst: int, size: int, at: int, name: str) -> None:
    """Copy `size` bytes of `src` (from its start) to `dst` at offset `at`: in the kernel
    when it can, else in chunks. ValueError when `src` ends early (it changed)."""
    copy_file_range = getattr(os, "copy_file_range", None)
    done = 0
    while copy_file_range is not None and done < size:
        try:
            n = copy_file_range(src, dst, min(size - done, _COPY_RANGE_BYTES), done, at + done)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            log.debug("copy_file_range refused (%s): copying %s in chunks", exc, name)
            break
        if n == 0:
            raise ValueError(f"source {name} ended after {done} of its {size} bytes")
        done += n
    while done < size:
        chunk = os.pread(src, min(size - done, IO_CHUNK_BYTES), done)
        if not chunk:
            raise ValueError(f"source {name} ended after {done} of its {size} bytes")
        view = memoryview(chunk)
        while view:
            written = os.pwrite(dst, view, at + done)
            view = view[written:]
            done += written


def _allocate(fd: int, nbytes: int) -> None:
    """Give the file `nbytes` of real blocks, not a sparse file: posix_fallocate where the
    system has it (not macOS), else written zeros."""
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        fallocate(fd, 0, nbytes)
        return
    zeros = bytes(min(nbytes, IO_CHUNK_BYTES))
    left = nbytes
    while left > 0:
        left -= os.write(fd, zeros[: min(left, len(zeros))])


class LocalBlobStore:
    """Objects as files in a folder (`file:///path/to/data`)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blob_dir = self.root / "blobs"
        self.tmp_dir = self.root / "tmp"
        self.manifest_dir = self.root / "manifests"
        #: Writers not yet committed or aborted (weakly: a writer dropped without either
        #: leaves a temp file that the sweeper may take).
        self._writing: weakref.WeakSet[LocalBlobWriter] = weakref.WeakSet()
        #: Temp files of compositions in progress (spared by `remove_stale_temp` too).
        self._composing: set[Path] = set()
        self.reserve_path = self.root / RESERVE_NAME
        #: Writers' folder fsyncs, shared by those that commit at the same time.
        self.folder_sync = FolderSync()
        #: The device and inode of the folder opened (`ping` checks that it is still there).
        self._identity: tuple[int, int] | None = None
        # Abandoned when its store closes: a thread blocked on the folder cannot be stopped.
        self._ping = SharedCall(
            lambda: anyio.to_thread.run_sync(self._ping_folder, abandon_on_cancel=True)
        )

    async def open(self) -> None:
        def setup() -> None:
            self.blob_dir.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.manifest_dir.mkdir(parents=True, exist_ok=True)
            st = os.stat(self.root)
            self._identity = (st.st_dev, st.st_ino)
            self.keep_reserve()

        await anyio.to_thread.run_sync(setup)

    # -- a full disk --
    def _free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def keep_reserve(self) -> bool:
        """Make the reserve when it is missing and the disk has room; whether it exists."""
        if self.reserve_path.exists():
            return True
        try:
            if self._free_bytes() < 2 * RESERVE_BYTES:
                return False
            staging = self.root / f"{RESERVE_NAME}.{secrets.token_hex(4)}"
            try:
                fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                try:
                    _allocate(fd, RESERVE_BYTES)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(staging, self.reserve_path)
            finally:
                staging.unlink(missing_ok=True)
        except OSError as exc:
            log.debug("could not make the space reserve: %s", exc)
            return False
        log.info("space reserve of %d bytes kept in %s", RESERVE_BYTES, self.root)
        return True

    def release_reserve(self) -> bool:
        """Give the reserve back to the disk (it is full); whether there was one."""
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        log.warning(
            "the disk of %s is full: released the %d-byte space reserve so that deletes "
            "can still run",
            self.root,
            RESERVE_BYTES,
        )
        return True

    def check_room(self, nbytes: int) -> None:
        """While the reserve is released, refuse a write that would take its room."""
        if self.reserve_path.exists():
            return
        if self._free_bytes() - nbytes < RESERVE_BYTES:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.root))

    @contextlib.contextmanager
    def releasing_on_full(self) -> Iterator[None]:
        """Release the reserve when the block finds the disk full (the error goes on)."""
        try:
            yield
        except OSError as exc:
            if exc.errno in _DISK_FULL:
                self.release_reserve()
            raise

    async def close(self) -> None:
        self._ping.cancel()

    async def check(self) -> None:
        """Nothing to ask: the folder is made, or fails to be, at `open`."""
        return None

    async def ping(self) -> None:
        """The folder is the one opened, and takes a file: an empty one is made in its
        temp folder and removed (a folder removed, moved away, unmounted or read-only
        fails). One check at a time, in a worker thread: one that hangs (a hung disk or
        network mount) holds one thread, and callers wait for it rather than start another
        (`SharedCall`)."""
        await self._ping()

    def _ping_folder(self) -> None:
        st = os.stat(self.root)
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreUnavailable(
                f"the data folder {self.root} is not the one the server opened (it was "
                "moved, deleted or replaced)"
            )
        probe = self.tmp_dir / f".ready-{secrets.token_hex(8)}"
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
        if not self.blob_dir.is_dir():
            raise StoreUnavailable(f"the data folder {self.root} has no {self.blob_dir.name}/")

    @property
    def shared(self) -> bool:
        """False while this process holds the folder (`lock_exclusive`), True before."""
        return self.root.resolve() not in self._held

    #: Locks this process holds, by folder: the command line takes the lock before the
    #: app starts and the app takes it again, so that no other server slips in between.
    _held: ClassVar[dict[Path, list[int]]] = {}

    def lock_exclusive(self) -> Callable[[], None]:
        """Take the folder for this process alone; returns the function that lets it go.

        Raises BlockingIOError naming the holder when another process has the folder.
        Taking it again in the same process nests.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        key = self.root.resolve()
        held = self._held.get(key)
        if held is None:
            fd = os.open(key / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise BlockingIOError(
                    f"the data folder {self.root} is in use by another openai-files server "
                    f"(pid {holder})"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            held = self._held[key] = [fd, 0]
        held[1] += 1

        def release() -> None:
            held[1] -= 1
            if held[1] == 0:
                del self._held[key]
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])

        return release

    def local_path(self, key: str) -> Path:
        """The file that holds object `key`, for an HTTP server that sends a file by path
        (responses.py); the optional capability of a store whose objects are files."""
        return self.path_of(key)

    def path_of(self, key: str) -> Path:
        if not is_safe_key(key):
            raise ValueError(f"unsafe blob key: {key!r}")
        return self.blob_dir / key[-2:] / key

    def manifest_path(self, key: str) -> Path:
        """Where the manifest of a composed object `key` is (`_manifest.py`)."""
        if not is_safe_key(key):
            raise ValueError(f"unsafe blob key: {key!r}")
        return self.manifest_dir / key[-2:] / key

    def _manifest(self, key: str) -> list[tuple[str, int]] | None:
        """The parts of the composed object `key`; None when it has no manifest."""
        try:
            data = self.manifest_path(key).read_bytes()
        except FileNotFoundError:
            return None
        return _manifest.decode(data)

    async def parts_of(self, key: str) -> list[tuple[str, int]] | None:
        """The parts, in order, of the composed object `key` ((key, size) pairs); None for
        an object stored whole (or none)."""
        return await anyio.to_thread.run_sync(self._manifest, key)

    def writer(self, key: str, *, buffer_bytes: int | None = None) -> LocalBlobWriter:
        return LocalBlobWriter(self, key)  # straight to disk: nothing buffered to size

    async def compose(self, key: str, sources: Sequence[tuple[str, int]]) -> bool:
        if _manifest.composable(key, sources):
            await self._compose_manifest(key, sources)
            return True
        await self._compose_copy(key, sources)
        return False

    async def _compose_manifest(self, key: str, sources: Sequence[tuple[str, int]]) -> None:
        final = self.manifest_path(key)
        plain = self.path_of(key)
        paths = [(self.path_of(name), name, size) for name, size in sources]
        tmp = self.tmp_dir / f"{key}.{secrets.token_hex(8)}.manifest"
        data = _manifest.encode(sources)

        def run() -> None:
            for path, name, size in paths:
                _check_size(path.stat, name, size)
            try:
                with self.releasing_on_full():
                    with open(tmp, "xb") as fh:
                        fh.write(data)
                        fh.flush()
                        os.fsync(fh.fileno())
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
                    _fsync_dir(final.parent)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            # An object composed whole earlier (by a copy) is replaced by the manifest.
            plain.unlink(missing_ok=True)

        self._composing.add(tmp)
        try:
            await anyio.to_thread.run_sync(run)
        finally:
            self._composing.discard(tmp)

    async def _compose_copy(self, key: str, sources: Sequence[tuple[str, int]]) -> None:
        final = self.path_of(key)
        paths = [(self.path_of(name), name, size) for name, size in sources]
        tmp = self.tmp_dir / f"{key}.{secrets.token_hex(8)}.part"

        def run() -> None:
            # Every source is checked before anything is written, by name: an upload may
            # have more parts than the process may open files, so each is opened only
            # while it is copied (and checked again then).
            for path, name, size in paths:
                _check_size(path.stat, name, size)
            out = -1
            try:
                with self.releasing_on_full():
                    self.check_room(sum(size for _, _, size in paths))
                    out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                    at = 0
                    for path, name, size in paths:
                        _copy_source(path, name, size, out, at)
                        at += size
                    os.fsync(out)
                    os.close(out)
                    out = -1
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(tmp, final)
                    _fsync_dir(final.parent)
                    self.manifest_path(key).unlink(missing_ok=True)
            except BaseException:
                if out >= 0:
                    os.close(out)
                tmp.unlink(missing_ok=True)
                raise

        self._composing.add(tmp)
        try:
            await anyio.to_thread.run_sync(run)
        finally:
            self._composing.discard(tmp)

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        path = self.path_of(key)
        with anyio.CancelScope(shield=True):  # else a cancel during the open loses `fh`
            fh, parts = await anyio.to_thread.run_sync(self._open, path, key)
        if fh is None:
            async for chunk in _manifest.read_across(self._read_file, parts or [], start, end):
                yield chunk
            return
        async for chunk in self._read_open(fh, start, end):
            yield chunk

    def _open(self, path: Path, key: str) -> tuple[BinaryIO | None, list[tuple[str, int]] | None]:
        """The object's file, open; else the parts of its manifest; FileNotFoundError when
        it has neither."""
        try:
            return open(path, "rb"), None
        except FileNotFoundError:
            parts = self._manifest(key)
            if parts is None:
                raise FileNotFoundError(key) from None
            return None, parts

    def _read_file(self, key: str, start: int, end: int) -> AsyncIterator[Chunk]:
        """Bytes `[start, end)` of the part `key`, a file; FileNotFoundError when missing."""

        async def run() -> AsyncIterator[Chunk]:
            with anyio.CancelScope(shield=True):
                fh: BinaryIO = await anyio.to_thread.run_sync(open, self.path_of(key), "rb")
            async for chunk in self._read_open(fh, start, end):
                yield chunk

        return run()

    async def _read_open(self, fh: BinaryIO, start: int, end: int | None) -> AsyncIterator[Chunk]:
        try:
            if start:
                await anyio.to_thread.run_sync(fh.seek, start)
            remaining = None if end is None else end - start
            while remaining is None or remaining > 0:
                size = IO_CHUNK_BYTES if remaining is None else min(IO_CHUNK_BYTES, remaining)
                chunk = await anyio.to_thread.run_sync(fh.read, size)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            # Synchronous: a read-only file closes at once, and a read cancelled mid-file
            # (a client gone) must not leave it to the garbage collector.
            fh.close()

    async def delete(self, key: str, *, parts: bool = True) -> None:
        def run() -> None:
            self.path_of(key).unlink(missing_ok=True)
            manifest = self._manifest(key)
            if manifest is not None:
                if parts:  # the manifest last: a delete cut short is found again
                    for name, _ in manifest:
                        if _manifest.owner_of(name) == key:
                            self.path_of(name).unlink(missing_ok=True)
                self.manifest_path(key).unlink(missing_ok=True)
            self.keep_reserve()  # a delete on a full disk makes room for it again

        await anyio.to_thread.run_sync(run)

    async def list_object_keys(self, older_than: float) -> AsyncIterator[str]:
        def shards() -> list[Path]:
            return [p for p in self.blob_dir.iterdir() if p.is_dir()]

        def scan(shard: Path) -> list[str]:
            out = []
            with os.scandir(shard) as it:
                for entry in it:
                    try:
                        if entry.is_file() and entry.stat().st_mtime < older_than:
                            out.append(entry.name)
                    except FileNotFoundError:
                        continue
            return out

        for shard in await anyio.to_thread.run_sync(shards):
            for key in await anyio.to_thread.run_sync(scan, shard):
                yield key

        # Composed objects: their manifests (their parts are listed above, by their keys).
        def manifest_shards() -> list[Path]:
            if not self.manifest_dir.is_dir():
                return []
            return [p for p in self.manifest_dir.iterdir() if p.is_dir()]

        for shard in await anyio.to_thread.run_sync(manifest_shards):
            for key in await anyio.to_thread.run_sync(scan, shard):
                yield key

    async def remove_stale_temp(self, older_than: float) -> int:
        live = {str(writer.temp_path) for writer in list(self._writing)}
        live.update(str(path) for path in self._composing)

        def run() -> int:
            removed = 0
            with os.scandir(self.tmp_dir) as it:
                for entry in it:
                    if entry.path in live:
                        continue  # an upload still streaming, however long it pauses
                    try:
                        if entry.stat().st_mtime < older_than:
                            os.unlink(entry.path)
                            removed += 1
                    except FileNotFoundError:
                        continue
            # The folder's other housekeeping: the space reserve comes back once there is room.
            self.keep_reserve()
            return removed

        return await anyio.to_thread.run_sync(run)

    async def abort_stale_uploads(
        self,
        older_than: float,
        named: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> int:
        """Nothing to do: an unfinished write here is a temp file (`remove_stale_temp`)."""
        return 0
