"""SQLite metadata store: WAL mode, reads on a thread pool, one writer, group commit.

Every call runs its blocking sqlite3 work in a worker thread. Reads use one connection per
worker thread. Writes go through a single connection on a thread of their own, by group
commit: the writes that arrive while a transaction commits wait, and the next transaction
(`BEGIN IMMEDIATE`) runs all of them, each in a savepoint of its own, then commits once
(`synchronous=FULL`: one fsync of the write-ahead log for the group). A write's caller
gets its answer only once that commit has returned, so nothing is acknowledged, or seen
by a reader, before it is durable. Each write still runs alone between its savepoint's
start and end, so check-then-write (the quota) is atomic, even across processes sharing
the file; a write that fails rolls back its own savepoint only, and the others commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import queue
import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar, NamedTuple, TypeVar

import anyio
import anyio.to_thread

from . import _sql_copy as _copy
from . import _sql_plans as _plans
from ._errors import RowsRefused, StoreNotEmpty, StoreUnavailable
from ._shared_call import SharedCall
from ._sql import SQLMetadataStore
from ._sql_dialect import SQLITE, Dialect, Plan, Stmt, drive
from ._sql_schema import SCHEMA_VERSION, tables_at

__all__ = ["SCHEMA_VERSION", "SQLiteMetadataStore"]

T = TypeVar("T")

#: Threads that run reads (writes have their own connection and thread).
_READ_THREADS = 2
#: The most writes one transaction takes; the rest wait for the next one.
GROUP_MAX = 256


def _execute(conn: sqlite3.Connection, stmt: Stmt) -> Any:
    """Run one statement of a plan; what its `fetch` asks for."""
    cur = conn.execute(stmt.sql, stmt.args)
    if stmt.fetch == "one":
        return cur.fetchone()
    if stmt.fetch == "all":
        return cur.fetchall()
    if stmt.fetch == "value":
        row = cur.fetchone()
        return None if row is None else row[0]
    if stmt.fetch == "count":
        return cur.rowcount
    return None


def _run(conn: sqlite3.Connection, plan: Plan[T]) -> T:
    return drive(plan, lambda stmt: _execute(conn, stmt))


class _Write(NamedTuple):
    """A write waiting for the writer thread: its plan, and where its outcome goes."""

    plan: Plan[Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


def _undo_savepoint(conn: sqlite3.Connection) -> bool:
    """Roll back the savepoint of a write that failed; False when the database has ended
    the whole transaction itself (it does on a full disk or an I/O error)."""
    if not conn.in_transaction:
        return False
    try:
        conn.execute("ROLLBACK TO write")
        conn.execute("RELEASE write")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return False
    return True


def _transaction(
    conn: sqlite3.Connection,
    group: list[_Write],
    todo: list[int],
    outcomes: list[tuple[bool, Any] | None],
) -> list[int]:
    """Run the writes `todo` (indices into `group`) in one transaction, each in a
    savepoint, and commit once; their outcomes go to `outcomes`. Returns the writes not
    run, when the database ended the transaction before they could be: the writes that ran
    in it fail with the error that ended it, and those not run go on in a new one."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except BaseException as exc:
        for i in todo:
            outcomes[i] = (False, exc)
        return []
    done: list[tuple[int, Any]] = []
    for n, i in enumerate(todo):
        try:
            conn.execute("SAVEPOINT write")
            result = _run(conn, group[i].plan)
        except BaseException as exc:
            outcomes[i] = (False, exc)
            if _undo_savepoint(conn):
                continue  # this write alone is undone; the others go on
            for j, _ in done:
                outcomes[j] = (False, exc)
            return todo[n + 1 :]
        conn.execute("RELEASE write")
        done.append((i, result))
    try:
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        for j, _ in done:
            outcomes[j] = (False, exc)
        return []
    for j, result in done:
        outcomes[j] = (True, result)
    return []


class SQLiteMetadataStore(SQLMetadataStore):
    """The embedded metadata store (`sqlite:///path/to/files.sqlite3`)."""

    DIALECT: ClassVar[Dialect] = SQLITE
    AUTO_MIGRATE: ClassVar[bool] = True

    def __init__(self, path: Path | str, *, read_threads: int = _READ_THREADS) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        #: Writes waiting for the writer thread (None, once, tells it to stop).
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._write_thread: threading.Thread | None = None
        #: Transactions committed, and the writes they carried (group commit at work).
        self.transactions = 0
        self.writes = 0
        # A small pool of its own: cheaper hops than anyio's, and few threads contending
        # for the GIL (measured: docs/benchmarks.md).
        self._read_pool = concurrent.futures.ThreadPoolExecutor(
            read_threads, thread_name_prefix="sqlite-read"
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        #: The device and inode of the file opened (`ping` checks that it is still there).
        self._identity: tuple[int, int] | None = None
        self._ping = SharedCall(
            lambda: asyncio.get_running_loop().run_in_executor(self._read_pool, self._ping_file)
        )

    @property
    def shared(self) -> bool:
        """False: a local file, used by one server (no replicas share it, no uploads of theirs)."""
        return False

    # -- connections --
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row  # rows are read by column name
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            conn.execute("PRAGMA query_only = ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    async def _read(self, plan: Plan[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, lambda: _run(self._reader(), plan))

    async def _write(self, plan: Plan[T]) -> T:
        if self._write_thread is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._writes.put(_Write(plan, loop, future))
        # Shielded, as a write in a worker thread would be: a caller cancelled while its
        # write commits learns its outcome first (an insert must not be undone as failed).
        with anyio.CancelScope(shield=True):
            result = await asyncio.shield(future)
        return result

    async def ping(self) -> None:
        """A read, once the file at `path` is found to be the one this store opened: a
        database file deleted, moved or replaced under a running server (a volume unmounted,
        a folder removed) still answers through the open connections, but takes writes that
        no later start would see. One check at a time: one that hangs (a hung disk or
        network mount) holds one of the few reading threads, and callers wait for it rather
        than take another (`SharedCall`)."""
        await self._ping()

    def _ping_file(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StoreUnavailable(
                f"the database file {self.path} cannot be reached: {exc.strerror or exc}"
            ) from None
        if (st.st_dev, st.st_ino) != self._identity:
            raise StoreUnavailable(
                f"the database file {self.path} is not the one the server opened (it was "
                "moved, deleted or replaced)"
            )
        _run(self._reader(), _plans.ping())

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        """The writer thread: each turn takes every write waiting (up to GROUP_MAX) into
        one transaction, and answers each only once it has committed."""
        stop = False
        while not stop:
            first = self._writes.get()
            if first is None:
                break
            group = [first]
            while len(group) < GROUP_MAX:
                try:
                    item = self._writes.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            outcomes: list[tuple[bool, Any] | None] = [None] * len(group)
            try:
                todo = list(range(len(group)))
                while todo:
                    todo = _transaction(conn, group, todo, outcomes)
                    self.transactions += 1
            except BaseException as exc:  # the thread must live on: every write is answered
                with contextlib.suppress(sqlite3.Error):
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                outcomes = [(False, exc) if o is None else o for o in outcomes]
            self.writes += len(group)
            for write, outcome in zip(group, outcomes, strict=True):
                ok, value = outcome or (False, RuntimeError("write not run"))
                # RuntimeError: its event loop has closed, nobody waits for it.
                with contextlib.suppress(RuntimeError):
                    write.loop.call_soon_threadsafe(_settle, write.future, ok, value)
        conn.close()

    async def open(self) -> None:
        def setup() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            st = os.stat(self.path)
            self._identity = (st.st_dev, st.st_ino)
            return conn

        self._writer = await anyio.to_thread.run_sync(setup)
        self._write_thread = threading.Thread(
            target=self._write_loop, args=(self._writer,), name="sqlite-write", daemon=True
        )
        self._write_thread.start()

    async def close(self) -> None:
        def run() -> None:
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            if self._write_thread is not None:
                self._writes.put(None)  # after the writes already waiting
                self._write_thread.join()
                self._write_thread = None
            self._writer = None

        self._ping.cancel()
        await anyio.to_thread.run_sync(self._read_pool.shutdown)
        await anyio.to_thread.run_sync(run)

    # -- backup and restore --
    async def snapshot(self, dest: Path) -> int:
        """SQLite's online backup API: the database as of one instant, page by page, in one
        step (writers go on meanwhile: the write-ahead log keeps the copy's instant)."""

        def run() -> int:
            if dest.exists():
                raise FileExistsError(str(dest))
            source = self._connect()
            try:
                copy = _copy.connect(dest)
                try:
                    source.backup(copy)
                    copy.execute("PRAGMA journal_mode = DELETE")  # one file, no -wal beside
                    version = _copy.version_of(copy)
                finally:
                    copy.close()
                _copy.check_version(version, "the database")
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
            finally:
                source.close()
            return version

        return await anyio.to_thread.run_sync(run)

    async def load(self, source: Path) -> dict[str, int]:
        """One transaction on a connection of its own (`BEGIN IMMEDIATE`: no other writer
        meanwhile), the copy attached: `INSERT ... SELECT` per table, in SQLite itself."""

        def run() -> dict[str, int]:
            conn = self._connect()
            try:
                conn.execute("PRAGMA trusted_schema = OFF")  # the copy's views and triggers
                conn.execute("ATTACH DATABASE ? AS source", (str(source),))
                conn.execute("BEGIN IMMEDIATE")
                try:
                    counts = self._load_attached(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return counts
            finally:
                conn.close()

        return await anyio.to_thread.run_sync(run)

    def _load_attached(self, conn: sqlite3.Connection) -> dict[str, int]:
        def run(plan: Plan[T]) -> T:
            return _run(conn, plan)

        _copy.require_current(run(_plans.schema_version(SQLITE)), "the database")
        source = conn.execute("SELECT COALESCE(MAX(version), 0) FROM source.schema_version")
        _copy.require_current(int(source.fetchone()[0]), "the copy")
        tables = tables_at(SCHEMA_VERSION)
        if (held := run(_plans.first_rows(tables))) is not None:
            raise StoreNotEmpty(*held)
        counts: dict[str, int] = {}
        _copy.require_tables(conn, tables, "source")
        schema = _copy.schema_columns()  # this code's columns, not the names the copy holds
        for table in tables:
            columns = ", ".join(map(_copy.quoted, schema[table]))
            name = _copy.quoted(table)
            try:
                done = conn.execute(
                    f"INSERT INTO main.{name} ({columns}) SELECT {columns} FROM source.{name}"
                )
            except sqlite3.DatabaseError as exc:
                raise RowsRefused(f"SQLite refused the rows of table {table}: {exc}") from None
            counts[table] = done.rowcount
        return counts
