"""SQLite metadata store: WAL mode, reads on a thread pool, one writer, BEGIN IMMEDIATE.

Every call runs its blocking sqlite3 work in a worker thread. Reads use one connection per
worker thread; writes go through a single connection behind a capacity limiter of one, and
each write is one `BEGIN IMMEDIATE` transaction, so check-then-write (the quota) is atomic
even across processes sharing the file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sqlite3
import threading
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread

from . import _sql
from ._sql import SCHEMA_VERSION, SQLMetadataStore, Stmt

__all__ = ["SCHEMA_VERSION", "SQLiteMetadataStore"]

T = TypeVar("T")

#: Threads that run reads (a write has its own connection and one thread at a time).
_READ_THREADS = 2


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


def _run(conn: sqlite3.Connection, plan: _sql.Plan[T]) -> T:
    return _sql.drive(plan, lambda stmt: _execute(conn, stmt))


class SQLiteMetadataStore(SQLMetadataStore):
    """The embedded metadata store (`sqlite:///path/to/files.sqlite3`)."""

    DIALECT: ClassVar[_sql.Dialect] = _sql.SQLITE
    AUTO_MIGRATE: ClassVar[bool] = True

    def __init__(self, path: Path | str, *, read_threads: int = _READ_THREADS) -> None:
        self.path = Path(path)
        self._writer: sqlite3.Connection | None = None
        self._write_limiter = anyio.CapacityLimiter(1)
        # A small pool of its own: cheaper hops than anyio's, and few threads contending
        # for the GIL (measured: docs/benchmarks.md).
        self._read_pool = concurrent.futures.ThreadPoolExecutor(
            read_threads, thread_name_prefix="sqlite-read"
        )
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

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

    async def _read(self, plan: _sql.Plan[T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, lambda: _run(self._reader(), plan))

    async def _write(self, plan: _sql.Plan[T]) -> T:
        def run() -> T:
            conn = self._writer
            assert conn is not None, "store is not open"
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = _run(conn, plan)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await anyio.to_thread.run_sync(run, limiter=self._write_limiter)

    async def open(self) -> None:
        def setup() -> sqlite3.Connection:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = self._connect()
            conn.execute("PRAGMA journal_mode = WAL")
            return conn

        self._writer = await anyio.to_thread.run_sync(setup)

    async def close(self) -> None:
        def run() -> None:
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            if self._writer is not None:
                self._writer.close()
                self._writer = None

        await anyio.to_thread.run_sync(self._read_pool.shutdown)
        await anyio.to_thread.run_sync(run, limiter=self._write_limiter)
