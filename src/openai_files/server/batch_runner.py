"""The batch worker: validates batches, sends their requests to the engines, stores each
result, and writes the output and error files when a batch ends.

Work is claimed in the database with leases (`MetadataStore` batch calls), so any number of
workers (the `serve` processes and `openai-files batch-worker` ones) share it; a worker that
dies has its work taken over once its leases lapse. A request keeps its slot until its
result is stored and counted (one transaction per group of results): at most the
concurrency of a worker's requests are sent again after it is killed, and a request is
counted, and written to the output or error file, exactly once.

Fairness: each free slot goes to the project with the fewest requests running here, then to
its batch with the fewest (the oldest on a tie): a small batch created after a large one
runs beside it at once, and one project cannot take every slot while another waits.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import anyio

from . import settings as S
from .batch_engine import EngineAnswer, Engines
from .batch_input import InputIndex, index_stream
from .ids import new_batch_request_id, new_file_id, new_worker_id
from .records import file_record
from .reservations import remove_bytes
from .settings import Settings
from .stores import (
    BatchRecord,
    BatchRequestRecord,
    BatchResult,
    BlobStore,
    FileRecord,
    LeaseLost,
    MetadataStore,
    StoreUnavailable,
)
from .stores._sql_batch_plans import errors_json

log = logging.getLogger("openai_files.batches")

#: How the unfinished requests of a batch that ends early are written to its error file.
_UNFINISHED = {
    "cancelled": ("batch_cancelled", "This request was not run: the batch was cancelled."),
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
}
_USAGE_KEYS = (
    # (our column, the keys an engine's `usage` may name it by)
    ("input_tokens", ("input_tokens", "prompt_tokens")),
    ("output_tokens", ("output_tokens", "completion_tokens")),
    ("total_tokens", ("total_tokens",)),
)
_DETAIL_KEYS = (
    ("cached_tokens", ("input_tokens_details", "prompt_tokens_details"), "cached_tokens"),
    (
        "reasoning_tokens",
        ("output_tokens_details", "completion_tokens_details"),
        "reasoning_tokens",
    ),
)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def usage_of(body: dict[str, Any]) -> dict[str, int]:
    """The token counts of an engine's answer (`usage`, in the chat or responses shape)."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return {}
    counts: dict[str, int] = {}
    for column, names in _USAGE_KEYS:
        counts[column] = next((_count(usage[n]) for n in names if n in usage), 0)
    for column, parents, name in _DETAIL_KEYS:
        for parent in parents:
            details = usage.get(parent)
            if isinstance(details, dict):
                counts[column] = _count(details.get(name))
                break
    return counts


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def result_of(batch_id: str, row: BatchRequestRecord, answer: EngineAnswer) -> BatchResult:
    """The output or error file's line for a request, from the engine's answer. A 2xx
    answer's JSON goes in `response.body` as the engine wrote it (re-written on one line
    only when it spans several); any other HTTP answer goes to the error file with its
    status and body; no HTTP answer, to the error file with `error`."""
    line_id = new_batch_request_id()
    custom_id = _dumps(row.custom_id)
    request_id = _dumps(answer.request_id or "req_" + line_id.removeprefix("batch_req_"))
    if answer.error is not None or answer.status_code == 0:
        code, message = answer.error or ("engine_error", "The engine gave no answer.")
        text = (
            f'{{"id":"{line_id}","custom_id":{custom_id},"response":null,'
            f'"error":{_dumps({"code": code, "message": message})}}}'
        )
        return BatchResult(batch_id, row.line, "failed", text)
    raw = answer.body.decode("utf-8", "replace")
    parsed: Any = answer.parsed  # a 2xx answer's object, parsed by the engines
    if parsed is None:
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw)
    if parsed is None and raw.strip() != "null":
        body_text = _dumps(raw)  # not JSON: the text, as a string
    elif "\n" in raw or "\r" in raw or raw != raw.strip():
        # Rewritten on one line, escaped as ASCII: a lone surrogate the engine wrote as an
        # escape (`\ud800`) stays an escape, not a character no database can store.
        body_text = json.dumps(parsed, ensure_ascii=True, separators=(",", ":"))
    else:
        body_text = raw
    text = (
        f'{{"id":"{line_id}","custom_id":{custom_id},"response":{{"status_code":'
        f'{answer.status_code},"request_id":{request_id},"body":{body_text}}},"error":null}}'
    )
    ok = 200 <= answer.status_code < 300
    usage = usage_of(parsed) if ok and isinstance(parsed, dict) else {}
    return BatchResult(batch_id, row.line, "completed" if ok else "failed", text, **usage)


def _unfinished_line(custom_id: str, status: str) -> str:
    code, message = _UNFINISHED.get(status, ("batch_failed", "This request was not run."))
    return _dumps(
        {
            "id": new_batch_request_id(),
            "custom_id": custom_id,
            "response": None,
            "error": {"code": code, "message": message},
        }
    )


class _Stopped(Exception):
    """The batch stopped running here while its requests were being claimed."""


class BatchRunner:
    """One batch worker (`run` until cancelled), over the stores and the engines."""

    def __init__(
        self,
        settings: Settings,
        meta: MetadataStore,
        blobs: BlobStore,
        engines: Engines,
        *,
        alone: bool = False,
        worker: str | None = None,
    ) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self.engines = engines
        #: No other worker uses the database (the embedded default): at start, every
        #: running request is a leftover of a killed run, sent again at once.
        self.alone = alone
        self.worker = worker or new_worker_id()
        #: How long this worker's leases last (renewed every third of it).
        self.lease = settings.batch_lease_seconds
        self.concurrency = max(1, settings.batch_concurrency)
        self.per_batch = max(1, min(settings.batch_concurrency_per_batch, self.concurrency))
        self._batches: dict[str, BatchRecord] = {}
        #: Requests running here, by batch, by project and by organization; their tasks,
        #: by batch.
        self._running: collections.Counter[str] = collections.Counter()
        self._by_project: collections.Counter[tuple[str, str]] = collections.Counter()
        self._by_org: collections.Counter[str] = collections.Counter()
        self._tasks: dict[str, set[asyncio.Task[None]]] = {}
        #: Requests claimed but not sent yet, with their bodies, by batch.
        self._claimed: dict[str, collections.deque[tuple[BatchRequestRecord, bytes]]] = {}
        self._exhausted: set[str] = set()
        #: The claims running, by batch (`_claim_ahead`), and how many each asked for.
        self._claiming: dict[str, asyncio.Task[None]] = {}
        self._claim_sizes: dict[str, int] = {}
        #: Claimed requests not sent whose release the database refused: released again
        #: before the next renewal of this worker's leases.
        self._unreleased: dict[str, set[int]] = {}
        #: Batches whose last claim found no body that fits the budget: claimed again once
        #: a request here ends (and gives back its body's bytes).
        self._over_budget: set[str] = set()
        #: Bytes of the bodies held here: claimed, and being sent.
        self._held_bytes = 0
        self._jobs: dict[str, asyncio.Task[bool]] = {}
        #: Batches whose requests here are being stopped (cancelled, expired, ended).
        self._stopping: dict[str, asyncio.Task[None]] = {}
        #: At most this many validations at once (each holds a line being checked).
        self._validations = asyncio.Semaphore(S.BATCH_MAX_VALIDATIONS)
        self._wake = asyncio.Event()
        self._pending: list[tuple[BatchResult, asyncio.Future[bool]]] = []
        self._flush_wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._next_scan = 0.0
        #: Counters for /metrics: results by outcome, batches ended by final status.
        self.completed = 0
        self.failed = 0
        self.ended: collections.Counter[str] = collections.Counter()

    # -- the loops --
    async def run(self) -> None:
        """Work until cancelled; then stop every request of this worker, store the results
        that arrived, and give back the requests not answered (another worker, or the next
        start, sends them)."""
        if self.alone:
            released = await self.meta.release_batch_requests("*")
            if released:
                log.info("%d batch requests of a stopped run are queued again", released)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renew_loop)
                tg.start_soon(self._flush_loop)
                tg.start_soon(self._schedule_loop)
        finally:
            with anyio.CancelScope(shield=True):
                await self._shutdown()

    async def _shutdown(self) -> None:
        tasks = [
            *self._claiming.values(),
            *(t for group in self._tasks.values() for t in group),
            *self._jobs.values(),
            *self._stopping.values(),
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._flush()
        with contextlib.suppress(Exception):
            await self.meta.release_batch_requests(self.worker)

    async def _renew_loop(self) -> None:
        while True:
            await anyio.sleep(self.lease / 3)
            try:
                await self._give_back_later()
                await self.meta.renew_batch_leases(self.worker, int(time.time()) + self.lease)
            except Exception:
                log.exception("renewing the batch leases failed; trying again")

    async def _schedule_loop(self) -> None:
        while True:
            try:
                if time.monotonic() >= self._next_scan:
                    await self._scan()
                await self._fill()
            except Exception:
                log.exception("the batch worker failed a turn; trying again")
                self._next_scan = 0.0
                await anyio.sleep(S.BATCH_POLL_SECONDS)
            self._wake.clear()
            with anyio.move_on_after(max(0.0, self._next_scan - time.monotonic())):
                await self._wake.wait()

    async def _scan(self) -> None:
        """Read the batches not yet ended; start the validations and finalizations they
        need; stop the requests of batches cancelled or expired."""
        self._next_scan = time.monotonic() + S.BATCH_POLL_SECONDS
        now = int(time.time())
        batches = await self.meta.active_batches(S.BATCH_SCAN_LIMIT)
        self._batches = {b.id: b for b in batches}
        self._exhausted.clear()
        self._over_budget.clear()
        for b in batches:
            if b.id in self._jobs:
                continue
            if b.lease_owner not in (None, self.worker) and (b.lease_until or 0) > now:
                continue  # another worker validates or finalizes it
            if b.status == "validating":
                self._start_job(b.id, self._validate(b))
            elif b.status in ("finalizing", "cancelling") or (
                b.status == "in_progress"
                and (b.expires_at <= now or b.completed + b.failed >= b.total)
            ):
                self._start_job(b.id, self._finalize(b))
        # This worker's requests of a batch that no longer runs (cancelled, expired, ended)
        # stop now, whichever worker finalizes it.
        for batch_id in {*self._tasks, *self._claimed}:
            known = self._batches.get(batch_id)
            ended = known is None or known.status != "in_progress" or known.expires_at <= now
            if ended and batch_id not in self._stopping:
                stop = asyncio.get_running_loop().create_task(self._stop_and_forget(batch_id))
                self._stopping[batch_id] = stop

    def _start_job(self, batch_id: str, job: Any) -> None:
        task: asyncio.Task[bool] = asyncio.get_running_loop().create_task(job)
        self._jobs[batch_id] = task

        def done(t: asyncio.Task[bool]) -> None:
            if self._jobs.get(batch_id) is t:
                del self._jobs[batch_id]
            if t.cancelled():
                return
            if t.exception() is not None:
                log.error("batch %s: %r", batch_id, t.exception(), exc_info=t.exception())
            elif t.result():  # the batch moved on: look again at once
                self._next_scan = 0.0
                self._wake.set()

        task.add_done_callback(done)

    def look_now(self) -> None:
        """Read the batches again at once (one was created here, or may have ended), not
        at the next poll (`BATCH_POLL_SECONDS`)."""
        self._next_scan = 0.0
        self._wake.set()

    def cancelled(self, batch_id: str) -> None:
        """A cancel answered by this process: send none of the batch's claimed requests
        (its finalizing, at once, stops those in flight and gives the rest back)."""
        known = self._batches.get(batch_id)
        if known is not None:
            self._batches[batch_id] = dataclasses.replace(known, status="cancelling")
        self.look_now()

    def active_by_status(self) -> dict[str, int]:
        """The batches not yet ended, by status, as the last scan read them."""
        return dict(collections.Counter(b.status for b in self._batches.values()))

    # -- running requests --
    def _runnable(self, now: int) -> list[BatchRecord]:
        return [
            b
            for b in self._batches.values()
            if b.status == "in_progress"
            and b.expires_at > now
            and b.id not in self._jobs
            and self._running[b.id] < self.per_batch
            and (
                self._claimed.get(b.id)
                or (
                    b.id not in self._exhausted
                    and b.id not in self._claiming
                    and b.id not in self._over_budget
                )
            )
        ]

    def _pick(self, runnable: Sequence[BatchRecord]) -> BatchRecord:
        """The batch the next free slot goes to: of the organization with the fewest
        requests running here, of its project with the fewest, its batch with the fewest
        (the oldest first on a tie). An organization's share does not grow with its
        number of projects, nor a project's with its number of batches."""
        return min(
            runnable,
            key=lambda b: (
                self._by_org[b.org_id],
                self._by_project[(b.org_id, b.project_id)],
                self._running[b.id],
                b.created_at,
                b.id,
            ),
        )

    async def _fill(self) -> None:
        now = int(time.time())
        while sum(self._running.values()) < self.concurrency:
            runnable = self._runnable(now)
            if not runnable:
                return
            b = self._pick(runnable)
            queue = self._claimed.setdefault(b.id, collections.deque())
            if not queue:
                # The slot goes to a batch with requests at hand.
                self._claim_ahead(b, queue, len(runnable))
                continue
            row, body = queue.popleft()
            self._start_request(b, row, body)
            self._claim_ahead(b, queue, len(runnable))

    def _claim_ahead(
        self,
        b: BatchRecord,
        queue: collections.deque[tuple[BatchRequestRecord, bytes]],
        batches: int,
    ) -> None:
        """Claim a batch's next requests in a task of its own, before its queue runs dry.

        A batch keeps up to twice its share of the slots (`per_batch`) claimed ahead:
        slots that free up take them from the queue, with no claim transaction (and no body
        read) in between. A claim starts when the queue falls to one share, and the slots
        go on being filled while it runs (a round of them at least). Awaited in turn, claims
        of 64 (a transaction, then a read of the bodies) left every slot waiting about 30 ms
        on PostgreSQL + S3, once per 64 requests; claims of half a share, ahead, still
        bounded a batch to ~1,000 requests a second there. Rows claimed but not sent are
        not sent twice after a crash; they wait for their lease."""
        if (
            b.id in self._claiming
            or b.id in self._exhausted
            or b.id in self._over_budget
            or len(queue) > self.per_batch
        ):
            return
        # The worker holds about twice `concurrency` claimed and not sent (being claimed
        # counts too).
        held = sum(len(q) for q in self._claimed.values()) + sum(self._claim_sizes.values())
        room = 2 * self.concurrency - held
        want = min(S.BATCH_CLAIM_MAX, 2 * self.per_batch - len(queue))
        if queue:
            want = min(want, room)
            if want < max(1, self.per_batch // 2):
                return  # enough at hand: claimed when the queue is lower
        else:
            # A batch whose queue is empty is owed slots: it claims its fair part of them
            # (among the `batches` that run here) whatever the others hold; they give up
            # slots to it meanwhile, not requests.
            want = max(1, min(want, max(room, self.concurrency // max(1, batches))))
        task = asyncio.get_running_loop().create_task(self._claim(b, want))
        self._claiming[b.id] = task
        self._claim_sizes[b.id] = want

        def done(t: asyncio.Task[None]) -> None:
            if self._claiming.get(b.id) is t:
                del self._claiming[b.id]
                self._claim_sizes.pop(b.id, None)
            if not t.cancelled() and t.exception() is not None:
                log.error("batch %s: claiming requests failed: %r", b.id, t.exception())
                self._exhausted.add(b.id)  # tried again after the next scan
            self._wake.set()

        task.add_done_callback(done)

    async def _claim(self, b: BatchRecord, want: int) -> None:
        now = int(time.time())
        rows = await self.meta.claim_batch_requests(b.id, self.worker, now, now + self.lease, want)
        if not rows:
            self._exhausted.add(b.id)
            return
        # The bodies' bytes are counted as held at once: claims of several batches at a
        # time stay within the budget together.
        rows, over = self._within_budget(rows)
        reserved = sum(r.body_length for r in rows)
        self._held_bytes += reserved
        if not rows:  # claimed again once bytes held here are given back
            self._over_budget.add(b.id)
        try:
            if over:  # given back at once, for when bodies held here are sent
                await self._give_back(b.id, [r.line for r in over])
            bodies = await self._bodies(b, rows) if rows else []
            known = self._batches.get(b.id)
            if known is None or known.status != "in_progress" or b.id in self._stopping:
                raise _Stopped
        except BaseException as exc:
            self._bytes_given_back(reserved)
            # Claimed, but neither queued nor sent: given back, else this worker would
            # renew their leases for ever and nobody would send them.
            with anyio.CancelScope(shield=True):
                await self._give_back(b.id, [r.line for r in rows])
            if isinstance(exc, _Stopped):
                return
            if not isinstance(exc, FileNotFoundError):
                raise
            log.error("batch %s: its input's bytes are gone", b.id)
            self._exhausted.add(b.id)
            return
        self._claimed.setdefault(b.id, collections.deque()).extend(bodies)

    def _bytes_given_back(self, size: int) -> None:
        """Bodies of `size` bytes are no longer held here: batches that found the budget
        full may claim again."""
        self._held_bytes -= size
        if size:
            self._over_budget.clear()

    async def _give_back(self, batch_id: str, lines: list[int]) -> None:
        """Release claimed requests not sent; kept to release again (before the next
        renewal of this worker's leases) when the database refuses it now, else their
        leases would be renewed for ever and nobody would send them."""
        if not lines:
            return
        try:
            await self.meta.release_batch_requests(self.worker, batch_id, lines)
        except Exception as exc:
            log.warning(
                "batch %s: giving back %d requests failed (%r); later", batch_id, len(lines), exc
            )
            self._unreleased.setdefault(batch_id, set()).update(lines)

    async def _give_back_later(self) -> None:
        for batch_id in list(self._unreleased):
            lines = sorted(self._unreleased.pop(batch_id))
            await self._give_back(batch_id, lines)

    def _within_budget(
        self, rows: list[BatchRequestRecord]
    ) -> tuple[list[BatchRequestRecord], list[BatchRequestRecord]]:
        """The claimed requests whose bodies fit in what the worker may hold
        (`BATCH_BODY_BUDGET_BYTES`; one body alone when it holds none), and the others."""
        total = self._held_bytes
        for n, r in enumerate(rows):
            if total + r.body_length > S.BATCH_BODY_BUDGET_BYTES and (n or total):
                return rows[:n], rows[n:]
            total += r.body_length
        return rows, []

    async def _bodies(
        self, b: BatchRecord, rows: list[BatchRequestRecord]
    ) -> list[tuple[BatchRequestRecord, bytes]]:
        """The bodies of claimed requests, as written in the input file: a run of requests
        that lie close together is read in one range request."""
        out: list[tuple[BatchRequestRecord, bytes]] = []
        i = 0
        while i < len(rows):
            start = rows[i].body_offset
            j = i + 1
            while (
                j < len(rows)
                and rows[j].body_offset >= rows[j - 1].body_offset
                and rows[j].body_offset + rows[j].body_length - start <= S.BATCH_READ_SPAN_BYTES
            ):
                j += 1
            end = max(r.body_offset + r.body_length for r in rows[i:j])
            data = bytearray()
            async for chunk in self.blobs.read(b.input_blob_key, start, end):
                data += chunk
            for r in rows[i:j]:
                at = r.body_offset - start
                out.append((r, bytes(data[at : at + r.body_length])))
            i = j
        return out

    def _start_request(self, b: BatchRecord, row: BatchRequestRecord, body: bytes) -> None:
        project = (b.org_id, b.project_id)
        self._running[b.id] += 1
        self._by_project[project] += 1
        self._by_org[b.org_id] += 1
        task = asyncio.get_running_loop().create_task(self._send(b, row, body))
        self._tasks.setdefault(b.id, set()).add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._bytes_given_back(len(body))
            self._running[b.id] -= 1
            if self._running[b.id] <= 0:
                del self._running[b.id]
            self._by_project[project] -= 1
            if self._by_project[project] <= 0:
                del self._by_project[project]
            self._by_org[b.org_id] -= 1
            if self._by_org[b.org_id] <= 0:
                del self._by_org[b.org_id]
            group = self._tasks.get(b.id)
            if group is not None:
                group.discard(t)
                if not group:
                    del self._tasks[b.id]
                    if b.id in self._exhausted and not self._claimed.get(b.id):
                        # Its last request here is stored, and none is left to claim: the
                        # batch may be complete, and is finalized at once if it is.
                        self._next_scan = 0.0
            self._wake.set()

        task.add_done_callback(done)

    async def _send(self, b: BatchRecord, row: BatchRequestRecord, body: bytes) -> None:
        try:
            answer = await self.engines.send(b.endpoint, row.model, body)
        except Exception as exc:  # the engines never raise for engine trouble: a bug
            log.exception("batch %s line %d: sending failed", b.id, row.line)
            answer = EngineAnswer(0, b"", None, ("internal_error", str(exc)[:200]), 1, 0)
        if len(answer.body) > S.BATCH_PARSE_INLINE_BYTES:  # parsed off the event loop
            result = await anyio.to_thread.run_sync(result_of, b.id, row, answer)
        else:
            result = result_of(b.id, row, answer)
        # The answer (its bytes and the object parsed from them, up to 1.6 times their
        # size) is not held while the result waits for its group write: the line is.
        del answer
        if await self._store(result):
            if result.outcome == "completed":
                self.completed += 1
            else:
                self.failed += 1

    # -- results --
    async def _store(self, result: BatchResult) -> bool:
        """Hand a result to the next group write; whether it was recorded (False: another
        worker took the request over)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((result, future))
        self._flush_wake.set()
        return await future

    async def _flush_loop(self) -> None:
        while True:
            await self._flush_wake.wait()
            self._flush_wake.clear()
            if len(self._pending) < S.BATCH_RESULT_GROUP:
                await anyio.sleep(S.BATCH_RESULT_WAIT_SECONDS)
            try:
                await self._flush()
            except Exception:
                log.exception("storing batch results failed; trying again")
                await anyio.sleep(1.0)
                self._flush_wake.set()

    async def _flush(self) -> None:
        async with self._flush_lock:
            while self._pending:
                group = self._pending[: S.BATCH_RESULT_GROUP]
                results = [result for result, _ in group]
                try:
                    recorded = await self.meta.record_batch_results(self.worker, results)
                except StoreUnavailable:
                    raise  # the whole group waits for the database
                except Exception:
                    # One result the database refuses must not hold the others (nor their
                    # slots) for ever: each is stored alone, a refused one as a failure.
                    log.exception("storing %d batch results failed; one by one", len(group))
                    recorded = [await self._record_alone(r) for r in results]
                del self._pending[: len(group)]
                for (_, future), ok in zip(group, recorded, strict=True):
                    if not future.done():
                        future.set_result(ok)

    async def _record_alone(self, result: BatchResult) -> bool:
        try:
            return (await self.meta.record_batch_results(self.worker, [result]))[0]
        except StoreUnavailable:
            raise
        except Exception as exc:
            log.error(
                "batch %s line %d: its result cannot be stored: %r",
                result.batch_id,
                result.line,
                exc,
            )
        custom_id = None
        with contextlib.suppress(ValueError, TypeError, KeyError):
            custom_id = json.loads(result.result)["custom_id"]
        line = _dumps(
            {
                "id": new_batch_request_id(),
                "custom_id": custom_id,
                "response": None,
                "error": {
                    "code": "result_not_stored",
                    "message": "The engine's answer could not be stored.",
                },
            }
        )
        replaced = BatchResult(result.batch_id, result.line, "failed", line)
        return (await self.meta.record_batch_results(self.worker, [replaced]))[0]

    async def _stop_and_forget(self, batch_id: str) -> None:
        try:
            await self._stop_batch(batch_id)
        except Exception:
            log.exception("batch %s: stopping its requests failed; trying again", batch_id)
        finally:
            self._stopping.pop(batch_id, None)

    async def _stop_batch(self, batch_id: str) -> None:
        """Stop this worker's requests of a batch that no longer runs (cancelled, expired):
        the answers that arrived are stored, the others are given back unsent."""
        claim = self._claiming.get(batch_id)
        tasks = [*self._tasks.get(batch_id, ()), *([claim] if claim else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        dropped = self._claimed.pop(batch_id, None) or ()
        self._bytes_given_back(sum(len(body) for _, body in dropped))
        await self._flush()
        await self.meta.release_batch_requests(self.worker, batch_id)

    # -- validation --
    async def _validate(self, b: BatchRecord) -> bool:
        """Check a batch's input and store its requests; whether it moved on."""
        async with self._validations:
            now = int(time.time())
            held = await self.meta.lease_batch(
                b.id, self.worker, now, now + self.lease, ("validating",)
            )
            if held is None:
                return False
            try:
                await self._index(held)
            except LeaseLost:
                # Cancelled meanwhile (or taken over): no request of it is kept.
                with contextlib.suppress(LeaseLost):
                    await self.meta.clear_batch_requests(b.id, self.worker)
            return True

    async def _index(self, b: BatchRecord) -> None:
        await self.meta.clear_batch_requests(b.id, self.worker)  # an earlier attempt's
        index = InputIndex(b.endpoint)
        rows: list[BatchRequestRecord] = []
        model: str | None = None
        missing = False
        try:
            async for group in index_stream(index, self.blobs.read(b.input_blob_key)):
                if index.errors:
                    continue
                for r in group:
                    model = model or r.model
                    rows.append(
                        BatchRequestRecord(
                            b.id, r.line, r.custom_id, r.body_offset, r.body_length, r.model
                        )
                    )
                if len(rows) >= S.BATCH_INDEX_PAGE:
                    await self.meta.add_batch_requests(b.id, self.worker, rows)
                    rows = []
        except FileNotFoundError:
            missing = True
        now = int(time.time())
        if missing or index.errors:
            errors = [e.as_json() for e in index.errors] or [
                {
                    "code": "file_not_found",
                    "message": f"The input file {b.input_file_id} could not be read.",
                    "param": "input_file_id",
                    "line": None,
                }
            ]
            await self.meta.clear_batch_requests(b.id, self.worker)
            self.ended["failed"] += 1
            await self.meta.update_batch(
                b.id,
                self.worker,
                ("validating",),
                {
                    "status": "failed",
                    "failed_at": now,
                    "errors": errors_json(errors),
                    "lease_owner": None,
                    "lease_until": None,
                },
            )
            return
        if rows:
            await self.meta.add_batch_requests(b.id, self.worker, rows)
        await self.meta.update_batch(
            b.id,
            self.worker,
            ("validating",),
            {
                "status": "in_progress",
                "in_progress_at": now,
                "total": index.requests,
                "model": model,
                "lease_owner": None,
                "lease_until": None,
            },
        )

    # -- finalizing --
    async def _finalize(self, b: BatchRecord) -> bool:
        """End a batch that is complete, cancelled or expired; whether it moved on."""
        now = int(time.time())
        held = await self.meta.lease_batch(
            b.id,
            self.worker,
            now,
            now + self.lease,
            ("in_progress", "finalizing", "cancelling"),
        )
        if held is None:
            return False
        if held.status == "cancelling":
            final = "cancelled"
        elif held.completed + held.failed >= held.total:
            final = "completed"
        elif held.expires_at <= now:
            final = "expired"
        else:  # nothing to finalize yet
            await self.meta.update_batch(
                b.id, self.worker, None, {"lease_owner": None, "lease_until": None}
            )
            return False
        await self._stop_batch(b.id)
        # Other workers' requests end, or their leases lapse; none is claimed any more.
        while await self.meta.running_batch_requests(b.id, int(time.time())):
            await anyio.sleep(S.BATCH_POLL_SECONDS)
        changes: dict[str, Any] = {"output_key": new_file_id(), "error_key": new_file_id()}
        if final == "completed" and held.status == "in_progress":
            changes |= {"status": "finalizing", "finalizing_at": int(time.time())}
        record = await self.meta.update_batch(b.id, self.worker, (held.status,), changes)
        assert record.output_key is not None and record.error_key is not None
        files: list[FileRecord] = []
        finishing = False
        try:
            written, unfinished = await self._write_files(record, final)
            for key, (size, kind) in written.items():
                files.append(
                    file_record(
                        key=key,
                        org_id=record.org_id,
                        project_id=record.project_id,
                        size=size,
                        filename=f"{record.id}_{kind}.jsonl",
                        purpose="batch_output",
                        mime_type="application/jsonl",
                        expires_in=record.output_expires_after,
                    )
                )
            ids = {kind: key for key, (_, kind) in written.items()}
            finishing = True
            await self.meta.finish_batch(
                b.id,
                self.worker,
                (record.status,),
                files,
                {
                    "status": final,
                    f"{final}_at": int(time.time()),
                    "output_file_id": ids.get("output"),
                    "error_file_id": ids.get("error"),
                    "failed": record.failed + unfinished,
                },
            )
        except BaseException:
            # Before the finish, the objects are this attempt's alone. A finish that failed
            # may still have committed (a cancel while it ran, a connection lost at COMMIT):
            # its objects stay, named by the batch's row or by its files' rows, and the
            # sweeper removes them once neither names them.
            if not finishing:
                with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                    await remove_bytes(self.blobs, record.output_key, record.error_key)
            raise
        self.ended[final] += 1
        log.info("batch %s %s", b.id, final)
        return True

    async def _write_files(
        self, record: BatchRecord, final: str
    ) -> tuple[dict[str, tuple[int, str]], int]:
        """Stream the batch's results, in line order, into its output and error objects;
        which were written (key -> (size, "output" or "error")), and how many requests had
        not run (written to the error file as cancelled or expired)."""
        assert record.output_key is not None and record.error_key is not None
        keys = {"output": record.output_key, "error": record.error_key}
        writers = {kind: self.blobs.writer(key) for kind, key in keys.items()}
        sizes = {"output": 0, "error": 0}
        unfinished = 0
        try:
            after = 0
            while page := await self.meta.batch_request_page(
                record.id, after, S.BATCH_RESULT_PAGE, S.BATCH_RESULT_PAGE_BYTES
            ):
                out: dict[str, list[bytes]] = {"output": [], "error": []}
                for r in page:
                    if r.status == "done" and r.result is not None:
                        kind = "output" if r.outcome == "completed" else "error"
                        text = r.result
                    else:
                        kind, text = "error", _unfinished_line(r.custom_id, final)
                        unfinished += 1
                    out[kind].append(text.encode("utf-8") + b"\n")
                for kind, lines in out.items():
                    if lines:
                        data = b"".join(lines)
                        sizes[kind] += len(data)
                        await writers[kind].write(data)
                after = page[-1].line
            for kind, writer in writers.items():
                if sizes[kind]:
                    await writer.commit()
                else:
                    await writer.abort()
        except BaseException:
            with anyio.CancelScope(shield=True):
                for writer in writers.values():
                    with contextlib.suppress(Exception):
                        await writer.abort()
            raise
        written = {keys[kind]: (size, kind) for kind, size in sizes.items() if size}
        return written, unfinished
