"""The metadata store contract for an upload's completion, cancel and expiry, as tests."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import time

import anyio
import pytest

from ..server.stores import (
    MetadataStore,
    Owner,
    PartRecord,
    QuotaExceeded,
    UploadNotFound,
    UploadNotPending,
    UploadRecord,
)
from ._records import (
    QUOTA,
    drain_racing,
    file_row,
    fills_quota,
    fresh_upload,
    new_owner,
    part_row,
    start_upload,
    upload_file_row,
)


@pytest.mark.anyio
class CompletionConformance:
    """An upload's completion (begun, finished, aborted, taken over), cancel and expiry,
    and their races. Provide `meta`."""

    async def test_completion_consumes_the_reservation_and_drops_the_parts(
        self, meta: MetadataStore
    ) -> None:
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now, nbytes=6000)
        parts = [part_row(upload, now=now, nbytes=3000) for _ in range(2)]
        for part in parts:
            await meta.add_part(owner, part, now)
        assert await meta.usage(owner.org_id) == 0  # reserved, not used
        assert await fills_quota(meta, owner.org_id, 4001)
        begun = await meta.begin_completion(owner, upload.id, now)
        assert begun.status == "completing"
        assert await meta.get_upload(owner, upload.id) == begun
        assert await meta.list_parts(upload.id) == parts  # the parts stay while completing
        file = upload_file_row(upload, now=now)
        assert await meta.get_file(owner, file.id, now) is None
        await meta.finish_completion(upload.id, file, QUOTA)
        assert await meta.get_upload(owner, upload.id) == dataclasses.replace(
            upload, status="completed", file_id=file.id
        )
        assert await meta.get_file(owner, file.id, now) == file
        assert await meta.usage(owner.org_id) == 6000  # the file, once
        assert not await fills_quota(meta, owner.org_id, 4000)
        assert await fills_quota(meta, owner.org_id, 4001)
        assert await meta.list_parts(upload.id) == []
        keys = [p.blob_key for p in parts]
        assert await meta.named_blob_keys([*keys, file.blob_key]) == {file.blob_key}
        with pytest.raises(UploadNotPending) as info:
            await meta.finish_completion(upload.id, upload_file_row(upload, now=now), QUOTA)
        assert info.value.record.status == "completed"

    async def test_a_refused_finish_changes_nothing(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        await meta.insert_file(file_row(owner, created_at=now, nbytes=9000), None, QUOTA)
        upload = await start_upload(meta, owner, now=now, nbytes=1000)
        part = part_row(upload, now=now, nbytes=1000)
        await meta.add_part(owner, part, now)
        file = upload_file_row(upload, now=now)
        with pytest.raises(UploadNotPending) as info:  # not begun
            await meta.finish_completion(upload.id, file, QUOTA)
        assert info.value.record.status == "pending"
        with pytest.raises(UploadNotFound):
            await meta.finish_completion("upload_" + secrets.token_hex(12), file, QUOTA)
        await meta.begin_completion(owner, upload.id, now)
        # A file larger than the reservation passes the quota: refused, nothing changes.
        with pytest.raises(QuotaExceeded):
            await meta.finish_completion(
                upload.id, upload_file_row(upload, now=now, nbytes=1001), QUOTA
            )
        stored = await meta.get_upload(owner, upload.id)
        assert stored is not None and stored.status == "completing"
        assert await meta.get_file(owner, file.id, now) is None
        assert await meta.list_parts(upload.id) == [part]
        assert await meta.usage(owner.org_id) == 9000
        assert await fills_quota(meta, owner.org_id, 1)  # the reservation is still held
        await meta.finish_completion(upload.id, file, QUOTA)  # the right size fits
        assert await meta.usage(owner.org_id) == QUOTA

    async def test_an_aborted_completion_leaves_the_upload_pending(
        self, meta: MetadataStore
    ) -> None:
        owner, now, upload = await fresh_upload(meta)
        first = part_row(upload, now=now)
        await meta.add_part(owner, first, now)
        await meta.begin_completion(owner, upload.id, now)
        await meta.abort_completion(upload.id)
        assert await meta.get_upload(owner, upload.id) == upload
        await meta.abort_completion(upload.id)  # pending already: no change
        await meta.abort_completion("upload_" + secrets.token_hex(12))  # unknown: no error
        second = part_row(upload, now=now)
        await meta.add_part(owner, second, now)
        assert await meta.list_parts(upload.id) == [first, second]
        assert (await meta.begin_completion(owner, upload.id, now)).status == "completing"
        await meta.finish_completion(upload.id, upload_file_row(upload, now=now), QUOTA)
        await meta.abort_completion(upload.id)  # completed: no change
        stored = await meta.get_upload(owner, upload.id)
        assert stored is not None and stored.status == "completed"

    async def test_a_stale_completion_is_taken_over(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now - 1000, nbytes=10)
        part = part_row(upload, now=now - 1000, nbytes=10)
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
        file = upload_file_row(upload, now=now)
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
        late = await start_upload(meta, owner, now=now - 4000)
        await meta.begin_completion(owner, late.id, now - 3700)
        with pytest.raises(UploadNotPending) as info:
            await meta.begin_completion(owner, late.id, now, stale_before=now - 600)
        assert info.value.record.status == "expired"

    async def test_a_renewed_completion_is_not_taken_over(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now - 1000, nbytes=10)
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
        owner, now, upload = await fresh_upload(meta)
        begun = await meta.begin_completion(owner, upload.id, now)
        assert await meta.abort_completion(upload.id, since=now - 1) is False
        assert await meta.abort_completion(upload.id, since=begun.completing_since) is True
        assert await meta.get_upload(owner, upload.id) == upload
        assert await meta.abort_completion(upload.id) is False

    async def test_a_stale_completion_is_cancelled_or_reopened(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        uploads = [await start_upload(meta, owner, now=now - 1000) for _ in range(3)]
        stale, young, cancelled = uploads
        parts = {u.id: part_row(u, now=now - 1000) for u in uploads}
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
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now, nbytes=QUOTA)
        assert await fills_quota(meta, owner.org_id, 1)
        parts = [part_row(upload, now=now) for _ in range(3)]
        for part in parts:
            await meta.add_part(owner, part, now)
        record, keys = await meta.cancel_upload(owner, upload.id, now)
        assert record == dataclasses.replace(upload, status="cancelled")
        assert keys == [p.blob_key for p in parts]
        assert await meta.get_upload(owner, upload.id) == record
        assert await meta.list_parts(upload.id) == []
        assert await meta.named_blob_keys([*keys, upload.file_key]) == set()
        assert not await fills_quota(meta, owner.org_id, QUOTA)
        assert await meta.usage(owner.org_id) == 0
        with pytest.raises(UploadNotPending) as info:
            await meta.cancel_upload(owner, upload.id, now)
        assert info.value.record.status == "cancelled"
        with pytest.raises(UploadNotFound):
            await meta.cancel_upload(owner, "upload_" + secrets.token_hex(12), now)
        empty = await start_upload(meta, owner, now=now)
        assert (await meta.cancel_upload(owner, empty.id, now))[1] == []

    async def test_expired_uploads_are_popped_with_their_part_keys(
        self, meta: MetadataStore
    ) -> None:
        owner, now = new_owner(), int(time.time())
        stale = await start_upload(meta, owner, now=now - 4000, nbytes=3000)
        stuck = await start_upload(meta, owner, now=now - 4000, nbytes=3000)
        live = await start_upload(meta, owner, now=now, nbytes=3000)
        done = await start_upload(meta, owner, now=now - 4000, nbytes=100)
        stale_parts = [part_row(stale, now=now - 3999) for _ in range(2)]
        for part in stale_parts:
            await meta.add_part(owner, part, now - 3999)
        stuck_part = part_row(stuck, now=now - 3999)
        await meta.add_part(owner, stuck_part, now - 3999)
        live_part = part_row(live, now=now)
        await meta.add_part(owner, live_part, now)
        for upload in (stuck, done):  # a completion that died, one that finished
            await meta.begin_completion(owner, upload.id, now - 3999)
        await meta.finish_completion(done.id, upload_file_row(done, now=now - 3999), QUOTA)
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
        assert not await fills_quota(meta, owner.org_id, QUOTA - 3100)
        assert await fills_quota(meta, owner.org_id, QUOTA - 3099)
        # An expired upload is done: no completion, no late finish of the dead one.
        with pytest.raises(UploadNotPending) as info:
            await meta.finish_completion(stuck.id, upload_file_row(stuck, now=now), QUOTA)
        assert info.value.record.status == "expired"
        assert await meta.get_file(owner, stuck.file_key, now) is None
        assert [
            r for r, _ in await meta.pop_expired_uploads(now, 100) if r.org_id == owner.org_id
        ] == []

    async def test_racing_completions_have_one_winner(self, meta: MetadataStore) -> None:
        owner, now, upload = await fresh_upload(meta)
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
        owner, now, upload = await fresh_upload(meta)
        part = part_row(upload, now=now)
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
        owner, now = new_owner(), int(time.time())
        upload = await start_upload(meta, owner, now=now, nbytes=200)
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

        parts = [part_row(upload, now=now) for _ in range(20)]
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
        owner, now = new_owner(), int(time.time())
        uploads = [await start_upload(meta, owner, now=now - 4000, nbytes=10) for _ in range(30)]
        parts = {u.id: part_row(u, now=now - 3999) for u in uploads}
        for part in parts.values():
            await meta.add_part(owner, part, now - 3999)
        popped = await drain_racing(lambda: meta.pop_expired_uploads(now, 3))
        ids = [r.id for r, _ in popped]
        assert len(ids) == len(set(ids))  # no upload handed out twice
        mine = {r.id: keys for r, keys in popped if r.org_id == owner.org_id}
        assert mine == {u.id: [parts[u.id].blob_key] for u in uploads}
        assert await meta.pop_expired_uploads(now, 10) == []
        assert not await fills_quota(meta, owner.org_id, QUOTA)
