"""The plans of the Batch API's store methods (`MetadataStore`'s batch calls).

A batch's row holds its request, status, counts and the lease of the worker that validates
or finalizes it; each of its requests is a row of `batch_requests`, claimed by a worker with
a lease (`SKIP LOCKED` on PostgreSQL: workers never wait for each other's rows), and once
run holds its result. A result is stored and counted in one transaction, and only by the
worker whose lease it is: a request is counted once, whatever worker died or came late.

Locks (PostgreSQL) are taken in one order everywhere: a transaction that changes request
rows holds their batches' rows first, in id order (`_lock_batches`), so none waits for a
batch's row while holding request rows that another, holding that batch's row, waits for
(a finish deleting the rows while a late result is recorded deadlocked that way).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ._errors import BatchInputGone, BatchNotCancellable, CursorNotFound, LeaseLost, TooManyBatches
from ._records import Audit, BatchRecord, BatchRequestRecord, BatchResult, FileRecord, Owner
from ._sql_audit_plans import events_of
from ._sql_dialect import Dialect, Plan, Stmt, marks
from ._sql_schema import (
    BATCH_ACTIVE,
    BATCH_COLUMNS,
    BATCH_FIELDS,
    BATCH_REQUEST_COLUMNS,
    BATCH_REQUEST_FIELDS,
    FILE_COLUMNS,
    FILE_FIELDS,
    LIVE,
    batch_record,
    batch_request_record,
)

_ACTIVE = f"status IN ({', '.join(repr(s) for s in BATCH_ACTIVE)})"
#: Columns a worker may change with `update_batch` (not the owner, id or request).
_CHANGEABLE = frozenset(BATCH_FIELDS) - {
    "id",
    "org_id",
    "project_id",
    "endpoint",
    "input_file_id",
    "input_blob_key",
    "completion_window",
    "created_at",
}
_USAGE = ("input_tokens", "cached_tokens", "output_tokens", "reasoning_tokens", "total_tokens")


def _select(d: Dialect, batch_id: str, lock: bool) -> Stmt:
    return Stmt(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ?{d.for_update if lock else ''}",
        (batch_id,),
        "one",
    )


def create_batch(d: Dialect, record: BatchRecord, now: int, max_active: int) -> Plan[None]:
    # The input file's row is held (PostgreSQL) until the batch is stored: a delete racing
    # the create either comes first (BatchInputGone) or finds the batch naming its bytes.
    row = yield Stmt(
        f"SELECT blob_key FROM files WHERE id = ? AND org_id = ? AND project_id = ? AND {LIVE}"
        f"{d.for_update}",
        (record.input_file_id, record.org_id, record.project_id, now),
        "one",
    )
    if row is None or row["blob_key"] != record.input_blob_key:
        raise BatchInputGone(record.input_file_id)
    # Then the organization's usage row (the order a file delete takes them in): creates of
    # its projects are serialized, each counting the batches those before it committed.
    yield Stmt(
        "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, 0) ON CONFLICT DO NOTHING",
        (record.org_id,),
        "none",
    )
    yield Stmt(
        f"SELECT used_bytes FROM org_usage WHERE org_id = ?{d.for_update}",
        (record.org_id,),
        "value",
    )
    held = yield Stmt(
        f"SELECT COUNT(*) FROM batches WHERE org_id = ? AND project_id = ? AND {_ACTIVE}",
        (record.org_id, record.project_id),
        "value",
    )
    if int(held) >= max_active:
        raise TooManyBatches(int(held), max_active)
    yield Stmt(
        f"INSERT INTO batches ({BATCH_COLUMNS}) VALUES ({marks(len(BATCH_FIELDS))})",
        tuple(getattr(record, name) for name in BATCH_FIELDS),
        "none",
    )


def get_batch(owner: Owner, batch_id: str) -> Plan[BatchRecord | None]:
    row = yield Stmt(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND org_id = ? AND project_id = ?",
        (batch_id, owner.org_id, owner.project_id),
        "one",
    )
    return None if row is None else batch_record(row)


def list_batches(
    owner: Owner, after: str | None, limit: int
) -> Plan[tuple[list[BatchRecord], bool]]:
    where = "org_id = ? AND project_id = ?"
    args: list[Any] = [owner.org_id, owner.project_id]
    if after is not None:
        cursor = yield Stmt(
            f"SELECT created_at, id FROM batches WHERE id = ? AND {where}",
            (after, *args),
            "one",
        )
        if cursor is None:
            raise CursorNotFound(after)
        where += " AND (created_at, id) < (?, ?)"
        args += [cursor["created_at"], cursor["id"]]
    rows = yield Stmt(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE {where} "
        "ORDER BY created_at DESC, id DESC LIMIT ?",
        (*args, limit + 1),
        "all",
    )
    return [batch_record(r) for r in rows[:limit]], len(rows) > limit


def cancel_batch(
    d: Dialect,
    owner: Owner,
    batch_id: str,
    now: int,
    audit: Audit[BatchRecord | None] | None = None,
) -> Plan[BatchRecord | None]:
    row = yield Stmt(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE id = ? AND org_id = ? AND project_id = ?"
        f"{d.for_update}",
        (batch_id, owner.org_id, owner.project_id),
        "one",
    )
    if row is None:
        return None
    record = batch_record(row)
    if record.status in ("cancelling", "cancelled"):
        return record
    if record.status not in ("validating", "in_progress"):
        raise BatchNotCancellable(record)
    yield Stmt(
        "UPDATE batches SET status = 'cancelling', cancelling_at = ? WHERE id = ?",
        (now, batch_id),
        "none",
    )
    row = yield _select(d, batch_id, lock=False)
    cancelling = batch_record(row)
    yield from events_of(audit, cancelling)
    return cancelling


def active_batches(limit: int) -> Plan[list[BatchRecord]]:
    rows = yield Stmt(
        f"SELECT {BATCH_COLUMNS} FROM batches WHERE {_ACTIVE} ORDER BY created_at, id LIMIT ?",
        (limit,),
        "all",
    )
    return [batch_record(r) for r in rows]


def lease_batch(
    d: Dialect, batch_id: str, worker: str, now: int, until: int, statuses: Sequence[str]
) -> Plan[BatchRecord | None]:
    row = yield _select(d, batch_id, lock=True)
    if row is None or row["status"] not in statuses:
        return None
    owner, lapses = row["lease_owner"], row["lease_until"]
    if owner is not None and owner != worker and lapses is not None and lapses > now:
        return None
    yield Stmt(
        "UPDATE batches SET lease_owner = ?, lease_until = ? WHERE id = ?",
        (worker, until, batch_id),
        "none",
    )
    row = yield _select(d, batch_id, lock=False)
    return batch_record(row)


def _lock_batches(d: Dialect, where: str, args: tuple[Any, ...]) -> Plan[None]:
    """Hold the rows of the batches `where` selects, in id order (PostgreSQL; a SQLite
    write holds the whole database already)."""
    if d.for_update:
        yield Stmt(f"SELECT id FROM batches WHERE {where} ORDER BY id{d.for_update}", args, "all")


def _held(d: Dialect, batch_id: str, worker: str, statuses: Sequence[str] | None) -> Plan[Any]:
    row = yield _select(d, batch_id, lock=True)
    if row is None or row["lease_owner"] != worker:
        raise LeaseLost(batch_id)
    if statuses is not None and row["status"] not in statuses:
        raise LeaseLost(batch_id)
    return row


def update_batch(
    d: Dialect,
    batch_id: str,
    worker: str,
    statuses: Sequence[str] | None,
    changes: Mapping[str, Any],
) -> Plan[BatchRecord]:
    unknown = set(changes) - _CHANGEABLE
    if unknown:
        raise ValueError(f"not a column a worker changes: {sorted(unknown)}")
    row = yield from _held(d, batch_id, worker, statuses)
    names = sorted(changes)
    if not names:
        return batch_record(row)
    yield Stmt(
        f"UPDATE batches SET {', '.join(f'{n} = ?' for n in names)} WHERE id = ?",
        (*(changes[n] for n in names), batch_id),
        "none",
    )
    row = yield _select(d, batch_id, lock=False)
    return batch_record(row)


#: Most parameters in one statement of many rows (PostgreSQL's protocol allows 32,767).
_MAX_PARAMETERS = 30_000


def add_batch_requests(
    d: Dialect, batch_id: str, worker: str, rows: Sequence[BatchRequestRecord]
) -> Plan[None]:
    yield from _held(d, batch_id, worker, ("validating",))
    # Many rows a statement (a statement a row made a 10,000-line batch's validation 10,000
    # round trips on PostgreSQL: 2-3 s), within the parameters a statement may have.
    width = len(BATCH_REQUEST_FIELDS)
    per = max(1, min(d.in_batch, _MAX_PARAMETERS) // width)
    one = f"({marks(width)})"
    for k in range(0, len(rows), per):
        part = rows[k : k + per]
        yield Stmt(
            f"INSERT INTO batch_requests ({BATCH_REQUEST_COLUMNS}) "
            f"VALUES {', '.join([one] * len(part))}",
            tuple(getattr(r, n) for r in part for n in BATCH_REQUEST_FIELDS),
            "none",
        )


def clear_batch_requests(d: Dialect, batch_id: str, worker: str) -> Plan[None]:
    yield from _held(d, batch_id, worker, None)
    yield Stmt("DELETE FROM batch_requests WHERE batch_id = ?", (batch_id,), "none")


def claim_batch_requests(
    d: Dialect, batch_id: str, worker: str, now: int, until: int, limit: int
) -> Plan[list[BatchRequestRecord]]:
    # The batch's row is held while its requests are claimed: a cancel waits for the claim,
    # and no claim follows a cancel (no request leaves after it).
    row = yield _select(d, batch_id, lock=True)
    if row is None or row["status"] != "in_progress" or row["expires_at"] <= now:
        return []
    lines: list[int] = []
    for condition, args in (
        ("status = 'running' AND lease_until <= ?", (now,)),
        ("status = 'queued'", ()),
    ):
        if len(lines) >= limit:
            break
        found = yield Stmt(
            f"SELECT line FROM batch_requests WHERE batch_id = ? AND {condition} "
            f"ORDER BY line LIMIT ?{d.skip_locked}",
            (batch_id, *args, limit - len(lines)),
            "all",
        )
        lines += [r["line"] for r in found]
    if not lines:
        return []
    lines.sort()  # lapsed ones came first: the records go in line order, part after part
    claimed: list[BatchRequestRecord] = []
    for i in range(0, len(lines), d.in_batch):
        part = lines[i : i + d.in_batch]
        where = f"batch_id = ? AND line IN ({marks(len(part))})"
        yield Stmt(
            "UPDATE batch_requests SET status = 'running', lease_owner = ?, lease_until = ?, "
            f"attempts = attempts + 1 WHERE {where}",
            (worker, until, batch_id, *part),
            "none",
        )
        rows = yield Stmt(
            f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests WHERE {where} ORDER BY line",
            (batch_id, *part),
            "all",
        )
        claimed += [batch_request_record(r) for r in rows]
    return claimed


#: The batches in which a worker (the parameter) has running requests.
_RUNNING_IN = (
    "id IN (SELECT batch_id FROM batch_requests WHERE lease_owner = ? AND status = 'running')"
)


def renew_leases(d: Dialect, worker: str, until: int) -> Plan[int]:
    yield from _lock_batches(
        d, f"(lease_owner = ? AND {_ACTIVE}) OR {_RUNNING_IN}", (worker, worker)
    )
    requests = yield Stmt(
        "UPDATE batch_requests SET lease_until = ? WHERE lease_owner = ? AND status = 'running'",
        (until, worker),
        "count",
    )
    batches = yield Stmt(
        f"UPDATE batches SET lease_until = ? WHERE lease_owner = ? AND {_ACTIVE}",
        (until, worker),
        "count",
    )
    return int(requests) + int(batches)


def release_batch_requests(
    d: Dialect, worker: str, batch_id: str | None, lines: Sequence[int] | None
) -> Plan[int]:
    if lines is not None and not lines:
        return 0
    if batch_id is not None:
        yield from _lock_batches(d, "id = ?", (batch_id,))
    elif worker != "*":
        # Also the batches whose leases it lets go below (all of its work given back).
        yield from _lock_batches(
            d, f"{_RUNNING_IN} OR (lease_owner = ? AND {_ACTIVE})", (worker, worker)
        )
    sql = (
        "UPDATE batch_requests SET status = 'queued', lease_owner = NULL, lease_until = NULL "
        "WHERE status = 'running'"
    )
    args: tuple[Any, ...] = ()
    if worker != "*":
        sql += " AND lease_owner = ?"
        args += (worker,)
    if batch_id is not None:
        sql += " AND batch_id = ?"
        args += (batch_id,)
    if lines is not None:
        sql += f" AND line IN ({marks(len(lines))})"
        args += tuple(lines)
    count = yield Stmt(sql, args, "count")
    if batch_id is None and lines is None:
        # All of a worker's work given back (a stop, a start alone): its batches' leases
        # too, so that another worker validates or finalizes them at once.
        where = f"lease_owner IS NOT NULL AND {_ACTIVE}"
        if worker != "*":
            where = f"lease_owner = ? AND {_ACTIVE}"
        yield Stmt(
            f"UPDATE batches SET lease_owner = NULL, lease_until = NULL WHERE {where}",
            () if worker == "*" else (worker,),
            "none",
        )
    return int(count)


def record_batch_results(
    d: Dialect, worker: str, results: Sequence[BatchResult]
) -> Plan[list[bool]]:
    # The batches' rows first, then the requests' in one order everywhere (batch, line),
    # and each batch's counts once: concurrent workers never deadlock on each other's rows.
    batch_ids = sorted({r.batch_id for r in results})
    order = sorted(range(len(results)), key=lambda i: (results[i].batch_id, results[i].line))
    # A lapsed lease counts no more: the request may be another worker's by now, and a
    # finalizing batch reads its rows once no lease on them is live.
    now = int(time.time())
    # A batch whose finalizing has begun (its output objects named) takes no more results:
    # what it writes out is what was recorded before. On PostgreSQL the batches' rows are
    # held by the same statement that reads this (each round trip holds them longer).
    open_ids: set[str] = set()
    for k in range(0, len(batch_ids), d.in_batch):
        in_ids, args = d.one_of("id", batch_ids[k : k + d.in_batch])
        rows = yield Stmt(
            f"SELECT id, output_key FROM batches WHERE {in_ids} ORDER BY id{d.for_update}",
            args,
            "all",
        )
        open_ids.update(row["id"] for row in rows if row["output_key"] is None)
    recorded = [False] * len(results)
    sums: dict[str, list[int]] = {}
    taken, seen = [], set()
    for i in order:  # a request's result once (a second of the same group finds it done)
        key = (results[i].batch_id, results[i].line)
        if results[i].batch_id in open_ids and key not in seen:
            seen.add(key)
            taken.append(i)
    if d.any_array and d.returning and taken:
        # PostgreSQL: the group in one statement, one round trip (a statement a result
        # made a group of 30 take 20 ms on a loaded machine). The batches' rows are held,
        # so no other transaction writes these requests meanwhile: their order is free.
        # The batches' counts in the same statement: the rows it changed, summed.
        usage = ", ".join(f"v.{n}" for n in _USAGE)
        usage_arrays = ", ?::bigint[]" * len(_USAGE)
        rows = yield Stmt(
            "WITH done AS (UPDATE batch_requests AS r SET status = 'done', "
            "outcome = v.outcome, result = v.result, lease_owner = NULL, lease_until = NULL "
            f"FROM unnest(?::text[], ?::bigint[], ?::text[], ?::text[]{usage_arrays}"
            + f") AS v(batch_id, line, outcome, result, {', '.join(_USAGE)}) "
            "WHERE r.batch_id = v.batch_id AND r.line = v.line AND r.status = 'running' "
            "AND r.lease_owner = ? AND r.lease_until > ? "
            f"RETURNING r.batch_id, r.line, v.outcome, {usage}), "
            "counted AS (UPDATE batches AS b SET completed = b.completed + s.completed, "
            "failed = b.failed + s.failed, "
            + ", ".join(f"{n} = b.{n} + s.{n}" for n in _USAGE)
            + " FROM (SELECT batch_id, COUNT(*) FILTER (WHERE outcome = 'completed') AS "
            "completed, COUNT(*) FILTER (WHERE outcome <> 'completed') AS failed, "
            + ", ".join(f"SUM({n}) AS {n}" for n in _USAGE)
            + " FROM done GROUP BY batch_id) AS s WHERE b.id = s.batch_id RETURNING b.id) "
            "SELECT batch_id, line FROM done",
            (
                [results[i].batch_id for i in taken],
                [results[i].line for i in taken],
                [results[i].outcome for i in taken],
                [results[i].result for i in taken],
                *([getattr(results[i], n) for i in taken] for n in _USAGE),
                worker,
                now,
            ),
            "all",
        )
        done = {(row["batch_id"], row["line"]) for row in rows}
        for i in taken:
            recorded[i] = (results[i].batch_id, results[i].line) in done
        return recorded
    elif d.update_from and taken:
        # SQLite: which requests are still this worker's (the write holds the database, so
        # nothing changes them before the update), then the group in one statement. A
        # statement a result made the writer thread wait for the event loop's thread (each
        # statement gives up the GIL and takes it back): a group of 16 took 5-10 ms.
        mine: set[tuple[str, int]] = set()
        lines_of: dict[str, list[int]] = {}
        for i in taken:
            lines_of.setdefault(results[i].batch_id, []).append(results[i].line)
        for batch_id, lines in lines_of.items():
            for k in range(0, len(lines), d.in_batch):
                part = lines[k : k + d.in_batch]
                rows = yield Stmt(
                    f"SELECT line FROM batch_requests WHERE batch_id = ? AND line IN "
                    f"({marks(len(part))}) AND status = 'running' AND lease_owner = ? "
                    "AND lease_until > ?",
                    (batch_id, *part, worker, now),
                    "all",
                )
                mine.update((batch_id, int(row["line"])) for row in rows)
        changed_of = {i: (results[i].batch_id, results[i].line) in mine for i in taken}
        ours = [i for i in taken if changed_of[i]]
        per = max(1, d.in_batch // 4)
        for k in range(0, len(ours), per):
            part = ours[k : k + per]
            yield Stmt(
                "UPDATE batch_requests AS r SET status = 'done', outcome = v.column3, "
                "result = v.column4, lease_owner = NULL, lease_until = NULL "
                f"FROM (VALUES {', '.join(['(?, ?, ?, ?)'] * len(part))}) AS v "
                "WHERE r.batch_id = v.column1 AND r.line = v.column2",
                tuple(
                    x
                    for i in part
                    for x in (
                        results[i].batch_id,
                        results[i].line,
                        results[i].outcome,
                        results[i].result,
                    )
                ),
                "none",
            )
    else:
        changed_of = {}
        for i in taken:
            r = results[i]
            changed_of[i] = bool(
                (
                    yield Stmt(
                        "UPDATE batch_requests SET status = 'done', outcome = ?, result = ?, "
                        "lease_owner = NULL, lease_until = NULL "
                        "WHERE batch_id = ? AND line = ? AND status = 'running' "
                        "AND lease_owner = ? AND lease_until > ?",
                        (r.outcome, r.result, r.batch_id, r.line, worker, now),
                        "count",
                    )
                )
            )
    for i in taken:
        if not changed_of[i]:
            continue
        r = results[i]
        recorded[i] = True
        s = sums.setdefault(r.batch_id, [0] * (2 + len(_USAGE)))
        s[0 if r.outcome == "completed" else 1] += 1
        for k, name in enumerate(_USAGE):
            s[2 + k] += getattr(r, name)
    for batch_id in sorted(sums):
        s = sums[batch_id]
        yield Stmt(
            "UPDATE batches SET completed = completed + ?, failed = failed + ?, "
            + ", ".join(f"{n} = {n} + ?" for n in _USAGE)
            + " WHERE id = ?",
            (*s, batch_id),
            "none",
        )
    return recorded


def running_requests(batch_id: str, now: int) -> Plan[int]:
    count = yield Stmt(
        "SELECT COUNT(*) FROM batch_requests "
        "WHERE batch_id = ? AND status = 'running' AND lease_until > ?",
        (batch_id, now),
        "value",
    )
    return int(count)


def batch_request_page(
    batch_id: str, after_line: int, limit: int, max_bytes: int | None = None
) -> Plan[list[BatchRequestRecord]]:
    if max_bytes is not None:
        # The rows' result sizes first: the page ends before the row that would take it
        # past `max_bytes` (one row at least), so that no page holds many large answers.
        sizes = yield Stmt(
            "SELECT line, COALESCE(LENGTH(result), 0) AS size FROM batch_requests "
            "WHERE batch_id = ? AND line > ? ORDER BY line LIMIT ?",
            (batch_id, after_line, limit),
            "all",
        )
        total, count = 0, 0
        for row in sizes:
            total += int(row["size"])
            if count and total > max_bytes:
                break
            count += 1
        limit = count
        if not limit:
            return []
    rows = yield Stmt(
        f"SELECT {BATCH_REQUEST_COLUMNS} FROM batch_requests WHERE batch_id = ? AND line > ? "
        "ORDER BY line LIMIT ?",
        (batch_id, after_line, limit),
        "all",
    )
    return [batch_request_record(r) for r in rows]


def finish_batch(
    d: Dialect,
    batch_id: str,
    worker: str,
    statuses: Sequence[str],
    files: Sequence[FileRecord],
    changes: Mapping[str, Any],
) -> Plan[BatchRecord]:
    yield from _held(d, batch_id, worker, statuses)
    for f in files:
        yield Stmt(
            f"INSERT INTO files ({FILE_COLUMNS}) VALUES ({marks(len(FILE_FIELDS))})",
            tuple(getattr(f, name) for name in FILE_FIELDS),
            "none",
        )
    # A batch's results are counted in its organization's usage, never refused for it.
    for f in files:
        yield Stmt(
            "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, 0) ON CONFLICT DO NOTHING",
            (f.org_id,),
            "none",
        )
        yield Stmt(
            "UPDATE org_usage SET used_bytes = used_bytes + ? WHERE org_id = ?",
            (f.bytes, f.org_id),
            "none",
        )
    yield Stmt("DELETE FROM batch_requests WHERE batch_id = ?", (batch_id,), "none")
    return (
        yield from update_batch(
            d, batch_id, worker, None, {**changes, "lease_owner": None, "lease_until": None}
        )
    )


def batch_counts() -> Plan[dict[str, int]]:
    rows = yield Stmt("SELECT status, COUNT(*) AS n FROM batches GROUP BY status", (), "all")
    return {r["status"]: int(r["n"]) for r in rows}


def errors_json(errors: Sequence[Mapping[str, Any]]) -> str:
    """The `errors` column's text: the list of a failed batch's errors."""
    return json.dumps(list(errors), ensure_ascii=False, separators=(",", ":"))
