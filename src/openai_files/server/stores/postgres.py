"""PostgreSQL metadata store (`postgresql://user@host:port/db`), for many replicas.

asyncpg: an asyncio driver with a built-in pool, so no call blocks the event loop and no
thread is needed. Quota checks lock the organization's usage row (`SELECT ... FOR UPDATE`)
in the transaction that reserves or inserts, so replicas racing for the last bytes are
serialized by the database. Expiry takes rows with `FOR UPDATE SKIP LOCKED`, so replicas
sweeping at once never handle the same file twice. Migrations hold an advisory lock.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'openai-files[postgres]'",
        name=exc.name,
    ) from exc

from .base import (
    CursorNotFound,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    QuotaExceeded,
    SchemaMismatch,
    StoreUnavailable,
)

SCHEMA_VERSION = 2
#: Key of the advisory lock that serializes migrations across machines.
_MIGRATION_LOCK = 0x0F11E5
_POOL_MIN = 1
_POOL_MAX = 10
_CONNECT_TIMEOUT = 10.0

_MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            project_id TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT
        )""",
        # "C" collation: ids order by code point, the same on every replica and locale.
        """CREATE TABLE files (
            id TEXT COLLATE "C" PRIMARY KEY,
            org_id TEXT NOT NULL,
            project_id TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            blob_key TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX files_owner_page ON files (org_id, project_id, created_at, id)",
        "CREATE INDEX files_owner_purpose_page ON files "
        "(org_id, project_id, purpose, created_at, id)",
        "CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE org_usage (
            org_id TEXT PRIMARY KEY,
            used_bytes BIGINT NOT NULL
        )""",
        """CREATE TABLE reservations (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            blob_key TEXT NOT NULL
        )""",
        "CREATE INDEX reservations_org ON reservations (org_id)",
        "CREATE INDEX reservations_blob_key ON reservations (blob_key)",
    ],
    # The quota check sums an organization's expired files: an index, not a scan.
    2: [
        "CREATE INDEX files_org_expiry ON files (org_id, expires_at) WHERE expires_at IS NOT NULL",
    ],
}

_FILE_COLUMNS = (
    "id, org_id, project_id, bytes, created_at, expires_at, filename, purpose, mime_type, blob_key"
)
_KEY_COLUMNS = "id, org_id, project_id, key_hash, hint, created_at, revoked_at"

#: Errors that mean the database cannot be reached right now (answered 503, retry later).
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    TimeoutError,
)


def _connect_reason(exc: BaseException, timeout: float = _CONNECT_TIMEOUT) -> str:
    """Why a connection failed, in a few words."""
    if isinstance(exc, ConnectionRefusedError) or "Connect call failed" in str(exc):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host name not found"
    if isinstance(exc, TimeoutError):
        return f"no answer in {timeout:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    return str(exc).split("\n", 1)[0] or type(exc).__name__


def _file(row: Any) -> FileRecord:
    return FileRecord(*row.values())


def _key(row: Any) -> KeyRecord:
    return KeyRecord(*row.values())


class PostgresMetadataStore:
    """Metadata in PostgreSQL, shared by any number of server replicas."""

    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION
    AUTO_MIGRATE: ClassVar[bool] = False

    def __init__(
        self,
        dsn: str,
        *,
        pool_min_size: int = _POOL_MIN,
        pool_max_size: int = _POOL_MAX,
        connect_timeout: float = _CONNECT_TIMEOUT,
    ) -> None:
        self.dsn = dsn
        self.pool_min_size = pool_min_size
        self.pool_max_size = pool_max_size
        self.connect_timeout = connect_timeout
        self._pool: asyncpg.Pool | None = None

    @property
    def shared(self) -> bool:
        """True: other server processes (replicas) may use this database at the same time."""
        return True

    async def open(self) -> None:
        """Connect (the pool's first connection): a StoreUnavailable of one line naming the
        server (host:port) when it cannot be reached or refuses the user, password or
        database of the URL. The password is never shown."""
        try:
            self._pool = await asyncpg.create_pool(
                self.dsn,
                min_size=self.pool_min_size,
                max_size=self.pool_max_size,
                timeout=self.connect_timeout,
                command_timeout=60,
            )
        except asyncpg.exceptions.InvalidPasswordError as exc:
            raise StoreUnavailable(self._refused_password()) from exc
        except asyncpg.exceptions.InvalidAuthorizationSpecificationError as exc:
            # No such role, or no pg_hba.conf line lets it in: the server says which.
            raise StoreUnavailable(
                f"PostgreSQL at {self._server()} refused user {self._user()!r}: {exc}"
            ) from exc
        except asyncpg.exceptions.InvalidCatalogNameError as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {self._server()}: {exc}; create it (createdb) or fix the "
                "database name in the database URL"
            ) from exc
        except _UNAVAILABLE as exc:
            reason = _connect_reason(exc, self.connect_timeout)
            raise StoreUnavailable(
                f"cannot connect to PostgreSQL at {self._server()} ({reason}): "
                "check that it runs and the host and port of the database URL"
            ) from exc

    def _server(self) -> str:
        """`host:port` of the URL as written (5432 when it names no port)."""
        netloc = urlsplit(self.dsn).netloc.rpartition("@")[2]
        if not netloc:
            return f"{os.environ.get('PGHOST', 'localhost')}:{os.environ.get('PGPORT', 5432)}"
        host_part = netloc.rsplit(",", 1)[-1]
        if host_part.endswith("]") or ":" not in host_part:
            return f"{netloc}:{os.environ.get('PGPORT', 5432)}"
        return netloc

    def _user(self) -> str:
        return unquote(urlsplit(self.dsn).username or os.environ.get("PGUSER", "")) or "?"

    def _refused_password(self) -> str:
        from . import _redact

        if urlsplit(self.dsn).password is None:
            given = "the database URL gives none (postgresql://USER:PASSWORD@HOST/DB)"
        else:
            given = f"the password of {_redact(self.dsn)} is wrong"
        return (
            f"PostgreSQL at {self._server()} refused the password of user {self._user()!r}: {given}"
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    @asynccontextmanager
    async def _conn(self, *, transaction: bool = False) -> AsyncIterator[Any]:
        if self._pool is None:
            raise RuntimeError("store is not open")
        try:
            async with self._pool.acquire() as conn:
                if transaction:
                    async with conn.transaction():
                        yield conn
                else:
                    yield conn
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"PostgreSQL is unreachable: {exc}") from exc

    # -- schema --
    async def schema_version(self) -> int:
        async with self._conn() as c:
            exists = await c.fetchval("SELECT to_regclass('schema_version') IS NOT NULL")
            if not exists:
                return 0
            return int(await c.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))

    async def migrate(self) -> int:
        try:
            return await self._migrate()
        except asyncpg.InsufficientPrivilegeError as exc:
            user = urlsplit(self.dsn).username or "the connecting user"
            raise SchemaMismatch(
                f"cannot migrate: PostgreSQL refused {user!r} the right to create tables "
                f"({exc}); run migrate as the database's owner, or GRANT CREATE ON SCHEMA "
                f"public TO {user}"
            ) from None

    async def _migrate(self) -> int:
        async with self._conn(transaction=True) as c:
            await c.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            await c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            current = int(await c.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
            if current > SCHEMA_VERSION:
                raise SchemaMismatch(
                    f"database schema version {current} is newer than this server "
                    f"({SCHEMA_VERSION}); upgrade openai-files"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    await c.execute(statement)
                await c.execute("INSERT INTO schema_version (version) VALUES ($1)", version)
        return SCHEMA_VERSION

    # -- keys --
    async def add_api_key(self, record: KeyRecord) -> None:
        async with self._conn() as c:
            await c.execute(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                record.id,
                record.org_id,
                record.project_id,
                record.key_hash,
                record.hint,
                record.created_at,
                record.revoked_at,
            )

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = $1", key_hash
            )
        return _key(row) if row else None

    async def list_api_keys(self) -> list[KeyRecord]:
        async with self._conn() as c:
            rows = await c.fetch(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id")
        return [_key(r) for r in rows]

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        async with self._conn() as c:
            status = await c.execute(
                "UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                now,
                key_id,
            )
        return bool(status == "UPDATE 1")

    # -- quota --
    @staticmethod
    async def _lock_usage(c: Any, org_id: str, now: int) -> int:
        """Lock the organization's usage row; bytes of live files plus live reservations."""
        await c.execute(
            "INSERT INTO org_usage (org_id, used_bytes) VALUES ($1, 0) ON CONFLICT DO NOTHING",
            org_id,
        )
        used = await c.fetchval(
            "SELECT used_bytes FROM org_usage WHERE org_id = $1 FOR UPDATE", org_id
        )
        expired = await c.fetchval(
            "SELECT COALESCE(SUM(bytes), 0) FROM files "
            "WHERE org_id = $1 AND expires_at IS NOT NULL AND expires_at <= $2",
            org_id,
            now,
        )
        reserved = await c.fetchval(
            "SELECT COALESCE(SUM(bytes), 0) FROM reservations "
            "WHERE org_id = $1 AND expires_at > $2",
            org_id,
            now,
        )
        return int(used) - int(expired) + int(reserved)

    async def reserve(
        self,
        reservation_id: str,
        org_id: str,
        nbytes: int,
        quota: int,
        expires_at: int,
        blob_key: str,
    ) -> None:
        async with self._conn(transaction=True) as c:
            committed = await self._lock_usage(c, org_id, int(time.time()))
            if committed + nbytes > quota:
                raise QuotaExceeded(committed, nbytes, quota)
            await c.execute(
                "INSERT INTO reservations (id, org_id, bytes, expires_at, blob_key) "
                "VALUES ($1, $2, $3, $4, $5)",
                reservation_id,
                org_id,
                nbytes,
                expires_at,
                blob_key,
            )

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        async with self._conn() as c:
            await c.execute(
                "UPDATE reservations SET expires_at = $2 WHERE id = $1", reservation_id, expires_at
            )

    async def release(self, reservation_id: str) -> None:
        async with self._conn() as c:
            await c.execute("DELETE FROM reservations WHERE id = $1", reservation_id)

    async def usage(self, org_id: str) -> int:
        async with self._conn() as c:
            used = await c.fetchval("SELECT used_bytes FROM org_usage WHERE org_id = $1", org_id)
        return int(used or 0)

    async def purge_reservations(self, now: int | None) -> None:
        async with self._conn() as c:
            if now is None:
                await c.execute("DELETE FROM reservations")
            else:
                await c.execute("DELETE FROM reservations WHERE expires_at <= $1", now)

    # -- files --
    async def insert_file(self, record: FileRecord, reservation_id: str | None, quota: int) -> None:
        async with self._conn(transaction=True) as c:
            if reservation_id is not None:
                await c.execute("DELETE FROM reservations WHERE id = $1", reservation_id)
            committed = await self._lock_usage(c, record.org_id, record.created_at)
            if committed + record.bytes > quota:
                raise QuotaExceeded(committed, record.bytes, quota)
            await c.execute(
                f"INSERT INTO files ({_FILE_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                record.id,
                record.org_id,
                record.project_id,
                record.bytes,
                record.created_at,
                record.expires_at,
                record.filename,
                record.purpose,
                record.mime_type,
                record.blob_key,
            )
            await c.execute(
                "UPDATE org_usage SET used_bytes = used_bytes + $2 WHERE org_id = $1",
                record.org_id,
                record.bytes,
            )

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        async with self._conn() as c:
            row = await c.fetchrow(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE id = $1 AND org_id = $2 "
                "AND project_id = $3 AND (expires_at IS NULL OR expires_at > $4)",
                file_id,
                owner.org_id,
                owner.project_id,
                now,
            )
        return _file(row) if row else None

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
        where = ["org_id = $1", "project_id = $2", "(expires_at IS NULL OR expires_at > $3)"]
        args: list[Any] = [owner.org_id, owner.project_id, now]
        async with self._conn() as c:
            if purpose is not None:
                args.append(purpose)
                where.append(f"purpose = ${len(args)}")
            if after is not None:
                cursor = await c.fetchrow(
                    "SELECT created_at, id FROM files WHERE id = $1 AND org_id = $2 "
                    "AND project_id = $3",
                    after,
                    owner.org_id,
                    owner.project_id,
                )
                if cursor is None:
                    raise CursorNotFound(after)
                args.extend([cursor["created_at"], cursor["id"]])
                op = ">" if order == "asc" else "<"
                where.append(f"(created_at, id) {op} (${len(args) - 1}, ${len(args)})")
            direction = "ASC" if order == "asc" else "DESC"
            args.append(limit + 1)
            rows = await c.fetch(
                f"SELECT {_FILE_COLUMNS} FROM files WHERE {' AND '.join(where)} "
                f"ORDER BY created_at {direction}, id {direction} LIMIT ${len(args)}",
                *args,
            )
        return [_file(r) for r in rows[:limit]], len(rows) > limit

    @staticmethod
    async def _subtract_usage(c: Any, records: list[FileRecord]) -> None:
        totals: dict[str, int] = {}
        for r in records:
            totals[r.org_id] = totals.get(r.org_id, 0) + r.bytes
        for org_id in sorted(totals):  # one lock order everywhere: no deadlocks
            await c.execute(
                "UPDATE org_usage SET used_bytes = used_bytes - $2 WHERE org_id = $1",
                org_id,
                totals[org_id],
            )

    async def delete_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        async with self._conn(transaction=True) as c:
            row = await c.fetchrow(
                f"DELETE FROM files WHERE id = $1 AND org_id = $2 AND project_id = $3 "
                f"AND (expires_at IS NULL OR expires_at > $4) RETURNING {_FILE_COLUMNS}",
                file_id,
                owner.org_id,
                owner.project_id,
                now,
            )
            if row is None:
                return None
            record = _file(row)
            await self._subtract_usage(c, [record])
        return record

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        async with self._conn(transaction=True) as c:
            rows = await c.fetch(
                f"DELETE FROM files WHERE id IN (SELECT id FROM files WHERE expires_at <= $1 "
                f"ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING {_FILE_COLUMNS}",
                now,
                limit,
            )
            records = [_file(r) for r in rows]
            await self._subtract_usage(c, records)
        return records

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        async with self._conn() as c:
            rows = await c.fetch(
                "SELECT blob_key FROM files WHERE blob_key = ANY($1::text[]) "
                "UNION SELECT blob_key FROM reservations WHERE blob_key = ANY($1::text[])",
                list(keys),
            )
        return {r["blob_key"] for r in rows}
