"""The plans of the metadata store for OpenAI's Administration API: projects, their service
accounts and keys, and admin keys.

A project's row is the lock of everything made in it: a key or a service account is added,
and a project archived, each holding the project's row (`FOR UPDATE`; SQLite's writes are
serialized whole), so that no key is added to a project that an archive has just emptied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ._errors import CursorNotFound, LimitReached, ProjectArchived, ProjectNotFound
from ._records import (
    AdminKeyRecord,
    Audit,
    KeyRecord,
    Order,
    Owner,
    ProjectRecord,
    ServiceAccountRecord,
)
from ._sql_audit_plans import events_of
from ._sql_dialect import Dialect, Plan, Stmt, marks
from ._sql_part_plans import take_parts
from ._sql_schema import (
    ADMIN_KEY_COLUMNS,
    ADMIN_KEY_FIELDS,
    KEY_COLUMNS,
    KEY_FIELDS,
    PROJECT_COLUMNS,
    PROJECT_FIELDS,
    SERVICE_ACCOUNT_COLUMNS,
    SERVICE_ACCOUNT_FIELDS,
    admin_key_record,
    key_record,
    project_record,
    service_account_record,
)

#: A key's columns, qualified (`k.id, k.org_id, ...`), and its service account's, renamed
#: (`s.name AS sa_name, ...`), for the listing of a project's keys with their owners.
_KEY_COLUMNS_OF_K = ", ".join(f"k.{name}" for name in KEY_FIELDS)
_SA_COLUMNS_AS = ", ".join(f"s.{name} AS sa_{name}" for name in SERVICE_ACCOUNT_FIELDS)
_KEY_WITH_OWNER = (
    f"SELECT {_KEY_COLUMNS_OF_K}, {_SA_COLUMNS_AS} FROM api_keys k "
    "LEFT JOIN service_accounts s ON s.id = k.service_account_id"
)


def _values(record: Any, fields: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in fields)


def _insert(table: str, fields: Sequence[str], record: Any) -> Stmt:
    return Stmt(
        f"INSERT INTO {table} ({', '.join(fields)}) VALUES ({marks(len(fields))})",
        _values(record, fields),
        "none",
    )


def _page(
    select: str,
    where: Sequence[str],
    args: Sequence[Any],
    cursor: tuple[int, str] | None,
    limit: int,
    order: Order = "asc",
    prefix: str = "",
) -> Stmt:
    """A page of rows in `(created_at, id)` order strictly after `cursor`, one more than
    `limit` (so that the caller knows whether more follow)."""
    conditions = list(where)
    values = list(args)
    if cursor is not None:
        conditions.append(
            f"({prefix}created_at, {prefix}id) {'>' if order == 'asc' else '<'} (?, ?)"
        )
        values.extend(cursor)
    direction = "ASC" if order == "asc" else "DESC"
    return Stmt(
        f"{select} WHERE {' AND '.join(conditions)} "
        f"ORDER BY {prefix}created_at {direction}, {prefix}id {direction} LIMIT ?",
        (*values, limit + 1),
        "all",
    )


def _cursor(table: str, where: str, args: tuple[Any, ...], after: str | None) -> Plan[Any]:
    """The `(created_at, id)` of the row `after` of `table` that `where` allows (whatever
    its state: paging goes on from a row deleted or archived since); None without `after`,
    CursorNotFound when there is no such row."""
    if after is None:
        return None
    row = yield Stmt(
        f"SELECT created_at, id FROM {table} WHERE id = ? AND {where}", (after, *args), "one"
    )
    if row is None:
        raise CursorNotFound(after)
    return (row["created_at"], row["id"])


# -- projects --


def _held_project(d: Dialect, org_id: str, project_id: str) -> Plan[ProjectRecord | None]:
    """The project's row, held until the transaction ends; None when there is none."""
    row = yield Stmt(
        f"SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = ? AND id = ?{d.for_update}",
        (org_id, project_id),
        "one",
    )
    return None if row is None else project_record(row)


def _open_project(d: Dialect, org_id: str, project_id: str) -> Plan[ProjectRecord]:
    """The project, held, if it exists and is not archived (else ProjectNotFound or
    ProjectArchived)."""
    project = yield from _held_project(d, org_id, project_id)
    if project is None:
        raise ProjectNotFound(project_id)
    if project.archived_at is not None:
        raise ProjectArchived(project)
    return project


def _lock_organization(d: Dialect, org_id: str) -> Plan[None]:
    """Hold the organization's row of `org_usage` (made if missing) until the transaction
    ends: the creates that count an organization's rows against a limit are serialized."""
    yield Stmt(
        "INSERT INTO org_usage (org_id, used_bytes) VALUES (?, 0) ON CONFLICT DO NOTHING",
        (org_id,),
        "none",
    )
    yield Stmt(f"SELECT used_bytes FROM org_usage WHERE org_id = ?{d.for_update}", (org_id,), "one")


def _within(count: Stmt, limit: int) -> Plan[None]:
    """LimitReached when `count` (a COUNT query) is `limit` or more; 0: no limit."""
    if limit:
        held = yield count
        if int(held) >= limit:
            raise LimitReached(limit)


def create_project(d: Dialect, record: ProjectRecord, limit: int = 0) -> Plan[None]:
    if limit:
        yield from _lock_organization(d, record.org_id)
        count = Stmt("SELECT COUNT(*) FROM projects WHERE org_id = ?", (record.org_id,), "value")
        yield from _within(count, limit)
    yield _insert("projects", PROJECT_FIELDS, record)


def get_project(org_id: str, project_id: str) -> Plan[ProjectRecord | None]:
    row = yield Stmt(
        f"SELECT {PROJECT_COLUMNS} FROM projects WHERE org_id = ? AND id = ?",
        (org_id, project_id),
        "one",
    )
    return None if row is None else project_record(row)


def list_projects(
    org_id: str, after: str | None, limit: int, include_archived: bool
) -> Plan[tuple[list[ProjectRecord], bool]]:
    cursor = yield from _cursor("projects", "org_id = ?", (org_id,), after)
    where = ["org_id = ?"]
    if not include_archived:
        where.append("archived_at IS NULL")
    rows = yield _page(f"SELECT {PROJECT_COLUMNS} FROM projects", where, (org_id,), cursor, limit)
    return [project_record(r) for r in rows[:limit]], len(rows) > limit


def rename_project(
    d: Dialect, org_id: str, project_id: str, name: str
) -> Plan[ProjectRecord | None]:
    project = yield from _held_project(d, org_id, project_id)
    if project is None:
        return None
    if project.archived_at is not None:
        raise ProjectArchived(project)
    yield Stmt(
        "UPDATE projects SET name = ? WHERE org_id = ? AND id = ?",
        (name, org_id, project_id),
        "none",
    )
    return dataclasses.replace(project, name=name)


def archive_project(
    d: Dialect,
    org_id: str,
    project_id: str,
    now: int,
    audit: Audit[tuple[ProjectRecord, list[KeyRecord]] | None] | None = None,
) -> Plan[tuple[ProjectRecord, list[KeyRecord]] | None]:
    project = yield from _held_project(d, org_id, project_id)
    if project is None:
        return None
    if project.archived_at is not None:
        return project, []
    yield Stmt(
        "UPDATE projects SET archived_at = ? WHERE org_id = ? AND id = ?",
        (now, org_id, project_id),
        "none",
    )
    revoked = yield from _revoke_keys(
        "org_id = ? AND project_id = ? AND revoked_at IS NULL", (org_id, project_id), now
    )
    yield from _end_project_work(d, org_id, project_id, now)
    archived = dataclasses.replace(project, archived_at=now), revoked
    yield from events_of(audit, archived)
    return archived


def _end_project_work(d: Dialect, org_id: str, project_id: str, now: int) -> Plan[None]:
    """Cancel the project's batches not yet ended as a cancel does (status "cancelling":
    the runner finalizes them) and its pending uploads (their reservations given back,
    their part rows deleted; the parts' bytes, which no row names any more, are left to
    the sweep of orphan bytes). An upload being completed completes. Its files stay."""

    yield Stmt(
        "UPDATE batches SET status = 'cancelling', cancelling_at = ? "
        "WHERE org_id = ? AND project_id = ? AND status IN ('validating', 'in_progress')",
        (now, org_id, project_id),
        "none",
    )
    rows = yield Stmt(
        f"SELECT id FROM uploads WHERE org_id = ? AND project_id = ? AND status = 'pending'"
        f"{d.for_update}",
        (org_id, project_id),
        "all",
    )
    ids = [r["id"] for r in rows]
    for i in range(0, len(ids), d.in_batch):
        in_ids, args = d.one_of("id", ids[i : i + d.in_batch])
        yield Stmt(
            f"UPDATE uploads SET status = 'cancelled', completing_since = NULL WHERE {in_ids}",
            args,
            "none",
        )
    yield from take_parts(d, ids)


def _revoke_keys(where: str, args: tuple[Any, ...], now: int) -> Plan[list[KeyRecord]]:
    """Revoke the active keys that `where` names, at `now`; their records after."""
    rows = yield Stmt(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE {where}", args, "all")
    if rows:
        yield Stmt(f"UPDATE api_keys SET revoked_at = ? WHERE {where}", (now, *args), "none")
    return [dataclasses.replace(key_record(r), revoked_at=now) for r in rows]


# -- project keys --


def add_api_key(d: Dialect, record: KeyRecord) -> Plan[None]:
    # A key of a project that has no row yet (a key made on the command line names its
    # project freely) makes the row, named after its id.
    yield Stmt(
        "INSERT INTO projects (org_id, id, name, created_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        (record.org_id, record.project_id, record.project_id, record.created_at),
        "none",
    )
    yield from _open_project(d, record.org_id, record.project_id)
    yield _insert("api_keys", KEY_FIELDS, record)


def _key_with_owner(row: Any) -> tuple[KeyRecord, ServiceAccountRecord | None]:
    key = key_record(row)
    if row["sa_id"] is None:
        return key, None
    return key, ServiceAccountRecord(*(row[f"sa_{name}"] for name in SERVICE_ACCOUNT_FIELDS))


def list_project_keys(
    owner: Owner, after: str | None, limit: int
) -> Plan[tuple[list[tuple[KeyRecord, ServiceAccountRecord | None]], bool]]:
    args = (owner.org_id, owner.project_id)
    cursor = yield from _cursor("api_keys", "org_id = ? AND project_id = ?", args, after)
    rows = yield _page(
        _KEY_WITH_OWNER,
        ["k.org_id = ?", "k.project_id = ?", "k.revoked_at IS NULL"],
        args,
        cursor,
        limit,
        prefix="k.",
    )
    return [_key_with_owner(r) for r in rows[:limit]], len(rows) > limit


def get_project_key(
    owner: Owner, key_id: str
) -> Plan[tuple[KeyRecord, ServiceAccountRecord | None] | None]:
    row = yield Stmt(
        f"{_KEY_WITH_OWNER} WHERE k.id = ? AND k.org_id = ? AND k.project_id = ? "
        "AND k.revoked_at IS NULL",
        (key_id, owner.org_id, owner.project_id),
        "one",
    )
    return None if row is None else _key_with_owner(row)


# -- service accounts --


def create_service_account(
    d: Dialect, account: ServiceAccountRecord, key: KeyRecord | None, limit: int = 0
) -> Plan[None]:
    # The project's row, held, serializes the creates that count its service accounts.
    yield from _open_project(d, account.org_id, account.project_id)
    count = Stmt(
        "SELECT COUNT(*) FROM service_accounts WHERE org_id = ? AND project_id = ?",
        (account.org_id, account.project_id),
        "value",
    )
    yield from _within(count, limit)
    yield _insert("service_accounts", SERVICE_ACCOUNT_FIELDS, account)
    if key is not None:
        yield _insert("api_keys", KEY_FIELDS, key)


_SA_OF_OWNER = "org_id = ? AND project_id = ?"


def get_service_account(owner: Owner, account_id: str) -> Plan[ServiceAccountRecord | None]:
    row = yield Stmt(
        f"SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE id = ? AND {_SA_OF_OWNER}",
        (account_id, owner.org_id, owner.project_id),
        "one",
    )
    return None if row is None else service_account_record(row)


def list_service_accounts(
    owner: Owner, after: str | None, limit: int
) -> Plan[tuple[list[ServiceAccountRecord], bool]]:
    args = (owner.org_id, owner.project_id)
    cursor = yield from _cursor("service_accounts", _SA_OF_OWNER, args, after)
    rows = yield _page(
        f"SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts",
        [_SA_OF_OWNER],
        args,
        cursor,
        limit,
    )
    return [service_account_record(r) for r in rows[:limit]], len(rows) > limit


def delete_service_account(
    d: Dialect, owner: Owner, account_id: str, now: int
) -> Plan[tuple[ServiceAccountRecord, list[KeyRecord]] | None]:
    row = yield Stmt(
        f"SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts "
        f"WHERE id = ? AND {_SA_OF_OWNER}{d.for_update}",
        (account_id, owner.org_id, owner.project_id),
        "one",
    )
    if row is None:
        return None
    yield Stmt("DELETE FROM service_accounts WHERE id = ?", (account_id,), "none")
    revoked = yield from _revoke_keys(
        "service_account_id = ? AND revoked_at IS NULL", (account_id,), now
    )
    return service_account_record(row), revoked


# -- admin keys --


def add_admin_key(d: Dialect, record: AdminKeyRecord, limit: int = 0) -> Plan[None]:
    if limit:
        yield from _lock_organization(d, record.org_id)
        count = Stmt(
            "SELECT COUNT(*) FROM admin_api_keys WHERE org_id = ? AND revoked_at IS NULL",
            (record.org_id,),
            "value",
        )
        yield from _within(count, limit)
    yield _insert("admin_api_keys", ADMIN_KEY_FIELDS, record)


def find_admin_key(column: str, value: str) -> Plan[AdminKeyRecord | None]:
    row = yield Stmt(
        f"SELECT {ADMIN_KEY_COLUMNS} FROM admin_api_keys WHERE {column} = ?", (value,), "one"
    )
    return None if row is None else admin_key_record(row)


def list_admin_keys(
    org_id: str, after: str | None, limit: int, order: Order
) -> Plan[tuple[list[AdminKeyRecord], bool]]:
    cursor = yield from _cursor("admin_api_keys", "org_id = ?", (org_id,), after)
    rows = yield _page(
        f"SELECT {ADMIN_KEY_COLUMNS} FROM admin_api_keys",
        ["org_id = ?", "revoked_at IS NULL"],
        (org_id,),
        cursor,
        limit,
        order,
    )
    return [admin_key_record(r) for r in rows[:limit]], len(rows) > limit


def list_all_admin_keys() -> Plan[list[AdminKeyRecord]]:
    rows = yield Stmt(
        f"SELECT {ADMIN_KEY_COLUMNS} FROM admin_api_keys ORDER BY created_at, id", (), "all"
    )
    return [admin_key_record(r) for r in rows]
