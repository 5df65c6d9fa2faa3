"""The metadata store contract for OpenAI's Administration API, as tests: projects, their
service accounts and keys, and admin keys.

Each test makes organizations of its own (the suites may share one database between
tests), so that what it lists is its own rows.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest

from ..server.stores import (
    CursorNotFound,
    KeyRecord,
    LimitReached,
    MetadataStore,
    Owner,
    ProjectArchived,
    ProjectNotFound,
    ProjectRecord,
)
from ._records import (
    admin_key_row,
    key_row,
    part_row,
    project_row,
    running_batch,
    service_account_row,
    start_batch,
    start_upload,
)


def owner_of(project: ProjectRecord) -> Owner:
    return Owner(project.org_id, project.id)


async def refused(call: Awaitable[object]) -> bool:
    """Whether awaiting `call` raised (a driver's integrity error, whatever its class)."""
    try:
        await call
    except Exception:
        return True
    return False


@pytest.mark.anyio
class AdminRowsConformance:
    """Projects, service accounts, project keys with their owners, admin keys. Provide
    `meta`."""

    # -- projects --

    async def test_projects_are_stored_read_and_private(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        assert await meta.get_project(project.org_id, project.id) == project
        # The same id in another organization is another project (ids are per organization).
        twin = dataclasses.replace(project, org_id="org-" + secrets.token_hex(4), name="twin")
        assert await meta.get_project(twin.org_id, twin.id) is None
        await meta.create_project(twin)
        assert await meta.get_project(twin.org_id, twin.id) == twin
        assert await meta.get_project(project.org_id, project.id) == project
        page = await meta.list_projects(twin.org_id, after=None, limit=10, include_archived=True)
        assert page == ([twin], False)
        with pytest.raises(CursorNotFound):
            await meta.list_projects(
                twin.org_id, after="proj_nope", limit=10, include_archived=True
            )
        assert await refused(meta.create_project(dataclasses.replace(project, name="again")))
        assert await meta.get_project(project.org_id, project.id) == project

    async def test_projects_page_in_creation_order(self, meta: MetadataStore) -> None:
        org, base = "org-" + secrets.token_hex(4), int(time.time()) - 100
        # Five in one second and two before: ordered by (created_at, id).
        made = [project_row(org, created_at=base + 1) for _ in range(5)]
        made += [project_row(org, created_at=base) for _ in range(2)]
        for project in made:
            await meta.create_project(project)
        expected = sorted(made, key=lambda p: (p.created_at, p.id))
        seen, after = [], None
        while True:
            page, more = await meta.list_projects(org, after=after, limit=3, include_archived=False)
            seen.extend(page)
            if not more:
                break
            after = page[-1].id
        assert seen == expected
        # Archived projects are left out unless asked for; paging goes on from one.
        archived = expected[2]
        result = await meta.archive_project(org, archived.id, base + 50)
        assert result is not None
        listed, more = await meta.list_projects(org, after=None, limit=10, include_archived=False)
        assert archived.id not in [p.id for p in listed] and not more
        listed, _ = await meta.list_projects(org, after=None, limit=10, include_archived=True)
        assert [p.id for p in listed] == [p.id for p in expected]
        assert listed[2].archived_at == base + 50
        rest, _ = await meta.list_projects(org, after=archived.id, limit=10, include_archived=False)
        assert rest == expected[3:]

    async def test_a_key_makes_its_project(self, meta: MetadataStore) -> None:
        owner, now = Owner("org-" + secrets.token_hex(4), "proj_cli_" + secrets.token_hex(3)), 1000
        first = key_row(now, owner)
        await meta.add_api_key(first)
        project = await meta.get_project(owner.org_id, owner.project_id)
        assert project is not None
        assert (project.name, project.created_at, project.archived_at) == (
            owner.project_id,
            now,
            None,
        )
        await meta.add_api_key(key_row(now + 5, owner))
        assert await meta.get_project(owner.org_id, owner.project_id) == project
        # A key of a project made by the Administration API keeps its name.
        named = project_row()
        await meta.create_project(named)
        await meta.add_api_key(key_row(None, owner_of(named)))
        assert await meta.get_project(named.org_id, named.id) == named

    async def test_an_archived_project_takes_no_key(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        key = key_row(None, owner_of(project))
        await meta.add_api_key(key)
        await meta.archive_project(project.org_id, project.id, int(time.time()))
        late = key_row(None, owner_of(project))
        with pytest.raises(ProjectArchived) as raised:
            await meta.add_api_key(late)
        assert raised.value.record.id == project.id
        assert await meta.find_api_key(late.key_hash) is None
        found = await meta.find_api_key(key.key_hash)
        assert found is not None and found.revoked_at is not None

    async def test_rename(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        renamed = await meta.rename_project(project.org_id, project.id, "Renamed")
        assert renamed == dataclasses.replace(project, name="Renamed")
        assert await meta.get_project(project.org_id, project.id) == renamed
        assert await meta.rename_project("org-other", project.id, "x") is None
        assert await meta.rename_project(project.org_id, "proj_nope", "x") is None
        await meta.archive_project(project.org_id, project.id, 2000)
        with pytest.raises(ProjectArchived):
            await meta.rename_project(project.org_id, project.id, "Again")
        got = await meta.get_project(project.org_id, project.id)
        assert got is not None and got.name == "Renamed"

    async def test_archive_revokes_the_projects_keys_only(self, meta: MetadataStore) -> None:
        project, sibling = project_row(), project_row()
        sibling = dataclasses.replace(sibling, org_id=project.org_id)
        for p in (project, sibling):
            await meta.create_project(p)
        keys = [key_row(None, owner_of(project)) for _ in range(3)]
        for key in keys:
            await meta.add_api_key(key)
        assert await meta.revoke_api_key(keys[0].id, 500)
        account = service_account_row(project)
        account_key = key_row(None, owner_of(project), service_account_id=account.id)
        await meta.create_service_account(account, account_key)
        other = key_row(None, owner_of(sibling))
        await meta.add_api_key(other)

        result = await meta.archive_project(project.org_id, project.id, 1000)
        assert result is not None
        archived, revoked = result
        assert archived == dataclasses.replace(project, archived_at=1000)
        assert sorted(k.id for k in revoked) == sorted([keys[1].id, keys[2].id, account_key.id])
        assert all(k.revoked_at == 1000 for k in revoked)
        for key in (*keys, account_key):
            found = await meta.find_api_key(key.key_hash)
            assert found is not None and found.revoked_at is not None
        first = await meta.find_api_key(keys[0].key_hash)
        assert first is not None and first.revoked_at == 500  # revoked first, stays so
        assert await meta.find_api_key(other.key_hash) == other
        assert await meta.list_project_keys(owner_of(project), after=None, limit=10) == ([], False)
        # Again: the project as it is, nothing revoked.
        assert await meta.archive_project(project.org_id, project.id, 2000) == (archived, [])
        assert await meta.archive_project("org-other", project.id, 2000) is None

    async def test_archiving_ends_the_projects_batches_and_uploads_and_keeps_its_files(
        self, meta: MetadataStore
    ) -> None:
        """As a cancel would: batches not yet ended go "cancelling" (the runner finalizes
        them), pending uploads are cancelled (reservations back, part rows gone); ended
        batches, completed uploads and files are kept; another project's work goes on."""
        project, sibling = project_row(), project_row()
        sibling = dataclasses.replace(sibling, org_id=project.org_id)
        for p in (project, sibling):
            await meta.create_project(p)
        owner, now = owner_of(project), int(time.time())
        validating = await start_batch(meta, owner, now=now)
        running = await running_batch(meta, owner, now=now, lines=3, worker="w1")
        finalizing = await running_batch(meta, owner, now=now, lines=1, worker="w2")
        finalizing = await meta.update_batch(
            finalizing.id, "w2", ("in_progress",), {"status": "finalizing"}
        )
        pending = await start_upload(meta, owner, now=now, nbytes=30)
        await meta.add_part(owner, part_row(pending, now=now), now)
        theirs_batch = await start_batch(meta, owner_of(sibling), now=now)
        theirs_upload = await start_upload(meta, owner_of(sibling), now=now, nbytes=30)
        committed = await meta.committed_bytes(project.org_id, now)

        assert await meta.archive_project(project.org_id, project.id, now + 5) is not None
        for batch in (validating, running):
            after = await meta.get_batch(owner, batch.id)
            assert after is not None
            assert (after.status, after.cancelling_at) == ("cancelling", now + 5)
        assert await meta.get_batch(owner, finalizing.id) == finalizing  # ends by itself
        upload = await meta.get_upload(owner, pending.id)
        assert upload is not None and upload.status == "cancelled"
        assert await meta.list_parts(pending.id) == []
        # Its reservation went back; the batches' input files stay.
        assert await meta.committed_bytes(project.org_id, now) == committed - pending.bytes
        assert await meta.get_file(owner, validating.input_file_id, now) is not None
        theirs = await meta.get_batch(owner_of(sibling), theirs_batch.id)
        assert theirs is not None and theirs.status == "validating"
        kept = await meta.get_upload(owner_of(sibling), theirs_upload.id)
        assert kept is not None and kept.status == "pending"

    async def test_creates_racing_at_a_limit_pass_it_never(self, meta: MetadataStore) -> None:
        """Projects and admin keys per organization, service accounts per project: with
        one made and a limit of 2, of four creates at once exactly one is stored; the
        others raise LimitReached. Limit 0 is none."""
        project = project_row()
        await meta.create_project(project, 2)
        org = project.org_id
        await meta.add_admin_key(admin_key_row(org), 2)
        await meta.create_service_account(service_account_row(project), None, 2)
        makers = {
            "projects": lambda: meta.create_project(project_row(org), 2),
            "admin keys": lambda: meta.add_admin_key(admin_key_row(org), 2),
            "service accounts": lambda: meta.create_service_account(
                service_account_row(project), None, 2
            ),
        }
        for what, make in makers.items():
            outcomes: list[str] = []

            async def one(
                make: Callable[[], Awaitable[None]] = make, outcomes: list[str] = outcomes
            ) -> None:
                try:
                    await make()
                except LimitReached as exc:
                    assert exc.limit == 2
                    outcomes.append("refused")
                else:
                    outcomes.append("stored")

            async with anyio.create_task_group() as tg:
                for _ in range(4):
                    tg.start_soon(one)
            assert sorted(outcomes) == ["refused"] * 3 + ["stored"], what
        projects, _ = await meta.list_projects(org, after=None, limit=10, include_archived=True)
        assert len(projects) == 2
        accounts, _ = await meta.list_service_accounts(owner_of(project), after=None, limit=10)
        assert len(accounts) == 2
        admin_keys, _ = await meta.list_admin_keys(org, after=None, limit=10, order="asc")
        assert len(admin_keys) == 2
        # Archived projects count; a revoked admin key does not; 0 is no limit.
        await meta.archive_project(org, project.id, int(time.time()))
        with pytest.raises(LimitReached):
            await meta.create_project(project_row(org), 2)
        assert await meta.revoke_admin_key(admin_keys[0].id, int(time.time()))
        await meta.add_admin_key(admin_key_row(org), 2)
        await meta.create_project(project_row(org), 0)
        await meta.add_admin_key(admin_key_row(org), 0)

    async def test_keys_racing_an_archive_are_stored_and_revoked_or_refused(
        self, meta: MetadataStore
    ) -> None:
        project = project_row()
        await meta.create_project(project)
        keys = [key_row(None, owner_of(project)) for _ in range(12)]
        stored: list[KeyRecord] = []

        async def add(key: KeyRecord) -> None:
            try:
                await meta.add_api_key(key)
            except ProjectArchived:
                return
            stored.append(key)

        async with anyio.create_task_group() as tg:
            for key in keys[:6]:
                tg.start_soon(add, key)
            tg.start_soon(meta.archive_project, project.org_id, project.id, int(time.time()))
            for key in keys[6:]:
                tg.start_soon(add, key)
        # No key of the archived project is active: each was refused, or revoked by it.
        for key in keys:
            found = await meta.find_api_key(key.key_hash)
            assert (found is None) == (key not in stored)
            assert found is None or found.revoked_at is not None

    # -- service accounts and project keys --

    async def test_service_accounts(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        owner = owner_of(project)
        accounts = [service_account_row(project, created_at=100 + i % 2) for i in range(5)]
        for i, account in enumerate(accounts):
            key = key_row(None, owner, service_account_id=account.id) if i % 2 == 0 else None
            await meta.create_service_account(account, key)
        assert await meta.get_service_account(owner, accounts[0].id) == accounts[0]
        for stranger in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            assert await meta.get_service_account(stranger, accounts[0].id) is None
            assert await meta.list_service_accounts(stranger, after=None, limit=10) == ([], False)
            with pytest.raises(CursorNotFound):
                await meta.list_service_accounts(stranger, after=accounts[0].id, limit=10)
        expected = sorted(accounts, key=lambda a: (a.created_at, a.id))
        first, more = await meta.list_service_accounts(owner, after=None, limit=2)
        assert (first, more) == (expected[:2], True)
        rest, more = await meta.list_service_accounts(owner, after=first[-1].id, limit=10)
        assert (rest, more) == (expected[2:], False)

    async def test_a_service_account_needs_an_open_project(self, meta: MetadataStore) -> None:
        project = project_row()
        account = service_account_row(project)
        key = key_row(None, owner_of(project), service_account_id=account.id)
        with pytest.raises(ProjectNotFound):
            await meta.create_service_account(account, key)
        await meta.create_project(project)
        await meta.archive_project(project.org_id, project.id, 10)
        with pytest.raises(ProjectArchived):
            await meta.create_service_account(account, key)
        assert await meta.get_service_account(owner_of(project), account.id) is None
        assert await meta.find_api_key(key.key_hash) is None

    async def test_a_refused_service_account_stores_nothing(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        taken = key_row(None, owner_of(project))
        await meta.add_api_key(taken)
        account = service_account_row(project)
        twin_key = dataclasses.replace(
            key_row(None, owner_of(project), service_account_id=account.id),
            key_hash=taken.key_hash,
        )
        assert await refused(meta.create_service_account(account, twin_key))
        assert await meta.get_service_account(owner_of(project), account.id) is None

    async def test_project_keys_are_listed_with_their_owners(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        owner = owner_of(project)
        account = service_account_row(project)
        made = [key_row(200 + i % 2, owner) for i in range(4)]
        for key in made:
            await meta.add_api_key(key)
        account_key = key_row(300, owner, service_account_id=account.id, name="Secret key")
        await meta.create_service_account(account, account_key)
        assert await meta.revoke_api_key(made[1].id, 400)
        expected = [
            (k, None) for k in sorted(made, key=lambda k: (k.created_at, k.id)) if k != made[1]
        ] + [(account_key, account)]
        page, more = await meta.list_project_keys(owner, after=None, limit=2)
        assert (page, more) == (expected[:2], True)
        rest, more = await meta.list_project_keys(owner, after=page[-1][0].id, limit=10)
        assert (rest, more) == (expected[2:], False)
        # A revoked key is listed no more, but paging may go on from it.
        after_revoked, _ = await meta.list_project_keys(owner, after=made[1].id, limit=10)
        cut = (made[1].created_at, made[1].id)
        assert after_revoked == [e for e in expected if (e[0].created_at, e[0].id) > cut]
        assert await meta.get_project_key(owner, account_key.id) == (account_key, account)
        assert await meta.get_project_key(owner, made[0].id) == (made[0], None)
        assert await meta.get_project_key(owner, made[1].id) is None
        assert await meta.get_project_key(Owner(owner.org_id, "proj_x"), made[0].id) is None
        with pytest.raises(CursorNotFound):
            await meta.list_project_keys(
                Owner("org-x", owner.project_id), after=made[0].id, limit=5
            )

    async def test_deleting_a_service_account_revokes_its_keys(self, meta: MetadataStore) -> None:
        project = project_row()
        await meta.create_project(project)
        owner = owner_of(project)
        account, other = service_account_row(project), service_account_row(project)
        key = key_row(None, owner, service_account_id=account.id)
        other_key = key_row(None, owner, service_account_id=other.id)
        await meta.create_service_account(account, key)
        await meta.create_service_account(other, other_key)
        assert (
            await meta.delete_service_account(Owner(owner.org_id, "proj_x"), account.id, 9) is None
        )
        got: list[object] = []

        async def delete() -> None:
            got.append(await meta.delete_service_account(owner, account.id, 900))

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(delete)
        winners = [g for g in got if g is not None]
        assert winners == [(account, [dataclasses.replace(key, revoked_at=900)])]
        assert await meta.get_service_account(owner, account.id) is None
        found = await meta.find_api_key(key.key_hash)
        assert found is not None and found.revoked_at == 900
        assert await meta.find_api_key(other_key.key_hash) == other_key
        assert await meta.get_service_account(owner, other.id) == other

    # -- admin keys --

    async def test_admin_keys_are_apart_from_project_keys(self, meta: MetadataStore) -> None:
        org = "org-" + secrets.token_hex(4)
        admin = admin_key_row(org, expires_at=int(time.time()) + 60)
        await meta.add_admin_key(admin)
        assert await meta.find_admin_key(admin.key_hash) == admin
        assert await meta.get_admin_key(admin.id) == admin
        assert await meta.find_api_key(admin.key_hash) is None
        assert await meta.get_api_key(admin.id) is None
        project_key = key_row(None, Owner(org, "proj_" + secrets.token_hex(4)))
        await meta.add_api_key(project_key)
        assert await meta.find_admin_key(project_key.key_hash) is None
        assert await meta.get_admin_key(project_key.id) is None
        assert admin in await meta.list_all_admin_keys()
        assert await refused(meta.add_admin_key(dataclasses.replace(admin, id="key_twin")))
        assert await meta.get_admin_key("key_twin") is None

    async def test_admin_keys_page_per_organization(self, meta: MetadataStore) -> None:
        org, other = "org-" + secrets.token_hex(4), "org-" + secrets.token_hex(4)
        made = [admin_key_row(org, created_at=50 + i % 2) for i in range(5)]
        for key in made:
            await meta.add_admin_key(key)
        await meta.add_admin_key(admin_key_row(other))
        ascending = sorted(made, key=lambda k: (k.created_at, k.id))
        for order, expected in (("asc", ascending), ("desc", ascending[::-1])):
            seen, after = [], None
            while True:
                page, more = await meta.list_admin_keys(org, after=after, limit=2, order=order)  # type: ignore[arg-type]
                seen.extend(page)
                if not more:
                    break
                after = page[-1].id
            assert seen == expected
        assert await meta.revoke_admin_key(ascending[0].id, 70)
        assert not await meta.revoke_admin_key(ascending[0].id, 80)
        revoked = await meta.get_admin_key(ascending[0].id)
        assert revoked is not None and revoked.revoked_at == 70
        page, more = await meta.list_admin_keys(org, after=None, limit=10, order="asc")
        assert (page, more) == (ascending[1:], False)
        page, _ = await meta.list_admin_keys(org, after=ascending[0].id, limit=10, order="asc")
        assert page == ascending[1:]
        with pytest.raises(CursorNotFound):
            await meta.list_admin_keys(other, after=ascending[1].id, limit=10, order="asc")
        listed = [k for k in await meta.list_all_admin_keys() if k.org_id == org]
        assert [k.id for k in listed] == [k.id for k in ascending]
