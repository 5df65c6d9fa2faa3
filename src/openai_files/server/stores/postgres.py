"""PostgreSQL metadata store (`postgresql://user@host:port/db`), for many replicas.

asyncpg: an asyncio driver with a built-in pool, so no call blocks the event loop and no
thread is needed. Quota checks lock the organization's usage row (`SELECT ... FOR UPDATE`)
in the transaction that reserves or inserts, so replicas racing for the last bytes are
serialized by the database. Expiry takes rows with `FOR UPDATE SKIP LOCKED`, so replicas
sweeping at once never handle the same file twice. Migrations hold an advisory lock.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar
from urllib.parse import unquote, urlsplit

import anyio.to_thread

try:
    import asyncpg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the PostgreSQL store needs asyncpg: pip install 'openai-files[postgres]'",
        name=exc.name,
    ) from exc

from ..settings import (
    DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
    DEFAULT_DATABASE_POOL_MAX_SIZE,
    DEFAULT_DATABASE_POOL_MIN_SIZE,
)
from . import _sql_copy as _copy
from . import _sql_plans as _plans
from ._errors import RowsRefused, SchemaMismatch, StoreNotEmpty, StoreUnavailable
from ._sql import SQLMetadataStore
from ._sql_dialect import POSTGRES, Dialect, Plan, Stmt, drive_async
from ._sql_schema import SCHEMA_VERSION, tables_at
from ._urls import redact_url

__all__ = ["SCHEMA_VERSION", "PostgresMetadataStore"]

T = TypeVar("T")


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


def _connect_reason(exc: BaseException, timeout: float) -> str:
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


async def _execute(conn: Any, stmt: Stmt) -> Any:
    """Run one statement of a plan; what its `fetch` asks for."""
    sql = POSTGRES.render(stmt.sql)
    if stmt.fetch == "one":
        return await conn.fetchrow(sql, *stmt.args)
    if stmt.fetch == "all":
        return await conn.fetch(sql, *stmt.args)
    if stmt.fetch == "value":
        return await conn.fetchval(sql, *stmt.args)
    status = await conn.execute(sql, *stmt.args)
    # The command tag ends with the number of rows: "UPDATE 1".
    return int(status.rpartition(" ")[2]) if stmt.fetch == "count" else None


async def _session_is_clean(conn: Any) -> None:
    """The pool's reset of a connection given back, after asyncpg's own (which rolls back a
    transaction left open and drops listeners): nothing more. asyncpg's default would also
    send RESET ALL, CLOSE ALL, UNLISTEN * and an advisory unlock, one more round trip on
    every request; this store sets no session setting, opens cursors only in transactions,
    listens to nothing and takes transaction-scoped advisory locks only."""


class PostgresMetadataStore(SQLMetadataStore):
    """Metadata in PostgreSQL, shared by any number of server replicas."""

    DIALECT: ClassVar[Dialect] = POSTGRES
    AUTO_MIGRATE: ClassVar[bool] = False

    def __init__(
        self,
        dsn: str,
        *,
        pool_min_size: int = DEFAULT_DATABASE_POOL_MIN_SIZE,
        pool_max_size: int = DEFAULT_DATABASE_POOL_MAX_SIZE,
        connect_timeout: float = DEFAULT_DATABASE_CONNECT_TIMEOUT_SECONDS,
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
                reset=_session_is_clean,
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
        if urlsplit(self.dsn).password is None:
            given = "the database URL gives none (postgresql://USER:PASSWORD@HOST/DB)"
        else:
            given = f"the password of {redact_url(self.dsn)} is wrong"
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

    async def _read(self, plan: Plan[T]) -> T:
        async with self._conn() as c:
            return await drive_async(plan, lambda stmt: _execute(c, stmt))

    async def _write(self, plan: Plan[T]) -> T:
        async with self._conn(transaction=True) as c:
            return await drive_async(plan, lambda stmt: _execute(c, stmt))

    async def migrate(self, to: int = SCHEMA_VERSION) -> int:
        """Create or upgrade the schema under an advisory lock (several machines may run it
        at once); returns the version now in place."""
        try:
            return await super().migrate(to)
        except asyncpg.InsufficientPrivilegeError as exc:
            user = urlsplit(self.dsn).username or "the connecting user"
            raise SchemaMismatch(
                f"cannot migrate: PostgreSQL refused {user!r} the right to create tables "
                f"({exc}); run migrate as the database's owner, or GRANT CREATE ON SCHEMA "
                f"public TO {user}"
            ) from None

    # -- backup and restore --
    async def snapshot(self, dest: Path) -> int:
        """One REPEATABLE READ, READ ONLY transaction reads every table: each sees the
        database as of the transaction's first statement, whatever commits meanwhile. Its
        rows go to the copy a chunk at a time (a cursor), written in a worker thread."""
        if dest.exists():
            raise FileExistsError(str(dest))
        copy = None
        try:
            async with (
                self._conn() as conn,
                conn.transaction(isolation="repeatable_read", readonly=True),
            ):
                version = await drive_async(
                    _plans.schema_version(POSTGRES), lambda stmt: _execute(conn, stmt)
                )
                _copy.check_version(version, "the database")
                copy = await _locally(_copy.new_copy, dest, version)
                await anyio.to_thread.run_sync(copy.execute, "BEGIN")
                for table in tables_at(version):
                    await self._copy_table(conn, copy, table)
                await anyio.to_thread.run_sync(copy.execute, "COMMIT")
        except _LocalError as exc:
            if copy is not None:
                copy.close()
                dest.unlink(missing_ok=True)
            raise exc.error from None
        except BaseException:
            if copy is not None:
                copy.close()
                dest.unlink(missing_ok=True)
            raise
        copy.close()
        return version

    @staticmethod
    async def _copy_table(conn: Any, copy: Any, table: str) -> None:
        stmt = await conn.prepare(f"SELECT * FROM {table}")
        columns = [attribute.name for attribute in stmt.get_attributes()]
        cursor = await stmt.cursor()
        while rows := await cursor.fetch(_copy.CHUNK_ROWS):
            values = [tuple(row) for row in rows]
            await _locally(_copy.insert_rows, copy, table, columns, values)

    async def load(self, source: Path) -> dict[str, int]:
        """One transaction: the tables locked against other writers (EXCLUSIVE: reads go
        on), checked empty, then filled by binary COPY from the copy, a chunk at a time."""
        copy = await anyio.to_thread.run_sync(
            functools.partial(_copy.connect, source, read_only=True)
        )
        try:
            async with self._conn(transaction=True) as conn:

                async def run(plan: Plan[T]) -> T:
                    return await drive_async(plan, lambda stmt: _execute(conn, stmt))

                _copy.require_current(await run(_plans.schema_version(POSTGRES)), "the database")
                version = await anyio.to_thread.run_sync(_copy.version_of, copy)
                _copy.require_current(version, "the copy")
                tables = tables_at(SCHEMA_VERSION)
                await conn.execute(f"LOCK TABLE {', '.join(tables)} IN EXCLUSIVE MODE")
                if (held := await run(_plans.first_rows(tables))) is not None:
                    raise StoreNotEmpty(*held)
                counts: dict[str, int] = {}
                schema = _copy.schema_columns()  # this code's columns, not the copy's names
                for table in tables:
                    columns = schema[table]
                    try:
                        status = await conn.copy_records_to_table(
                            table, records=_rows_of(copy, table, columns), columns=columns
                        )
                    except _REFUSED_ROW as exc:
                        raise RowsRefused(await _refused(copy, table, columns, exc)) from None
                    counts[table] = int(status.rpartition(" ")[2])
                return counts
        finally:
            await anyio.to_thread.run_sync(copy.close)


class _LocalError(Exception):
    """An OSError of the copy's file (a full disk), carried past `_conn`, which takes any
    OSError for the database's."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


async def _locally(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a worker thread, its OSError carried as a _LocalError."""
    try:
        return await anyio.to_thread.run_sync(fn, *args)
    except OSError as exc:
        raise _LocalError(exc) from None


#: What PostgreSQL answers to a row it will not store (a NUL in a text, a duplicate id):
#: the row's fault, not the database's.
_REFUSED_ROW = (asyncpg.exceptions.DataError, asyncpg.exceptions.IntegrityConstraintViolationError)


async def _refused(copy: Any, table: str, columns: Sequence[str], exc: Exception) -> str:
    """Why PostgreSQL refused a row of the copy's `table`, in one line, naming the row by
    its first column (its id) when the error says which line of the COPY it was."""
    why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    context = str(getattr(exc, "context", "") or "")
    line = re.search(r"\bline (\d+)", context)
    row = ""
    if line:

        def key() -> Any:
            # The statement `read_chunks` reads by, so that its rows come in the same order.
            found = copy.execute(
                f"SELECT {', '.join(map(_copy.quoted, columns))} FROM {_copy.quoted(table)} "
                "LIMIT 1 OFFSET ?",
                (int(line.group(1)) - 1,),
            ).fetchone()
            return None if found is None else found[0]

        value = await anyio.to_thread.run_sync(key)
        if value is not None:
            row = f", row {columns[0]} = {value!r}"
    return f"PostgreSQL refused a row of table {table}{row}: {why}"


async def _rows_of(copy: Any, table: str, columns: Sequence[str]) -> AsyncIterator[tuple[Any, ...]]:
    """The rows of the copy's `table`, read a chunk at a time in a worker thread."""
    chunks = _copy.read_chunks(copy, table, columns)
    while (chunk := await anyio.to_thread.run_sync(next, chunks, None)) is not None:
        for row in chunk:
            yield row
