"""The one SQL source of the metadata stores: schema, migrations, queries and their logic.

SQLite (`sqlite.py`) and PostgreSQL (`postgres.py`) run the same statements, written here
once with `?` placeholders. What differs between the two databases is a `Dialect`: how a
placeholder is written, the integer and ordered-text column types, row locks
(`FOR UPDATE`, `SKIP LOCKED`), `RETURNING`, how a list of values is matched, how a table is
found. The logic of each store method is a *plan*: a generator that yields `Stmt`s and
receives each one's result, so that one plan runs on sqlite3 in a worker thread (`drive`)
and on asyncpg on the event loop (`drive_async`). Each store file keeps only its driver:
connections, transactions, and how a `Stmt` is executed.

Hand-written SQL rather than a query builder: the driver paths (sqlite3 in threads, asyncpg)
are what the benchmarks were tuned on.

Rows are read by column name, never by position: both drivers' rows are mappings
(`sqlite3.Row`, `asyncpg.Record`), and the column lists are the record fields' names.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import operator
import re
import time
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from typing import Any, ClassVar, Literal, NamedTuple, TypeAlias, TypeVar

from .base import (
    CursorNotFound,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    PartRecord,
    PendingUploadsExceeded,
    QuotaExceeded,
    SchemaMismatch,
    UploadFull,
    UploadNotFound,
    UploadNotPending,
    UploadRecord,
)

T = TypeVar("T")

# -- schema --

#: The statements of each schema version, in order: MIGRATIONS[0] makes version 1. Both
#: databases run every step; `{integer}` and `{sorted_text}` are the dialect's types.
#: A released step keeps making what it made (databases carry it): a change is a new step.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables. (PostgreSQL's own list also indexed reservations by blob key here, and
    # SQLite's did not; step 3 now makes that index for both.)
    (
        """CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at {integer} NOT NULL,
        revoked_at {integer}
    )""",
        """CREATE TABLE files (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        bytes {integer} NOT NULL,
        created_at {integer} NOT NULL,
        expires_at {integer},
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
        used_bytes {integer} NOT NULL
    )""",
        """CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        bytes {integer} NOT NULL,
        expires_at {integer} NOT NULL,
        blob_key TEXT NOT NULL
    )""",
        "CREATE INDEX reservations_org ON reservations (org_id)",
    ),
    # 2: the quota check sums an organization's expired files: an index, not a scan.
    ("CREATE INDEX files_org_expiry ON files (org_id, expires_at) WHERE expires_at IS NOT NULL",),
    # 3: the sweeper asks which blob keys a reservation names: an index, not a scan.
    # PostgreSQL databases made before version 3 have it already (their version 1 made it).
    ("CREATE INDEX IF NOT EXISTS reservations_blob_key ON reservations (blob_key)",),
    # 4: OpenAI's Uploads API: uploads and their parts. A part's `seq` is its arrival order
    # in its upload (add_part numbers it while it holds the upload's row).
    (
        """CREATE TABLE uploads (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        bytes {integer} NOT NULL,
        mime_type TEXT NOT NULL,
        created_at {integer} NOT NULL,
        expires_at {integer} NOT NULL,
        status TEXT NOT NULL,
        file_id TEXT,
        file_key TEXT NOT NULL
    )""",
        "CREATE INDEX uploads_owner_status_page ON uploads "
        "(org_id, project_id, status, created_at, id)",
        "CREATE INDEX uploads_expiry ON uploads (status, expires_at)",
        """CREATE TABLE upload_parts (
        id TEXT PRIMARY KEY,
        upload_id TEXT NOT NULL,
        seq {integer} NOT NULL,
        bytes {integer} NOT NULL,
        created_at {integer} NOT NULL,
        blob_key TEXT NOT NULL UNIQUE
    )""",
        "CREATE UNIQUE INDEX upload_parts_order ON upload_parts (upload_id, seq)",
    ),
    # 5: an upload keeps the `expires_after` asked for its file (seconds; NULL: the
    # purpose's default), and when its completion began (NULL unless completing), so that
    # a completion whose server died can be taken over.
    (
        "ALTER TABLE uploads ADD COLUMN file_expires_after {integer}",
        "ALTER TABLE uploads ADD COLUMN completing_since {integer}",
    ),
    # 6: secrets the servers of a deployment share, each made once by whichever server needs
    # it first (the web console signs its download links with one).
    (
        """CREATE TABLE server_secrets (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created_at {integer} NOT NULL
    )""",
    ),
    # 7: an upload counts its parts and their bytes on its own row, so that adding a part
    # reads one row, not every part before it (a part added to 10,000 read all 10,000).
    (
        "ALTER TABLE uploads ADD COLUMN part_count {integer} NOT NULL DEFAULT 0",
        "ALTER TABLE uploads ADD COLUMN part_bytes {integer} NOT NULL DEFAULT 0",
        "UPDATE uploads SET "
        "part_count = (SELECT COUNT(*) FROM upload_parts p WHERE p.upload_id = uploads.id), "
        "part_bytes = (SELECT COALESCE(SUM(p.bytes), 0) FROM upload_parts p "
        "WHERE p.upload_id = uploads.id) "
        "WHERE id IN (SELECT upload_id FROM upload_parts)",
    ),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)

#: Columns of `files` and `api_keys`: the record fields, by name, in one order.
FILE_FIELDS = tuple(f.name for f in dataclasses.fields(FileRecord))
KEY_FIELDS = tuple(f.name for f in dataclasses.fields(KeyRecord))
#: Columns of `uploads` and `upload_parts` (which also has `seq`, its arrival order).
UPLOAD_FIELDS = tuple(f.name for f in dataclasses.fields(UploadRecord))
PART_FIELDS = tuple(f.name for f in dataclasses.fields(PartRecord))
_FILE_COLUMNS = ", ".join(FILE_FIELDS)
_KEY_COLUMNS = ", ".join(KEY_FIELDS)
_UPLOAD_COLUMNS = ", ".join(UPLOAD_FIELDS)
_PART_COLUMNS = ", ".join(PART_FIELDS)
#: The statuses of an upload that still holds its reservation and parts.
_OPEN = "status IN ('pending', 'completing')"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def _marks(n: int) -> str:
    return ", ".join("?" * n)


# Each looks a row's values up by the column names, in the record's field order (as fast as
# unpacking the row by position, which would break silently if a query's columns moved).
_file_values = operator.itemgetter(*FILE_FIELDS)
_key_values = operator.itemgetter(*KEY_FIELDS)
_upload_values = operator.itemgetter(*UPLOAD_FIELDS)
_part_values = operator.itemgetter(*PART_FIELDS)


def file_record(row: Any) -> FileRecord:
    """A `files` row (sqlite3.Row, asyncpg.Record: indexed by column name) as a record."""
    return FileRecord(*_file_values(row))


def key_record(row: Any) -> KeyRecord:
    """An `api_keys` row (sqlite3.Row, asyncpg.Record: indexed by column name) as a record."""
    return KeyRecord(*_key_values(row))


def upload_record(row: Any) -> UploadRecord:
    """An `uploads` row (indexed by column name) as a record."""
    return UploadRecord(*_upload_values(row))


def part_record(row: Any) -> PartRecord:
    """An `upload_parts` row (indexed by column name) as a record."""
    return PartRecord(*_part_values(row))


# -- dialects --


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """`?, ?` as `$1, $2` (no statement here has a `?` inside a string literal)."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


@dataclasses.dataclass(frozen=True)
class Dialect:
    """What differs between the databases, and nothing else."""

    name: str
    #: Placeholders are `$1, $2, ...` (else `?`).
    numbered: bool
    #: A 64-bit integer column.
    integer: str
    #: A text column that orders by code point on every machine (file ids page by it).
    sorted_text: str
    #: Appended to a SELECT that reads a row it will update in the same transaction.
    for_update: str
    #: Appended to a SELECT whose rows another transaction may take first: skip them.
    skip_locked: str
    #: `DELETE ... RETURNING` is available (else: SELECT, then DELETE by id).
    returning: bool
    #: A query of one parameter, a table name: truthy when that table exists.
    has_table: str
    #: The first statement of a migration: serializes migrations of several processes.
    migration_lock: str | None
    #: `column = ANY(?)` with the whole list as one parameter (else `IN (?, ?, ...)`).
    any_array: bool
    #: Most values matched in one statement (a statement's parameters are limited).
    in_batch: int

    def render(self, sql: str) -> str:
        """The statement as this database's driver wants it."""
        return _numbered(sql) if self.numbered else sql

    def ddl(self, statement: str) -> str:
        """A migration statement with this database's types."""
        return statement.format(integer=self.integer, sorted_text=self.sorted_text)

    def migration(self, version: int) -> list[str]:
        """The statements that make `version` from the version before it."""
        return [self.ddl(s) for s in MIGRATIONS[version - 1]]

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """`column` equals one of the text `values`: the condition and its parameters."""
        if self.any_array:
            return f"{column} = ANY(?::text[])", (list(values),)
        return f"{column} IN ({_marks(len(values))})", tuple(values)


SQLITE = Dialect(
    name="sqlite",
    numbered=False,
    integer="INTEGER",
    # SQLite's default (BINARY) collation compares UTF-8 bytes: code point order.
    sorted_text="TEXT",
    # Each write is one BEGIN IMMEDIATE transaction: it holds the database's write lock.
    for_update="",
    skip_locked="",
    # RETURNING needs SQLite 3.35, newer than some systems' Python has.
    returning=False,
    has_table="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    # BEGIN IMMEDIATE serializes migrations too.
    migration_lock=None,
    any_array=False,
    # Host parameters per statement stay well under SQLite's limit.
    in_batch=500,
)

#: Key of the advisory lock that serializes migrations across machines.
_MIGRATION_LOCK = 0x0F11E5

POSTGRES = Dialect(
    name="postgresql",
    numbered=True,
    integer="BIGINT",
    # "C" collation: ids order by code point, the same on every replica and locale.
    sorted_text='TEXT COLLATE "C"',
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    returning=True,
    has_table="SELECT to_regclass(?) IS NOT NULL",
    migration_lock=f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})",
    any_array=True,
    in_batch=1_000_000,
)


# -- plans --

Fetch = Literal["none", "one", "all", "value", "count"]


class Stmt(NamedTuple):
    """One statement for a driver to run: `?` placeholders, its parameters, and what to
    send back: nothing, the first row or None, all rows, the first column of the first row
    (None without a row), or the number of rows changed."""

    sql: str
    args: tuple[Any, ...]
    fetch: Fetch


#: The logic of one store call: yields statements, receives their results, returns T.
Plan: TypeAlias = Generator[Stmt, Any, T]


def drive(plan: Plan[T], execute: Callable[[Stmt], Any]) -> T:
    """Run a plan with a blocking driver."""
    try:
        stmt = next(plan)
        while True:
            stmt = plan.send(execute(stmt))
    except StopIteration as done:
        result: T = done.value
        return result


async def drive_async(plan: Plan[T], execute: Callable[[Stmt], Awaitable[Any]]) -> T:
    """Run a plan with an asyncio driver."""
    try:
        stmt = next(plan)
        while True:
            stmt = plan.send(await execute(stmt))
    except StopIteration as done:
        result: T = done.value
        return result


def _schema_version(d: Dialect) -> Plan[int]:
    if not (yield Stmt(d.has_table, ("schema_version",), "value")):
        return 0
    return int((yield Stmt("SELECT COALESCE(MAX(version), 0) FROM schema_version", (), "value")))


def _migrate(d: Dialect, to: int) -> Plan[int]:
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


def _committed(d: Dialect, org_id: str, now: int) -> Plan[int]:
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


def _reserve(
    d: Dialect,
    reservation_id: str,
    org_id: str,
    nbytes: int,
    quota: int,
    expires_at: int,
    blob_key: str,
) -> Plan[None]:
    committed = yield from _committed(d, org_id, int(time.time()))
    if committed + nbytes > quota:
        raise QuotaExceeded(committed, nbytes, quota)
    yield Stmt(
        "INSERT INTO reservations (id, org_id, bytes, expires_at, blob_key) VALUES (?, ?, ?, ?, ?)",
        (reservation_id, org_id, nbytes, expires_at, blob_key),
        "none",
    )


def _insert_file(
    d: Dialect, record: FileRecord, reservation_id: str | None, quota: int
) -> Plan[None]:
    if reservation_id is not None:
        yield Stmt("DELETE FROM reservations WHERE id = ?", (reservation_id,), "none")
    committed = yield from _committed(d, record.org_id, record.created_at)
    if committed + record.bytes > quota:
        raise QuotaExceeded(committed, record.bytes, quota)
    yield Stmt(
        f"INSERT INTO files ({_FILE_COLUMNS}) VALUES ({_marks(len(FILE_FIELDS))})",
        tuple(getattr(record, name) for name in FILE_FIELDS),
        "none",
    )
    yield Stmt(
        "UPDATE org_usage SET used_bytes = used_bytes + ? WHERE org_id = ?",
        (record.bytes, record.org_id),
        "none",
    )


def _get_file(owner: Owner, file_id: str, now: int) -> Plan[FileRecord | None]:
    row = yield Stmt(
        f"SELECT {_FILE_COLUMNS} FROM files "
        f"WHERE id = ? AND org_id = ? AND project_id = ? AND {_LIVE}",
        (file_id, owner.org_id, owner.project_id, now),
        "one",
    )
    return None if row is None else file_record(row)


def _list_files(
    owner: Owner,
    purpose: str | None,
    limit: int,
    order: Order,
    after: str | None,
    now: int,
    position: tuple[int, str] | None,
) -> Plan[tuple[list[FileRecord], bool]]:
    where = ["org_id = ?", "project_id = ?", _LIVE]
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
        f"SELECT {_FILE_COLUMNS} FROM files WHERE {' AND '.join(where)} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT ?",
        (*args, limit + 1),
        "all",
    )
    return [file_record(r) for r in rows[:limit]], len(rows) > limit


def _take_files(d: Dialect, where: str, args: tuple[Any, ...]) -> Plan[list[FileRecord]]:
    """Delete the rows of `files` that match, give their bytes back to their organizations'
    usage (in one order of organizations everywhere: no deadlocks), and return them."""
    if d.returning:
        rows = yield Stmt(f"DELETE FROM files WHERE {where} RETURNING {_FILE_COLUMNS}", args, "all")
    else:
        rows = yield Stmt(f"SELECT {_FILE_COLUMNS} FROM files WHERE {where}", args, "all")
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


def _delete_file(d: Dialect, owner: Owner, file_id: str, now: int) -> Plan[FileRecord | None]:
    records = yield from _take_files(
        d,
        f"id = ? AND org_id = ? AND project_id = ? AND {_LIVE}",
        (file_id, owner.org_id, owner.project_id, now),
    )
    return records[0] if records else None


def _pop_expired(d: Dialect, now: int, limit: int) -> Plan[list[FileRecord]]:
    # Replicas sweeping at once skip each other's rows: no file is handled twice.
    return (
        yield from _take_files(
            d,
            "id IN (SELECT id FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? "
            f"ORDER BY expires_at LIMIT ?{d.skip_locked})",
            (now, limit),
        )
    )


def _named_blob_keys(d: Dialect, keys: Sequence[str]) -> Plan[set[str]]:
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
    return found


# -- uploads --


def _insert_upload(record: UploadRecord) -> Plan[None]:
    yield Stmt(
        f"INSERT INTO uploads ({_UPLOAD_COLUMNS}) VALUES ({_marks(len(UPLOAD_FIELDS))})",
        tuple(getattr(record, name) for name in UPLOAD_FIELDS),
        "none",
    )


def _open_upload(
    d: Dialect,
    record: UploadRecord,
    quota: int,
    reserved_until: int,
    max_pending: int,
    max_pending_bytes: int,
) -> Plan[None]:
    now = record.created_at
    # The organization's usage row is locked first: creations of any of its projects are
    # serialized, and each counts the uploads those before it committed.
    committed = yield from _committed(d, record.org_id, now)
    row = yield Stmt(
        "SELECT COALESCE(SUM(CASE WHEN u.expires_at > ? THEN 1 ELSE 0 END), 0) AS pending, "
        "COALESCE(SUM(r.bytes), 0) AS reserved FROM uploads u "
        "LEFT JOIN reservations r ON r.id = u.id AND r.expires_at > ? "
        f"WHERE u.org_id = ? AND u.project_id = ? AND u.{_OPEN}",
        (now, now, record.org_id, record.project_id),
        "one",
    )
    pending, reserved = int(row["pending"]), int(row["reserved"])
    if pending + 1 > max_pending:
        raise PendingUploadsExceeded("uploads", pending, 1, max_pending)
    if reserved + record.bytes > max_pending_bytes:
        raise PendingUploadsExceeded("bytes", reserved, record.bytes, max_pending_bytes)
    if committed + record.bytes > quota:
        raise QuotaExceeded(committed, record.bytes, quota)
    yield Stmt(
        "INSERT INTO reservations (id, org_id, bytes, expires_at, blob_key) VALUES (?, ?, ?, ?, ?)",
        (record.id, record.org_id, record.bytes, reserved_until, record.file_key),
        "none",
    )
    yield from _insert_upload(record)


def _purge_uploads(d: Dialect, expired_before: int, limit: int) -> Plan[int]:
    # Replicas purging at once skip each other's rows.
    deleted = yield Stmt(
        "DELETE FROM uploads WHERE id IN (SELECT id FROM uploads "
        "WHERE status IN ('completed', 'cancelled', 'expired') AND expires_at <= ? "
        f"LIMIT ?{d.skip_locked})",
        (expired_before, limit),
        "count",
    )
    return int(deleted)


def _get_upload(owner: Owner, upload_id: str) -> Plan[UploadRecord | None]:
    row = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ? AND org_id = ? AND project_id = ?",
        (upload_id, owner.org_id, owner.project_id),
        "one",
    )
    return None if row is None else upload_record(row)


def _list_uploads(owner: Owner, status: str | None, limit: int) -> Plan[list[UploadRecord]]:
    where = "org_id = ? AND project_id = ?"
    args: tuple[Any, ...] = (owner.org_id, owner.project_id)
    if status == "pending":  # "completing" is ours: clients see it as pending
        where += f" AND {_OPEN}"
    elif status is not None:
        where += " AND status = ?"
        args += (status,)
    rows = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE {where} "
        "ORDER BY created_at DESC, id DESC LIMIT ?",
        (*args, limit),
        "all",
    )
    return [upload_record(r) for r in rows]


def _stale(record: UploadRecord, stale_before: int | None) -> bool:
    """Whether `record` is being completed by a completion begun at or before
    `stale_before` (or before step 5 recorded when): one whose server died."""
    return (
        stale_before is not None
        and record.status == "completing"
        and (record.completing_since is None or record.completing_since <= stale_before)
    )


def _pending_upload(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
) -> Plan[UploadRecord]:
    """The owner's upload, pending (or being completed by a completion begun at or before
    `stale_before`) and unexpired at `now`, its row locked until the transaction ends; else
    UploadNotFound or UploadNotPending."""
    row = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads "
        f"WHERE id = ? AND org_id = ? AND project_id = ?{d.for_update}",
        (upload_id, owner.org_id, owner.project_id),
        "one",
    )
    if row is None:
        raise UploadNotFound(upload_id)
    record = upload_record(row)
    taken = record.status == "pending" or _stale(record, stale_before)
    if taken and record.expires_at <= now:
        raise UploadNotPending(dataclasses.replace(record, status="expired"))
    if not taken:
        raise UploadNotPending(record)
    return record


def _part_totals(upload_id: str) -> Plan[tuple[int, int]]:
    """The number of the upload's last part and the bytes of its parts. Both are kept on the
    upload's row (schema step 7); the last number is also read through the parts' index, one
    row, and when the two disagree the row's counts are not to be trusted: a server of
    version 6, still running during a rolling upgrade, added parts without counting them.
    Then the parts are added up, once (the next part added counts them again)."""
    row = yield Stmt(
        # The parts' index is searched by the id given, not by the upload's column: on
        # PostgreSQL that column's collation ("C") is not the index's.
        "SELECT part_count, part_bytes, COALESCE((SELECT seq FROM upload_parts "
        "WHERE upload_id = ? ORDER BY seq DESC LIMIT 1), 0) AS last "
        "FROM uploads WHERE id = ?",
        (upload_id, upload_id),
        "one",
    )
    if row is None:
        return 0, 0
    last, held = int(row["last"]), int(row["part_bytes"])
    if last != int(row["part_count"]):
        held = int(
            (
                yield Stmt(
                    "SELECT COALESCE(SUM(bytes), 0) FROM upload_parts WHERE upload_id = ?",
                    (upload_id,),
                    "value",
                )
            )
            or 0
        )
    return last, held


def _add_part(d: Dialect, owner: Owner, part: PartRecord, now: int) -> Plan[UploadRecord]:
    record = yield from _pending_upload(d, owner, part.upload_id, now)
    # The upload's row is locked: no other part of it takes the same number, or the same
    # room. The part is numbered after the last one (parts are only ever removed all
    # together), and the bytes of those before it bound it: the parts never hold more than
    # the upload's bytes, which its reservation holds.
    last, held = yield from _part_totals(part.upload_id)
    seq = last + 1
    if held + part.bytes > record.bytes:
        raise UploadFull(record, held, part.bytes)
    yield Stmt(
        f"INSERT INTO upload_parts ({_PART_COLUMNS}, seq) VALUES ({_marks(len(PART_FIELDS) + 1)})",
        (*(getattr(part, name) for name in PART_FIELDS), seq),
        "none",
    )
    yield Stmt(
        "UPDATE uploads SET part_count = ?, part_bytes = ? WHERE id = ?",
        (seq, held + part.bytes, part.upload_id),
        "none",
    )
    return record


def _begin_completion(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None
) -> Plan[UploadRecord]:
    row = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads "
        f"WHERE id = ? AND org_id = ? AND project_id = ?{d.for_update}",
        (upload_id, owner.org_id, owner.project_id),
        "one",
    )
    if row is None:
        raise UploadNotFound(upload_id)
    record = upload_record(row)
    if record.status in ("pending", "completing") and record.expires_at <= now:
        raise UploadNotPending(dataclasses.replace(record, status="expired"))
    # A completion begun at or before `stale_before` had its server die: this one takes
    # it over.
    if record.status != "pending" and not _stale(record, stale_before):
        raise UploadNotPending(record)
    yield Stmt(
        "UPDATE uploads SET status = 'completing', completing_since = ? WHERE id = ?",
        (now, upload_id),
        "none",
    )
    return dataclasses.replace(record, status="completing", completing_since=now)


def _finish_completion(
    d: Dialect, upload_id: str, file: FileRecord, quota: int, since: int | None
) -> Plan[None]:
    row = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE id = ?{d.for_update}", (upload_id,), "one"
    )
    if row is None:
        raise UploadNotFound(upload_id)
    record = upload_record(row)
    if record.status != "completing" or (since is not None and record.completing_since != since):
        raise UploadNotPending(record)
    yield from _insert_file(d, file, upload_id, quota)
    yield Stmt(
        "UPDATE uploads SET status = 'completed', file_id = ?, completing_since = NULL "
        "WHERE id = ?",
        (file.id, upload_id),
        "none",
    )
    yield Stmt("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,), "none")


def _take_parts(d: Dialect, upload_ids: Sequence[str]) -> Plan[dict[str, list[str]]]:
    """Delete the part rows of the uploads and drop their reservations; each upload's part
    blob keys, in arrival order."""
    keys: dict[str, list[str]] = {upload_id: [] for upload_id in upload_ids}
    for i in range(0, len(upload_ids), d.in_batch):
        batch = upload_ids[i : i + d.in_batch]
        of_uploads, args = d.one_of("upload_id", batch)
        rows = yield Stmt(
            f"SELECT upload_id, blob_key FROM upload_parts WHERE {of_uploads} "
            "ORDER BY upload_id, seq",
            args,
            "all",
        )
        for r in rows:
            keys[r["upload_id"]].append(r["blob_key"])
        yield Stmt(f"DELETE FROM upload_parts WHERE {of_uploads}", args, "none")
        in_ids, args = d.one_of("id", batch)
        yield Stmt(f"DELETE FROM reservations WHERE {in_ids}", args, "none")
    return keys


def _cancel_upload(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None
) -> Plan[tuple[UploadRecord, list[str]]]:
    record = yield from _pending_upload(d, owner, upload_id, now, stale_before)
    yield Stmt(
        "UPDATE uploads SET status = 'cancelled', completing_since = NULL WHERE id = ?",
        (upload_id,),
        "none",
    )
    keys = yield from _take_parts(d, [upload_id])
    return dataclasses.replace(record, status="cancelled", completing_since=None), keys[upload_id]


def _reopen_completions(
    d: Dialect, stale_before: int | None, limit: int
) -> Plan[list[UploadRecord]]:
    where = "status = 'completing'"
    args: tuple[Any, ...] = ()
    if stale_before is not None:
        where += " AND (completing_since IS NULL OR completing_since <= ?)"
        args = (stale_before,)
    # A completion finishing now holds its row: it is skipped, and finishes.
    rows = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE {where} ORDER BY id LIMIT ?{d.skip_locked}",
        (*args, limit),
        "all",
    )
    records = [upload_record(r) for r in rows]
    ids = [r.id for r in records]
    for i in range(0, len(ids), d.in_batch):
        in_ids, id_args = d.one_of("id", ids[i : i + d.in_batch])
        yield Stmt(
            "UPDATE uploads SET status = 'pending', completing_since = NULL "
            f"WHERE {in_ids} AND status = 'completing'",
            id_args,
            "none",
        )
    return records


def _pop_expired_uploads(
    d: Dialect, now: int, limit: int
) -> Plan[list[tuple[UploadRecord, list[str]]]]:
    # Replicas sweeping at once skip each other's rows: no upload is handled twice.
    rows = yield Stmt(
        f"SELECT {_UPLOAD_COLUMNS} FROM uploads WHERE {_OPEN} AND expires_at <= ? "
        f"ORDER BY expires_at LIMIT ?{d.skip_locked}",
        (now, limit),
        "all",
    )
    records = [
        dataclasses.replace(upload_record(r), status="expired", completing_since=None) for r in rows
    ]
    ids = [r.id for r in records]
    for i in range(0, len(ids), d.in_batch):
        in_ids, args = d.one_of("id", ids[i : i + d.in_batch])
        yield Stmt(
            f"UPDATE uploads SET status = 'expired', completing_since = NULL WHERE {in_ids}",
            args,
            "none",
        )
    keys = yield from _take_parts(d, ids)
    return [(r, keys[r.id]) for r in records]


def _server_secret(name: str, candidate: str, now: int) -> Plan[str]:
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


def _rows(sql: str, args: tuple[Any, ...], fetch: Fetch) -> Plan[Any]:
    """A plan of one statement."""
    return (yield Stmt(sql, args, fetch))


def _keys(rows: Iterable[Any]) -> list[KeyRecord]:
    return [key_record(r) for r in rows]


# -- the store --


class SQLMetadataStore(abc.ABC):
    """The metadata store's methods, once for every SQL database: a subclass gives the
    `DIALECT` and runs plans, `_read` outside a transaction, `_write` as one transaction."""

    DIALECT: ClassVar[Dialect]
    SCHEMA_VERSION: ClassVar[int] = SCHEMA_VERSION

    @abc.abstractmethod
    async def open(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def _read(self, plan: Plan[T]) -> T: ...

    @abc.abstractmethod
    async def _write(self, plan: Plan[T]) -> T: ...

    # -- schema --
    async def schema_version(self) -> int:
        """The version of the schema in the database; 0 when there is none."""
        return await self._read(_schema_version(self.DIALECT))

    async def migrate(self, to: int = SCHEMA_VERSION) -> int:
        """Create or upgrade the schema, in one transaction (up to version `to`, tests step
        through them); returns the version now in place."""
        return await self._write(_migrate(self.DIALECT, to))

    # -- keys --
    async def add_api_key(self, record: KeyRecord) -> None:
        await self._write(
            _rows(
                f"INSERT INTO api_keys ({_KEY_COLUMNS}) VALUES ({_marks(len(KEY_FIELDS))})",
                tuple(getattr(record, name) for name in KEY_FIELDS),
                "none",
            )
        )

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        row = await self._read(
            _rows(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,), "one")
        )
        return None if row is None else key_record(row)

    async def get_api_key(self, key_id: str) -> KeyRecord | None:
        row = await self._read(
            _rows(f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,), "one")
        )
        return None if row is None else key_record(row)

    async def list_api_keys(self) -> list[KeyRecord]:
        sql = f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        return _keys(await self._read(_rows(sql, (), "all")))

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        changed = await self._write(
            _rows(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, key_id),
                "count",
            )
        )
        return bool(changed == 1)

    # -- quota --
    async def reserve(
        self,
        reservation_id: str,
        org_id: str,
        nbytes: int,
        quota: int,
        expires_at: int,
        blob_key: str,
    ) -> None:
        await self._write(
            _reserve(self.DIALECT, reservation_id, org_id, nbytes, quota, expires_at, blob_key)
        )

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        sql = "UPDATE reservations SET expires_at = ? WHERE id = ?"
        await self._write(_rows(sql, (expires_at, reservation_id), "none"))

    async def release(self, reservation_id: str) -> None:
        await self._write(_rows("DELETE FROM reservations WHERE id = ?", (reservation_id,), "none"))

    async def usage(self, org_id: str) -> int:
        sql = "SELECT used_bytes FROM org_usage WHERE org_id = ?"
        return int(await self._read(_rows(sql, (org_id,), "value")) or 0)

    async def committed_bytes(self, org_id: str, now: int) -> int:
        # One statement: one snapshot of the three sums (as `_committed` counts, unlocked).
        sql = (
            "SELECT COALESCE((SELECT used_bytes FROM org_usage WHERE org_id = ?), 0) "
            "- (SELECT COALESCE(SUM(bytes), 0) FROM files "
            "WHERE org_id = ? AND expires_at IS NOT NULL AND expires_at <= ?) "
            "+ (SELECT COALESCE(SUM(bytes), 0) FROM reservations "
            "WHERE org_id = ? AND expires_at > ?)"
        )
        args = (org_id, org_id, now, org_id, now)
        return int(await self._read(_rows(sql, args, "value")) or 0)

    async def server_secret(self, name: str, candidate: str, now: int) -> str:
        return await self._write(_server_secret(name, candidate, now))

    async def purge_reservations(self, now: int | None) -> None:
        if now is None:
            # Not those of uploads still pending or completing: an upload holds its
            # reservation for its hour, across restarts.
            sql = (
                "DELETE FROM reservations WHERE id NOT IN "
                "(SELECT id FROM uploads WHERE status IN ('pending', 'completing'))"
            )
            await self._write(_rows(sql, (), "none"))
        else:
            sql = "DELETE FROM reservations WHERE expires_at <= ?"
            await self._write(_rows(sql, (now,), "none"))

    # -- files --
    async def insert_file(self, record: FileRecord, reservation_id: str | None, quota: int) -> None:
        await self._write(_insert_file(self.DIALECT, record, reservation_id, quota))

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        return await self._read(_get_file(owner, file_id, now))

    async def list_files(
        self,
        owner: Owner,
        *,
        purpose: str | None,
        limit: int,
        order: Order,
        after: str | None,
        now: int,
        position: tuple[int, str] | None = None,
    ) -> tuple[list[FileRecord], bool]:
        return await self._read(_list_files(owner, purpose, limit, order, after, now, position))

    async def delete_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        return await self._write(_delete_file(self.DIALECT, owner, file_id, now))

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        return await self._write(_pop_expired(self.DIALECT, now, limit))

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        return await self._read(_named_blob_keys(self.DIALECT, keys))

    # -- uploads --
    async def insert_upload(self, record: UploadRecord) -> None:
        await self._write(_insert_upload(record))

    async def open_upload(
        self,
        record: UploadRecord,
        *,
        quota: int,
        reserved_until: int,
        max_pending: int,
        max_pending_bytes: int,
    ) -> None:
        await self._write(
            _open_upload(
                self.DIALECT, record, quota, reserved_until, max_pending, max_pending_bytes
            )
        )

    async def get_upload(self, owner: Owner, upload_id: str) -> UploadRecord | None:
        return await self._read(_get_upload(owner, upload_id))

    async def list_uploads(
        self, owner: Owner, status: str | None, limit: int
    ) -> list[UploadRecord]:
        return await self._read(_list_uploads(owner, status, limit))

    async def count_pending_uploads(self, owner: Owner, now: int) -> int:
        sql = (
            f"SELECT COUNT(*) FROM uploads WHERE org_id = ? AND project_id = ? AND {_OPEN} "
            "AND expires_at > ?"
        )
        args = (owner.org_id, owner.project_id, now)
        return int(await self._read(_rows(sql, args, "value")) or 0)

    async def add_part(self, owner: Owner, part: PartRecord, now: int) -> UploadRecord:
        return await self._write(_add_part(self.DIALECT, owner, part, now))

    async def parts_total(self, upload_id: str) -> tuple[int, int]:
        return await self._read(_part_totals(upload_id))

    async def list_parts(self, upload_id: str) -> list[PartRecord]:
        sql = f"SELECT {_PART_COLUMNS} FROM upload_parts WHERE upload_id = ? ORDER BY seq"
        return [part_record(r) for r in await self._read(_rows(sql, (upload_id,), "all"))]

    async def begin_completion(
        self, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
    ) -> UploadRecord:
        return await self._write(
            _begin_completion(self.DIALECT, owner, upload_id, now, stale_before)
        )

    async def finish_completion(
        self, upload_id: str, file: FileRecord, quota: int, since: int | None = None
    ) -> None:
        await self._write(_finish_completion(self.DIALECT, upload_id, file, quota, since))

    async def renew_completion(self, upload_id: str, since: int, now: int) -> bool:
        sql = (
            "UPDATE uploads SET completing_since = ? "
            "WHERE id = ? AND status = 'completing' AND completing_since = ?"
        )
        return bool(await self._write(_rows(sql, (now, upload_id, since), "count")))

    async def abort_completion(self, upload_id: str, since: int | None = None) -> bool:
        sql = (
            "UPDATE uploads SET status = 'pending', completing_since = NULL "
            "WHERE id = ? AND status = 'completing'"
        )
        args: tuple[Any, ...] = (upload_id,)
        if since is not None:
            sql += " AND completing_since = ?"
            args += (since,)
        return bool(await self._write(_rows(sql, args, "count")))

    async def cancel_upload(
        self, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
    ) -> tuple[UploadRecord, list[str]]:
        return await self._write(_cancel_upload(self.DIALECT, owner, upload_id, now, stale_before))

    async def reopen_completions(self, stale_before: int | None, limit: int) -> list[UploadRecord]:
        return await self._write(_reopen_completions(self.DIALECT, stale_before, limit))

    async def pop_expired_uploads(
        self, now: int, limit: int
    ) -> list[tuple[UploadRecord, list[str]]]:
        return await self._write(_pop_expired_uploads(self.DIALECT, now, limit))

    async def purge_uploads(self, expired_before: int, limit: int) -> int:
        return await self._write(_purge_uploads(self.DIALECT, expired_before, limit))
