"""The metadata store contract for batches (OpenAI's Batch API) and their requests, as tests.

The suites may share one database between tests (PostgreSQL's is one per module): what they
read across owners (`active_batches`, `batch_counts`, `release_batch_requests("*")`) is
checked on this test's own rows, or as a difference.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections import Counter
from typing import Any

import anyio
import pytest

from ..server.stores import (
    BatchInputGone,
    BatchNotCancellable,
    BatchRecord,
    BatchRequestRecord,
    BatchResult,
    CursorNotFound,
    FileRecord,
    LeaseLost,
    MetadataStore,
    Owner,
    TooManyBatches,
)
from ._records import (
    QUOTA,
    batch_row,
    file_row,
    new_owner,
    request_rows,
    running_batch,
    start_batch,
)

#: Every status of a batch, and those of a batch not yet ended.
STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
    "completed",
    "failed",
    "cancelled",
    "expired",
)
ACTIVE = ("validating", "in_progress", "finalizing", "cancelling")
ENDED = ("completed", "failed", "cancelled", "expired")


def new_worker() -> str:
    return "worker_" + secrets.token_hex(6)


async def batch_in(
    meta: MetadataStore, owner: Owner, status: str, *, now: int, **kw: Any
) -> BatchRecord:
    """A new batch of the owner moved to `status` by a worker whose lease it keeps."""
    batch = await start_batch(meta, owner, now=now, **kw)
    worker = new_worker()
    assert await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",))
    if status == "validating":
        return await meta.update_batch(batch.id, worker, None, {})
    return await meta.update_batch(batch.id, worker, None, {"status": status})


async def page(meta: MetadataStore, batch_id: str) -> list[BatchRequestRecord]:
    """Every request row of the batch, in line order."""
    return await meta.batch_request_page(batch_id, 0, 1_000_000)


def result(batch_id: str, line: int, outcome: str = "completed", **tokens: int) -> BatchResult:
    return BatchResult(batch_id, line, outcome, f'{{"custom_id":"req-{line}"}}', **tokens)


async def expect_lease_lost(batch: BatchRecord, meta: MetadataStore, call: Any) -> None:
    """`call` raises LeaseLost and the batch's row stays as it was."""
    with pytest.raises(LeaseLost):
        await call
    assert await meta.get_batch(Owner(batch.org_id, batch.project_id), batch.id) == batch


@pytest.mark.anyio
class BatchRowsConformance:
    """Batches, their leases, their requests and results. Provide `meta`."""

    # -- create, get, list --

    async def test_batches_are_stored_read_and_private(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now, metadata='{"k":"v"}', model="m")
        assert await meta.get_batch(owner, batch.id) == batch
        for stranger in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            assert await meta.get_batch(stranger, batch.id) is None
            assert await meta.list_batches(stranger, None, 10) == ([], False)
            with pytest.raises(CursorNotFound):
                await meta.list_batches(stranger, batch.id, 10)
        assert await meta.get_batch(owner, "batch_" + secrets.token_hex(12)) is None
        assert await meta.list_batches(owner, None, 10) == ([batch], False)
        try:
            await meta.create_batch(dataclasses.replace(batch, model="twin"), now, 1000)
        except Exception:
            pass
        else:
            pytest.fail("a second batch with the same id was stored")
        assert await meta.get_batch(owner, batch.id) == batch

    async def test_a_batch_needs_its_owners_live_input_file(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        sibling = Owner(owner.org_id, "proj_" + secrets.token_hex(4))
        live = file_row(owner, created_at=now, expires_at=now + 1, purpose="batch")
        expired = file_row(owner, created_at=now - 10, expires_at=now, purpose="batch")
        foreign = file_row(sibling, created_at=now, purpose="batch")
        deleted = file_row(owner, created_at=now, purpose="batch")
        for f in (live, expired, foreign, deleted):
            await meta.insert_file(f, None, QUOTA)
        assert await meta.delete_file(owner, deleted.id, now) == deleted
        unknown = file_row(owner, created_at=now)
        refused = [
            batch_row(expired, now=now),
            dataclasses.replace(batch_row(foreign, now=now), project_id=owner.project_id),
            batch_row(deleted, now=now),
            batch_row(unknown, now=now),
            batch_row(live, now=now, input_blob_key="k-" + secrets.token_hex(8)),
        ]
        for record in refused:
            with pytest.raises(BatchInputGone):
                await meta.create_batch(record, now, 1000)
            assert await meta.get_batch(owner, record.id) is None
        assert await meta.list_batches(owner, None, 10) == ([], False)
        assert await meta.named_blob_keys([deleted.blob_key, unknown.blob_key]) == set()
        # The live file, one second before it expires, is taken; so is the sibling's own.
        batch = batch_row(live, now=now)
        await meta.create_batch(batch, now, 1000)
        assert await meta.get_batch(owner, batch.id) == batch
        theirs = batch_row(foreign, now=now)
        await meta.create_batch(theirs, now, 1000)
        assert await meta.get_batch(sibling, theirs.id) == theirs

    async def test_a_project_has_at_most_max_active_batches(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        sibling = Owner(owner.org_id, "proj_" + secrets.token_hex(4))
        worker = new_worker()
        kept = [await start_batch(meta, owner, now=now, max_active=2) for _ in range(2)]
        input_file = file_row(owner, created_at=now, purpose="batch")
        await meta.insert_file(input_file, None, QUOTA)
        third = batch_row(input_file, now=now)
        with pytest.raises(TooManyBatches) as info:
            await meta.create_batch(third, now, 2)
        assert (info.value.held, info.value.limit) == (2, 2)
        assert await meta.get_batch(owner, third.id) is None
        # Another project of the organization has a limit of its own.
        await start_batch(meta, sibling, now=now, max_active=2)
        # Every status not yet ended counts; an ended batch does not.
        assert await meta.lease_batch(kept[0].id, worker, now, now + 60, ("validating",))
        for status in ("in_progress", "finalizing", "cancelling"):
            await meta.update_batch(kept[0].id, worker, None, {"status": status})
            with pytest.raises(TooManyBatches):
                await meta.create_batch(third, now, 2)
        for status in ENDED:
            await meta.update_batch(kept[0].id, worker, None, {"status": status})
            await meta.create_batch(third, now, 2)
            assert await meta.get_batch(owner, third.id) == third
            with pytest.raises(TooManyBatches):
                await meta.create_batch(batch_row(input_file, now=now), now, 2)
            await meta.lease_batch(third.id, worker, now, now + 60, ("validating",))
            await meta.update_batch(third.id, worker, None, {"status": "failed"})
            third = batch_row(input_file, now=now)

    async def test_racing_creates_never_pass_max_active(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        files = [file_row(owner, created_at=now, purpose="batch") for _ in range(10)]
        for f in files:
            await meta.insert_file(f, None, QUOTA)
        created: list[str] = []
        refused: list[str] = []

        async def create(input_file: FileRecord) -> None:
            record = batch_row(input_file, now=now)
            try:
                await meta.create_batch(record, now, 3)
                created.append(record.id)
            except TooManyBatches:
                refused.append(record.id)

        async with anyio.create_task_group() as tg:
            for f in files:
                tg.start_soon(create, f)
        assert len(created) == 3 and len(refused) == 7
        listed, _ = await meta.list_batches(owner, None, 100)
        assert sorted(b.id for b in listed) == sorted(created)

    async def test_a_create_racing_the_input_files_delete(self, meta: MetadataStore) -> None:
        # Either the delete comes first (the create raises) or the batch, once the delete
        # has returned, names the file's bytes: the files service may then keep them.
        owner, now = new_owner(), int(time.time())
        outcomes: Counter[str] = Counter()
        for _ in range(20):
            input_file = file_row(owner, created_at=now, purpose="batch")
            await meta.insert_file(input_file, None, QUOTA)
            record = batch_row(input_file, now=now)
            created = named = False

            async def create(record: BatchRecord = record) -> None:
                nonlocal created
                try:
                    await meta.create_batch(record, now, 1000)
                    created = True
                except BatchInputGone:
                    pass

            async def delete(input_file: FileRecord = input_file) -> None:
                nonlocal named
                assert await meta.delete_file(owner, input_file.id, now) == input_file
                named = input_file.blob_key in await meta.named_blob_keys([input_file.blob_key])

            async with anyio.create_task_group() as tg:
                tg.start_soon(create)
                tg.start_soon(delete)
            assert named == created
            assert (await meta.get_batch(owner, record.id) is not None) == created
            outcomes[str(created)] += 1
        assert sum(outcomes.values()) == 20

    async def test_batches_are_listed_newest_first_in_pages(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batches = [await start_batch(meta, owner, now=now - i % 3) for i in range(13)]
        expected = sorted(batches, key=lambda b: (b.created_at, b.id), reverse=True)
        seen: list[BatchRecord] = []
        after = None
        while True:
            rows, more = await meta.list_batches(owner, after, 5)
            assert len(rows) == (5 if more else 13 % 5)
            seen.extend(rows)
            if not more:
                break
            after = rows[-1].id
        assert seen == expected
        assert await meta.list_batches(owner, expected[-1].id, 5) == ([], False)
        assert await meta.list_batches(owner, expected[7].id, 5) == (expected[8:13], False)
        assert await meta.list_batches(owner, None, 13) == (expected, False)
        with pytest.raises(CursorNotFound):
            await meta.list_batches(owner, "batch_" + secrets.token_hex(12), 5)

    # -- cancel --

    async def test_cancel_moves_a_running_batch_to_cancelling(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        for status in ("validating", "in_progress"):
            batch = await batch_in(meta, owner, status, now=now)
            cancelled = await meta.cancel_batch(owner, batch.id, now + 5)
            moved = dataclasses.replace(batch, status="cancelling", cancelling_at=now + 5)
            assert cancelled == moved
            assert await meta.get_batch(owner, batch.id) == moved
            # Again: returned unchanged (its first `cancelling_at` stays).
            assert await meta.cancel_batch(owner, batch.id, now + 9) == moved
            assert await meta.get_batch(owner, batch.id) == moved
        done = await batch_in(meta, owner, "cancelled", now=now)
        assert await meta.cancel_batch(owner, done.id, now + 5) == done
        assert await meta.get_batch(owner, done.id) == done

    async def test_a_batch_past_running_is_not_cancellable(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        for status in ("finalizing", "completed", "failed", "expired"):
            batch = await batch_in(meta, owner, status, now=now)
            with pytest.raises(BatchNotCancellable) as info:
                await meta.cancel_batch(owner, batch.id, now + 5)
            assert info.value.record == batch
            assert await meta.get_batch(owner, batch.id) == batch

    async def test_cancel_of_a_foreign_or_unknown_batch_is_none(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now)
        for stranger in (Owner(owner.org_id, "proj_other"), Owner("org-other", owner.project_id)):
            assert await meta.cancel_batch(stranger, batch.id, now) is None
        assert await meta.cancel_batch(owner, "batch_" + secrets.token_hex(12), now) is None
        assert await meta.get_batch(owner, batch.id) == batch

    # -- the workers' view --

    async def test_active_batches_and_counts(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        before = await meta.batch_counts()
        # Created out of order: the oldest is the last made.
        made = {
            status: await batch_in(meta, owner, status, now=now - 10 * i)
            for i, status in enumerate(STATUSES)
        }
        after = await meta.batch_counts()
        assert set(after) <= set(STATUSES)
        for status in STATUSES:
            assert after.get(status, 0) - before.get(status, 0) == 1
        everything = await meta.active_batches(1_000_000)
        assert all(b.status in ACTIVE for b in everything)
        assert everything == sorted(everything, key=lambda b: (b.created_at, b.id))
        mine = [b for b in everything if b.org_id == owner.org_id]
        assert mine == [made[s] for s in reversed(ACTIVE)]
        assert await meta.active_batches(2) == everything[:2]
        assert await meta.active_batches(0) == []

    async def test_a_batch_lease_is_held_until_it_lapses(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now)
        a, b = new_worker(), new_worker()
        validating = ("validating",)
        leased = await meta.lease_batch(batch.id, a, now, now + 30, validating)
        assert leased == dataclasses.replace(batch, lease_owner=a, lease_until=now + 30)
        assert await meta.get_batch(owner, batch.id) == leased
        assert await meta.lease_batch(batch.id, b, now + 29, now + 60, validating) is None
        # The holder renews it; another worker takes it once it has lapsed.
        renewed = await meta.lease_batch(batch.id, a, now + 10, now + 40, validating)
        assert renewed == dataclasses.replace(leased, lease_until=now + 40)
        assert await meta.lease_batch(batch.id, b, now + 39, now + 90, validating) is None
        taken = await meta.lease_batch(batch.id, b, now + 40, now + 90, validating)
        assert taken == dataclasses.replace(leased, lease_owner=b, lease_until=now + 90)
        assert await meta.lease_batch(batch.id, a, now + 41, now + 90, validating) is None
        await expect_lease_lost(taken, meta, meta.update_batch(batch.id, a, None, {"total": 1}))
        # Only a batch of one of `statuses`.
        assert await meta.lease_batch(batch.id, b, now, now + 90, ("in_progress",)) is None
        later = now + 1000
        assert await meta.lease_batch(batch.id, a, later, later + 1, ("finalizing",)) is None
        assert await meta.get_batch(owner, batch.id) == taken
        held = await meta.lease_batch(batch.id, a, later, later + 1, ("finalizing", "validating"))
        assert held is not None and held.lease_owner == a
        unknown = "batch_" + secrets.token_hex(12)
        assert await meta.lease_batch(unknown, a, now, now + 1, STATUSES) is None

    async def test_racing_workers_one_gets_the_lease(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now)
        workers = [new_worker() for _ in range(8)]
        won: list[str] = []

        async def lease(worker: str) -> None:
            if await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",)):
                won.append(worker)

        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(lease, w)
        assert len(won) == 1
        stored = await meta.get_batch(owner, batch.id)
        assert stored is not None and stored.lease_owner == won[0]

    async def test_update_batch_needs_the_lease(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now)
        worker, other = new_worker(), new_worker()
        changes = {"status": "in_progress", "in_progress_at": now, "total": 3}
        await expect_lease_lost(batch, meta, meta.update_batch(batch.id, worker, None, changes))
        leased = await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",))
        assert leased is not None
        await expect_lease_lost(leased, meta, meta.update_batch(batch.id, other, None, changes))
        for statuses in (("in_progress",), ()):
            call = meta.update_batch(batch.id, worker, statuses, changes)
            await expect_lease_lost(leased, meta, call)
        updated = await meta.update_batch(batch.id, worker, ("validating",), changes)
        assert updated == dataclasses.replace(
            leased, status="in_progress", in_progress_at=now, total=3
        )
        assert await meta.get_batch(owner, batch.id) == updated
        # No change at all: the record, as it is, while the lease is held.
        assert await meta.update_batch(batch.id, worker, ("in_progress",), {}) == updated
        await expect_lease_lost(updated, meta, meta.update_batch(batch.id, other, None, {}))
        every: dict[str, Any] = {
            "metadata": '{"a":"b"}',
            "output_expires_after": 3600,
            "model": "m2",
            "finalizing_at": now + 1,
            "completed_at": now + 2,
            "failed_at": now + 3,
            "expired_at": now + 4,
            "cancelling_at": now + 5,
            "cancelled_at": now + 6,
            "completed": 7,
            "failed": 8,
            "input_tokens": 9,
            "cached_tokens": 10,
            "output_tokens": 11,
            "reasoning_tokens": 12,
            "total_tokens": 13,
            "errors": '[{"code":"x"}]',
            "output_file_id": "file-out",
            "error_file_id": "file-err",
            "output_key": "k-out",
            "error_key": "k-err",
            "lease_until": now + 120,
        }
        updated = await meta.update_batch(batch.id, worker, None, every)
        assert updated == dataclasses.replace(
            leased, status="in_progress", total=3, in_progress_at=now, **every
        )
        # A worker's columns only: not the batch's owner, id, input or request.
        fixed = {
            "id": "batch_" + secrets.token_hex(12),
            "org_id": "org-other",
            "project_id": "proj_other",
            "endpoint": "/v1/embeddings",
            "input_file_id": "file-other",
            "input_blob_key": "k-other",
            "completion_window": "1h",
            "created_at": 1,
            "nonsense": 1,
        }
        for name, value in fixed.items():
            with pytest.raises(ValueError):
                await meta.update_batch(batch.id, worker, None, {"total": 99, name: value})
        assert await meta.get_batch(owner, batch.id) == updated
        # Letting the lease go: from then on the worker holds it no more.
        released = await meta.update_batch(batch.id, worker, None, {"lease_owner": None})
        assert released.lease_owner is None
        await expect_lease_lost(released, meta, meta.update_batch(batch.id, worker, None, {}))

    # -- requests --

    async def test_requests_are_added_and_cleared_under_the_lease(
        self, meta: MetadataStore
    ) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await start_batch(meta, owner, now=now)
        worker, other = new_worker(), new_worker()
        rows = request_rows(batch.id, [3, 1, 7, 2])
        with pytest.raises(LeaseLost):
            await meta.add_batch_requests(batch.id, worker, rows)
        assert await page(meta, batch.id) == []
        assert await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",))
        with pytest.raises(LeaseLost):
            await meta.add_batch_requests(batch.id, other, rows)
        assert await page(meta, batch.id) == []
        await meta.add_batch_requests(batch.id, worker, rows)
        await meta.add_batch_requests(batch.id, worker, request_rows(batch.id, [5]))
        ordered = request_rows(batch.id, [1, 2, 3, 5, 7])
        assert await page(meta, batch.id) == ordered
        assert await meta.batch_request_page(batch.id, 2, 2) == ordered[2:4]
        assert await meta.batch_request_page(batch.id, 3, 100) == ordered[3:]
        assert await meta.batch_request_page(batch.id, 7, 100) == []
        assert await meta.batch_request_page("batch_" + secrets.token_hex(12), 0, 100) == []
        # A duplicate line raises and stores nothing of its call.
        try:
            await meta.add_batch_requests(batch.id, worker, request_rows(batch.id, [8, 9, 1]))
        except Exception:
            pass
        else:
            pytest.fail("a second request of the same line was stored")
        try:
            await meta.add_batch_requests(batch.id, worker, request_rows(batch.id, [10, 10]))
        except Exception:
            pass
        else:
            pytest.fail("a request of the same line was stored twice")
        assert await page(meta, batch.id) == ordered
        # Clearing: by the holder only.
        with pytest.raises(LeaseLost):
            await meta.clear_batch_requests(batch.id, other)
        assert await page(meta, batch.id) == ordered
        await meta.clear_batch_requests(batch.id, worker)
        assert await page(meta, batch.id) == []
        await meta.add_batch_requests(batch.id, worker, ordered)
        # Only a validating batch takes requests; any status may be cleared.
        await meta.update_batch(batch.id, worker, None, {"status": "in_progress"})
        with pytest.raises(LeaseLost):
            await meta.add_batch_requests(batch.id, worker, request_rows(batch.id, [11]))
        assert await page(meta, batch.id) == ordered
        await meta.clear_batch_requests(batch.id, worker)
        assert await page(meta, batch.id) == []
        # Another batch's rows are its own.
        theirs = await running_batch(meta, owner, now=now, lines=2, worker=worker)
        assert [r.line for r in await page(meta, theirs.id)] == [1, 2]

    async def test_claims_take_lapsed_then_queued_requests(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b, c = new_worker(), new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=10, worker=a)
        queued = {r.line: r for r in await page(meta, batch.id)}

        def running(line: int, worker: str, until: int, attempts: int) -> BatchRequestRecord:
            return dataclasses.replace(
                queued[line],
                status="running",
                lease_owner=worker,
                lease_until=until,
                attempts=attempts,
            )

        first = await meta.claim_batch_requests(batch.id, a, now, now + 10, 3)
        assert first == [running(n, a, now + 10, 1) for n in (1, 2, 3)]
        second = await meta.claim_batch_requests(batch.id, b, now, now + 100, 4)
        assert second == [running(n, b, now + 100, 1) for n in (4, 5, 6, 7)]
        assert await meta.release_batch_requests(a, batch.id, [1]) == 1
        # Not yet lapsed: only queued ones.
        assert [
            r.line for r in await meta.claim_batch_requests(batch.id, c, now + 9, now + 50, 1)
        ] == [1]
        # a's lease lapsed at now + 10: its requests come first, lowest line first.
        t = now + 10
        taken = await meta.claim_batch_requests(batch.id, c, t, t + 50, 1)
        assert taken == [running(2, c, t + 50, 2)]
        taken = await meta.claim_batch_requests(batch.id, c, t, t + 50, 3)
        assert taken == [
            running(3, c, t + 50, 2),
            running(8, c, t + 50, 1),
            running(9, c, t + 50, 1),
        ]
        rest = await meta.claim_batch_requests(batch.id, c, t, t + 50, 100)
        assert rest == [running(10, c, t + 50, 1)]
        assert await meta.claim_batch_requests(batch.id, c, t, t + 50, 100) == []
        rows = {r.line: r for r in await page(meta, batch.id)}
        assert rows[5] == running(5, b, now + 100, 1)
        assert rows[2] == running(2, c, t + 50, 2)

    async def test_claims_come_in_line_order(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=700, worker=a)
        assert len(await meta.claim_batch_requests(batch.id, a, now, now + 10, 700)) == 700
        assert await meta.release_batch_requests(a, batch.id, list(range(1, 651))) == 650
        # Lines 651-700 lapsed, then queued lines 1-550: all in line order.
        taken = await meta.claim_batch_requests(batch.id, b, now + 10, now + 60, 600)
        assert [r.line for r in taken] == [*range(1, 551), *range(651, 701)]
        assert [r.attempts for r in taken[-50:]] == [2] * 50

    async def test_nothing_is_claimed_from_a_batch_not_running(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        worker = new_worker()
        for status in ("validating", "finalizing", "cancelling", *ENDED):
            batch = await running_batch(meta, owner, now=now, lines=3, worker=worker)
            await meta.update_batch(batch.id, worker, None, {"status": status})
            assert await meta.claim_batch_requests(batch.id, worker, now, now + 60, 10) == []
            assert await page(meta, batch.id) == request_rows(batch.id, [1, 2, 3])
        # In progress, but past its expiry.
        batch = await running_batch(meta, owner, now=now, lines=3, worker=worker)
        expires = batch.expires_at
        assert await meta.claim_batch_requests(batch.id, worker, expires, expires + 60, 10) == []
        assert len(await meta.claim_batch_requests(batch.id, worker, expires - 1, expires, 1)) == 1
        # Cancelled meanwhile: nothing more.
        await meta.cancel_batch(owner, batch.id, now)
        assert await meta.claim_batch_requests(batch.id, worker, now, now + 60, 10) == []
        unknown = "batch_" + secrets.token_hex(12)
        assert await meta.claim_batch_requests(unknown, worker, now, now + 60, 10) == []

    async def test_racing_claims_never_take_a_request_twice(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        batch = await running_batch(meta, owner, now=now, lines=500, worker=new_worker())
        workers = [new_worker() for _ in range(8)]
        claimed: list[tuple[str, int]] = []

        async def claimer(worker: str) -> None:
            while taken := await meta.claim_batch_requests(batch.id, worker, now, now + 600, 7):
                assert all(r.lease_owner == worker and r.attempts == 1 for r in taken)
                claimed.extend((worker, r.line) for r in taken)

        async with anyio.create_task_group() as tg:
            for w in workers:
                tg.start_soon(claimer, w)
        lines = [line for _, line in claimed]
        assert len(lines) == len(set(lines)) == 500
        assert set(lines) == set(range(1, 501))
        rows = await page(meta, batch.id)
        assert {(r.lease_owner, r.line) for r in rows} == set(claimed)
        assert all(r.status == "running" and r.attempts == 1 for r in rows)
        assert len({w for w, _ in claimed}) > 1  # the claims did interleave

    async def test_renew_moves_every_lease_of_the_worker(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        worker, other = new_worker(), new_worker()
        assert await meta.renew_batch_leases(worker, now + 100) == 0
        batch = await running_batch(meta, owner, now=now, lines=5, worker=worker)
        await meta.claim_batch_requests(batch.id, worker, now, now + 10, 3)
        await meta.claim_batch_requests(batch.id, other, now, now + 10, 1)
        assert await meta.record_batch_results(worker, [result(batch.id, 1)]) == [True]
        # An ended batch whose lease was not let go is not renewed.
        ended = await running_batch(meta, owner, now=now, lines=1, worker=worker)
        await meta.update_batch(ended.id, worker, None, {"status": "completed"})
        # The batch and its two running requests.
        assert await meta.renew_batch_leases(worker, now + 100) == 3
        rows = {r.line: r for r in await page(meta, batch.id)}
        assert [rows[n].lease_until for n in (2, 3)] == [now + 100, now + 100]
        assert rows[1].lease_until is None and rows[1].status == "done"
        assert rows[4].lease_until == now + 10 and rows[4].lease_owner == other
        assert rows[5].lease_until is None and rows[5].status == "queued"
        stored = await meta.get_batch(owner, batch.id)
        assert stored is not None and stored.lease_until == now + 100
        stored = await meta.get_batch(owner, ended.id)
        assert stored is not None and stored.lease_until == now + 60
        assert await meta.renew_batch_leases(other, now + 200) == 1

    async def test_release_puts_requests_back_in_the_queue(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b = new_worker(), new_worker()
        one = await running_batch(meta, owner, now=now, lines=6, worker=a)
        two = await running_batch(meta, owner, now=now, lines=2, worker=a)
        await meta.claim_batch_requests(one.id, a, now, now + 60, 4)
        await meta.claim_batch_requests(one.id, b, now, now + 60, 2)
        await meta.claim_batch_requests(two.id, a, now, now + 60, 2)
        assert await meta.release_batch_requests(a, one.id, []) == 0
        assert await meta.release_batch_requests(a, one.id, [2, 3, 5]) == 2  # 5 is b's
        rows = {r.line: r for r in await page(meta, one.id)}
        for line in (2, 3):
            assert (rows[line].status, rows[line].lease_owner, rows[line].lease_until) == (
                "queued",
                None,
                None,
            )
        assert rows[5].status == "running" and rows[5].lease_owner == b
        assert await meta.release_batch_requests(a, one.id) == 2  # lines 1 and 4
        assert [r.status for r in await page(meta, two.id)] == ["running", "running"]
        assert await meta.release_batch_requests(a) == 2  # two's
        assert await meta.release_batch_requests(a) == 0
        assert [r.status for r in await page(meta, two.id)] == ["queued", "queued"]
        # A request done is not running: never released.
        assert await meta.record_batch_results(b, [result(one.id, 5)]) == [True]
        assert await meta.release_batch_requests("*", one.id) == 1  # b's line 6
        assert await meta.release_batch_requests("*") >= 0
        assert [r.status for r in await page(meta, one.id)] == ["queued"] * 4 + ["done", "queued"]
        # Released requests are claimed again.
        again = await meta.claim_batch_requests(one.id, b, now, now + 60, 10)
        assert [r.line for r in again] == [1, 2, 3, 4, 6]

    # -- results --

    async def test_results_are_recorded_and_counted_once(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        worker, other = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=6, worker=worker)
        await meta.claim_batch_requests(batch.id, worker, now, now + 60, 4)
        await meta.claim_batch_requests(batch.id, other, now, now + 60, 1)  # line 5
        tokens: dict[str, Any] = {
            "input_tokens": 10,
            "cached_tokens": 2,
            "output_tokens": 5,
            "reasoning_tokens": 1,
            "total_tokens": 15,
        }
        given = [
            result(batch.id, 4, **tokens),
            result(batch.id, 1, **tokens),
            result(batch.id, 5),  # other's lease
            result(batch.id, 2, "failed"),
            result(batch.id, 6),  # queued
            result(batch.id, 4, **tokens),  # twice in one call: recorded once
            result("batch_" + secrets.token_hex(12), 1),
        ]
        got = await meta.record_batch_results(worker, given)
        assert got[1:5] == [True, False, True, False] and got[6:] == [False]
        assert sorted([got[0], got[5]]) == [False, True]
        stored = await meta.get_batch(owner, batch.id)
        assert stored == dataclasses.replace(
            batch, completed=2, failed=1, **{k: 2 * v for k, v in tokens.items()}
        )
        rows = {r.line: r for r in await page(meta, batch.id)}
        for line, outcome in ((1, "completed"), (2, "failed"), (4, "completed")):
            r = rows[line]
            assert (r.status, r.outcome, r.result) == (
                "done",
                outcome,
                result(batch.id, line).result,
            )
            assert (r.lease_owner, r.lease_until, r.attempts) == (None, None, 1)
        assert (rows[3].status, rows[3].lease_owner) == ("running", worker)
        assert (rows[5].status, rows[5].lease_owner) == ("running", other)
        assert rows[6].status == "queued"
        # Recorded again: nothing changes, by any worker.
        assert await meta.record_batch_results(worker, given[:2]) == [False, False]
        assert await meta.record_batch_results(other, given[:2]) == [False, False]
        assert await meta.record_batch_results(worker, []) == []
        assert await meta.get_batch(owner, batch.id) == stored
        assert await meta.running_batch_requests(batch.id, now) == 2

    async def test_a_result_racing_a_takeover_is_counted_once(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=2, worker=a)
        await meta.claim_batch_requests(batch.id, a, now, now + 10, 2)
        # b takes line 1 over once a's lease lapsed; a's late result counts no more.
        assert [
            r.line for r in await meta.claim_batch_requests(batch.id, b, now + 10, now + 70, 1)
        ] == [1]
        assert await meta.record_batch_results(a, [result(batch.id, 1)]) == [False]
        assert await meta.record_batch_results(b, [result(batch.id, 1)]) == [True]
        # a's result for line 2, lapsed but not taken over, counts; b finds it done.
        assert await meta.record_batch_results(a, [result(batch.id, 2)]) == [True]
        assert await meta.claim_batch_requests(batch.id, b, now + 10, now + 70, 1) == []
        stored = await meta.get_batch(owner, batch.id)
        assert stored is not None and stored.completed == 2

    async def test_racing_results_and_takeovers_count_each_once(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=60, worker=a)
        await meta.claim_batch_requests(batch.id, a, now, now + 10, 60)
        recorded: Counter[int] = Counter()

        async def late() -> None:
            for start in range(1, 61, 6):
                group = [result(batch.id, n, input_tokens=n) for n in range(start, start + 6)]
                got = await meta.record_batch_results(a, group)
                recorded.update(r.line for r, ok in zip(group, got, strict=True) if ok)

        async def takeover() -> None:
            while taken := await meta.claim_batch_requests(batch.id, b, now + 10, now + 70, 5):
                group = [result(batch.id, r.line, input_tokens=r.line) for r in taken]
                got = await meta.record_batch_results(b, group)
                assert all(got)
                recorded.update(r.line for r in group)

        async with anyio.create_task_group() as tg:
            tg.start_soon(late)
            tg.start_soon(takeover)
        assert sorted(recorded) == list(range(1, 61))
        assert set(recorded.values()) == {1}
        stored = await meta.get_batch(owner, batch.id)
        assert stored is not None
        assert (stored.completed, stored.failed, stored.input_tokens) == (60, 0, sum(range(61)))
        assert all(r.status == "done" for r in await page(meta, batch.id))

    async def test_renewals_racing_results_and_releases(self, meta: MetadataStore) -> None:
        # One worker renews its leases while it records results and gives requests back:
        # every call succeeds (none deadlocks with another) and each result counts once.
        owner, now = new_owner(), int(time.time())
        worker = new_worker()
        batches = [
            await running_batch(meta, owner, now=now, lines=40, worker=worker) for _ in range(2)
        ]
        for batch in batches:
            await meta.claim_batch_requests(batch.id, worker, now, now + 60, 40)
        done = anyio.Event()

        async def record() -> None:
            for start in range(1, 31, 3):
                group = [
                    result(b.id, n) for n in range(start, start + 3) for b in reversed(batches)
                ]
                assert all(await meta.record_batch_results(worker, group))
            done.set()

        async def release() -> None:
            for line in range(31, 41):
                for batch in batches:
                    assert await meta.release_batch_requests(worker, batch.id, [line]) == 1
                assert await meta.release_batch_requests(worker, None, [line]) == 0

        async def renew() -> None:
            while not done.is_set():
                assert await meta.renew_batch_leases(worker, now + 120) >= 2

        async with anyio.create_task_group() as tg:
            tg.start_soon(record)
            tg.start_soon(release)
            tg.start_soon(renew)
        for batch in batches:
            stored = await meta.get_batch(owner, batch.id)
            assert stored is not None and stored.completed == 30
            statuses = Counter(r.status for r in await page(meta, batch.id))
            assert statuses == {"done": 30, "queued": 10}

    async def test_running_requests_are_those_of_unlapsed_leases(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        a, b = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=8, worker=a)
        assert await meta.running_batch_requests(batch.id, now) == 0
        await meta.claim_batch_requests(batch.id, a, now, now + 10, 3)
        await meta.claim_batch_requests(batch.id, b, now, now + 100, 2)
        assert await meta.running_batch_requests(batch.id, now) == 5
        assert await meta.running_batch_requests(batch.id, now + 9) == 5
        assert await meta.running_batch_requests(batch.id, now + 10) == 2
        assert await meta.record_batch_results(b, [result(batch.id, 4)]) == [True]
        assert await meta.running_batch_requests(batch.id, now) == 4
        assert await meta.running_batch_requests(batch.id, now + 100) == 0
        assert await meta.running_batch_requests("batch_" + secrets.token_hex(12), now) == 0

    # -- finish --

    async def test_finish_stores_the_files_and_ends_the_batch(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        worker = new_worker()
        batch = await running_batch(meta, owner, now=now, lines=3, worker=worker)
        await meta.claim_batch_requests(batch.id, worker, now, now + 60, 3)
        results = [result(batch.id, 1), result(batch.id, 2), result(batch.id, 3, "failed")]
        assert await meta.record_batch_results(worker, results) == [True] * 3
        # The organization's quota is (nearly) full: the batch's files are counted anyway.
        filler = file_row(owner, created_at=now, nbytes=QUOTA - 20)
        await meta.insert_file(filler, None, QUOTA)
        used = await meta.usage(owner.org_id)
        out = file_row(owner, created_at=now, nbytes=100, purpose="batch_output")
        err = file_row(owner, created_at=now, nbytes=50, purpose="batch_output")
        keys: dict[str, Any] = {"output_key": out.blob_key, "error_key": err.blob_key}
        await meta.update_batch(batch.id, worker, None, {"status": "finalizing", **keys})
        changes = {
            "status": "completed",
            "completed_at": now + 5,
            "output_file_id": out.id,
            "error_file_id": err.id,
        }
        done = await meta.finish_batch(batch.id, worker, ("finalizing",), [out, err], changes)
        expected = dataclasses.replace(
            batch,
            status="completed",
            completed=2,
            failed=1,
            completed_at=now + 5,
            output_file_id=out.id,
            error_file_id=err.id,
            lease_owner=None,
            lease_until=None,
            **keys,
        )
        assert done == expected
        assert await meta.get_batch(owner, batch.id) == expected
        assert await meta.get_file(owner, out.id, now) == out
        assert await meta.get_file(owner, err.id, now) == err
        assert await meta.usage(owner.org_id) == used + 150
        assert await page(meta, batch.id) == []
        # Its lease is let go: the worker changes it no more; a late result finds nothing.
        await expect_lease_lost(done, meta, meta.update_batch(batch.id, worker, None, {}))
        assert await meta.record_batch_results(worker, [result(batch.id, 1)]) == [False]
        assert await meta.renew_batch_leases(worker, now + 600) == 0
        # Ended: another finish is refused.
        again = meta.finish_batch(batch.id, worker, ENDED, [], {})
        await expect_lease_lost(done, meta, again)
        # An ended batch is still read and listed.
        assert await meta.list_batches(owner, None, 10) == ([expected], False)

    async def test_a_refused_finish_changes_nothing(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        worker, other = new_worker(), new_worker()
        batch = await running_batch(meta, owner, now=now, lines=3, worker=worker)
        await meta.claim_batch_requests(batch.id, worker, now, now + 60, 1)
        used = await meta.usage(owner.org_id)
        rows = await page(meta, batch.id)
        out = file_row(owner, created_at=now, nbytes=100, purpose="batch_output")
        changes = {"status": "completed", "output_file_id": out.id}
        calls = [
            meta.finish_batch(batch.id, other, ("in_progress",), [out], changes),
            meta.finish_batch(batch.id, worker, ("finalizing",), [out], changes),
            meta.finish_batch("batch_" + secrets.token_hex(12), worker, STATUSES, [out], changes),
        ]
        for call in calls:
            await expect_lease_lost(batch, meta, call)
        with pytest.raises(ValueError):
            await meta.finish_batch(batch.id, worker, ("in_progress",), [out], {"org_id": "x"})
        assert await meta.get_batch(owner, batch.id) == batch
        assert await meta.get_file(owner, out.id, now) is None
        assert await meta.usage(owner.org_id) == used
        assert await page(meta, batch.id) == rows
        assert await meta.named_blob_keys([out.blob_key]) == set()

    async def test_a_late_result_racing_the_finish(self, meta: MetadataStore) -> None:
        # A worker whose lease lapsed records while the batch is finished: each result is
        # recorded and counted before the rows go, or not at all; neither call fails.
        owner, now = new_owner(), int(time.time())
        finisher = new_worker()
        recorded: list[bool] = []

        async def record(batch_id: str, late: str) -> None:
            results = [result(batch_id, n) for n in range(20, 0, -1)]
            recorded.extend(await meta.record_batch_results(late, results))

        async def finish(batch_id: str) -> None:
            changes = {"status": "cancelled"}
            await meta.finish_batch(batch_id, finisher, ("in_progress",), [], changes)

        for _ in range(10):
            late = new_worker()
            batch = await running_batch(meta, owner, now=now, lines=20, worker=finisher)
            await meta.claim_batch_requests(batch.id, late, now, now + 1, 20)
            recorded.clear()
            async with anyio.create_task_group() as tg:
                tg.start_soon(record, batch.id, late)
                tg.start_soon(finish, batch.id)
            stored = await meta.get_batch(owner, batch.id)
            assert stored is not None and stored.status == "cancelled"
            assert stored.completed == sum(recorded)
            assert await page(meta, batch.id) == []

    # -- bytes a batch names --

    async def test_a_batch_not_yet_ended_names_its_bytes(self, meta: MetadataStore) -> None:
        owner, now = new_owner(), int(time.time())
        for status in STATUSES:
            batch = await start_batch(meta, owner, now=now)
            worker = new_worker()
            assert await meta.lease_batch(batch.id, worker, now, now + 60, ("validating",))
            out, err = "k-out-" + secrets.token_hex(8), "k-err-" + secrets.token_hex(8)
            keys = [batch.input_blob_key, out, err, "k-none-" + secrets.token_hex(8)]
            assert await meta.named_blob_keys(keys) == {batch.input_blob_key}  # its file's
            changes = {"status": status, "output_key": out, "error_key": err}
            await meta.update_batch(batch.id, worker, None, changes)
            # The input file is deleted: a batch not yet ended still names its bytes.
            assert await meta.delete_file(owner, batch.input_file_id, now) is not None
            named = await meta.named_blob_keys(keys)
            assert named == (set() if status in ENDED else {batch.input_blob_key, out, err}), status
            if status in ACTIVE:
                finished = await meta.finish_batch(
                    batch.id, worker, (status,), [], {"status": "failed"}
                )
                assert finished.status == "failed"
                assert await meta.named_blob_keys(keys) == set()
