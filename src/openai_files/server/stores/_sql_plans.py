"""The plans of the metadata store: schema, quota, files and keys (uploads: elsewhere).

Each is a generator of `Stmt`s (`_sql_dialect.py`) that a driver runs in one transaction
(a write) or outside one (a read).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from ._errors import CursorNotFound, QuotaExceeded, SchemaMismatch
from ._records import FileRecord, KeyRecord, Order, Owner
from ._sql_admin_plans import add_api_key
from ._sql_dialect import Dialect, Fetch, Plan, Stmt, marks
from ._sql_schema import (
    FILE_COLUMNS,
    FILE_FIELDS,
    LIVE,
    SCHEMA_VERSION,
    file_record,
    key_record,
    tables_at,
)


def schema_version(d: Dialect) -> Plan[int]:
    if not (yield Stmt(d.has_table, ("schema_version",), "value")):
        return 0
    return int((yield Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_version", (), "value")))


def ping() -> Plan[None]:
    """One read of a table every schema has (so a database file's pages are read, not only
    the connection asked)."""
    yield Stmt("SELECT version FROM schema_version LIMIT 1", (), "value")


def migrate(d: Dialect, to: int) -> Plan[int]:
    if not 1 <= to <= SCHEMA_VERSION:
        raise ValueError(f"no schema version {to}: this code knows 1 to {SCHEMA_VERSION}")
    if d.migration_lock is not None:
        yield Stmt(d.migration_lock, (), "none")
    yield Stmt("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", (), "none")
    current = int((yield Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_version", (), "value")))
    if current > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"database schema version {current} is newer than this server "
            f"({SCHEMA_VERSION}); upgrade openai-files"
        )
    for version in range(current + 1, to + 1):
        for statement in d.migration(version):
            yield Stmt(statement, (), "none")
        yield Stmt("INSERT INTO schema_version (version) VALUES (?)", (version,), "none")
    return max(current, to)


def row_counts(d: Dialect) -> Plan[dict[str, int]]:
    version = yield from schema_version(d)
    counts: dict[str, int] = {}
    for table in tables_at(min(version, SCHEMA_VERSION)):
        counts[table] = int((yield Stmt(f"SELECT COUNT(*) FROM {table}", (), "value")))
    return counts


def first_rows(tables: Sequence[str]) -> Plan[tuple[str, int] | None]:
    """The first of `tables` that holds a row, and how many it holds; None when all are
    empty (a restore's check that its target is)."""
    for table in tables:
        if (yield Stmt(f"SELECT EXISTS (SELECT 1 FROM {table})", (), "value")):
            count = yield Stmt(f"SELECT COUNT(*) FROM {table}", (), "value")
            return table, int(count)
    return None


def committed_locked(d: Dialect, org_id: str, now: int) -> Plan[int]:
    """Bytes the organization holds: live files plus live reservations (files that expired
    count no more, even before the sweeper removes them). Locks the organization's usage row
    until the transaction ends, so racing quota checks are serialized."""
    yield Stmt(
        "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, 0) ON CONFLICT DO NOTHING",
        (org_id,),
        "none",
    )
    used = yield Stmt(
        f"SELECT used_bytes FROM org_usage WHERE org_id = ?{d.for_update}", (org_id,), "value"
    )
    expired = yield Stmt(
        "SELECT COALESCE(SUM(bytes), 0) FROM files "
        "WHERE org_id = ? AND expires_at IS NOT NULL AND expires_at <= ?",
        (org_id, now),
        "value",
    )
    reserved = yield Stmt(
        "SELECT COALESCE(SUM(bytes), 0) FROM reservations WHERE org_id = ? AND expires_at > ?",
        (org_id, now),
        "value",
    )
    return int(used) - int(expired) + int(reserved)


def reserve(
    d: Dialect,
    reservation_id: str,
    org_id: str,
    nbytes: int,
    quota: int,
    expires_at: int,
    blob_key: str,
) -> Plan[None]:
    committed = yield from committed_locked(d, org_id, int(time.time()))
    if committed + nbytes > quota:
        raise QuotaExceeded(committed, nbytes, quota)
    yield Stmt(
        "INSERT INTO reservations (id, org_id, bytes, expires_at, blob_key) VALUES (?, ?, ?, ?, ?)",
        (reservation_id, org_id, nbytes, expires_at, blob_key),
        "none",
    )


def insert_file(
    d: Dialect, record: FileRecord, reservation_id: str | None, quota: int
) -> Plan[None]:
    if reservation_id is not None:
        yield Stmt("DELETE FROM reservations WHERE id = ?", (reservation_id,), "none")
    committed = yield from committed_locked(d, record.org_id, record.created_at)
    if committed + record.bytes > quota:
        raise QuotaExceeded(committed, record.bytes, quota)
    yield Stmt(
        f"INSERT INTO files ({FILE_COLUMNS}) VALUES ({marks(len(FILE_FIELDS))})",
        tuple(getattr(record, name) for name in FILE_FIELDS),
        "none",
    )
    yield Stmt(
        "UPDATE org_usage SET used_bytes = used_bytes + ? WHERE org_id = ?",
        (record.bytes, record.org_id),
        "none",
    )


def get_file(owner: Owner, file_id: str, now: int) -> Plan[FileRecord | None]:
    row = yield Stmt(
        f"SELECT {FILE_COLUMNS} FROM files "
        f"WHERE id = ? AND org_id = ? AND project_id = ? AND {LIVE}",
        (file_id, owner.org_id, owner.project_id, now),
        "one",
    )
    return None if row is None else file_record(row)


def list_files(
    owner: Owner,
    *,
    purpose: str | None,
    limit: int,
    order: Order,
    after: str | None,
    now: int,
    position: tuple[int, str] | None = None,
) -> Plan[tuple[list[FileRecord], bool]]:
    where = ["org_id = ?", "project_id = ?", LIVE]
    args: list[Any] = [owner.org_id, owner.project_id, now]
    if purpose is not None:
        where.append("purpose = ?")
        args.append(purpose)
    if position is not None:
        where.append(f"(created_at, id) {'>' if order == 'asc' else '<'} (?, ?)")
        args.extend(position)
    elif after is not None:
        # The cursor row may have expired since the last page: find it anyway.
        cursor = yield Stmt(
            "SELECT created_at, id FROM files WHERE id = ? AND org_id = ? AND project_id = ?",
            (after, owner.org_id, owner.project_id),
            "one",
        )
        if cursor is None:
            raise CursorNotFound(after)
        where.append(f"(created_at, id) {'>' if order == 'asc' else '<'} (?, ?)")
        args.extend([cursor["created_at"], cursor["id"]])
    direction = "ASC" if order == "asc" else "DESC"
    rows = yield Stmt(
        f"SELECT {FILE_COLUMNS} FROM files WHERE {' AND '.join(where)} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT ?",
        (*args, limit + 1),
        "all",
    )
    return [file_record(r) for r in rows[:limit]], len(rows) > limit


def _take_files(d: Dialect, where: str, args: tuple[Any, ...]) -> Plan[list[FileRecord]]:
    """Delete the rows of `files` that match, give their bytes back to their organizations'
    usage (in one order of organizations everywhere: no deadlocks), and return them."""
    if d.returning:
        rows = yield Stmt(f"DELETE FROM files WHERE {where} RETURNING {FILE_COLUMNS}", args, "all")
    else:
        rows = yield Stmt(f"SELECT {FILE_COLUMNS} FROM files WHERE {where}", args, "all")
        for row in rows:
            yield Stmt("DELETE FROM files WHERE id = ?", (row["id"],), "none")
    records = [file_record(r) for r in rows]
    totals: dict[str, int] = {}
    for r in records:
        totals[r.org_id] = totals.get(r.org_id, 0) + r.bytes
    for org_id in sorted(totals):
        yield Stmt(
            "UPDATE org_usage SET used_bytes = used_bytes - ? WHERE org_id = ?",
            (totals[org_id], org_id),
            "none",
        )
    return records


def delete_file(d: Dialect, owner: Owner, file_id: str, now: int) -> Plan[FileRecord | None]:
    records = yield from _take_files(
        d,
        f"id = ? AND org_id = ? AND project_id = ? AND {LIVE}",
        (file_id, owner.org_id, owner.project_id, now),
    )
    return records[0] if records else None


def pop_expired(d: Dialect, now: int, limit: int) -> Plan[list[FileRecord]]:
    # Replicas sweeping at once skip each other's rows: no file is handled twice.
    return (
        yield from _take_files(
            d,
            "id IN (SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? "
            f"ORDER BY expires_at LIMIT ?{d.skip_locked})",
            (now, limit),
        )
    )


def named_blob_keys(d: Dialect, keys: Sequence[str]) -> Plan[set[str]]:
    found: set[str] = set()
    for i in range(0, len(keys), d.in_batch):
        batch = keys[i : i + d.in_batch]
        in_keys, args = d.one_of("blob_key", batch)
        rows = yield Stmt(
            f"SELECT blob_key FROM files WHERE {in_keys} "
            f"UNION SELECT blob_key FROM reservations WHERE {in_keys} "
            f"UNION SELECT blob_key FROM upload_parts WHERE {in_keys}",
            args + args + args,
            "all",
        )
        found.update(r["blob_key"] for r in rows)
        # A batch not yet ended names its input file's bytes (even once the file is
        # deleted) and the output and error objects it is writing.
        active = "status IN ('validating', 'in_progress', 'finalizing', 'cancelling')"
        for column in ("input_blob_key", "output_key", "error_key"):
            in_column, column_args = d.one_of(column, batch)
            rows = yield Stmt(
                f"SELECT {column} AS blob_key FROM batches WHERE {in_column} AND {active}",
                column_args,
                "all",
            )
            found.update(r["blob_key"] for r in rows)
    return found


def server_secret(name: str, candidate: str, now: int) -> Plan[str]:
    # A racing insert of the same name waits for the first to commit, then does nothing;
    # the select that follows (a statement of its own) sees the committed row.
    yield Stmt(
        "INSERT INTO server_secrets (name, value, created_at) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (name, candidate, now),
        "none",
    )
    value = yield Stmt("SELECT value FROM server_secrets WHERE name = ?", (name,), "value")
    return str(value)


def add_first_key(d: Dialect, record: KeyRecord) -> Plan[bool]:
    """Insert `record` (as `add_api_key` does, with its project) when no key exists at all,
    an admin key or a project's, revoked ones too; whether it did.

    Two transactions that both find no key would both insert (a key's id and hash are its
    own, so no constraint stops the second): on PostgreSQL they take a lock first, and on
    SQLite the write lock (BEGIN IMMEDIATE) already lets one in at a time.
    """
    if d.first_key_lock is not None:
        yield Stmt(d.first_key_lock, (), "none")
    for table in ("api_keys", "admin_api_keys"):
        if (yield Stmt(f"SELECT 1 FROM {table} LIMIT 1", (), "value")) is not None:
            return False
    yield from add_api_key(d, record)
    return True


def single(sql: str, args: tuple[Any, ...], fetch: Fetch) -> Plan[Any]:
    """A plan of one statement."""
    return (yield Stmt(sql, args, fetch))


def key_records(rows: Iterable[Any]) -> list[KeyRecord]:
    return [key_record(r) for r in rows]
