"""The metadata store contract for backups and restores (`snapshot`, `load`, `row_counts`),
as tests: subclass and provide `meta` (opened, migrated, rows of other tests allowed) and
`empty_meta` (opened, migrated, holding no row)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ..server.stores import AuditQuery, MetadataStore, Owner, SchemaMismatch, StoreNotEmpty
from ..server.stores._sql_schema import SCHEMA_VERSION, tables_at
from ._metadata_audit import audit_row
from ._records import (
    QUOTA,
    admin_key_row,
    key_row,
    new_owner,
    part_row,
    project_row,
    running_batch,
    service_account_row,
    start_upload,
)


async def _some_of_everything(meta: MetadataStore) -> dict[str, str]:
    """A key, a file, an upload with a part, a running batch with requests, a secret, a
    project with a service account and its key, an admin key and its audit log event: the
    ids of each, by table."""
    owner, now = new_owner(), int(time.time())
    key = key_row()
    await meta.add_api_key(key)
    upload = await start_upload(meta, owner, now=now, nbytes=100)
    part = part_row(upload, now=now, nbytes=10)
    await meta.add_part(owner, part, now)
    batch = await running_batch(meta, owner, now=now, lines=3, worker="worker-copy")
    await meta.server_secret("copy-test", "s3cret", now)
    project = project_row(owner.org_id)
    await meta.create_project(project)
    account = service_account_row(project)
    account_key = key_row(None, Owner(project.org_id, project.id), service_account_id=account.id)
    await meta.create_service_account(account, account_key)
    admin = admin_key_row(owner.org_id)
    event = audit_row(owner.org_id, "api_key.created", resource_id=admin.id)
    await meta.add_admin_key(admin, audit=lambda _: [event])
    return {
        "api_keys": key.id,
        "files": batch.input_file_id,
        "uploads": upload.id,
        "upload_parts": part.id,
        "batches": batch.id,
        "projects": project.id,
        "service_accounts": account.id,
        "admin_api_keys": admin.id,
        "audit_logs": event.id,
    }


def _ids(path: Path, table: str) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        column = "batch_id" if table == "batch_requests" else "id"
        return {row[0] for row in conn.execute(f"SELECT {column} FROM {table}")}
    finally:
        conn.close()


@pytest.mark.anyio
class MetadataCopyConformance:
    """Every table out as one SQLite file, and back into an empty store in one transaction.
    Provide `meta` and `empty_meta`."""

    async def test_a_snapshot_holds_every_table(self, meta: MetadataStore, tmp_path: Path) -> None:
        ids = await _some_of_everything(meta)
        copy = tmp_path / "copy.sqlite3"
        assert await meta.snapshot(copy) == SCHEMA_VERSION
        conn = sqlite3.connect(copy)
        try:
            found = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            tables = {row[0] for row in found}
            # One file: the copy is not left in write-ahead-log mode (no -wal beside it).
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        finally:
            conn.close()
        assert tables == {*tables_at(SCHEMA_VERSION), "schema_version"}
        for table, row_id in ids.items():
            assert row_id in _ids(copy, table), table
        assert ids["batches"] in _ids(copy, "batch_requests")
        counts = await meta.row_counts()
        assert set(counts) == set(tables_at(SCHEMA_VERSION))
        assert all(counts[table] >= 1 for table in ids)

    async def test_a_snapshot_never_overwrites(self, meta: MetadataStore, tmp_path: Path) -> None:
        copy = tmp_path / "copy.sqlite3"
        copy.write_bytes(b"mine")
        with pytest.raises(FileExistsError):
            await meta.snapshot(copy)
        assert copy.read_bytes() == b"mine"

    async def test_load_fills_an_empty_store(
        self, meta: MetadataStore, empty_meta: MetadataStore, tmp_path: Path
    ) -> None:
        ids = await _some_of_everything(meta)
        copy = tmp_path / "copy.sqlite3"
        await meta.snapshot(copy)
        assert set((await empty_meta.row_counts()).values()) == {0}
        loaded = await empty_meta.load(copy)
        assert loaded == await empty_meta.row_counts() == await meta.row_counts()
        keys = {k.id: k for k in await meta.list_api_keys()}
        assert {k.id: k for k in await empty_meta.list_api_keys()} == keys
        assert await empty_meta.list_all_admin_keys() == await meta.list_all_admin_keys()
        admin = await empty_meta.get_admin_key(ids["admin_api_keys"])
        assert admin is not None
        project = await empty_meta.get_project(admin.org_id, ids["projects"])
        assert project == await meta.get_project(admin.org_id, ids["projects"])
        owner = Owner(admin.org_id, ids["projects"])
        assert await empty_meta.get_service_account(owner, ids["service_accounts"]) is not None
        assert ids["upload_parts"] in {p.id for p in await empty_meta.list_parts(ids["uploads"])}
        assert ids["batches"] in {b.id for b in await empty_meta.active_batches(1000)}
        assert await empty_meta.server_secret("copy-test", "other", 0) == "s3cret"
        events = await empty_meta.list_audit_logs(admin.org_id, AuditQuery(limit=10))
        assert events == await meta.list_audit_logs(admin.org_id, AuditQuery(limit=10))
        assert [e.id for e, _ in events[0]] == [ids["audit_logs"]]
        # The rows are the store's own from now on: written and read as any.
        owner = new_owner()
        upload = await start_upload(empty_meta, owner, now=int(time.time()))
        assert await empty_meta.parts_total(upload.id) == (0, 0)
        assert await empty_meta.committed_bytes(owner.org_id, int(time.time())) <= QUOTA

    async def test_load_refuses_a_store_that_holds_a_row(
        self, meta: MetadataStore, empty_meta: MetadataStore, tmp_path: Path
    ) -> None:
        await _some_of_everything(meta)
        copy = tmp_path / "copy.sqlite3"
        await meta.snapshot(copy)
        await empty_meta.add_api_key(key_row())
        with pytest.raises(StoreNotEmpty) as refused:
            await empty_meta.load(copy)
        assert (refused.value.table, refused.value.rows) == ("api_keys", 1)
        counts = await empty_meta.row_counts()
        assert counts["api_keys"] == counts["projects"] == 1  # the key made its project
        assert sum(counts.values()) == 2

    async def test_load_is_all_or_nothing(
        self, meta: MetadataStore, empty_meta: MetadataStore, tmp_path: Path
    ) -> None:
        await _some_of_everything(meta)
        copy = tmp_path / "copy.sqlite3"
        await meta.snapshot(copy)
        # The copy's batch requests take a row that the store refuses (its key twice):
        # every table before them was loaded in the same transaction, and is rolled back.
        last = "batch_requests"
        conn = sqlite3.connect(copy)
        try:
            conn.execute(f"CREATE TABLE loose AS SELECT * FROM {last}")
            conn.execute(f"DROP TABLE {last}")
            conn.execute(f"ALTER TABLE loose RENAME TO {last}")
            conn.execute(f"INSERT INTO {last} SELECT * FROM {last}")
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(Exception) as failed:
            await empty_meta.load(copy)
        assert not isinstance(failed.value, StoreNotEmpty)
        assert set((await empty_meta.row_counts()).values()) == {0}

    async def test_load_needs_this_codes_schema_version(
        self, meta: MetadataStore, empty_meta: MetadataStore, tmp_path: Path
    ) -> None:
        copy = tmp_path / "copy.sqlite3"
        await meta.snapshot(copy)
        conn = sqlite3.connect(copy)
        try:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
            conn.commit()
        finally:
            conn.close()
        with pytest.raises(SchemaMismatch, match="migrate it first"):
            await empty_meta.load(copy)
