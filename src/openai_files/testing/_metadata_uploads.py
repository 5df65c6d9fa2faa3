"""The metadata store contract for uploads and their parts, as tests."""

from __future__ import annotations

import dataclasses
import secrets
import time
from typing import Any

import anyio
import pytest

from ..server.stores import (
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
from ._records import (
    QUOTA,
    fresh_upload,
    new_owner,
    part_row,
    start_upload,
    upload_file_row,
    upload_row,
)


@pytest.mark.anyio
class UploadRowsConformance:
    """Uploads and their parts, a project's pending uploads, finished ones. Provide `meta`."""

    # -- uploads --

    async def test_uploads_are_stored_listed_and_private(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        older = await start_upload(meta, owner, now=now - 2)
        same_a = await start_upload(meta, owner, now=now)
        same_b = await start_upload(meta, owner, now=now)
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
        owner, now, upload = await fresh_upload(meta)
        parts = [part_row(upload, now=now, nbytes=i + 1) for i in range(6)]
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
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now, nbytes=100)
        first = part_row(upload, now=now, nbytes=60)
        await meta.add_part(owner, first, now)
        over = part_row(upload, now=now, nbytes=41)
        with pytest.raises(UploadFull) as info:
            await meta.add_part(owner, over, now)
        assert (info.value.record, info.value.held, info.value.requested) == (upload, 60, 41)
        last = part_row(upload, now=now, nbytes=40)
        await meta.add_part(owner, last, now)
        with pytest.raises(UploadFull):
            await meta.add_part(owner, part_row(upload, now=now, nbytes=1), now)
        await meta.add_part(owner, part_row(upload, now=now, nbytes=0), now)  # an empty one fits
        assert [p.bytes for p in await meta.list_parts(upload.id)] == [60, 40, 0]
        assert await meta.named_blob_keys([over.blob_key]) == set()
        empty = await start_upload(meta, owner, now=now, nbytes=0)
        with pytest.raises(UploadFull):
            await meta.add_part(owner, part_row(empty, now=now, nbytes=1), now)

    async def test_racing_parts_never_pass_the_uploads_bytes(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now, nbytes=30)
        accepted: list[str] = []
        full: list[str] = []

        async def add(part: PartRecord) -> None:
            try:
                await meta.add_part(owner, part, now)
                accepted.append(part.id)
            except UploadFull:
                full.append(part.id)

        parts = [part_row(upload, now=now, nbytes=10) for _ in range(10)]
        async with anyio.create_task_group() as tg:
            for part in parts:
                tg.start_soon(add, part)
        assert len(accepted) == 3 and len(full) == 7
        assert sorted(p.id for p in await meta.list_parts(upload.id)) == sorted(accepted)

    async def test_a_part_of_an_unknown_or_foreign_upload_is_refused(
        self, meta: MetadataStore
    ) -> None:
        owner, now, upload = await fresh_upload(meta)
        part = part_row(upload, now=now)
        for who in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            with pytest.raises(UploadNotFound):
                await meta.add_part(who, part, now)
        stray = part_row(upload_row(owner, now=now), now=now)
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
        owner, now = new_owner(), int(time.time())
        expiring = await start_upload(meta, owner, now=now - 3600)  # expires at `now`
        completing = await start_upload(meta, owner, now=now)
        completed = await start_upload(meta, owner, now=now)
        cancelled = await start_upload(meta, owner, now=now)
        await meta.begin_completion(owner, completing.id, now)
        await meta.begin_completion(owner, completed.id, now)
        await meta.finish_completion(completed.id, upload_file_row(completed, now=now), QUOTA)
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
            part = part_row(upload, now=now)
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
        assert await meta.add_part(owner, part_row(expiring, now=now), now - 1) == expiring
        stored = await meta.get_upload(owner, expiring.id)
        assert stored is not None and stored.status == "pending"  # the stored status

    # -- a project's pending uploads, and finished ones --
    async def test_open_upload_keeps_to_the_projects_limits(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        sibling = Owner(owner.org_id, "proj_" + secrets.token_hex(4))

        async def open_(who: Owner, nbytes: int, **kw: Any) -> UploadRecord:
            record = upload_row(who, now=now, nbytes=nbytes, **kw)
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
        refused = upload_row(owner, now=now, nbytes=1)
        assert await meta.get_upload(owner, refused.id) is None
        assert await meta.named_blob_keys([refused.file_key]) == set()

    async def test_racing_uploads_never_pass_the_projects_limit(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        opened: list[str] = []
        refused: list[str] = []

        async def open_() -> None:
            record = upload_row(owner, now=now, nbytes=1)
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
        owner, now = new_owner(), int(time.time())
        old = now - 10_000  # their hour ended at `old + 3600`
        completed = await start_upload(meta, owner, now=old, nbytes=10)
        part = part_row(completed, now=old, nbytes=10)
        await meta.add_part(owner, part, old)
        await meta.begin_completion(owner, completed.id, old)
        await meta.finish_completion(completed.id, upload_file_row(completed, now=old), QUOTA)
        cancelled = await start_upload(meta, owner, now=old)
        await meta.cancel_upload(owner, cancelled.id, old)
        expired = await start_upload(meta, owner, now=old)
        assert [r.id for r, _ in await meta.pop_expired_uploads(now, 10) if r.id == expired.id]
        pending = await start_upload(meta, owner, now=now)
        stuck = await start_upload(meta, owner, now=old)  # past its hour, not yet swept
        recent = await start_upload(meta, owner, now=now)
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
