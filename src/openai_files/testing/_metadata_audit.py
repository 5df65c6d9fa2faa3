"""The metadata store contract for the audit log, as tests: events written in the
transaction of their change (and only when it changes something), an organization's
listing with its filters and paging, and the retention's removal of old events.

Each test makes organizations of its own, so that what it lists is its own events.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable
from typing import Any

import pytest

from ..server.ids import new_sorted_id
from ..server.stores import AuditQuery, AuditRecord, MetadataStore
from ._records import (
    QUOTA,
    file_row,
    key_row,
    new_owner,
    project_row,
    service_account_row,
    start_batch,
    upload_row,
)


def audit_row(
    org_id: str, kind: str = "file.created", *, at: int | None = None, n: int = 0, **kw: Any
) -> AuditRecord:
    """An event of the organization at `at` (now), its id sorted as that time (+`n` ms), its
    object `{"id": resource_id}`."""
    at = int(time.time()) if at is None else at
    resource_id = kw.pop("resource_id", None) or "file-" + secrets.token_hex(6)
    values: dict[str, Any] = {
        "id": new_sorted_id("audit_log-", at * 1000 + n),
        "org_id": org_id,
        "type": kind,
        "effective_at": at,
        "project_id": None,
        "actor_id": None,
        "actor_service_account_id": None,
        "resource_id": resource_id,
        "details": json.dumps({"id": resource_id}),
    }
    values.update(kw)
    return AuditRecord(**values)


class Boom(Exception):
    """An `audit` that fails: its change must not happen."""


def boom(result: object) -> Iterable[AuditRecord]:
    raise Boom


def recorder(*events: AuditRecord) -> Any:
    """An `audit` that records `events`, and counts its calls (`.calls`)."""

    def audit(result: object) -> Iterable[AuditRecord]:
        audit.calls += 1  # type: ignore[attr-defined]
        return events

    audit.calls = 0  # type: ignore[attr-defined]
    return audit


async def listed(meta: MetadataStore, org_id: str, **query: Any) -> list[AuditRecord]:
    """Every event of the organization the query asks for, newest first, page by page."""
    out: list[AuditRecord] = []
    query.setdefault("limit", 100)
    while True:
        page, more = await meta.list_audit_logs(org_id, AuditQuery(**query))
        out += [event for event, _ in page]
        if not more:
            return out
        query["after"] = page[-1][0].id


@pytest.mark.anyio
class AuditConformance:
    """The audit log's rows. Provide `meta`."""

    # -- written with the change, or not at all --

    async def test_each_change_writes_its_events_in_its_transaction(
        self, meta: MetadataStore
    ) -> None:
        owner, now = new_owner(), int(time.time())
        org = owner.org_id
        file = file_row(owner, created_at=now)
        made = audit_row(org, resource_id=file.id)
        await meta.insert_file(file, None, QUOTA, audit=recorder(made))
        assert await listed(meta, org) == [made]
        deleted = audit_row(org, "file.deleted", n=1, resource_id=file.id)
        await meta.delete_file(owner, file.id, now, audit=lambda r: [deleted] if r else [])
        assert await listed(meta, org) == [deleted, made]

    async def test_a_call_that_changes_nothing_writes_no_event(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        org = owner.org_id
        # A file gone already; a key revoked already; a project archived already; a batch
        # asked to cancel twice: the second call of each records nothing.
        missing = recorder(audit_row(org))
        assert await meta.delete_file(owner, "file-" + "0" * 24, now, audit=missing) is None
        assert missing.calls == 0
        key = key_row(owner=owner)
        await meta.add_api_key(key)
        revokes = recorder(audit_row(org, "api_key.deleted"))
        assert await meta.revoke_api_key(key.id, now, audit=revokes)
        assert not await meta.revoke_api_key(key.id, now, audit=revokes)
        assert revokes.calls == 1
        project = project_row(org)
        await meta.create_project(project)
        archives = recorder(audit_row(org, "project.archived"))
        assert await meta.archive_project(org, project.id, now, audit=archives) is not None
        assert await meta.archive_project(org, project.id, now, audit=archives) is not None
        assert archives.calls == 1
        assert await meta.rename_project(org, "proj_none", "x", audit=archives) is None
        batch = await start_batch(meta, owner, now=now)
        cancels = recorder(audit_row(org, "batch.cancelled"))
        for _ in range(2):
            assert await meta.cancel_batch(owner, batch.id, now, audit=cancels) is not None
        assert cancels.calls == 1
        gone = recorder(audit_row(org, "service_account.deleted"))
        assert await meta.delete_service_account(owner, "svc_acct_x", now, audit=gone) is None
        assert gone.calls == 0
        assert len(await listed(meta, org)) == 3

    async def test_an_audit_that_fails_undoes_its_change(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        org = owner.org_id
        file = file_row(owner, created_at=now, nbytes=100)
        with pytest.raises(Boom):
            await meta.insert_file(file, None, QUOTA, audit=boom)
        assert await meta.get_file(owner, file.id, now) is None
        assert await meta.usage(org) == 0
        await meta.insert_file(file, None, QUOTA)
        with pytest.raises(Boom):
            await meta.delete_file(owner, file.id, now, audit=boom)
        assert await meta.get_file(owner, file.id, now) == file
        assert await meta.usage(org) == 100

        key = key_row(owner=owner)
        with pytest.raises(Boom):
            await meta.add_api_key(key, audit=boom)
        assert await meta.get_api_key(key.id) is None
        await meta.add_api_key(key)
        project = await meta.get_project(org, owner.project_id)
        assert project is not None
        with pytest.raises(Boom):
            await meta.archive_project(org, project.id, now, audit=boom)
        assert (await meta.get_project(org, project.id)) == project
        found = await meta.get_api_key(key.id)
        assert found is not None and found.revoked_at is None
        account = service_account_row(project)
        with pytest.raises(Boom):
            await meta.create_service_account(account, None, audit=boom)
        assert await meta.get_service_account(owner, account.id) is None

        upload = upload_row(owner, now=now)
        limits = {"quota": QUOTA, "max_pending": 10, "max_pending_bytes": QUOTA}
        with pytest.raises(Boom):
            await meta.open_upload(upload, reserved_until=now + 60, audit=boom, **limits)
        assert await meta.get_upload(owner, upload.id) is None
        assert await meta.committed_bytes(org, now) == 100
        batch = await start_batch(meta, owner, now=now)
        with pytest.raises(Boom):
            await meta.cancel_batch(owner, batch.id, now, audit=boom)
        found_batch = await meta.get_batch(owner, batch.id)
        assert found_batch is not None and found_batch.status == "validating"
        assert await listed(meta, org) == []

    async def test_events_alone(self, meta: MetadataStore) -> None:
        org = new_owner().org_id
        events = [audit_row(org, "file.downloaded", n=i) for i in range(3)]
        await meta.add_audit_logs(events)
        assert await listed(meta, org) == events[::-1]
        # A duplicate id stores nothing of its batch.
        again = [audit_row(org, n=9), events[0]]
        with pytest.raises(Exception):  # noqa: B017 - the driver's integrity error
            await meta.add_audit_logs(again)
        assert await listed(meta, org) == events[::-1]

    # -- the listing --

    async def test_filters_and_the_project_name(self, meta: MetadataStore) -> None:
        project = project_row()
        org = project.org_id
        await meta.create_project(project)
        at = int(time.time()) - 100
        events = [
            audit_row(org, "project.created", at=at, project_id=project.id, resource_id=project.id),
            audit_row(org, "file.created", at=at + 1, project_id=project.id, actor_id="key_a"),
            audit_row(
                org,
                "file.created",
                at=at + 2,
                project_id="proj_gone",
                actor_id="key_b",
                actor_service_account_id="svc_acct_b",
            ),
            audit_row(org, "api_key.created", at=at + 3, resource_id="key_b"),
            audit_row(org, "file.deleted", at=at + 4, project_id=project.id, actor_id="key_b"),
        ]
        await meta.add_audit_logs(events)
        # Another organization's events, alike, are never listed.
        stranger = [audit_row("org-" + secrets.token_hex(4), "file.created", at=at + 1)]
        await meta.add_audit_logs(stranger)

        def ids(chosen: Iterable[int]) -> list[str]:
            return [events[i].id for i in sorted(chosen, reverse=True)]

        async def found(**query: Any) -> list[str]:
            return [e.id for e in await listed(meta, org, **query)]

        assert await found() == ids(range(5))
        assert await found(types=("file.created",)) == ids([1, 2])
        assert await found(types=("file.created", "file.deleted")) == ids([1, 2, 4])
        assert await found(project_ids=(project.id,)) == ids([0, 1, 4])
        assert await found(actor_ids=("key_b",)) == ids([2, 4])
        assert await found(actor_ids=("svc_acct_b",)) == ids([2])
        assert await found(actor_ids=("key_a", "svc_acct_b")) == ids([1, 2])
        assert await found(resource_ids=("key_b", project.id)) == ids([0, 3])
        assert await found(types=("file.created",), actor_ids=("key_b",)) == ids([2])
        assert await found(since=at + 1, until=at + 3) == ids([1, 2, 3])
        assert await found(since=at + 5) == []
        assert await found(until=at - 1) == []
        assert await found(types=("login.succeeded",)) == []
        # Each event with its project's name (None: no project, or no row of that id).
        page, _ = await meta.list_audit_logs(org, AuditQuery(limit=10))
        names = {event.id: name for event, name in page}
        assert names[events[0].id] == project.name
        assert names[events[2].id] is None and names[events[3].id] is None
        # As stored, every field.
        assert page[-1][0] == events[0]

    async def test_paging(self, meta: MetadataStore) -> None:
        org = new_owner().org_id
        at = int(time.time()) - 50
        events = [audit_row(org, at=at + i // 3, n=i) for i in range(10)]
        await meta.add_audit_logs(events[::2])
        await meta.add_audit_logs(events[1::2])
        newest_first = [e.id for e in reversed(events)]

        async def page(**query: Any) -> tuple[list[str], bool]:
            rows, more = await meta.list_audit_logs(org, AuditQuery(**query))
            return [e.id for e, _ in rows], more

        assert await page(limit=4) == (newest_first[:4], True)
        assert await page(limit=4, after=newest_first[3]) == (newest_first[4:8], True)
        assert await page(limit=4, after=newest_first[7]) == (newest_first[8:], False)
        assert await page(limit=10) == (newest_first, False)
        # Back: the `limit` just newer than `before`, newest first; more newer ones?
        assert await page(limit=3, before=newest_first[9]) == (newest_first[6:9], True)
        assert await page(limit=3, before=newest_first[3]) == (newest_first[:3], False)
        assert await page(limit=3, after=newest_first[1], before=newest_first[6]) == (
            newest_first[2:5],
            True,
        )
        # A cursor is a position: one that names no event (removed since) still pages.
        gone = new_sorted_id("audit_log-", (at + 2) * 1000 + 500)
        assert await page(limit=10, after=gone) == (
            [i for i in newest_first if i < gone],
            False,
        )

    # -- retention --

    async def test_purge_removes_old_events_only_a_batch_at_a_time(
        self, meta: MetadataStore
    ) -> None:
        owner = new_owner()
        now = int(time.time())
        # Old events of this organization (and, for all we know, of the other tests' ones).
        old = [audit_row(owner.org_id, at=now - 1000 - i) for i in range(5)]
        young = [audit_row(owner.org_id, at=now - 10, n=i) for i in range(2)]
        await meta.add_audit_logs([*old, *young])
        removed = 0
        while count := await meta.purge_audit_logs(now - 500, 2):
            assert count <= 2
            removed += count
        assert removed >= len(old)
        assert await listed(meta, owner.org_id) == young[::-1]
        assert await meta.purge_audit_logs(now - 500, 2) == 0
