"""The plans of the metadata store for the audit log: an event written in the transaction of
the change it records (`audited`), the listing of an organization's events, and the
retention's removal of old ones.

An event's id sorts as its time, so an organization's events page by id alone (the index
`audit_logs_page`), newest first; a cursor is a position, whether or not its event is
still there (the retention may have removed it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ._records import Audit, AuditQuery, AuditRecord
from ._sql_dialect import Dialect, Plan, Stmt, marks
from ._sql_schema import AUDIT_FIELDS, audit_record

T = TypeVar("T")

_INSERT = f"INSERT INTO audit_logs ({', '.join(AUDIT_FIELDS)}) VALUES ({marks(len(AUDIT_FIELDS))})"
#: The columns of an event, qualified, and the name of its project (None: it has no row).
_LISTED = (
    ", ".join(f"a.{name}" for name in AUDIT_FIELDS) + ", p.name AS project_name FROM audit_logs a "
    "LEFT JOIN projects p ON p.org_id = a.org_id AND p.id = a.project_id"
)


def insert_events(events: Iterable[AuditRecord]) -> Plan[None]:
    for event in events:
        yield Stmt(_INSERT, tuple(getattr(event, name) for name in AUDIT_FIELDS), "none")


def _always(result: Any) -> bool:
    return True


def audited(
    plan: Plan[T], audit: Audit[T] | None, changed: Callable[[T], bool] = _always
) -> Plan[T]:
    """`plan`, then, when it `changed` something (judged on what it returned), the events
    `audit` makes of what it returned, in the same transaction: a change and its events
    commit together or not at all (an `audit` that raises undoes the change)."""
    result = yield from plan
    if audit is not None and changed(result):
        yield from insert_events(audit(result))
    return result


def events_of(audit: Audit[T] | None, result: T) -> Plan[None]:
    """The events `audit` makes of `result`, written where a plan makes its change (for the
    plans whose return value does not tell whether they changed anything)."""
    if audit is not None:
        yield from insert_events(audit(result))


def list_audit_logs(
    d: Dialect, org_id: str, query: AuditQuery
) -> Plan[tuple[list[tuple[AuditRecord, str | None]], bool]]:
    where = ["a.org_id = ?"]
    args: list[Any] = [org_id]
    for column, values in (
        ("a.type", query.types),
        ("a.project_id", query.project_ids),
        ("a.resource_id", query.resource_ids),
    ):
        if values:
            condition, more = d.one_of(column, values)
            where.append(condition)
            args.extend(more)
    if query.actor_ids:
        by_key, key_args = d.one_of("a.actor_id", query.actor_ids)
        by_account, account_args = d.one_of("a.actor_service_account_id", query.actor_ids)
        where.append(f"({by_key} OR {by_account})")
        args.extend((*key_args, *account_args))
    for condition, value in (
        ("a.effective_at >= ?", query.since),
        ("a.effective_at <= ?", query.until),
        ("a.id < ?", query.after),
        ("a.id > ?", query.before),
    ):
        if value is not None:
            where.append(condition)
            args.append(value)
    # Newest first; paging back (`before` alone) reads upwards from the cursor, then turns
    # the page around.
    upwards = query.before is not None and query.after is None
    order = "ASC" if upwards else "DESC"
    rows = yield Stmt(
        f"SELECT {_LISTED} WHERE {' AND '.join(where)} ORDER BY a.id {order} LIMIT ?",
        (*args, query.limit + 1),
        "all",
    )
    page = [(audit_record(r), r["project_name"]) for r in rows[: query.limit]]
    if upwards:
        page.reverse()
    return page, len(rows) > query.limit


def purge_audit_logs(before: int, limit: int) -> Plan[int]:
    removed = yield Stmt(
        "DELETE FROM audit_logs WHERE id IN "
        "(SELECT id FROM audit_logs WHERE effective_at < ? ORDER BY effective_at LIMIT ?)",
        (before, limit),
        "count",
    )
    return int(removed)
