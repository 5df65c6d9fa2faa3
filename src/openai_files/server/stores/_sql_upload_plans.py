"""The plans of the Uploads API's rows: uploads, their parts, completion and expiry.

Each is a generator of `Stmt`s (`_sql_dialect.py`) that a driver runs in one transaction.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ._errors import (
    PendingUploadsExceeded,
    QuotaExceeded,
    UploadFull,
    UploadNotFound,
    UploadNotPending,
)
from ._records import FileRecord, Owner, PartRecord, UploadRecord
from ._sql_dialect import Dialect, Plan, Stmt, marks
from ._sql_part_plans import take_parts
from ._sql_plans import committed_locked, insert_file
from ._sql_schema import (
    OPEN,
    PART_COLUMNS,
    PART_FIELDS,
    UPLOAD_COLUMNS,
    UPLOAD_FIELDS,
    upload_record,
)

# -- uploads --


def insert_upload(record: UploadRecord) -> Plan[None]:
    yield Stmt(
        f"INSERT INTO uploads ({UPLOAD_COLUMNS}) VALUES ({marks(len(UPLOAD_FIELDS))})",
        tuple(getattr(record, name) for name in UPLOAD_FIELDS),
        "none",
    )


def open_upload(
    d: Dialect,
    record: UploadRecord,
    *,
    quota: int,
    reserved_until: int,
    max_pending: int,
    max_pending_bytes: int,
) -> Plan[None]:
    now = record.created_at
    # The organization's usage row is locked first: creations of any of its projects are
    # serialized, and each counts the uploads those before it committed.
    committed = yield from committed_locked(d, record.org_id, now)
    row = yield Stmt(
        "SELECT COALESCE(SUM(CASE WHEN u.expires_at > ? THEN 1 ELSE 0 END), 0) AS pending, "
        "COALESCE(SUM(r.bytes), 0) AS reserved FROM uploads u "
        "LEFT JOIN reservations r ON r.id = u.id AND r.expires_at > ? "
        f"WHERE u.org_id = ? AND u.project_id = ? AND u.{OPEN}",
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
    yield from insert_upload(record)


def purge_uploads(d: Dialect, expired_before: int, limit: int) -> Plan[int]:
    # Replicas purging at once skip each other's rows.
    deleted = yield Stmt(
        "DELETE FROM uploads WHERE id IN (SELECT id FROM uploads "
        "WHERE status IN ('completed', 'cancelled', 'expired') AND expires_at <= ? "
        f"LIMIT ?{d.skip_locked})",
        (expired_before, limit),
        "count",
    )
    return int(deleted)


def get_upload(owner: Owner, upload_id: str) -> Plan[UploadRecord | None]:
    row = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ? AND org_id = ? AND project_id = ?",
        (upload_id, owner.org_id, owner.project_id),
        "one",
    )
    return None if row is None else upload_record(row)


def list_uploads(owner: Owner, status: str | None, limit: int) -> Plan[list[UploadRecord]]:
    where = "org_id = ? AND project_id = ?"
    args: tuple[Any, ...] = (owner.org_id, owner.project_id)
    if status == "pending":  # "completing" is ours: clients see it as pending
        where += f" AND {OPEN}"
    elif status is not None:
        where += " AND status = ?"
        args += (status,)
    rows = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE {where} "
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


def _locked_upload(d: Dialect, owner: Owner, upload_id: str) -> Plan[UploadRecord]:
    """The owner's upload, its row locked until the transaction ends; else UploadNotFound."""
    row = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads "
        f"WHERE id = ? AND org_id = ? AND project_id = ?{d.for_update}",
        (upload_id, owner.org_id, owner.project_id),
        "one",
    )
    if row is None:
        raise UploadNotFound(upload_id)
    return upload_record(row)


def pending_upload(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
) -> Plan[UploadRecord]:
    """The owner's upload, pending (or being completed by a completion begun at or before
    `stale_before`) and unexpired at `now`, its row locked until the transaction ends; else
    UploadNotFound or UploadNotPending."""
    record = yield from _locked_upload(d, owner, upload_id)
    taken = record.status == "pending" or _stale(record, stale_before)
    if taken and record.expires_at <= now:
        raise UploadNotPending(dataclasses.replace(record, status="expired"))
    if not taken:
        raise UploadNotPending(record)
    return record


def part_totals(upload_id: str) -> Plan[tuple[int, int]]:
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


def add_part(d: Dialect, owner: Owner, part: PartRecord, now: int) -> Plan[UploadRecord]:
    record = yield from pending_upload(d, owner, part.upload_id, now)
    # The upload's row is locked: no other part of it takes the same number, or the same
    # room. The part is numbered after the last one (parts are only ever removed all
    # together), and the bytes of those before it bound it: the parts never hold more than
    # the upload's bytes, which its reservation holds.
    last, held = yield from part_totals(part.upload_id)
    seq = last + 1
    if held + part.bytes > record.bytes:
        raise UploadFull(record, held, part.bytes)
    yield Stmt(
        f"INSERT INTO upload_parts ({PART_COLUMNS}, seq) VALUES ({marks(len(PART_FIELDS) + 1)})",
        (*(getattr(part, name) for name in PART_FIELDS), seq),
        "none",
    )
    yield Stmt(
        "UPDATE uploads SET part_count = ?, part_bytes = ? WHERE id = ?",
        (seq, held + part.bytes, part.upload_id),
        "none",
    )
    return record


def begin_completion(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None
) -> Plan[UploadRecord]:
    record = yield from _locked_upload(d, owner, upload_id)
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


def finish_completion(
    d: Dialect, upload_id: str, file: FileRecord, quota: int, since: int | None
) -> Plan[None]:
    row = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE id = ?{d.for_update}", (upload_id,), "one"
    )
    if row is None:
        raise UploadNotFound(upload_id)
    record = upload_record(row)
    if record.status != "completing" or (since is not None and record.completing_since != since):
        raise UploadNotPending(record)
    yield from insert_file(d, file, upload_id, quota)
    yield Stmt(
        "UPDATE uploads SET status = 'completed', file_id = ?, completing_since = NULL "
        "WHERE id = ?",
        (file.id, upload_id),
        "none",
    )
    yield Stmt("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,), "none")


def cancel_upload(
    d: Dialect, owner: Owner, upload_id: str, now: int, stale_before: int | None
) -> Plan[tuple[UploadRecord, list[str]]]:
    record = yield from pending_upload(d, owner, upload_id, now, stale_before)
    yield Stmt(
        "UPDATE uploads SET status = 'cancelled', completing_since = NULL WHERE id = ?",
        (upload_id,),
        "none",
    )
    keys = yield from take_parts(d, [upload_id])
    return dataclasses.replace(record, status="cancelled", completing_since=None), keys[upload_id]


def reopen_completions(
    d: Dialect, stale_before: int | None, limit: int
) -> Plan[list[UploadRecord]]:
    where = "status = 'completing'"
    args: tuple[Any, ...] = ()
    if stale_before is not None:
        where += " AND (completing_since IS NULL OR completing_since <= ?)"
        args = (stale_before,)
    # A completion finishing now holds its row: it is skipped, and finishes.
    rows = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE {where} ORDER BY id LIMIT ?{d.skip_locked}",
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


def pop_expired_uploads(
    d: Dialect, now: int, limit: int
) -> Plan[list[tuple[UploadRecord, list[str]]]]:
    # Replicas sweeping at once skip each other's rows: no upload is handled twice.
    rows = yield Stmt(
        f"SELECT {UPLOAD_COLUMNS} FROM uploads WHERE {OPEN} AND expires_at <= ? "
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
    keys = yield from take_parts(d, ids)
    return [(r, keys[r.id]) for r in records]
