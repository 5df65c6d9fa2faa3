"""The schema of the metadata stores: the statements of each version, and rows as records.

Both databases run every step of MIGRATIONS (`{integer}` and `{sorted_text}` are the
dialect's types, `_sql_dialect.py`). Rows are read by column name, never by position: both
drivers' rows are mappings (`sqlite3.Row`, `asyncpg.Record`), and the column lists are the
record fields' names.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from typing import Any

from ._records import (
    AdminKeyRecord,
    AuditRecord,
    BatchRecord,
    BatchRequestRecord,
    FileRecord,
    KeyRecord,
    PartRecord,
    ProjectRecord,
    ServiceAccountRecord,
    UploadRecord,
)

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
    # 8: OpenAI's Batch API: batches, and one row per request of each batch not yet ended
    # (where its body lies in the input file, who runs it until when, and its result).
    (
        """CREATE TABLE batches (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        endpoint TEXT NOT NULL,
        input_file_id TEXT NOT NULL,
        input_blob_key TEXT NOT NULL,
        completion_window TEXT NOT NULL,
        status TEXT NOT NULL,
        created_at {integer} NOT NULL,
        expires_at {integer} NOT NULL,
        metadata TEXT,
        output_expires_after {integer},
        model TEXT,
        in_progress_at {integer},
        finalizing_at {integer},
        completed_at {integer},
        failed_at {integer},
        expired_at {integer},
        cancelling_at {integer},
        cancelled_at {integer},
        total {integer} NOT NULL DEFAULT 0,
        completed {integer} NOT NULL DEFAULT 0,
        failed {integer} NOT NULL DEFAULT 0,
        input_tokens {integer} NOT NULL DEFAULT 0,
        cached_tokens {integer} NOT NULL DEFAULT 0,
        output_tokens {integer} NOT NULL DEFAULT 0,
        reasoning_tokens {integer} NOT NULL DEFAULT 0,
        total_tokens {integer} NOT NULL DEFAULT 0,
        errors TEXT,
        output_file_id TEXT,
        error_file_id TEXT,
        output_key TEXT,
        error_key TEXT,
        lease_owner TEXT,
        lease_until {integer}
    )""",
        "CREATE INDEX batches_owner_page ON batches (org_id, project_id, created_at, id)",
        "CREATE INDEX batches_status ON batches (status, created_at)",
        "CREATE INDEX batches_input_key ON batches (input_blob_key)",
        """CREATE TABLE batch_requests (
        batch_id TEXT NOT NULL,
        line {integer} NOT NULL,
        custom_id TEXT NOT NULL,
        body_offset {integer} NOT NULL,
        body_length {integer} NOT NULL,
        model TEXT,
        status TEXT NOT NULL,
        attempts {integer} NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_until {integer},
        outcome TEXT,
        result TEXT,
        PRIMARY KEY (batch_id, line)
    )""",
        "CREATE INDEX batch_requests_todo ON batch_requests (batch_id, status, line)",
        "CREATE INDEX batch_requests_leases ON batch_requests (lease_owner) "
        "WHERE status = 'running'",
    ),
    # 9: OpenAI's Administration API. Projects, each an organization's (a project id is
    # unique within its organization only), made here for the keys made before; service
    # accounts of a project; a key's name and its service account; admin keys, in a table
    # of their own, so that servers of the release before, which look keys up in
    # `api_keys` only, never take an admin key for a project's key.
    (
        """CREATE TABLE projects (
        org_id TEXT NOT NULL,
        id {sorted_text} NOT NULL,
        name TEXT NOT NULL,
        created_at {integer} NOT NULL,
        archived_at {integer},
        PRIMARY KEY (org_id, id)
    )""",
        "CREATE INDEX projects_page ON projects (org_id, created_at, id)",
        "INSERT INTO projects (org_id, id, name, created_at) "
        "SELECT org_id, project_id, project_id, MIN(created_at) FROM api_keys "
        "GROUP BY org_id, project_id",
        """CREATE TABLE service_accounts (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        created_at {integer} NOT NULL
    )""",
        "CREATE INDEX service_accounts_page ON service_accounts "
        "(org_id, project_id, created_at, id)",
        "ALTER TABLE api_keys ADD COLUMN name TEXT",
        "ALTER TABLE api_keys ADD COLUMN service_account_id TEXT",
        "CREATE INDEX api_keys_project_page ON api_keys (org_id, project_id, created_at, id)",
        "CREATE INDEX api_keys_service_account ON api_keys (service_account_id) "
        "WHERE service_account_id IS NOT NULL",
        """CREATE TABLE admin_api_keys (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        name TEXT,
        created_at {integer} NOT NULL,
        expires_at {integer},
        revoked_at {integer}
    )""",
        "CREATE INDEX admin_api_keys_page ON admin_api_keys (org_id, created_at, id)",
    ),
    # 10: the audit log, appended in the transaction of each change it records. An event's
    # id sorts as its time: an organization's listing, newest first, pages by id alone;
    # the retention removes events by age.
    (
        """CREATE TABLE audit_logs (
        id {sorted_text} PRIMARY KEY,
        org_id TEXT NOT NULL,
        type TEXT NOT NULL,
        effective_at {integer} NOT NULL,
        project_id TEXT,
        actor_id TEXT,
        actor_service_account_id TEXT,
        resource_id TEXT,
        details TEXT NOT NULL
    )""",
        "CREATE INDEX audit_logs_page ON audit_logs (org_id, id)",
        "CREATE INDEX audit_logs_resource ON audit_logs (org_id, resource_id, id)",
        "CREATE INDEX audit_logs_age ON audit_logs (effective_at)",
    ),
)

#: The schema version this code reads and writes.
SCHEMA_VERSION = len(MIGRATIONS)

_CREATE_TABLE = re.compile(r"\s*CREATE TABLE (?:IF NOT EXISTS )?(\w+)", re.IGNORECASE)
_DROP_TABLE = re.compile(r"\s*DROP TABLE (?:IF EXISTS )?(\w+)", re.IGNORECASE)


def tables_at(version: int) -> tuple[str, ...]:
    """The tables of schema `version`, in the order its steps made them (a table that
    another refers to comes before it): what a backup copies and a restore fills, whatever
    tables later steps add. `schema_version`, the migrations' own, is not one of them.

    Read from the steps' statements: `CREATE TABLE` adds a table, `DROP TABLE` removes one
    (tests/stores/test_sql_schema.py checks that no step changes tables another way).
    """
    if not 0 <= version <= len(MIGRATIONS):
        raise ValueError(f"no schema version {version}: this code knows 1 to {len(MIGRATIONS)}")
    tables: list[str] = []
    for step in MIGRATIONS[:version]:
        for statement in step:
            if made := _CREATE_TABLE.match(statement):
                tables.append(made.group(1))
            elif dropped := _DROP_TABLE.match(statement):
                tables.remove(dropped.group(1))
    return tuple(tables)


#: The blobs whose bytes rows need, as (table, column, condition): a file's bytes, an
#: upload's parts, and the input of a batch not yet ended (also once its file is deleted).
#: A backup copies these bytes, and a restore checks that it has them. A step that adds a
#: column naming a blob adds it here, or to BLOBS_NOT_NEEDED (a test checks every column
#: whose name ends in `_key`).
BLOBS_NEEDED: tuple[tuple[str, str, str], ...] = (
    ("files", "blob_key", ""),
    ("upload_parts", "blob_key", ""),
    (
        "batches",
        "input_blob_key",
        "status IN ('validating', 'in_progress', 'finalizing', 'cancelling')",
    ),
)
#: Columns named like a blob's (`..._key`) whose bytes no row needs, and why (a `_key`
#: column that names no blob at all goes here too).
BLOBS_NOT_NEEDED: dict[tuple[str, str], str] = {
    ("reservations", "blob_key"): "an upload in flight: its bytes are still being written",
    ("uploads", "file_key"): "the file an upload makes: its `files` row names it",
    ("batches", "output_key"): "written while finalizing, named by a `files` row once done",
    ("batches", "error_key"): "written while finalizing, named by a `files` row once done",
}


def blobs_needed_query(version: int) -> str:
    """One query of the distinct keys (a `blob_key` column) whose bytes the rows of a
    database at schema `version` need (BLOBS_NEEDED, of the tables it has)."""
    present = set(tables_at(version))
    parts = [
        f"SELECT {column} AS blob_key FROM {table}" + (f" WHERE {where}" if where else "")
        for table, column, where in BLOBS_NEEDED
        if table in present
    ]
    return " UNION ".join(parts) if parts else "SELECT NULL AS blob_key WHERE 0 = 1"


#: Columns of `files` and `api_keys`: the record fields, by name, in one order.
FILE_FIELDS = tuple(f.name for f in dataclasses.fields(FileRecord))
KEY_FIELDS = tuple(f.name for f in dataclasses.fields(KeyRecord))
#: Columns of `uploads` and `upload_parts` (which also has `seq`, its arrival order).
UPLOAD_FIELDS = tuple(f.name for f in dataclasses.fields(UploadRecord))
PART_FIELDS = tuple(f.name for f in dataclasses.fields(PartRecord))
FILE_COLUMNS = ", ".join(FILE_FIELDS)
KEY_COLUMNS = ", ".join(KEY_FIELDS)
UPLOAD_COLUMNS = ", ".join(UPLOAD_FIELDS)
PART_COLUMNS = ", ".join(PART_FIELDS)
#: Columns of `batches` and `batch_requests`.
BATCH_FIELDS = tuple(f.name for f in dataclasses.fields(BatchRecord))
BATCH_REQUEST_FIELDS = tuple(f.name for f in dataclasses.fields(BatchRequestRecord))
BATCH_COLUMNS = ", ".join(BATCH_FIELDS)
BATCH_REQUEST_COLUMNS = ", ".join(BATCH_REQUEST_FIELDS)
#: Columns of `projects`, `service_accounts` and `admin_api_keys`.
PROJECT_FIELDS = tuple(f.name for f in dataclasses.fields(ProjectRecord))
SERVICE_ACCOUNT_FIELDS = tuple(f.name for f in dataclasses.fields(ServiceAccountRecord))
ADMIN_KEY_FIELDS = tuple(f.name for f in dataclasses.fields(AdminKeyRecord))
PROJECT_COLUMNS = ", ".join(PROJECT_FIELDS)
SERVICE_ACCOUNT_COLUMNS = ", ".join(SERVICE_ACCOUNT_FIELDS)
ADMIN_KEY_COLUMNS = ", ".join(ADMIN_KEY_FIELDS)
#: Columns of `audit_logs`.
AUDIT_FIELDS = tuple(f.name for f in dataclasses.fields(AuditRecord))
AUDIT_COLUMNS = ", ".join(AUDIT_FIELDS)
#: The statuses of a batch that has not ended (a worker still has something to do).
BATCH_ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
#: The statuses of an upload that still holds its reservation and parts.
OPEN = "status IN ('pending', 'completing')"
LIVE = "(expires_at IS NULL OR expires_at > ?)"


# Each looks a row's values up by the column names, in the record's field order (as fast as
# unpacking the row by position, which would break silently if a query's columns moved).
_file_values = operator.itemgetter(*FILE_FIELDS)
_key_values = operator.itemgetter(*KEY_FIELDS)
_upload_values = operator.itemgetter(*UPLOAD_FIELDS)
_part_values = operator.itemgetter(*PART_FIELDS)
_batch_values = operator.itemgetter(*BATCH_FIELDS)
_batch_request_values = operator.itemgetter(*BATCH_REQUEST_FIELDS)
_project_values = operator.itemgetter(*PROJECT_FIELDS)
_service_account_values = operator.itemgetter(*SERVICE_ACCOUNT_FIELDS)
_admin_key_values = operator.itemgetter(*ADMIN_KEY_FIELDS)
_audit_values = operator.itemgetter(*AUDIT_FIELDS)


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


def batch_record(row: Any) -> BatchRecord:
    """A `batches` row (indexed by column name) as a record."""
    return BatchRecord(*_batch_values(row))


def batch_request_record(row: Any) -> BatchRequestRecord:
    """A `batch_requests` row (indexed by column name) as a record."""
    return BatchRequestRecord(*_batch_request_values(row))


def project_record(row: Any) -> ProjectRecord:
    """A `projects` row (indexed by column name) as a record."""
    return ProjectRecord(*_project_values(row))


def service_account_record(row: Any) -> ServiceAccountRecord:
    """A `service_accounts` row (indexed by column name) as a record."""
    return ServiceAccountRecord(*_service_account_values(row))


def admin_key_record(row: Any) -> AdminKeyRecord:
    """An `admin_api_keys` row (indexed by column name) as a record."""
    return AdminKeyRecord(*_admin_key_values(row))


def audit_record(row: Any) -> AuditRecord:
    """An `audit_logs` row (indexed by column name) as a record."""
    return AuditRecord(*_audit_values(row))
