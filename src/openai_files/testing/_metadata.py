"""The metadata store contract, as tests: subclass and provide a `meta` fixture."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time
from typing import Any

import anyio
import pytest

from ..server.stores import (
    CursorNotFound,
    FileRecord,
    KeyRecord,
    MetadataStore,
    Owner,
    PartRecord,
    PendingUploadsExceeded,
    QuotaExceeded,
    UploadFull,
    UploadNotFound,
    UploadNotPending,
    UploadRecord,
)

QUOTA = 10_000


def _file(owner: Owner, *, created_at: int, nbytes: int = 10, **kw: Any) -> FileRecord:
    file_id = kw.pop("id", None) or "file-" + secrets.token_hex(12)
    values: dict[str, Any] = {
        "id": file_id,
        "org_id": owner.org_id,
        "project_id": owner.project_id,
        "bytes": nbytes,
        "created_at": created_at,
        "expires_at": None,
        "filename": "a.txt",
        "purpose": "vision",
        "mime_type": "text/plain",
        "blob_key": file_id,
    }
    values.update(kw)
    return FileRecord(**values)


def _owner() -> Owner:
    return Owner("org-" + secrets.token_hex(4), "proj_" + secrets.token_hex(4))


def _key_record(created_at: int | None = None) -> KeyRecord:
    """A new active key of `org-k`/`proj_k` (a random id and hash)."""
    return KeyRecord(
        "key_" + secrets.token_hex(6),
        "org-k",
        "proj_k",
        secrets.token_hex(32),
        "sk-abc****wxyz",
        int(time.time()) if created_at is None else created_at,
        None,
    )


def _upload(owner: Owner, *, now: int, nbytes: int = 100, **kw: Any) -> UploadRecord:
    """A new pending upload of the owner, created at `now`, expiring an hour later."""
    values: dict[str, Any] = {
        "id": "upload_" + secrets.token_hex(12),
        "org_id": owner.org_id,
        "project_id": owner.project_id,
        "filename": "big.jsonl",
        "purpose": "batch",
        "bytes": nbytes,
        "mime_type": "application/jsonl",
        "created_at": now,
        "expires_at": now + 3600,
        "status": "pending",
        "file_id": None,
        "file_key": "file-" + secrets.token_hex(12),
    }
    values.update(kw)
    return UploadRecord(**values)


async def _start_upload(
    meta: MetadataStore, owner: Owner, *, now: int, nbytes: int = 100, **kw: Any
) -> UploadRecord:
    """Reserve the upload's bytes and store it, as the service does."""
    record = _upload(owner, now=now, nbytes=nbytes, **kw)
    await meta.reserve(
        record.id, owner.org_id, record.bytes, QUOTA, record.expires_at, record.file_key
    )
    await meta.insert_upload(record)
    return record


def _part(upload: UploadRecord, *, now: int, nbytes: int = 10) -> PartRecord:
    part_id = "part_" + secrets.token_hex(12)
    return PartRecord(part_id, upload.id, nbytes, now, part_id)


def _upload_file(upload: UploadRecord, *, now: int, nbytes: int | None = None) -> FileRecord:
    """The file a completion of `upload` makes (named by its `file_key`)."""
    owner = Owner(upload.org_id, upload.project_id)
    size = upload.bytes if nbytes is None else nbytes
    return _file(owner, created_at=now, nbytes=size, id=upload.file_key, purpose=upload.purpose)


async def _fills_quota(meta: MetadataStore, org_id: str, nbytes: int) -> bool:
    """Whether a reservation of `nbytes` more would pass the quota (it is given back)."""
    rid = "rsv_probe_" + secrets.token_hex(6)
    try:
        await meta.reserve(rid, org_id, nbytes, QUOTA, int(time.time()) + 60, "k-" + rid)
    except QuotaExceeded:
        return True
    await meta.release(rid)
    return False


@pytest.mark.anyio
class MetadataStoreConformance:
    """Every metadata store passes these. Provide `meta`: an opened, migrated store."""

    async def test_migrate_is_idempotent(self, meta: MetadataStore) -> None:
        assert await meta.migrate() == meta.SCHEMA_VERSION
        assert await meta.schema_version() == meta.SCHEMA_VERSION

    async def test_keys(self, meta: MetadataStore) -> None:
        record = _key_record()
        await meta.add_api_key(record)
        assert await meta.find_api_key(record.key_hash) == record
        assert await meta.find_api_key("0" * 64) is None
        assert record in await meta.list_api_keys()
        assert await meta.revoke_api_key(record.id, 123)
        assert not await meta.revoke_api_key(record.id, 456)
        found = await meta.find_api_key(record.key_hash)
        assert found is not None and found.revoked_at == 123

    async def test_insert_get_delete_and_usage(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        record = _file(owner, created_at=now, nbytes=100)
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
        owner, now = _owner(), int(time.time())
        gone = _file(owner, created_at=now - 10, expires_at=now - 1, nbytes=7)
        live = _file(owner, created_at=now, expires_at=now + 3600)
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
        owner, now = _owner(), int(time.time())
        records = [_file(owner, created_at=now - (i % 3)) for i in range(50)]
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
        owner, now = _owner(), int(time.time())
        records = [_file(owner, created_at=now - i) for i in range(5)]
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
            _owner(), purpose=None, limit=10, order="desc", after=None, now=now, position=at
        )
        assert rows == []

    async def test_purpose_filter_and_cursor(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        batch = _file(owner, created_at=now, purpose="batch")
        vision = _file(owner, created_at=now, purpose="vision")
        for r in (batch, vision):
            await meta.insert_file(r, None, QUOTA)
        rows, more = await meta.list_files(
            owner, purpose="batch", limit=10, order="desc", after=None, now=now
        )
        assert (rows, more) == ([batch], False)
        with pytest.raises(CursorNotFound):
            await meta.list_files(
                _owner(), purpose=None, limit=10, order="desc", after=batch.id, now=now
            )

    async def test_reserve_and_insert_respect_the_quota(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        await meta.reserve(
            "rsv_a" + secrets.token_hex(4), owner.org_id, 6000, QUOTA, now + 60, "file-a"
        )
        with pytest.raises(QuotaExceeded) as info:
            await meta.reserve(
                "rsv_b" + secrets.token_hex(4), owner.org_id, 5000, QUOTA, now + 60, "file-b"
            )
        assert (info.value.used, info.value.requested, info.value.quota) == (6000, 5000, QUOTA)
        with pytest.raises(QuotaExceeded):
            await meta.insert_file(_file(owner, created_at=now, nbytes=4001), None, QUOTA)
        await meta.insert_file(_file(owner, created_at=now, nbytes=4000), None, QUOTA)

    async def test_insert_consumes_its_reservation(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        rid = "rsv_" + secrets.token_hex(6)
        record = _file(owner, created_at=now, nbytes=9000)
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
        owner, now = _owner(), int(time.time())
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
        owner, now = _owner(), int(time.time())
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
        owner, now = _owner(), int(time.time())
        inserted: list[FileRecord] = []

        async def attempt() -> None:
            record = _file(owner, created_at=now, nbytes=1000)
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
        owner, now = _owner(), int(time.time())
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
        owner, now = _owner(), int(time.time())
        await meta.insert_file(
            _file(owner, created_at=now - 10, expires_at=now - 1, nbytes=QUOTA), None, QUOTA
        )
        # Not yet swept, but expired: its bytes are free for the organization.
        await meta.insert_file(_file(owner, created_at=now, nbytes=QUOTA), None, QUOTA)

    async def test_keys_are_listed_in_creation_order(self, meta: MetadataStore) -> None:
        base = int(time.time()) - 1000

        later, earlier = _key_record(base + 1), _key_record(base)
        await meta.add_api_key(later)
        await meta.add_api_key(earlier)
        listed = [k.id for k in await meta.list_api_keys() if k.id in (earlier.id, later.id)]
        assert listed == [earlier.id, later.id]

    async def test_racing_revokes_have_one_winner(self, meta: MetadataStore) -> None:
        record = _key_record()
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

    async def test_racing_deletes_have_one_winner(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        record = _file(owner, created_at=now, nbytes=300)
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
        owner, now = _owner(), int(time.time())
        expired = [
            _file(owner, created_at=now - 10, expires_at=now - 1, nbytes=5) for _ in range(30)
        ]
        for r in expired:
            await meta.insert_file(r, None, QUOTA)
        popped: list[FileRecord] = []

        async def sweeper() -> None:
            while batch := await meta.pop_expired(now, 3):
                popped.extend(batch)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sweeper)
        ids = [r.id for r in popped]
        assert len(ids) == len(set(ids))  # no row handed out twice
        assert {r.id for r in expired} <= set(ids)
        assert await meta.usage(owner.org_id) == 0
        assert await meta.pop_expired(now, 10) == []

    async def test_a_refused_insert_changes_nothing(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        await meta.insert_file(_file(owner, created_at=now, nbytes=4000), None, QUOTA)
        rid = "rsv_" + secrets.token_hex(6)
        too_big = _file(owner, created_at=now, nbytes=QUOTA)
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
        owner, now = _owner(), int(time.time())
        rid = "rsv_" + secrets.token_hex(6)
        await meta.reserve(rid, owner.org_id, QUOTA, QUOTA, now + 60, "k-gone")
        await meta.release(rid)
        await meta.release(rid)  # twice: no error
        await meta.renew(rid, now + 3600)  # renewing what is gone: no error, no revival
        assert await meta.named_blob_keys(["k-gone"]) == set()
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, QUOTA, QUOTA, now + 60, "k")
        await meta.release("rsv_never_" + secrets.token_hex(6))  # never existed: no error

    async def test_paging_goes_on_from_a_cursor_that_expired(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        first = _file(owner, created_at=now - 2, expires_at=now + 1)
        second = _file(owner, created_at=now - 1)
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
        owner, now = _owner(), int(time.time())
        expired = _file(owner, created_at=now - 10, expires_at=now - 1, nbytes=70)
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
        owner, now = _owner(), int(time.time())
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 10, QUOTA, now - 5, "k-a")
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 10, QUOTA, now + 60, "k-b")
        await meta.purge_reservations(now)
        await meta.purge_reservations(now)  # twice: the same
        assert await meta.named_blob_keys(["k-a", "k-b"]) == {"k-b"}

    async def test_shared_says_a_bool(self, meta: MetadataStore) -> None:
        assert isinstance(meta.shared, bool)

    async def test_duplicates_raise_and_change_nothing(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        key = _key_record(now)
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

        record = _file(owner, created_at=now, nbytes=100)
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

    # -- uploads --

    async def test_uploads_are_stored_listed_and_private(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        older = await _start_upload(meta, owner, now=now - 2)
        same_a = await _start_upload(meta, owner, now=now)
        same_b = await _start_upload(meta, owner, now=now)
        assert await meta.get_upload(owner, older.id) == older
        other = Owner(owner.org_id, "proj_other")
        assert await meta.get_upload(other, older.id) is None
        assert await meta.get_upload(owner, "upload_" + secrets.token_hex(12)) is None
        newest = sorted([same_a, same_b], key=lambda u: u.id, reverse=True)
        assert await meta.list_uploads(owner, None, 10) == [*newest, older]
        assert await meta.list_uploads(owner, None, 2) == newest
        assert await meta.list_uploads(other, None, 10) == []
        # "pending" also lists the ones completing (clients see them pending).
        completing = await meta.begin_completion(owner, same_a.id, now)
        assert completing == dataclasses.replace(same_a, status="completing", completing_since=now)
        await meta.cancel_upload(owner, older.id, now)
        pending = await meta.list_uploads(owner, "pending", 10)
        assert [u.id for u in pending] == [u.id for u in newest]
        assert [u.id for u in await meta.list_uploads(owner, "cancelled", 10)] == [older.id]
        assert await meta.list_uploads(owner, "completed", 10) == []
        try:
            await meta.insert_upload(dataclasses.replace(older, filename="twin"))
        except Exception:
            pass
        else:
            pytest.fail("a second upload with the same id was stored")

    async def test_parts_keep_arrival_order_and_their_keys_are_named(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        parts = [_part(upload, now=now, nbytes=i + 1) for i in range(6)]
        for part in parts:
            assert await meta.add_part(owner, part, now) == upload
        assert await meta.list_parts(upload.id) == parts
        assert await meta.list_parts("upload_" + secrets.token_hex(12)) == []
        keys = [p.blob_key for p in parts]
        assert await meta.named_blob_keys([*keys, "k-none"]) == set(keys)
        # The upload's file key is named by its reservation until the upload ends.
        assert await meta.named_blob_keys([upload.file_key]) == {upload.file_key}
        try:
            await meta.add_part(owner, dataclasses.replace(parts[0], bytes=99), now)
        except Exception:
            pass
        else:
            pytest.fail("a second part with the same id was stored")
        assert await meta.list_parts(upload.id) == parts
        # Counted as added, refused ones not: 6 parts of 1 to 6 bytes.
        assert await meta.parts_total(upload.id) == (6, 21)
        assert await meta.parts_total("upload_" + secrets.token_hex(12)) == (0, 0)

    async def test_parts_never_hold_more_than_the_uploads_bytes(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now, nbytes=100)
        first = _part(upload, now=now, nbytes=60)
        await meta.add_part(owner, first, now)
        over = _part(upload, now=now, nbytes=41)
        with pytest.raises(UploadFull) as info:
            await meta.add_part(owner, over, now)
        assert (info.value.record, info.value.held, info.value.requested) == (upload, 60, 41)
        last = _part(upload, now=now, nbytes=40)
        await meta.add_part(owner, last, now)
        with pytest.raises(UploadFull):
            await meta.add_part(owner, _part(upload, now=now, nbytes=1), now)
        await meta.add_part(owner, _part(upload, now=now, nbytes=0), now)  # an empty one fits
        assert [p.bytes for p in await meta.list_parts(upload.id)] == [60, 40, 0]
        assert await meta.named_blob_keys([over.blob_key]) == set()
        empty = await _start_upload(meta, owner, now=now, nbytes=0)
        with pytest.raises(UploadFull):
            await meta.add_part(owner, _part(empty, now=now, nbytes=1), now)

    async def test_racing_parts_never_pass_the_uploads_bytes(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now, nbytes=30)
        accepted: list[str] = []
        full: list[str] = []

        async def add(part: PartRecord) -> None:
            try:
                await meta.add_part(owner, part, now)
                accepted.append(part.id)
            except UploadFull:
                full.append(part.id)

        parts = [_part(upload, now=now, nbytes=10) for _ in range(10)]
        async with anyio.create_task_group() as tg:
            for part in parts:
                tg.start_soon(add, part)
        assert len(accepted) == 3 and len(full) == 7
        assert sorted(p.id for p in await meta.list_parts(upload.id)) == sorted(accepted)

    async def test_a_part_of_an_unknown_or_foreign_upload_is_refused(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        part = _part(upload, now=now)
        for who in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            with pytest.raises(UploadNotFound):
                await meta.add_part(who, part, now)
        stray = _part(_upload(owner, now=now), now=now)
        with pytest.raises(UploadNotFound):
            await meta.add_part(owner, stray, now)
        for who in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            with pytest.raises(UploadNotFound):
                await meta.begin_completion(who, upload.id, now)
            with pytest.raises(UploadNotFound):
                await meta.cancel_upload(who, upload.id, now)
        assert await meta.list_parts(upload.id) == []
        assert await meta.named_blob_keys([part.blob_key, stray.blob_key]) == set()
        assert (await meta.get_upload(owner, upload.id)) == upload

    async def test_a_part_after_expiry_completion_or_cancel_is_refused(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        expiring = await _start_upload(meta, owner, now=now - 3600)  # expires at `now`
        completing = await _start_upload(meta, owner, now=now)
        completed = await _start_upload(meta, owner, now=now)
        cancelled = await _start_upload(meta, owner, now=now)
        await meta.begin_completion(owner, completing.id, now)
        await meta.begin_completion(owner, completed.id, now)
        await meta.finish_completion(completed.id, _upload_file(completed, now=now), QUOTA)
        await meta.cancel_upload(owner, cancelled.id, now)
        cases = {
            expiring.id: "expired",  # not swept yet: expired all the same
            completing.id: "completing",
            completed.id: "completed",
            cancelled.id: "cancelled",
        }
        for upload_id, status in cases.items():
            upload = await meta.get_upload(owner, upload_id)
            assert upload is not None
            part = _part(upload, now=now)
            with pytest.raises(UploadNotPending) as info:
                await meta.add_part(owner, part, now)
            assert info.value.record.id == upload_id
            assert info.value.record.status == status
            with pytest.raises(UploadNotPending) as info:
                await meta.begin_completion(owner, upload_id, now)
            assert info.value.record.status == status
            with pytest.raises(UploadNotPending) as info:
                await meta.cancel_upload(owner, upload_id, now)
            assert info.value.record.status == status
            assert await meta.list_parts(upload_id) == []
            assert await meta.named_blob_keys([part.blob_key]) == set()
        # One second earlier, the expiring upload still takes parts.
        assert await meta.add_part(owner, _part(expiring, now=now), now - 1) == expiring
        stored = await meta.get_upload(owner, expiring.id)
        assert stored is not None and stored.status == "pending"  # the stored status

    async def test_completion_consumes_the_reservation_and_drops_the_parts(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now, nbytes=6000)
        parts = [_part(upload, now=now, nbytes=3000) for _ in range(2)]
        for part in parts:
            await meta.add_part(owner, part, now)
        assert await meta.usage(owner.org_id) == 0  # reserved, not used
        assert await _fills_quota(meta, owner.org_id, 4001)
        begun = await meta.begin_completion(owner, upload.id, now)
        assert begun.status == "completing"
        assert await meta.get_upload(owner, upload.id) == begun
        assert await meta.list_parts(upload.id) == parts  # the parts stay while completing
        file = _upload_file(upload, now=now)
        assert await meta.get_file(owner, file.id, now) is None
        await meta.finish_completion(upload.id, file, QUOTA)
        assert await meta.get_upload(owner, upload.id) == dataclasses.replace(
            upload, status="completed", file_id=file.id
        )
        assert await meta.get_file(owner, file.id, now) == file
        assert await meta.usage(owner.org_id) == 6000  # the file, once
        assert not await _fills_quota(meta, owner.org_id, 4000)
        assert await _fills_quota(meta, owner.org_id, 4001)
        assert await meta.list_parts(upload.id) == []
        keys = [p.blob_key for p in parts]
        assert await meta.named_blob_keys([*keys, file.blob_key]) == {file.blob_key}
        with pytest.raises(UploadNotPending) as info:
            await meta.finish_completion(upload.id, _upload_file(upload, now=now), QUOTA)
        assert info.value.record.status == "completed"

    async def test_a_refused_finish_changes_nothing(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        await meta.insert_file(_file(owner, created_at=now, nbytes=9000), None, QUOTA)
        upload = await _start_upload(meta, owner, now=now, nbytes=1000)
        part = _part(upload, now=now, nbytes=1000)
        await meta.add_part(owner, part, now)
        file = _upload_file(upload, now=now)
        with pytest.raises(UploadNotPending) as info:  # not begun
            await meta.finish_completion(upload.id, file, QUOTA)
        assert info.value.record.status == "pending"
        with pytest.raises(UploadNotFound):
            await meta.finish_completion("upload_" + secrets.token_hex(12), file, QUOTA)
        await meta.begin_completion(owner, upload.id, now)
        # A file larger than the reservation passes the quota: refused, nothing changes.
        with pytest.raises(QuotaExceeded):
            await meta.finish_completion(
                upload.id, _upload_file(upload, now=now, nbytes=1001), QUOTA
            )
        stored = await meta.get_upload(owner, upload.id)
        assert stored is not None and stored.status == "completing"
        assert await meta.get_file(owner, file.id, now) is None
        assert await meta.list_parts(upload.id) == [part]
        assert await meta.usage(owner.org_id) == 9000
        assert await _fills_quota(meta, owner.org_id, 1)  # the reservation is still held
        await meta.finish_completion(upload.id, file, QUOTA)  # the right size fits
        assert await meta.usage(owner.org_id) == QUOTA

    async def test_an_aborted_completion_leaves_the_upload_pending(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        first = _part(upload, now=now)
        await meta.add_part(owner, first, now)
        await meta.begin_completion(owner, upload.id, now)
        await meta.abort_completion(upload.id)
        assert await meta.get_upload(owner, upload.id) == upload
        await meta.abort_completion(upload.id)  # pending already: no change
        await meta.abort_completion("upload_" + secrets.token_hex(12))  # unknown: no error
        second = _part(upload, now=now)
        await meta.add_part(owner, second, now)
        assert await meta.list_parts(upload.id) == [first, second]
        assert (await meta.begin_completion(owner, upload.id, now)).status == "completing"
        await meta.finish_completion(upload.id, _upload_file(upload, now=now), QUOTA)
        await meta.abort_completion(upload.id)  # completed: no change
        stored = await meta.get_upload(owner, upload.id)
        assert stored is not None and stored.status == "completed"

    async def test_a_stale_completion_is_taken_over(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now - 1000, nbytes=10)
        part = _part(upload, now=now - 1000, nbytes=10)
        await meta.add_part(owner, part, now - 1000)
        dead = await meta.begin_completion(owner, upload.id, now - 700)
        assert dead.completing_since == now - 700
        # Not stale yet (or no takeover asked): refused as completing.
        for stale_before in (now - 701, None):
            with pytest.raises(UploadNotPending) as info:
                await meta.begin_completion(owner, upload.id, now, stale_before=stale_before)
            assert info.value.record.status == "completing"
        # Stale: taken over, its parts still there.
        taken = await meta.begin_completion(owner, upload.id, now, stale_before=now - 700)
        assert taken == dataclasses.replace(upload, status="completing", completing_since=now)
        assert await meta.get_upload(owner, upload.id) == taken
        assert await meta.list_parts(upload.id) == [part]
        # The dead attempt, if it wakes up, can neither finish nor abort it.
        file = _upload_file(upload, now=now)
        with pytest.raises(UploadNotPending):
            await meta.finish_completion(upload.id, file, QUOTA, since=dead.completing_since)
        assert await meta.abort_completion(upload.id, since=dead.completing_since) is False
        assert await meta.get_upload(owner, upload.id) == taken
        # Another owner's is still unknown; the new attempt finishes.
        with pytest.raises(UploadNotFound):
            await meta.begin_completion(
                Owner(owner.org_id, "proj_other"), upload.id, now, stale_before=now
            )
        await meta.finish_completion(upload.id, file, QUOTA, since=taken.completing_since)
        done = await meta.get_upload(owner, upload.id)
        assert done == dataclasses.replace(upload, status="completed", file_id=file.id)
        assert await meta.usage(owner.org_id) == 10
        # An expired stale completion is not taken over: it is the sweeper's.
        late = await _start_upload(meta, owner, now=now - 4000)
        await meta.begin_completion(owner, late.id, now - 3700)
        with pytest.raises(UploadNotPending) as info:
            await meta.begin_completion(owner, late.id, now, stale_before=now - 600)
        assert info.value.record.status == "expired"

    async def test_a_renewed_completion_is_not_taken_over(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now - 1000, nbytes=10)
        begun = await meta.begin_completion(owner, upload.id, now - 700)
        assert await meta.renew_completion(upload.id, now - 701, now - 60) is False
        assert await meta.renew_completion(upload.id, now - 700, now - 60) is True
        # Renewed a minute ago: not stale, and the old token is no longer the attempt's.
        with pytest.raises(UploadNotPending):
            await meta.begin_completion(owner, upload.id, now, stale_before=now - 600)
        assert await meta.abort_completion(upload.id, since=begun.completing_since) is False
        assert upload.id not in {r.id for r in await meta.reopen_completions(now - 600, 100)}
        # Taken over once stale: the renewal of the attempt taken over fails.
        taken = await meta.begin_completion(owner, upload.id, now + 600, stale_before=now)
        assert await meta.renew_completion(upload.id, now - 60, now + 601) is False
        assert await meta.get_upload(owner, upload.id) == taken
        await meta.abort_completion(upload.id, since=taken.completing_since)
        assert await meta.renew_completion(upload.id, now + 600, now + 601) is False

    async def test_abort_with_the_attempts_token(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        begun = await meta.begin_completion(owner, upload.id, now)
        assert await meta.abort_completion(upload.id, since=now - 1) is False
        assert await meta.abort_completion(upload.id, since=begun.completing_since) is True
        assert await meta.get_upload(owner, upload.id) == upload
        assert await meta.abort_completion(upload.id) is False

    async def test_a_stale_completion_is_cancelled_or_reopened(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        uploads = [await _start_upload(meta, owner, now=now - 1000) for _ in range(3)]
        stale, young, cancelled = uploads
        parts = {u.id: _part(u, now=now - 1000) for u in uploads}
        for u in uploads:
            await meta.add_part(owner, parts[u.id], now - 1000)
            since = now - 10 if u is young else now - 700
            await meta.begin_completion(owner, u.id, since)
        # Cancel takes over a stale completion, as begin_completion does; not a young one.
        with pytest.raises(UploadNotPending) as info:
            await meta.cancel_upload(owner, young.id, now, stale_before=now - 600)
        assert info.value.record.status == "completing"
        with pytest.raises(UploadNotPending):
            await meta.cancel_upload(owner, cancelled.id, now)
        record, keys = await meta.cancel_upload(owner, cancelled.id, now, stale_before=now - 600)
        assert record == dataclasses.replace(cancelled, status="cancelled")
        assert keys == [parts[cancelled.id].blob_key]
        # Reopened: the stale one only, then every one (nobody completes anything).
        ours = {u.id for u in uploads}
        reopened = await meta.reopen_completions(now - 600, 100)
        assert [(r.id, r.completing_since) for r in reopened if r.id in ours] == [
            (stale.id, now - 700)
        ]
        assert await meta.get_upload(owner, stale.id) == stale
        assert await meta.list_parts(stale.id) == [parts[stale.id]]
        assert await meta.get_upload(owner, young.id) == dataclasses.replace(
            young, status="completing", completing_since=now - 10
        )
        assert [r.id for r in await meta.reopen_completions(None, 100) if r.id in ours] == [
            young.id
        ]
        assert await meta.get_upload(owner, young.id) == young
        assert await meta.reopen_completions(None, 100) == []

    async def test_cancel_gives_the_reservation_back_and_the_part_keys(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now, nbytes=QUOTA)
        assert await _fills_quota(meta, owner.org_id, 1)
        parts = [_part(upload, now=now) for _ in range(3)]
        for part in parts:
            await meta.add_part(owner, part, now)
        record, keys = await meta.cancel_upload(owner, upload.id, now)
        assert record == dataclasses.replace(upload, status="cancelled")
        assert keys == [p.blob_key for p in parts]
        assert await meta.get_upload(owner, upload.id) == record
        assert await meta.list_parts(upload.id) == []
        assert await meta.named_blob_keys([*keys, upload.file_key]) == set()
        assert not await _fills_quota(meta, owner.org_id, QUOTA)
        assert await meta.usage(owner.org_id) == 0
        with pytest.raises(UploadNotPending) as info:
            await meta.cancel_upload(owner, upload.id, now)
        assert info.value.record.status == "cancelled"
        with pytest.raises(UploadNotFound):
            await meta.cancel_upload(owner, "upload_" + secrets.token_hex(12), now)
        empty = await _start_upload(meta, owner, now=now)
        assert (await meta.cancel_upload(owner, empty.id, now))[1] == []

    async def test_expired_uploads_are_popped_with_their_part_keys(
        self, meta: MetadataStore
    ) -> None:
        owner, now = _owner(), int(time.time())
        stale = await _start_upload(meta, owner, now=now - 4000, nbytes=3000)
        stuck = await _start_upload(meta, owner, now=now - 4000, nbytes=3000)
        live = await _start_upload(meta, owner, now=now, nbytes=3000)
        done = await _start_upload(meta, owner, now=now - 4000, nbytes=100)
        stale_parts = [_part(stale, now=now - 3999) for _ in range(2)]
        for part in stale_parts:
            await meta.add_part(owner, part, now - 3999)
        stuck_part = _part(stuck, now=now - 3999)
        await meta.add_part(owner, stuck_part, now - 3999)
        live_part = _part(live, now=now)
        await meta.add_part(owner, live_part, now)
        for upload in (stuck, done):  # a completion that died, one that finished
            await meta.begin_completion(owner, upload.id, now - 3999)
        await meta.finish_completion(done.id, _upload_file(done, now=now - 3999), QUOTA)
        popped = dict(await meta.pop_expired_uploads(now, 100))
        expired = {r.id: r for r in popped}
        assert set(expired) >= {stale.id, stuck.id}
        assert live.id not in expired and done.id not in expired
        assert expired[stale.id] == dataclasses.replace(stale, status="expired")
        assert expired[stuck.id] == dataclasses.replace(stuck, status="expired")
        assert popped[expired[stale.id]] == [p.blob_key for p in stale_parts]
        assert popped[expired[stuck.id]] == [stuck_part.blob_key]
        assert await meta.get_upload(owner, stale.id) == expired[stale.id]
        gone = [*(p.blob_key for p in stale_parts), stuck_part.blob_key]
        assert await meta.named_blob_keys(gone) == set()
        assert await meta.named_blob_keys([live_part.blob_key]) == {live_part.blob_key}
        assert await meta.list_parts(stale.id) == []
        # Their reservations are given back: the live upload's and the done file count.
        assert await meta.usage(owner.org_id) == 100
        assert not await _fills_quota(meta, owner.org_id, QUOTA - 3100)
        assert await _fills_quota(meta, owner.org_id, QUOTA - 3099)
        # An expired upload is done: no completion, no late finish of the dead one.
        with pytest.raises(UploadNotPending) as info:
            await meta.finish_completion(stuck.id, _upload_file(stuck, now=now), QUOTA)
        assert info.value.record.status == "expired"
        assert await meta.get_file(owner, stuck.file_key, now) is None
        assert [
            r for r, _ in await meta.pop_expired_uploads(now, 100) if r.org_id == owner.org_id
        ] == []

    async def test_racing_completions_have_one_winner(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        won: list[UploadRecord] = []
        lost: list[str] = []

        async def attempt(at: int) -> None:
            try:
                won.append(await meta.begin_completion(owner, upload.id, at, at - 600))
            except UploadNotPending as exc:
                lost.append(exc.record.status)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(attempt, now)
        assert won == [dataclasses.replace(upload, status="completing", completing_since=now)]
        assert lost == ["completing"] * 9
        # Racing takeovers of a stale completion: one wins too.
        won.clear()
        lost.clear()
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(attempt, now + 700)
        assert won == [dataclasses.replace(upload, status="completing", completing_since=now + 700)]
        assert lost == ["completing"] * 9

    async def test_racing_cancels_have_one_winner(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now)
        part = _part(upload, now=now)
        await meta.add_part(owner, part, now)
        won: list[list[str]] = []
        lost: list[str] = []

        async def attempt() -> None:
            try:
                won.append((await meta.cancel_upload(owner, upload.id, now))[1])
            except UploadNotPending as exc:
                lost.append(exc.record.status)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(attempt)
        assert won == [[part.blob_key]]  # the part keys are handed out once
        assert lost == ["cancelled"] * 9

    async def test_parts_racing_completion_and_cancel(self, meta: MetadataStore) -> None:
        """Of a completion and a cancel racing parts, exactly one wins, and every part is
        either recorded before that move (and belongs to it) or refused."""
        owner, now = _owner(), int(time.time())
        upload = await _start_upload(meta, owner, now=now, nbytes=200)
        accepted: list[str] = []
        refused: list[str] = []
        moves: list[tuple[str, list[str]]] = []

        async def add(part: PartRecord) -> None:
            try:
                await meta.add_part(owner, part, now)
                accepted.append(part.blob_key)
            except UploadNotPending:
                refused.append(part.blob_key)

        async def complete() -> None:
            with contextlib.suppress(UploadNotPending):
                await meta.begin_completion(owner, upload.id, now)
                keys = [p.blob_key for p in await meta.list_parts(upload.id)]
                moves.append(("completing", keys))

        async def cancel() -> None:
            with contextlib.suppress(UploadNotPending):
                moves.append(("cancelled", (await meta.cancel_upload(owner, upload.id, now))[1]))

        parts = [_part(upload, now=now) for _ in range(20)]
        async with anyio.create_task_group() as tg:
            for i, part in enumerate(parts):
                tg.start_soon(add, part)
                if i == 5:
                    tg.start_soon(complete)
                    tg.start_soon(cancel)
                    tg.start_soon(complete)
        assert len(moves) == 1
        status, keys = moves[0]
        assert sorted(keys) == sorted(accepted)
        assert len(accepted) + len(refused) == len(parts)
        stored = await meta.get_upload(owner, upload.id)
        assert stored is not None and stored.status == status

    async def test_racing_sweepers_never_share_an_upload(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        uploads = [await _start_upload(meta, owner, now=now - 4000, nbytes=10) for _ in range(30)]
        parts = {u.id: _part(u, now=now - 3999) for u in uploads}
        for part in parts.values():
            await meta.add_part(owner, part, now - 3999)
        popped: list[tuple[UploadRecord, list[str]]] = []

        async def sweeper() -> None:
            while batch := await meta.pop_expired_uploads(now, 3):
                popped.extend(batch)

        async with anyio.create_task_group() as tg:
            for _ in range(4):
                tg.start_soon(sweeper)
        ids = [r.id for r, _ in popped]
        assert len(ids) == len(set(ids))  # no upload handed out twice
        mine = {r.id: keys for r, keys in popped if r.org_id == owner.org_id}
        assert mine == {u.id: [parts[u.id].blob_key] for u in uploads}
        assert await meta.pop_expired_uploads(now, 10) == []
        assert not await _fills_quota(meta, owner.org_id, QUOTA)

    # -- a project's pending uploads, and finished ones --
    async def test_open_upload_keeps_to_the_projects_limits(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        sibling = Owner(owner.org_id, "proj_" + secrets.token_hex(4))

        async def open_(who: Owner, nbytes: int, **kw: Any) -> UploadRecord:
            record = _upload(who, now=now, nbytes=nbytes, **kw)
            await meta.open_upload(
                record,
                quota=QUOTA,
                reserved_until=record.expires_at + 600,
                max_pending=3,
                max_pending_bytes=1000,
            )
            return record

        first = await open_(owner, 600)
        assert await meta.get_upload(owner, first.id) == first
        assert await meta.named_blob_keys([first.file_key]) == {first.file_key}
        assert await meta.committed_bytes(owner.org_id, now) == 600
        with pytest.raises(PendingUploadsExceeded) as info:
            await open_(owner, 401)
        got = info.value
        assert (got.what, got.held, got.requested, got.limit) == ("bytes", 600, 401, 1000)
        second = await open_(owner, 400)
        with pytest.raises(PendingUploadsExceeded):
            await open_(owner, 1)
        await open_(owner, 0)
        with pytest.raises(PendingUploadsExceeded) as info:
            await open_(owner, 0)
        got = info.value
        assert (got.what, got.held, got.requested, got.limit) == ("uploads", 3, 1, 3)
        # Another project of the organization has limits of its own; the quota is shared.
        await open_(sibling, 1000)
        rid = "rsv_" + secrets.token_hex(6)
        await meta.reserve(rid, owner.org_id, QUOTA - 2000, QUOTA, now + 60, "k-" + rid)
        with pytest.raises(QuotaExceeded):
            await open_(Owner(owner.org_id, "proj_" + secrets.token_hex(4)), 1)
        await meta.release(rid)
        # A cancelled upload holds nothing more; a completing one still does.
        await meta.cancel_upload(owner, first.id, now)
        await meta.begin_completion(owner, second.id, now)
        third = await open_(owner, 600)
        with pytest.raises(PendingUploadsExceeded) as info:
            await open_(owner, 1)
        assert info.value.what == "uploads"
        # An upload past its hour is no longer pending, but holds its bytes until swept.
        await meta.cancel_upload(owner, third.id, now)
        await open_(owner, 600, created_at=now - 3600, expires_at=now)
        with pytest.raises(PendingUploadsExceeded) as info:
            await open_(owner, 1)
        assert info.value.what == "bytes"
        refused = _upload(owner, now=now, nbytes=1)
        assert await meta.get_upload(owner, refused.id) is None
        assert await meta.named_blob_keys([refused.file_key]) == set()

    async def test_racing_uploads_never_pass_the_projects_limit(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        opened: list[str] = []
        refused: list[str] = []

        async def open_() -> None:
            record = _upload(owner, now=now, nbytes=1)
            try:
                await meta.open_upload(
                    record,
                    quota=QUOTA,
                    reserved_until=record.expires_at,
                    max_pending=3,
                    max_pending_bytes=QUOTA,
                )
                opened.append(record.id)
            except PendingUploadsExceeded:
                refused.append(record.id)

        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(open_)
        assert len(opened) == 3 and len(refused) == 7
        assert await meta.count_pending_uploads(owner, now) == 3

    async def test_finished_uploads_are_purged(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        old = now - 10_000  # their hour ended at `old + 3600`
        completed = await _start_upload(meta, owner, now=old, nbytes=10)
        part = _part(completed, now=old, nbytes=10)
        await meta.add_part(owner, part, old)
        await meta.begin_completion(owner, completed.id, old)
        await meta.finish_completion(completed.id, _upload_file(completed, now=old), QUOTA)
        cancelled = await _start_upload(meta, owner, now=old)
        await meta.cancel_upload(owner, cancelled.id, old)
        expired = await _start_upload(meta, owner, now=old)
        assert [r.id for r, _ in await meta.pop_expired_uploads(now, 10) if r.id == expired.id]
        pending = await _start_upload(meta, owner, now=now)
        stuck = await _start_upload(meta, owner, now=old)  # past its hour, not yet swept
        recent = await _start_upload(meta, owner, now=now)
        await meta.cancel_upload(owner, recent.id, now)
        # Not before their hour has ended `expired_before` ago.
        assert await meta.purge_uploads(old + 3599, 100) == 0
        purged = 0
        while deleted := await meta.purge_uploads(old + 3600, 2):
            assert deleted <= 2
            purged += deleted
        assert purged >= 3  # other tests' finished uploads may go too
        for gone in (completed, cancelled, expired):
            assert await meta.get_upload(owner, gone.id) is None
        for kept in (pending, stuck, recent):
            assert await meta.get_upload(owner, kept.id) is not None
        # The completed upload's file stays.
        assert await meta.get_file(owner, completed.file_key, now) is not None

    # -- what the web console reads --
    async def test_a_key_is_found_by_its_id(self, meta: MetadataStore) -> None:
        record = _key_record()
        await meta.add_api_key(record)
        assert await meta.get_api_key(record.id) == record
        assert await meta.get_api_key("key_" + secrets.token_hex(6)) is None
        assert await meta.revoke_api_key(record.id, 123)
        found = await meta.get_api_key(record.id)
        assert found is not None and found.revoked_at == 123

    async def test_committed_bytes_count_what_the_quota_counts(self, meta: MetadataStore) -> None:
        owner, other, now = _owner(), _owner(), int(time.time())
        assert await meta.committed_bytes(owner.org_id, now) == 0
        await meta.insert_file(_file(owner, created_at=now, nbytes=100), None, QUOTA)
        await meta.insert_file(
            _file(owner, created_at=now, nbytes=7, expires_at=now + 10), None, QUOTA
        )
        await meta.insert_file(_file(other, created_at=now, nbytes=1000), None, QUOTA)
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 20, QUOTA, now + 60, "k1")
        await meta.reserve("rsv_" + secrets.token_hex(6), owner.org_id, 30, QUOTA, now - 1, "k2")
        # Live files and unlapsed reservations; not the lapsed one, nor another org's.
        assert await meta.committed_bytes(owner.org_id, now) == 127
        # Once a file has expired it counts no more, swept or not.
        assert await meta.committed_bytes(owner.org_id, now + 10) == 120
        assert await meta.committed_bytes(other.org_id, now) == 1000

    async def test_pending_uploads_are_counted_per_owner(self, meta: MetadataStore) -> None:
        owner, now = _owner(), int(time.time())
        same_org = Owner(owner.org_id, "proj_" + secrets.token_hex(4))
        assert await meta.count_pending_uploads(owner, now) == 0
        first = await _start_upload(meta, owner, now=now)
        await _start_upload(meta, owner, now=now)
        await _start_upload(meta, owner, now=now - 4000)  # past its hour, not yet swept
        await _start_upload(meta, same_org, now=now)
        cancelled = await _start_upload(meta, owner, now=now)
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
