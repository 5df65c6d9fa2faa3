"""The metadata store contract for keys, files, the quota and reservations, as tests."""

from __future__ import annotations

import dataclasses
import secrets
import time

import anyio
import pytest

from ..server.stores import (
    CursorNotFound,
    FileRecord,
    KeyRecord,
    MetadataStore,
    Owner,
    QuotaExceeded,
)
from ._records import (
    QUOTA,
    drain_racing,
    file_row,
    key_row,
    new_owner,
    start_upload,
)


@pytest.mark.anyio
class FileRowsConformance:
    """Keys, files, the quota and reservations; what the web console reads. Provide `meta`
    and `empty_meta`."""

    async def test_migrate_is_idempotent(self, meta: MetadataStore) -> None:
        assert await meta.migrate() == meta.SCHEMA_VERSION
        assert await meta.schema_version() == meta.SCHEMA_VERSION

    async def test_ping_answers(self, meta: MetadataStore) -> None:
        await meta.ping()  # raises when the database does not answer

    async def test_keys(self, meta: MetadataStore) -> None:
        record = key_row()
        await meta.add_api_key(record)
        assert await meta.find_api_key(record.key_hash) == record
        assert await meta.find_api_key("0" * 64) is None
        assert record in await meta.list_api_keys()
        assert await meta.revoke_api_key(record.id, 123)
        assert not await meta.revoke_api_key(record.id, 456)
        found = await meta.find_api_key(record.key_hash)
        assert found is not None and found.revoked_at == 123

    async def test_insert_get_delete_and_usage(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        record = file_row(owner, created_at=now, nbytes=100)
        await meta.insert_file(record, None, QUOTA)
        assert await meta.get_file(owner, record.id, now) == record
        assert await meta.usage(owner.org_id) == 100
        other = Owner(owner.org_id, "proj_other")
        assert await meta.get_file(other, record.id, now) is None
        assert await meta.delete_file(other, record.id, now) is None
        assert await meta.delete_file(owner, record.id, now) == record
        assert await meta.get_file(owner, record.id, now) is None
        assert await meta.delete_file(owner, record.id, now) is None
        assert await meta.usage(owner.org_id) == 0

    async def test_expired_files_are_invisible_and_popped(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        gone = file_row(owner, created_at=now - 10, expires_at=now - 1, nbytes=7)
        live = file_row(owner, created_at=now, expires_at=now + 3600)
        for r in (gone, live):
            await meta.insert_file(r, None, QUOTA)
        assert await meta.get_file(owner, gone.id, now) is None
        assert await meta.delete_file(owner, gone.id, now) is None
        rows, _ = await meta.list_files(
            owner, purpose=None, limit=10, order="asc", after=None, now=now
        )
        assert rows == [live]
        popped = await meta.pop_expired(now, 1000)
        assert gone in popped and live not in popped
        assert await meta.usage(owner.org_id) == live.bytes

    async def test_paging_in_one_second(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        records = [file_row(owner, created_at=now - (i % 3)) for i in range(50)]
        for r in records:
            await meta.insert_file(r, None, 10**9)
        for order in ("asc", "desc"):
            expected = sorted(records, key=lambda r: (r.created_at, r.id), reverse=order == "desc")
            seen: list[FileRecord] = []
            after = None
            while True:
                rows, more = await meta.list_files(
                    owner,
                    purpose=None,
                    limit=7,
                    order=order,
                    after=after,
                    now=now,
                )
                seen.extend(rows)
                if not more:
                    break
                after = rows[-1].id
            assert seen == expected

    async def test_paging_from_a_position_whose_row_was_deleted(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        records = [file_row(owner, created_at=now - i) for i in range(5)]
        for r in records:
            await meta.insert_file(r, None, QUOTA)
        # Newest first: records[0] is the newest. The listing stopped after records[1],
        # which is deleted before it goes on from there.
        assert await meta.delete_file(owner, records[1].id, now) is not None
        with pytest.raises(CursorNotFound):
            await meta.list_files(
                owner, purpose=None, limit=10, order="desc", after=records[1].id, now=now
            )
        at = (records[1].created_at, records[1].id)
        rows, more = await meta.list_files(
            owner, purpose=None, limit=2, order="desc", after=None, now=now, position=at
        )
        assert (rows, more) == (records[2:4], True)
        rows, more = await meta.list_files(
            owner, purpose=None, limit=10, order="asc", after=None, now=now, position=at
        )
        assert (rows, more) == ([records[0]], False)
        # Another owner's position lists only this owner's files.
        rows, _ = await meta.list_files(
            new_owner(), purpose=None, limit=10, order="desc", after=None, now=now, position=at
        )
        assert rows == []

    async def test_purpose_filter_and_cursor(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = file_row(owner, created_at=now, purpose="batch")
        vision = file_row(owner, created_at=now, purpose="vision")
        for r in (batch, vision):
            await meta.insert_file(r, None, QUOTA)
        rows, more = await meta.list_files(
            owner, purpose="batch", limit=10, order="desc", after=None, now=now
        )
        assert (rows, more) == ([batch], False)
        with pytest.raises(CursorNotFound):
            await meta.list_files(
                new_owner(), purpose=None, limit=10, order="desc", after=batch.id, now=now
            )

    async def test_reserve_and_insert_respect_the_quota(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.reserve(
            "rsv_a" + secrets.token_hex(4), owner.org_id, 6000, QUOTA, now + 60, "file-a"
        )
        with pytest.raises(QuotaExceeded) as info:
            await meta.reserve(
                "rsv_b" + secrets.token_hex(4), owner.org_id, 5000, QUOTA, now + 60, "file-b"
            )
        assert (info.value.used, info.value.requested, info.value.quota) == (6000, 5000, QUOTA)
        with pytest.raises(QuotaExceeded):
            await meta.insert_file(file_row(owner, created_at=now, nbytes=4001), None, QUOTA)
        await meta.insert_file(file_row(owner, created_at=now, nbytes=4000), None, QUOTA)

    async def test_insert_consumes_its_reservation(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        rid = "rsv_" + secrets.token_hex(6)
        record = file_row(owner, created_at=now, nbytes=9000)
        await meta.reserve(rid, owner.org_id, 9500, QUOTA, now + 60, record.blob_key)
        assert await meta.named_blob_keys([record.blob_key, "nope"]) == {record.blob_key}
        await meta.insert_file(record, rid, QUOTA)
        assert await meta.named_blob_keys([record.blob_key]) == {record.blob_key}
        with pytest.raises(QuotaExceeded):  # the 9500 reserved are not counted twice...
            await meta.reserve(
                "rsv_x" + secrets.token_hex(4), owner.org_id, 1001, QUOTA, now + 60, "k"
            )
        await meta.reserve(
            "rsv_y" + secrets.token_hex(4), owner.org_id, 1000, QUOTA, now + 60, "k"
        )  # ...only the file's 9000 are

    async def test_released_and_lapsed_reservations_free_the_quota(
        self, meta: MetadataStore
    ) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.reserve(
            "rsv_1" + secrets.token_hex(4), owner.org_id, QUOTA, QUOTA, now - 1, "k1"
        )  # already lapsed: not counted
        rid = "rsv_2" + secrets.token_hex(4)
        await meta.reserve(rid, owner.org_id, QUOTA, QUOTA, now + 60, "k2")
        with pytest.raises(QuotaExceeded):
            await meta.reserve(
                "rsv_3" + secrets.token_hex(4), owner.org_id, 1, QUOTA, now + 60, "k3"
            )
        await meta.release(rid)
        await meta.reserve(
            "rsv_4" + secrets.token_hex(4), owner.org_id, QUOTA, QUOTA, now + 60, "k4"
        )
        await meta.purge_reservations(None)
        assert await meta.named_blob_keys(["k1", "k2", "k4"]) == set()

    async def test_racing_reservations_never_pass_the_quota(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        won: list[str] = []

        async def attempt(i: int) -> None:
            rid = f"rsv_race{i}_" + secrets.token_hex(4)
            try:
                await meta.reserve(rid, owner.org_id, 1000, QUOTA, now + 60, f"k{i}")
                won.append(rid)
            except QuotaExceeded:
                pass

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(attempt, i)
        assert len(won) == QUOTA // 1000

    async def test_racing_inserts_never_pass_the_quota(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        inserted: list[FileRecord] = []

        async def attempt() -> None:
            record = file_row(owner, created_at=now, nbytes=1000)
            try:
                await meta.insert_file(record, None, QUOTA)
                inserted.append(record)
            except QuotaExceeded:
                pass

        async with anyio.create_task_group() as tg:
            for _ in range(40):
                tg.start_soon(attempt)
        assert len(inserted) == QUOTA // 1000
        assert await meta.usage(owner.org_id) == QUOTA

    async def test_renewed_reservation_outlives_its_first_lease(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        rid = "rsv_" + secrets.token_hex(6)
        await meta.reserve(rid, owner.org_id, QUOTA, QUOTA, now + 1, "k-renew")
        await meta.renew(rid, now + 3600)
        await meta.purge_reservations(now + 2)  # past the first lease: still held
        assert await meta.named_blob_keys(["k-renew"]) == {"k-renew"}
        with pytest.raises(QuotaExceeded):
            await meta.reserve(
                "rsv_" + secrets.token_hex(6), owner.org_id, 1, QUOTA, now + 60, "k-other"
            )

    async def test_expired_files_stop_counting_at_once(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.insert_file(
            file_row(owner, created_at=now - 10, expires_at=now - 1, nbytes=QUOTA), None, QUOTA
        )
        # Not yet swept, but expired: its bytes are free for the organization.
        await meta.insert_file(file_row(owner, created_at=now, nbytes=QUOTA), None, QUOTA)

    async def test_keys_are_listed_in_creation_order(self, meta: MetadataStore) -> None:
        base = int(time.time()) - 1000

        later, earlier = key_row(base + 1), key_row(base)
        await meta.add_api_key(later)
        await meta.add_api_key(earlier)
        listed = [k.id for k in await meta.list_api_keys() if k.id in (earlier.id, later.id)]
        assert listed == [earlier.id, later.id]

    async def test_racing_revokes_have_one_winner(self, meta: MetadataStore) -> None:
        record = key_row()
        await meta.add_api_key(record)
        wins: list[int] = []

        async def attempt(now: int) -> None:
            if await meta.revoke_api_key(record.id, now):
                wins.append(now)

        async with anyio.create_task_group() as tg:
            for now in range(1000, 1010):
                tg.start_soon(attempt, now)
        assert len(wins) == 1
        found = await meta.find_api_key(record.key_hash)
        assert found is not None and found.revoked_at == wins[0]
        assert not await meta.revoke_api_key("key_" + secrets.token_hex(6), 1)  # unknown

    async def test_a_first_key_is_stored_only_where_no_key_is(
        self, empty_meta: MetadataStore
    ) -> None:
        """Attempts that race on a store holding no key: exactly one is stored. On a store
        that other tests share (`meta`) keys would already be there, and none stored
        would pass without a race; so this test asks for a new, empty one."""
        meta = empty_meta
        assert await meta.list_api_keys() == []
        candidates = [key_row() for _ in range(8)]
        stored: list[str] = []

        async def attempt(record: KeyRecord) -> None:
            if await meta.add_first_api_key(record):
                stored.append(record.id)

        async with anyio.create_task_group() as tg:
            for record in candidates:
                tg.start_soon(attempt, record)
        assert len(stored) == 1
        assert {k.id for k in await meta.list_api_keys()} == set(stored)
        # Once one is stored, no other is.
        again = key_row()
        assert not await meta.add_first_api_key(again)
        assert await meta.get_api_key(again.id) is None
        # Revoked keys count: a store whose keys were all revoked gets no first key.
        for key in await meta.list_api_keys():
            await meta.revoke_api_key(key.id, 1)
        late = key_row()
        assert not await meta.add_first_api_key(late)
        assert await meta.get_api_key(late.id) is None

    async def test_racing_deletes_have_one_winner(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        record = file_row(owner, created_at=now, nbytes=300)
        await meta.insert_file(record, None, QUOTA)
        got: list[FileRecord | None] = []

        async def attempt() -> None:
            got.append(await meta.delete_file(owner, record.id, now))

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(attempt)
        assert [r for r in got if r is not None] == [record]
        assert await meta.usage(owner.org_id) == 0  # taken off once

    async def test_racing_pops_never_share_a_row(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        expired = [
            file_row(owner, created_at=now - 10, expires_at=now - 1, nbytes=5) for _ in range(30)
        ]
        for r in expired:
            await meta.insert_file(r, None, QUOTA)
        popped = await drain_racing(lambda: meta.pop_expired(now, 3))
        ids = [r.id for r in popped]
        assert len(ids) == len(set(ids))  # no row handed out twice
        assert {r.id for r in expired} <= set(ids)
        assert await meta.usage(owner.org_id) == 0
        assert await meta.pop_expired(now, 10) == []

    async def test_a_refused_insert_changes_nothing(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.insert_file(file_row(owner, created_at=now, nbytes=4000), None, QUOTA)
        rid = "rsv_" + secrets.token_hex(6)
        too_big = file_row(owner, created_at=now, nbytes=QUOTA)
        await meta.reserve(rid, owner.org_id, 1000, QUOTA, now + 60, too_big.blob_key)
        with pytest.raises(QuotaExceeded):
            await meta.insert_file(too_big, rid, QUOTA)
        assert await meta.get_file(owner, too_big.id, now) is None
        assert await meta.usage(owner.org_id) == 4000
        # The reservation is still held: its key is named and its bytes still count.
        assert await meta.named_blob_keys([too_big.blob_key]) == {too_big.blob_key}
        with pytest.raises(QuotaExceeded):
            await meta.reserve(
                "rsv_" + secrets.token_hex(6), owner.org_id, 5001, QUOTA, now + 60, "k-x"
            )

    async def test_a_gone_reservation_stays_gone(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        rid = "rsv_" + secrets.token_hex(6)
        await meta.reserve(rid, owner.org_id, QUOTA, QUOTA, now + 60, "k-gone")
        await meta.release(rid)
        await meta.release(rid)  # twice: no error
        await meta.renew(rid, now + 3600)  # renewing what is gone: no error, no revival
        assert await meta.named_blob_keys(["k-gone"]) == set()
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, QUOTA, QUOTA, now + 60, "k")
        await meta.release("rsv_never_" + secrets.token_hex(6))  # never existed: no error

    async def test_paging_goes_on_from_a_cursor_that_expired(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        first = file_row(owner, created_at=now - 2, expires_at=now + 1)
        second = file_row(owner, created_at=now - 1)
        for r in (first, second):
            await meta.insert_file(r, None, QUOTA)
        rows, more = await meta.list_files(
            owner, purpose=None, limit=1, order="asc", after=None, now=now
        )
        assert (rows, more) == ([first], True)
        later = now + 5  # `first` has expired since that page
        rows, more = await meta.list_files(
            owner, purpose=None, limit=1, order="asc", after=first.id, now=later
        )
        assert (rows, more) == ([second], False)
        await meta.delete_file(owner, second.id, later)
        with pytest.raises(CursorNotFound):  # a deleted row is no cursor
            await meta.list_files(
                owner, purpose=None, limit=1, order="asc", after=second.id, now=later
            )

    async def test_keys_stay_named_until_popped_or_purged(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        expired = file_row(owner, created_at=now - 10, expires_at=now - 1, nbytes=70)
        await meta.insert_file(expired, None, QUOTA)
        lapsed = "k-lapsed-" + secrets.token_hex(4)
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 1, QUOTA, now - 1, lapsed)
        assert await meta.named_blob_keys([]) == set()
        # Expired and lapsed, but still there: still named (the sweeper must not take them).
        assert await meta.named_blob_keys([expired.blob_key, lapsed]) == {
            expired.blob_key,
            lapsed,
        }
        assert await meta.usage(owner.org_id) == 70  # an expired row counts until popped
        assert await meta.usage("org-none-" + secrets.token_hex(4)) == 0
        await meta.purge_reservations(now)
        assert await meta.named_blob_keys([lapsed]) == set()
        popped = await meta.pop_expired(now, 10_000)
        assert expired in popped
        assert await meta.named_blob_keys([expired.blob_key]) == set()
        assert await meta.usage(owner.org_id) == 0

    async def test_purge_at_a_time_keeps_unlapsed_reservations(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 10, QUOTA, now - 5, "k-a")
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 10, QUOTA, now + 60, "k-b")
        await meta.purge_reservations(now)
        await meta.purge_reservations(now)  # twice: the same
        assert await meta.named_blob_keys(["k-a", "k-b"]) == {"k-b"}

    async def test_shared_says_a_bool(self, meta: MetadataStore) -> None:
        assert isinstance(meta.shared, bool)

    async def test_duplicates_raise_and_change_nothing(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        key = key_row(now)
        await meta.add_api_key(key)
        twin = dataclasses.replace(key, key_hash=secrets.token_hex(32), hint="sk-twin")
        try:
            await meta.add_api_key(twin)
        except Exception:
            pass
        else:
            pytest.fail("a second key with the same id was stored")
        assert await meta.find_api_key(twin.key_hash) is None
        assert await meta.find_api_key(key.key_hash) == key

        record = file_row(owner, created_at=now, nbytes=100)
        await meta.insert_file(record, None, QUOTA)
        rid = "rsv_" + secrets.token_hex(6)
        await meta.reserve(rid, owner.org_id, 50, QUOTA, now + 60, "k-dup")
        try:
            await meta.insert_file(dataclasses.replace(record, blob_key="k-dup"), rid, QUOTA)
        except Exception:
            pass
        else:
            pytest.fail("a second file with the same id was stored")
        assert await meta.usage(owner.org_id) == 100
        assert await meta.named_blob_keys(["k-dup"]) == {"k-dup"}  # the reservation stays

    async def test_close_twice(self, meta: MetadataStore) -> None:
        await meta.close()  # and the fixture closes it again

    # -- what the web console reads --
    async def test_a_key_is_found_by_its_id(self, meta: MetadataStore) -> None:
        record = key_row()
        await meta.add_api_key(record)
        assert await meta.get_api_key(record.id) == record
        assert await meta.get_api_key("key_" + secrets.token_hex(6)) is None
        assert await meta.revoke_api_key(record.id, 123)
        found = await meta.get_api_key(record.id)
        assert found is not None and found.revoked_at == 123

    async def test_committed_bytes_count_what_the_quota_counts(self, meta: MetadataStore) -> None:
        owner, other, now = new_owner(), new_owner(), int(time.time())
        assert await meta.committed_bytes(owner.org_id, now) == 0
        await meta.insert_file(file_row(owner, created_at=now, nbytes=100), None, QUOTA)
        await meta.insert_file(
            file_row(owner, created_at=now, nbytes=7, expires_at=now + 10), None, QUOTA
        )
        await meta.insert_file(file_row(other, created_at=now, nbytes=1000), None, QUOTA)
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 20, QUOTA, now + 60, "k1")
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 30, QUOTA, now - 1, "k2")
        # Live files and unlapsed reservations; not the lapsed one, nor another org's.
        assert await meta.committed_bytes(owner.org_id, now) == 127
        # Once a file has expired it counts no more, swept or not.
        assert await meta.committed_bytes(owner.org_id, now + 10) == 120
        assert await meta.committed_bytes(other.org_id, now) == 1000

    async def test_pending_uploads_are_counted_per_owner(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        same_org = Owner(owner.org_id, "proj_" + secrets.token_hex(4))
        assert await meta.count_pending_uploads(owner, now) == 0
        first = await start_upload(meta, owner, now=now)
        await start_upload(meta, owner, now=now)
        await start_upload(meta, owner, now=now - 4000)  # past its hour, not yet swept
        await start_upload(meta, same_org, now=now)
        cancelled = await start_upload(meta, owner, now=now)
        await meta.cancel_upload(owner, cancelled.id, now)
        assert await meta.count_pending_uploads(owner, now) == 2
        await meta.begin_completion(owner, first.id, now)  # completing: still pending to clients
        assert await meta.count_pending_uploads(owner, now) == 2
        assert await meta.count_pending_uploads(same_org, now) == 1

    async def test_a_server_secret_is_made_once(self, meta: MetadataStore) -> None:
        name = "test-" + secrets.token_hex(6)
        candidates = [secrets.token_hex(16) for _ in range(8)]
        got: list[str] = []

        async def attempt(candidate: str) -> None:
            got.append(await meta.server_secret(name, candidate, int(time.time())))

        async with anyio.create_task_group() as tg:
            for candidate in candidates:
                tg.start_soon(attempt, candidate)
        assert len(set(got)) == 1 and got[0] in candidates
        assert await meta.server_secret(name, "another", int(time.time())) == got[0]
        other = "test-" + secrets.token_hex(6)
        assert await meta.server_secret(other, "x", int(time.time())) == "x"
