"""SQLite metadata store: WAL mode, reads on a thread pool, one writer, BEGIN IMMEDIATE.

Every call runs its blocking sqlite3 work in a worker thread. Reads use one connection per
worker thread; writes go through a single connection behind a capacity limiter of one, and
each write is one `BEGIN IMMEDIATE` transaction, so check-then-write (the quota) is atomic
even across processes sharing the file.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import anyio
import anyio.to_thread

from .base import (
    CursorNotFound,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    QuotaExceeded,
    SchemaMismatch,
)

T = TypeVar("T")

SCHEMA_VERSION = 2

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        blob_key TEXT NOT NULL UNIQUE
    );
    CREATE INDEX files_owner_page ON files (org_id, project_id, created_at, id);
    CREATE INDEX files_owner_purpose_page ON files (org_id, project_id, purpose, created_at, id);
    CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE org_usage (
        org_id TEXT PRIMARY KEY,
        used_bytes INTEGER NOT NULL
    );
    CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        blob_key TEXT NOT NULL
    );
    CREATE INDEX reservations_org ON reservations (org_id);
    """,
    # The quota check sums an organization's expired files: an index, not a scan.
    2: """
    CREATE INDEX files_org_expiry ON files (org_id, expires_at) WHERE expires_at IS NOT NULL;
    """,
}

_FILE_COLUMNS = (
    "id, org_id, project_id, bytes, created_at, expires_at, filename, purpose, mime_type, blob_key"
)
_KEY_COLUMNS = "id, org_id, project_id, key_hash, hint, created_at, revoked_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"
#: Threads that run reads (a write has its own connection and one thread at a time).
_READ_THREADS = 2
#: Host parameters per statement stay well under SQLite's limit.
_IN_BATCH = 500


def _file(row: Sequence[Any]) -> FileRecord:
    return FileRecord(*row)


def _key(row: Sequence[Any]) -> KeyRecord:
    return KeyRecord(*row)


class SQLiteMetadataStore:
    """The embedded metadata store (`sqlite:///path/to/files.sqlite3`)."""

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
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
        """False: one server process owns this database file (no other process writes it)."""
        return False

    # -- connections --
    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout = 30000")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
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

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, lambda: fn(self._reader()))

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._writer
            assert conn is not None, "store is not open"
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
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

    async def schema_version(self) -> int:
        def run(c: sqlite3.Connection) -> int:
            exists = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if not exists:
                return 0
            return int(c.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)

        return await self._read(run)

    async def migrate(self) -> int:
        """Create or upgrade the schema; returns the version now in place."""

        def run(conn: sqlite3.Connection) -> int:
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            current = row[0] or 0
            if current > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"database schema version {current} is newer than this server "
                    f"({SCHEMA_VERSION}); upgrade openai-files"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version].split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute("INSERT INTO schema_version (version) VALUES (?)", (version,))
            return SCHEMA_VERSION

        return await self._write(run)

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

    # -- keys --
    async def add_api_key(self, record: KeyRecord) -> None:
        await self._write(
            lambda c: c.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    record.id,
                    record.org_id,
                    record.project_id,
                    record.key_hash,
                    record.hint,
                    record.created_at,
                    record.revoked_at,
                ),
            )
        )

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        def run(c: sqlite3.Connection) -> KeyRecord | None:
            row = c.execute(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,)
            ).fetchone()
            return _key(row) if row else None

        return await self._read(run)

    async def list_api_keys(self) -> list[KeyRecord]:
        def run(c: sqlite3.Connection) -> list[KeyRecord]:
            rows = c.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
            return [_key(r) for r in rows]

        return await self._read(run)

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        def run(c: sqlite3.Connection) -> bool:
            cur = c.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
            )
            return cur.rowcount == 1

        return await self._write(run)

    # -- quota --
    @staticmethod
    def _committed(c: sqlite3.Connection, org_id: str, now: int) -> int:
        """Bytes the organization holds: live files plus live reservations (files that
        expired count no more, even before the sweeper removes them)."""
        used = c.execute("SELECT used_bytes FROM org_usage WHERE org_id = ?", (org_id,)).fetchone()
        expired = c.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM files "
            "WHERE org_id = ? AND expires_at IS NOT NULL AND expires_at <= ?",
            (org_id, now),
        ).fetchone()
        reserved = c.execute(
            "SELECT COALESCE(SUM(bytes), 0) FROM reservations WHERE org_id = ? AND expires_at > ?",
            (org_id, now),
        ).fetchone()
        return int(used[0] if used else 0) - int(expired[0]) + int(reserved[0])

    async def reserve(
        self,
        reservation_id: str,
        org_id: str,
        nbytes: int,
        quota: int,
        expires_at: int,
        blob_key: str,
    ) -> None:
        def run(c: sqlite3.Connection) -> None:
            committed = self._committed(c, org_id, int(time.time()))
            if committed + nbytes > quota:
                raise QuotaExceeded(committed, nbytes, quota)
            c.execute(
                "INSERT INTO reservations (id, org_id, bytes, expires_at, blob_key) "
                "VALUES (?, ?, ?, ?, ?)",
                (reservation_id, org_id, nbytes, expires_at, blob_key),
            )

        await self._write(run)

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE reservations SET expires_at = ? WHERE id = ?", (expires_at, reservation_id)
            )
        )

    async def release(self, reservation_id: str) -> None:
        await self._write(
            lambda c: c.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
        )

    async def usage(self, org_id: str) -> int:
        def run(c: sqlite3.Connection) -> int:
            row = c.execute(
                "SELECT used_bytes FROM org_usage WHERE org_id = ?", (org_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._read(run)

    async def purge_reservations(self, now: int | None) -> None:
        if now is None:
            await self._write(lambda c: c.execute("DELETE FROM reservations"))
        else:
            await self._write(
                lambda c: c.execute("DELETE FROM reservations WHERE expires_at <= ?", (now,))
            )

    # -- files --
    async def insert_file(self, record: FileRecord, reservation_id: str | None, quota: int) -> None:
        def run(c: sqlite3.Connection) -> None:
            if reservation_id is not None:
                c.execute("DELETE FROM reservations WHERE id = ?", (reservation_id,))
            committed = self._committed(c, record.org_id, record.created_at)
            if committed + record.bytes > quota:
                raise QuotaExceeded(committed, record.bytes, quota)
            c.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                dataclasses.astuple(record),
            )
            c.execute(
                "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, ?) "
                "ON CONFLICT (org_id) DO UPDATE SET used_bytes = used_bytes + excluded.used_bytes",
                (record.org_id, record.bytes),
            )

        await self._write(run)

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        def run(c: sqlite3.Connection) -> FileRecord | None:
            row = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files "
                f"WHERE id = ? AND org_id = ? AND project_id = ? AND {_LIVE}",
                (file_id, owner.org_id, owner.project_id, now),
            ).fetchone()
            return _file(row) if row else None

        return await self._read(run)

    async def list_files(
        self,
        owner: Owner,
        *,
        purpose: str | None,
        limit: int,
        order: Order,
        after: str | None,
        now: int,
    ) -> tuple[list[FileRecord], bool]:
        def run(c: sqlite3.Connection) -> tuple[list[FileRecord], bool]:
            where = ["org_id = ?", "project_id = ?", _LIVE]
            args: list[Any] = [owner.org_id, owner.project_id, now]
            if purpose is not None:
                where.append("purpose = ?")
                args.append(purpose)
            if after is not None:
                # The cursor row may have expired since the last page: find it anyway.
                cursor = c.execute(
                    "SELECT created_at, id FROM files WHERE id = ? AND org_id = ? "
                    "AND project_id = ?",
                    (after, owner.org_id, owner.project_id),
                ).fetchone()
                if cursor is None:
                    raise CursorNotFound(after)
                where.append(
                    "(created_at, id) > (?, ?)" if order == "asc" else "(created_at, id) < (?, ?)"
                )
                args.extend(cursor)
            direction = "ASC" if order == "asc" else "DESC"
            rows = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE {' AND '.join(where)} "
                f"ORDER BY created_at {direction}, id {direction} LIMIT ?",
                (*args, limit + 1),
            ).fetchall()
            return [_file(r) for r in rows[:limit]], len(rows) > limit

        return await self._read(run)

    @staticmethod
    def _remove(c: sqlite3.Connection, records: list[FileRecord]) -> None:
        for r in records:
            c.execute("DELETE FROM files WHERE id = ?", (r.id,))
            c.execute(
                "UPDATE org_usage SET used_bytes = used_bytes - ? WHERE org_id = ?",
                (r.bytes, r.org_id),
            )

    async def delete_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        def run(c: sqlite3.Connection) -> FileRecord | None:
            row = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files "
                f"WHERE id = ? AND org_id = ? AND project_id = ? AND {_LIVE}",
                (file_id, owner.org_id, owner.project_id, now),
            ).fetchone()
            if row is None:
                return None
            record = _file(row)
            self._remove(c, [record])
            return record

        return await self._write(run)

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        def run(c: sqlite3.Connection) -> list[FileRecord]:
            rows = c.execute(
                f"SELECT {_FILE_COLUMNS} FROM files "
                "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?",
                (now, limit),
            ).fetchall()
            records = [_file(r) for r in rows]
            self._remove(c, records)
            return records

        return await self._write(run)

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        def run(c: sqlite3.Connection) -> set[str]:
            found: set[str] = set()
            for i in range(0, len(keys), _IN_BATCH):
                batch = list(keys[i : i + _IN_BATCH])
                marks = ",".join("?" * len(batch))
                rows = c.execute(
                    f"SELECT blob_key FROM files WHERE blob_key IN ({marks}) "
                    f"UNION SELECT blob_key FROM reservations WHERE blob_key IN ({marks})",
                    batch + batch,
                )
                found.update(r[0] for r in rows)
            return found

        return await self._read(run)
