"""The metadata store's methods, once for every SQL database (`SQLMetadataStore`).

SQLite (`sqlite.py`) and PostgreSQL (`postgres.py`) run the same statements: the schema
(`_sql_schema.py`), the dialect and plan runner (`_sql_dialect.py`) and the plans
(`_sql_plans.py`, `_sql_upload_plans.py`) are written once. Each store file keeps only its
driver: connections, transactions, and how a `Stmt` is executed.

Hand-written SQL rather than a query builder: the driver paths (sqlite3 in threads, asyncpg)
are what the benchmarks were tuned on.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from . import _sql_admin_plans as _admin_plans
from . import _sql_audit_plans as _audit_plans
from . import _sql_batch_plans as _batch_plans
from . import _sql_plans as _plans
from . import _sql_upload_plans as _upload_plans
from ._records import (
    AdminKeyRecord,
    Audit,
    AuditQuery,
    AuditRecord,
    BatchRecord,
    BatchRequestRecord,
    BatchResult,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    PartRecord,
    ProjectRecord,
    ServiceAccountRecord,
    UploadRecord,
)
from ._sql_audit_plans import audited
from ._sql_dialect import Dialect, Plan
from ._sql_schema import (
    KEY_COLUMNS,
    OPEN,
    PART_COLUMNS,
    SCHEMA_VERSION,
    key_record,
    part_record,
)

T = TypeVar("T")


def _not_none(result: Any) -> bool:
    return result is not None


def _true(result: Any) -> bool:
    return result is True


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
        return await self._read(_plans.schema_version(self.DIALECT))

    async def ping(self) -> None:
        await self._read(_plans.ping())

    async def migrate(self, to: int = SCHEMA_VERSION) -> int:
        """Create or upgrade the schema, in one transaction (up to version `to`, tests step
        through them); returns the version now in place."""
        return await self._write(_plans.migrate(self.DIALECT, to))

    async def row_counts(self) -> dict[str, int]:
        """How many rows each table of the schema in place holds (no schema: none)."""
        return await self._read(_plans.row_counts(self.DIALECT))

    # -- keys --
    async def add_api_key(self, record: KeyRecord, *, audit: Audit[None] | None = None) -> None:
        await self._write(audited(_admin_plans.add_api_key(self.DIALECT, record), audit))

    async def add_first_api_key(
        self, record: KeyRecord, *, audit: Audit[bool] | None = None
    ) -> bool:
        plan = _plans.add_first_key(self.DIALECT, record)
        return await self._write(audited(plan, audit, _true))

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        row = await self._read(
            _plans.single(
                f"SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", (key_hash,), "one"
            )
        )
        return None if row is None else key_record(row)

    async def get_api_key(self, key_id: str) -> KeyRecord | None:
        row = await self._read(
            _plans.single(f"SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?", (key_id,), "one")
        )
        return None if row is None else key_record(row)

    async def list_api_keys(self) -> list[KeyRecord]:
        sql = f"SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_at, id"
        return _plans.key_records(await self._read(_plans.single(sql, (), "all")))

    async def revoke_api_key(
        self, key_id: str, now: int, *, audit: Audit[bool] | None = None
    ) -> bool:
        sql = "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
        return await self._write(audited(_revoked(sql, key_id, now), audit, _true))

    # -- projects, service accounts, admin keys (the Administration API) --
    async def create_project(
        self, record: ProjectRecord, limit: int = 0, *, audit: Audit[None] | None = None
    ) -> None:
        await self._write(audited(_admin_plans.create_project(self.DIALECT, record, limit), audit))

    async def get_project(self, org_id: str, project_id: str) -> ProjectRecord | None:
        return await self._read(_admin_plans.get_project(org_id, project_id))

    async def list_projects(
        self, org_id: str, *, after: str | None, limit: int, include_archived: bool
    ) -> tuple[list[ProjectRecord], bool]:
        return await self._read(_admin_plans.list_projects(org_id, after, limit, include_archived))

    async def rename_project(
        self,
        org_id: str,
        project_id: str,
        name: str,
        *,
        audit: Audit[ProjectRecord | None] | None = None,
    ) -> ProjectRecord | None:
        plan = _admin_plans.rename_project(self.DIALECT, org_id, project_id, name)
        return await self._write(audited(plan, audit, _not_none))

    async def archive_project(
        self,
        org_id: str,
        project_id: str,
        now: int,
        *,
        audit: Audit[tuple[ProjectRecord, list[KeyRecord]] | None] | None = None,
    ) -> tuple[ProjectRecord, list[KeyRecord]] | None:
        return await self._write(
            _admin_plans.archive_project(self.DIALECT, org_id, project_id, now, audit)
        )

    async def list_project_keys(
        self, owner: Owner, *, after: str | None, limit: int
    ) -> tuple[list[tuple[KeyRecord, ServiceAccountRecord | None]], bool]:
        return await self._read(_admin_plans.list_project_keys(owner, after, limit))

    async def get_project_key(
        self, owner: Owner, key_id: str
    ) -> tuple[KeyRecord, ServiceAccountRecord | None] | None:
        return await self._read(_admin_plans.get_project_key(owner, key_id))

    async def create_service_account(
        self,
        account: ServiceAccountRecord,
        key: KeyRecord | None,
        limit: int = 0,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        plan = _admin_plans.create_service_account(self.DIALECT, account, key, limit)
        await self._write(audited(plan, audit))

    async def get_service_account(
        self, owner: Owner, account_id: str
    ) -> ServiceAccountRecord | None:
        return await self._read(_admin_plans.get_service_account(owner, account_id))

    async def list_service_accounts(
        self, owner: Owner, *, after: str | None, limit: int
    ) -> tuple[list[ServiceAccountRecord], bool]:
        return await self._read(_admin_plans.list_service_accounts(owner, after, limit))

    async def delete_service_account(
        self,
        owner: Owner,
        account_id: str,
        now: int,
        *,
        audit: Audit[tuple[ServiceAccountRecord, list[KeyRecord]] | None] | None = None,
    ) -> tuple[ServiceAccountRecord, list[KeyRecord]] | None:
        plan = _admin_plans.delete_service_account(self.DIALECT, owner, account_id, now)
        return await self._write(audited(plan, audit, _not_none))

    async def add_admin_key(
        self, record: AdminKeyRecord, limit: int = 0, *, audit: Audit[None] | None = None
    ) -> None:
        await self._write(audited(_admin_plans.add_admin_key(self.DIALECT, record, limit), audit))

    async def find_admin_key(self, key_hash: str) -> AdminKeyRecord | None:
        return await self._read(_admin_plans.find_admin_key("key_hash", key_hash))

    async def get_admin_key(self, key_id: str) -> AdminKeyRecord | None:
        return await self._read(_admin_plans.find_admin_key("id", key_id))

    async def list_admin_keys(
        self, org_id: str, *, after: str | None, limit: int, order: Order
    ) -> tuple[list[AdminKeyRecord], bool]:
        return await self._read(_admin_plans.list_admin_keys(org_id, after, limit, order))

    async def list_all_admin_keys(self) -> list[AdminKeyRecord]:
        return await self._read(_admin_plans.list_all_admin_keys())

    async def revoke_admin_key(
        self, key_id: str, now: int, *, audit: Audit[bool] | None = None
    ) -> bool:
        sql = "UPDATE admin_api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL"
        return await self._write(audited(_revoked(sql, key_id, now), audit, _true))

    # -- the audit log --
    async def add_audit_logs(self, events: Sequence[AuditRecord]) -> None:
        await self._write(_audit_plans.insert_events(events))

    async def list_audit_logs(
        self, org_id: str, query: AuditQuery
    ) -> tuple[list[tuple[AuditRecord, str | None]], bool]:
        return await self._read(_audit_plans.list_audit_logs(self.DIALECT, org_id, query))

    async def purge_audit_logs(self, before: int, limit: int) -> int:
        return await self._write(_audit_plans.purge_audit_logs(before, limit))

    # -- quota --
    async def reserve(self, *args: Any, **kwargs: Any) -> None:
        # The arguments are MetadataStore.reserve's, passed on as given to the plan.
        await self._write(_plans.reserve(self.DIALECT, *args, **kwargs))

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        sql = "UPDATE reservations SET expires_at = ? WHERE id = ?"
        await self._write(_plans.single(sql, (expires_at, reservation_id), "none"))

    async def release(self, reservation_id: str) -> None:
        await self._write(
            _plans.single("DELETE FROM reservations WHERE id = ?", (reservation_id,), "none")
        )

    async def usage(self, org_id: str) -> int:
        sql = "SELECT used_bytes FROM org_usage WHERE org_id = ?"
        return int(await self._read(_plans.single(sql, (org_id,), "value")) or 0)

    async def committed_bytes(self, org_id: str, now: int) -> int:
        # One statement: one snapshot of the three sums (as `committed_locked` counts, unlocked).
        sql = (
            "SELECT COALESCE((SELECT used_bytes FROM org_usage WHERE org_id = ?), 0) "
            "- (SELECT COALESCE(SUM(bytes), 0) FROM files "
            "WHERE org_id = ? AND expires_at IS NOT NULL AND expires_at <= ?) "
            "+ (SELECT COALESCE(SUM(bytes), 0) FROM reservations "
            "WHERE org_id = ? AND expires_at > ?)"
        )
        args = (org_id, org_id, now, org_id, now)
        return int(await self._read(_plans.single(sql, args, "value")) or 0)

    async def server_secret(self, name: str, candidate: str, now: int) -> str:
        return await self._write(_plans.server_secret(name, candidate, now))

    async def purge_reservations(self, now: int | None) -> None:
        if now is None:
            # Not those of uploads still pending or completing: an upload holds its
            # reservation for its hour, across restarts.
            sql = (
                "DELETE FROM reservations WHERE id NOT IN "
                "(SELECT id FROM uploads WHERE status IN ('pending', 'completing'))"
            )
            await self._write(_plans.single(sql, (), "none"))
        else:
            sql = "DELETE FROM reservations WHERE expires_at <= ?"
            await self._write(_plans.single(sql, (now,), "none"))

    # -- files --
    async def insert_file(
        self,
        record: FileRecord,
        reservation_id: str | None,
        quota: int,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        plan = _plans.insert_file(self.DIALECT, record, reservation_id, quota)
        await self._write(audited(plan, audit))

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        return await self._read(_plans.get_file(owner, file_id, now))

    async def list_files(self, owner: Owner, **page: Any) -> tuple[list[FileRecord], bool]:
        # The page's terms are MetadataStore.list_files's, passed on by name to the plan.
        return await self._read(_plans.list_files(owner, **page))

    async def delete_file(
        self,
        owner: Owner,
        file_id: str,
        now: int,
        *,
        audit: Audit[FileRecord | None] | None = None,
    ) -> FileRecord | None:
        plan = _plans.delete_file(self.DIALECT, owner, file_id, now)
        return await self._write(audited(plan, audit, _not_none))

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        return await self._write(_plans.pop_expired(self.DIALECT, now, limit))

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        return await self._read(_plans.named_blob_keys(self.DIALECT, keys))

    # -- uploads --
    async def insert_upload(self, record: UploadRecord) -> None:
        await self._write(_upload_plans.insert_upload(record))

    async def open_upload(
        self, record: UploadRecord, *, audit: Audit[None] | None = None, **limits: int
    ) -> None:
        # The limits are MetadataStore.open_upload's, passed on by name to the plan.
        await self._write(audited(_upload_plans.open_upload(self.DIALECT, record, **limits), audit))

    async def get_upload(self, owner: Owner, upload_id: str) -> UploadRecord | None:
        return await self._read(_upload_plans.get_upload(owner, upload_id))

    async def list_uploads(
        self, owner: Owner, status: str | None, limit: int
    ) -> list[UploadRecord]:
        return await self._read(_upload_plans.list_uploads(owner, status, limit))

    async def count_pending_uploads(self, owner: Owner, now: int) -> int:
        sql = (
            f"SELECT COUNT(*) FROM uploads WHERE org_id = ? AND project_id = ? AND {OPEN} "
            "AND expires_at > ?"
        )
        args = (owner.org_id, owner.project_id, now)
        return int(await self._read(_plans.single(sql, args, "value")) or 0)

    async def add_part(self, owner: Owner, part: PartRecord, now: int) -> UploadRecord:
        return await self._write(_upload_plans.add_part(self.DIALECT, owner, part, now))

    async def parts_total(self, upload_id: str) -> tuple[int, int]:
        return await self._read(_upload_plans.part_totals(upload_id))

    async def list_parts(self, upload_id: str) -> list[PartRecord]:
        sql = f"SELECT {PART_COLUMNS} FROM upload_parts WHERE upload_id = ? ORDER BY seq"
        return [part_record(r) for r in await self._read(_plans.single(sql, (upload_id,), "all"))]

    async def begin_completion(
        self, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
    ) -> UploadRecord:
        return await self._write(
            _upload_plans.begin_completion(self.DIALECT, owner, upload_id, now, stale_before)
        )

    async def finish_completion(
        self,
        upload_id: str,
        file: FileRecord,
        quota: int,
        since: int | None = None,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        plan = _upload_plans.finish_completion(self.DIALECT, upload_id, file, quota, since)
        await self._write(audited(plan, audit))

    async def renew_completion(self, upload_id: str, since: int, now: int) -> bool:
        sql = (
            "UPDATE uploads SET completing_since = ? "
            "WHERE id = ? AND status = 'completing' AND completing_since = ?"
        )
        return bool(await self._write(_plans.single(sql, (now, upload_id, since), "count")))

    async def abort_completion(self, upload_id: str, since: int | None = None) -> bool:
        sql = (
            "UPDATE uploads SET status = 'pending', completing_since = NULL "
            "WHERE id = ? AND status = 'completing'"
        )
        args: tuple[Any, ...] = (upload_id,)
        if since is not None:
            sql += " AND completing_since = ?"
            args += (since,)
        return bool(await self._write(_plans.single(sql, args, "count")))

    async def cancel_upload(
        self,
        owner: Owner,
        upload_id: str,
        now: int,
        stale_before: int | None = None,
        *,
        audit: Audit[tuple[UploadRecord, list[str]]] | None = None,
    ) -> tuple[UploadRecord, list[str]]:
        plan = _upload_plans.cancel_upload(self.DIALECT, owner, upload_id, now, stale_before)
        return await self._write(audited(plan, audit))

    async def reopen_completions(self, stale_before: int | None, limit: int) -> list[UploadRecord]:
        return await self._write(
            _upload_plans.reopen_completions(self.DIALECT, stale_before, limit)
        )

    async def pop_expired_uploads(
        self, now: int, limit: int
    ) -> list[tuple[UploadRecord, list[str]]]:
        return await self._write(_upload_plans.pop_expired_uploads(self.DIALECT, now, limit))

    async def purge_uploads(self, expired_before: int, limit: int) -> int:
        return await self._write(_upload_plans.purge_uploads(self.DIALECT, expired_before, limit))

    # -- batches --
    async def create_batch(
        self, record: BatchRecord, now: int, max_active: int, *, audit: Audit[None] | None = None
    ) -> None:
        plan = _batch_plans.create_batch(self.DIALECT, record, now, max_active)
        await self._write(audited(plan, audit))

    async def get_batch(self, owner: Owner, batch_id: str) -> BatchRecord | None:
        return await self._read(_batch_plans.get_batch(owner, batch_id))

    async def list_batches(
        self, owner: Owner, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        return await self._read(_batch_plans.list_batches(owner, after, limit))

    async def cancel_batch(
        self,
        owner: Owner,
        batch_id: str,
        now: int,
        *,
        audit: Audit[BatchRecord | None] | None = None,
    ) -> BatchRecord | None:
        return await self._write(
            _batch_plans.cancel_batch(self.DIALECT, owner, batch_id, now, audit)
        )

    async def active_batches(self, limit: int) -> list[BatchRecord]:
        return await self._read(_batch_plans.active_batches(limit))

    async def batch_counts(self) -> dict[str, int]:
        return await self._read(_batch_plans.batch_counts())

    async def lease_batch(
        self, batch_id: str, worker: str, now: int, until: int, statuses: Sequence[str]
    ) -> BatchRecord | None:
        return await self._write(
            _batch_plans.lease_batch(self.DIALECT, batch_id, worker, now, until, statuses)
        )

    async def update_batch(
        self,
        batch_id: str,
        worker: str,
        statuses: Sequence[str] | None,
        changes: Mapping[str, Any],
    ) -> BatchRecord:
        return await self._write(
            _batch_plans.update_batch(self.DIALECT, batch_id, worker, statuses, changes)
        )

    async def add_batch_requests(
        self, batch_id: str, worker: str, rows: Sequence[BatchRequestRecord]
    ) -> None:
        await self._write(_batch_plans.add_batch_requests(self.DIALECT, batch_id, worker, rows))

    async def clear_batch_requests(self, batch_id: str, worker: str) -> None:
        await self._write(_batch_plans.clear_batch_requests(self.DIALECT, batch_id, worker))

    async def claim_batch_requests(
        self, batch_id: str, worker: str, now: int, until: int, limit: int
    ) -> list[BatchRequestRecord]:
        return await self._write(
            _batch_plans.claim_batch_requests(self.DIALECT, batch_id, worker, now, until, limit)
        )

    async def renew_batch_leases(self, worker: str, until: int) -> int:
        return await self._write(_batch_plans.renew_leases(self.DIALECT, worker, until))

    async def release_batch_requests(
        self, worker: str, batch_id: str | None = None, lines: Sequence[int] | None = None
    ) -> int:
        return await self._write(
            _batch_plans.release_batch_requests(self.DIALECT, worker, batch_id, lines)
        )

    async def record_batch_results(self, worker: str, results: Sequence[BatchResult]) -> list[bool]:
        return await self._write(_batch_plans.record_batch_results(self.DIALECT, worker, results))

    async def running_batch_requests(self, batch_id: str, now: int) -> int:
        return await self._read(_batch_plans.running_requests(batch_id, now))

    async def batch_request_page(
        self, batch_id: str, after_line: int, limit: int, max_bytes: int | None = None
    ) -> list[BatchRequestRecord]:
        return await self._read(
            _batch_plans.batch_request_page(batch_id, after_line, limit, max_bytes)
        )

    async def finish_batch(
        self,
        batch_id: str,
        worker: str,
        statuses: Sequence[str],
        files: Sequence[FileRecord],
        changes: Mapping[str, Any],
    ) -> BatchRecord:
        return await self._write(
            _batch_plans.finish_batch(self.DIALECT, batch_id, worker, statuses, files, changes)
        )


def _revoked(sql: str, key_id: str, now: int) -> Plan[bool]:
    """A key's revocation: whether this call revoked it."""
    changed = yield from _plans.single(sql, (now, key_id), "count")
    return bool(changed == 1)
