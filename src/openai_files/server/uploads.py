"""The rules of the Uploads API: a file of up to 8 GB sent as parts, then completed.

An upload reserves its declared bytes against the organization's quota when it is created
(the reservation is named by the upload's id and names the key the file will have). Each
part is an ordinary object under its own key (the part's id), written before the part's
row. Completion composes the parts into the file's key in the store (never through
Python, `BlobStore.compose`), checks the md5 when one is given, then one transaction turns
the reservation into the file's row. Cancelling or expiring an upload gives the
reservation back and removes its parts' bytes. Like `service.py`, this module decides on
plain values and returns records; `routes/uploads.py` holds the HTTP.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from . import settings as S
from .errors import (
    APIError,
    FileTooLarge,
    InvalidRequest,
    NotFound,
    StorageLimitExceeded,
)
from .ids import is_upload_id, new_file_id, new_part_id, new_upload_id
from .purposes import (
    check_format,
    check_purpose,
    check_upload_size,
    default_expires_in,
    validator_for,
)
from .settings import Settings
from .stores import (
    BlobStore,
    BlobWriter,
    FileRecord,
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
from .stores.base import Chunk
from .validation import Validator

log = logging.getLogger("openai_files.server")

#: The quota given for a reservation of no bytes (one that only names a key).
_NO_LIMIT = 2**62
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclasses.dataclass
class _Lease:
    """A running completion's hold on its upload: `since` is the `completing_since` it
    last wrote (the token that fences its finish and its undo). The lock orders renewals
    with the finish; once `settled` (finishing or undoing), no renewal changes `since`."""

    since: int | None
    lock: anyio.Lock = dataclasses.field(default_factory=anyio.Lock)
    settled: bool = False

    async def settle(self) -> int | None:
        async with self.lock:
            self.settled = True
            return self.since


@dataclasses.dataclass
class _Running:
    """The md5 of an upload's parts, in the order they arrived at this server, while each
    arrived after the one before had ended (one at a time, as the official SDK sends)."""

    digest: Any = dataclasses.field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    part_ids: list[str] = dataclasses.field(default_factory=list)
    busy: bool = False


class RunningDigests:
    """The md5 of the whole file, computed as parts arrive when they arrive one after the
    other, so that a completion with an md5 need not read the file back. Kept per server in
    memory: a part that arrives at another replica, or while another is still streaming,
    leaves a sequence that no longer matches, and completion then reads the parts once."""

    def __init__(self, size: int = S.RUNNING_DIGESTS) -> None:
        self.size = size
        self._by_upload: OrderedDict[str, _Running] = OrderedDict()

    def start(self, upload_id: str, parts_before: int) -> _Running | None:
        """The running md5 a new part continues, or None when the part cannot (another is
        streaming, or parts reached the upload elsewhere): the upload's md5 is then read
        at completion, and the sequence is dropped."""
        running = self._by_upload.get(upload_id)
        if running is None and parts_before == 0:
            running = self._by_upload[upload_id] = _Running()
            while len(self._by_upload) > self.size:
                self._by_upload.popitem(last=False)
        if running is None or running.busy or len(running.part_ids) != parts_before:
            self._by_upload.pop(upload_id, None)
            return None
        self._by_upload.move_to_end(upload_id)
        running.busy = True
        return running

    def pop(self, upload_id: str) -> _Running | None:
        return self._by_upload.pop(upload_id, None)

    def md5_of(self, upload_id: str, part_ids: Sequence[str]) -> str | None:
        """The md5 of the parts `part_ids` in this order when this server saw all of them
        arrive in it, one after the other; None otherwise."""
        running = self._by_upload.get(upload_id)
        if running is None or running.busy or running.part_ids != list(part_ids):
            return None
        return str(running.digest.hexdigest())


def no_such_upload(upload_id: str) -> APIError:
    """The 404 for an upload that does not exist *or* belongs to someone else."""
    return NotFound(f"No such Upload object: {upload_id}", param="upload_id")


def not_pending(record: UploadRecord, doing: str) -> APIError:
    """The 400 for an operation on an upload that is no longer pending: what it is now."""
    upload_id, status = record.id, record.status
    if status == "completing":
        return InvalidRequest(
            f"Upload {upload_id} is already being completed: wait for that completion to "
            f"answer instead of trying to {doing} (a completion whose server stopped is "
            f"taken over by a new one {S.COMPLETION_TAKEOVER_SECONDS // 60} minutes after it "
            "was last heard from).",
            param="upload_id",
        )
    if status == "expired":
        return InvalidRequest(
            f"Upload {upload_id} has expired (an upload must be completed within an hour of "
            "its creation): create a new upload.",
            param="upload_id",
        )
    hint = {
        "completed": "its file is ready",
        "cancelled": "create a new upload to send this file",
    }.get(status, "create a new upload")
    return InvalidRequest(
        f"Upload {upload_id} is already {status}, so you cannot {doing}: {hint}.",
        param="upload_id",
    )


def too_many_pending(owner: Owner, exc: PendingUploadsExceeded) -> APIError:
    """The 400 for a new upload past a limit on its project's pending uploads."""
    then = (
        "complete or cancel one of them (GET /v1/uploads lists them), or wait for them to "
        "expire (an hour after their creation)"
    )
    if exc.what == "uploads":
        return InvalidRequest(
            f"Project {owner.project_id} has {exc.held} pending uploads, the most it may "
            f"have at once: {then}.",
            code="too_many_pending_uploads",
        )
    if exc.requested > exc.limit:  # no wait makes room for it
        return InvalidRequest(
            f"An upload of {exc.requested} bytes is more than the {exc.limit} bytes a "
            "project's pending uploads may reserve together (the server's "
            "--max-pending-upload-bytes, by default half its --org-quota-bytes): create a "
            "smaller upload, or ask the server's operator to raise that limit.",
            param="bytes",
            code="pending_upload_bytes_exceeded",
        )
    return InvalidRequest(
        f"The pending uploads of project {owner.project_id} reserve {exc.held} bytes; "
        f"{exc.requested} more would pass the {exc.limit} bytes a project's pending uploads "
        f"may reserve together: {then}; an expired upload gives its bytes back when the "
        "sweeper removes it, about ten minutes after it expires.",
        param="bytes",
        code="pending_upload_bytes_exceeded",
    )


def upload_full(record: UploadRecord) -> APIError:
    """The 400 for a part that would take an upload's parts past its declared bytes."""
    return InvalidRequest(
        f"The parts of upload {record.id} would hold more than the {record.bytes} bytes it "
        "was created with: complete it with the parts it has, or create a new upload.",
        param="data",
    )


def _shown_status(record: UploadRecord, now: int) -> str:
    """The status clients see (as `objects.upload_object` shows it)."""
    if record.status == "completing":
        return "pending"
    if record.status == "pending" and record.expires_at <= now:
        return "expired"
    return record.status


class UploadsService:
    """Uploads API operations over a metadata store and a blob store."""

    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self.digests = RunningDigests()
        #: Completions whose undo failed (the database was unreachable), by upload id, with
        #: whether they had joined bytes: the sweeper tries again (`reopen_completions`).
        self._undo_later: dict[str, tuple[UploadRecord, bool]] = {}

    # -- create --
    async def create(
        self,
        owner: Owner,
        *,
        filename: str,
        purpose: str,
        nbytes: int,
        mime_type: str,
        file_expires_after: int | None = None,
    ) -> UploadRecord:
        """A new pending upload of `owner`'s, expiring an hour after now. Its file, once
        completed, expires `file_expires_after` seconds after its creation (checked by the
        route) when given, else as a file sent to POST /v1/files without it.

        The purpose must be one a file may be uploaded with, the file name (cleaned by the
        route, as a form's) must fit it (`.jsonl` for `batch` and `fine-tune`), the declared
        bytes must be within `max_upload_bytes` and the purpose's own limit. The declared
        bytes are then reserved against the organization's quota (refused when they do not
        fit), under the upload's id, until the sweeper expires it: its parts, which never
        hold more than its bytes, count until their bytes are removed. A project has at
        most `max_pending_uploads` pending uploads, reserving together at most
        `pending_upload_bytes` (so that one project cannot hold its organization's quota
        for an hour): beyond either, a 400 says which.
        """
        check_purpose(purpose)
        check_format(purpose, filename, param="filename")
        if nbytes < 0:
            raise InvalidRequest(
                "Invalid 'bytes': integer below minimum value. Expected a value >= 0, but got "
                f"{nbytes} instead.",
                param="bytes",
            )
        check_upload_size(self.settings, purpose, nbytes)
        now = int(time.time())
        record = UploadRecord(
            id=new_upload_id(),
            org_id=owner.org_id,
            project_id=owner.project_id,
            filename=filename,
            purpose=purpose,
            bytes=nbytes,
            mime_type=mime_type,
            created_at=now,
            expires_at=now + S.UPLOAD_TTL_SECONDS,
            status="pending",
            file_id=None,
            file_key=new_file_id(),
            file_expires_after=file_expires_after,
        )
        try:
            await self.meta.open_upload(
                record,
                quota=self.settings.org_quota_bytes,
                reserved_until=record.expires_at + S.UPLOAD_SWEEP_MARGIN_SECONDS,
                max_pending=self.settings.max_pending_uploads,
                max_pending_bytes=self.settings.pending_upload_bytes,
            )
        except QuotaExceeded as exc:
            raise StorageLimitExceeded(exc.used, exc.requested, exc.quota, param="bytes") from None
        except PendingUploadsExceeded as exc:
            raise too_many_pending(owner, exc) from None
        return record

    # -- list (ours: OpenAI has no listing of uploads) --
    async def list_uploads(
        self, owner: Owner, status: str | None, limit: int
    ) -> tuple[list[tuple[UploadRecord, FileRecord | None]], bool]:
        """The owner's uploads, newest first, at most `limit`, each with its file when
        completed (None once the file is deleted), and whether there are more; only those
        whose status as clients see it (`upload_object`: "completing" shows as "pending", a
        pending one past its `expires_at` as "expired") is `status`, when given."""
        now = int(time.time())
        records, more = await self._listed(owner, status, limit, now)
        listed: list[tuple[UploadRecord, FileRecord | None]] = []
        for record in records:
            file = None
            if record.status == "completed" and record.file_id is not None:
                file = await self.meta.get_file(owner, record.file_id, now)
            listed.append((record, file))
        return listed, more

    async def _listed(
        self, owner: Owner, status: str | None, limit: int, now: int
    ) -> tuple[list[UploadRecord], bool]:
        if status is None:
            records = await self.meta.list_uploads(owner, None, limit + 1)
            return records[:limit], len(records) > limit
        # An unswept upload past its expiry is stored "pending" but shown "expired".
        stored = ["pending", "expired"] if status == "expired" else [status]
        fetch = limit + 1
        while True:
            found: list[UploadRecord] = []
            full = False
            for name in stored:
                rows = await self.meta.list_uploads(owner, name, fetch)
                full = full or len(rows) == fetch
                found.extend(rows)
            found.sort(key=lambda r: (r.created_at, r.id), reverse=True)
            shown = [r for r in found if _shown_status(r, now) == status]
            if len(shown) > limit or not full:
                return shown[:limit], len(shown) > limit
            fetch *= 2

    # -- parts --
    async def _pending(self, owner: Owner, upload_id: str, doing: str) -> UploadRecord:
        if not is_upload_id(upload_id):
            raise no_such_upload(upload_id)
        record = await self.meta.get_upload(owner, upload_id)
        if record is None:
            raise no_such_upload(upload_id)
        if record.status == "pending" and record.expires_at <= int(time.time()):
            record = dataclasses.replace(record, status="expired")
        if record.status != "pending":
            raise not_pending(record, doing)
        return record

    async def add_part(
        self, owner: Owner, upload_id: str, data: AsyncIterator[bytes]
    ) -> PartRecord:
        """Add a part, its bytes streamed from `data`, to the owner's pending upload.

        Another tenant's or an unknown upload is a 404; one completed, cancelled, being
        completed or expired is a 400 that says so. A part is at most `max_part_bytes`
        (a 413 at the first byte too many), and the parts of an upload together hold at
        most its declared bytes, which its reservation holds against the quota (a 400 at
        the first byte past the room its parts left when the part began, and in the
        transaction that adds the part, against the parts added meanwhile). The bytes go
        to the part's own key and are committed before the part's row is added (in one
        transaction that checks the upload is still pending and has room); the bytes of a
        refused part are removed, also when the client went away. While they
        stream, a reservation of no bytes names the part's key, renewed like a file
        upload's, so that no sweeper (of any replica) takes a slow part for an orphan.
        """
        upload = await self._pending(owner, upload_id, "add a part")
        limit = self.settings.max_part_bytes
        count, held = await self.meta.parts_total(upload.id)
        room = upload.bytes - held
        running = self.digests.start(upload.id, count)
        # The part's bytes go into a copy, kept only when the part is added.
        digest = running.digest.copy() if running is not None else None
        part_id = new_part_id()
        ttl = self.settings.reservation_ttl_seconds
        # It holds no bytes (the upload's reservation holds them): no quota can refuse it.
        await self.meta.reserve(
            part_id, owner.org_id, 0, _NO_LIMIT, int(time.time() + ttl), part_id
        )
        renew_at = time.monotonic() + ttl / 3
        writer = self.blobs.writer(part_id)
        size = 0
        committed = added = False
        try:
            async for chunk in data:
                if time.monotonic() >= renew_at:
                    await self.meta.renew(part_id, int(time.time() + ttl))
                    renew_at = time.monotonic() + ttl / 3
                size += len(chunk)
                if size > limit:
                    raise FileTooLarge(limit, "Part", param="data")
                if size > room:
                    raise upload_full(upload)
                if digest is not None:
                    digest.update(chunk)
                await writer.write(chunk)
            await writer.commit()
            committed = True
            part = PartRecord(
                id=part_id,
                upload_id=upload.id,
                bytes=size,
                created_at=int(time.time()),
                blob_key=part_id,
            )
            try:
                await self.meta.add_part(owner, part, int(time.time()))
            except UploadNotFound:
                raise no_such_upload(upload_id) from None
            except UploadNotPending as exc:
                raise not_pending(exc.record, "add a part") from None
            except UploadFull as exc:  # parts racing this one took the room
                raise upload_full(exc.record) from None
            added = True
            if running is not None:
                running.digest = digest
                running.part_ids.append(part_id)
            return part
        finally:
            if running is not None:  # a refused part leaves the sequence as it was
                running.busy = False
            with anyio.CancelScope(shield=True):
                if not added:
                    await self._discard_part(part_id, writer, committed)
                try:
                    await self.meta.release(part_id)
                except Exception:  # the lease lapses by itself
                    log.exception("could not release reservation %s", part_id)

    async def _discard_part(self, key: str, writer: BlobWriter, committed: bool) -> None:
        try:
            if committed:
                await self.blobs.delete(key)
            else:
                await writer.abort()
        except Exception:  # the sweeper removes what no row names
            log.exception("could not discard the bytes of refused part %s", key)

    # -- complete --
    async def complete(
        self, owner: Owner, upload_id: str, part_ids: Sequence[str], md5: str | None
    ) -> tuple[UploadRecord, FileRecord]:
        """Complete the owner's pending upload from `part_ids`, in file order; its record
        (completed) and the new file's.

        Errors as `add_part` for the upload; a second completion, racing or later, is a 400.
        Each id must name a part of this upload, once; the parts' sizes must add up to the
        declared bytes. The parts are composed into the file's key by the store; when `md5`
        is given or the purpose's content is checked (`validation.py`, as on POST
        /v1/files), the composed bytes are read once for both, and a mismatch or a refused
        line removes them and leaves the upload pending (it may be completed again with
        the right parts). Then one transaction inserts the file (consuming the
        reservation; the quota counts it once), marks the upload completed and drops its
        part rows; the parts' bytes are removed last.
        """
        if md5 is not None and not _MD5.fullmatch(md5):
            raise InvalidRequest(
                f"Invalid 'md5': expected 32 hexadecimal digits, got {md5[:100]!r}.",
                param="md5",
            )
        seen: set[str] = set()
        for part_id in part_ids:
            if part_id in seen:
                raise InvalidRequest(
                    f"Part {part_id} is given more than once in 'part_ids': each part may be "
                    "used once.",
                    param="part_ids",
                )
            seen.add(part_id)
        if not is_upload_id(upload_id):
            raise no_such_upload(upload_id)
        now = int(time.time())
        try:
            upload = await self.meta.begin_completion(
                owner, upload_id, now, stale_before=now - S.COMPLETION_TAKEOVER_SECONDS
            )
        except UploadNotFound:
            raise no_such_upload(upload_id) from None
        except UploadNotPending as exc:
            raise not_pending(exc.record, "complete it") from None
        # The completion renews its lease while it runs, beside it; should another take it
        # over meanwhile (its renewals did not land for the takeover bound), it is stopped
        # at once, and whatever it had not yet done it does not do.
        lease = _Lease(upload.completing_since)
        outcome: list[tuple[UploadRecord, FileRecord]] = []
        failure: list[Exception] = []

        async def run() -> None:
            try:
                outcome.append(await self._complete(upload, part_ids, md5, lease))
            except Exception as exc:
                failure.append(exc)
            finally:
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            group.start_soon(self._keep_lease, upload.id, lease, group.cancel_scope)
            group.start_soon(run)
        if outcome:
            return outcome[0]
        if failure:
            raise failure[0]
        # Taken over: what the upload is now.
        record = await self.meta.get_upload(owner, upload.id)
        if record is None:
            raise no_such_upload(upload_id)
        raise not_pending(record, "complete it")

    async def _keep_lease(self, upload_id: str, lease: _Lease, scope: anyio.CancelScope) -> None:
        """Renew the completion's lease until it settles; on finding it taken over, stop the
        completion (`scope`: the task group both run in)."""
        while True:
            await anyio.sleep(S.COMPLETION_RENEW_SECONDS)
            async with lease.lock:
                if lease.settled or lease.since is None:
                    return
                now = int(time.time())
                try:
                    held = await self.meta.renew_completion(upload_id, lease.since, now)
                except Exception as exc:  # tried again at the next turn
                    log.warning("could not renew the completion of upload %s: %s", upload_id, exc)
                    continue
                if held:
                    lease.since = now
                    continue
            log.warning("the completion of upload %s was taken over: stopped", upload_id)
            scope.cancel()
            return

    async def _complete(
        self, upload: UploadRecord, part_ids: Sequence[str], md5: str | None, lease: _Lease
    ) -> tuple[UploadRecord, FileRecord]:
        finished = composed = False
        try:
            parts = {p.id: p for p in await self.meta.list_parts(upload.id)}
            for part_id in part_ids:
                if part_id not in parts:
                    raise InvalidRequest(
                        f"Part {part_id} is not a part of upload {upload.id}: send the ids "
                        f"that POST /v1/uploads/{upload.id}/parts returned.",
                        param="part_ids",
                    )
            ordered = [parts[i] for i in part_ids]
            total = sum(p.bytes for p in ordered)
            if total != upload.bytes:
                raise InvalidRequest(
                    f"The parts given add up to {total} bytes, but upload {upload.id} was "
                    f"created with bytes={upload.bytes}: complete it with parts that add up "
                    "to its size.",
                    param="part_ids",
                )
            key = upload.file_key
            # A completion taken over may have left its joined bytes under the key: compose
            # replaces them whole.
            await self.blobs.compose(key, [(p.blob_key, p.bytes) for p in ordered])
            composed = True
            validator = validator_for(upload.purpose, strict=self.settings.strict_validation)
            # The md5 computed as the parts arrived, when they arrived in order, one
            # after the other, at this server; else the composed bytes are read once.
            digest = self.digests.md5_of(upload.id, part_ids) if validator is None else None
            if (md5 is not None and digest is None) or validator is not None:
                digest = await self._read_check(key, validator)
            if md5 is not None and digest != md5.lower():
                raise InvalidRequest(
                    f"The md5 given ({md5}) does not match the md5 of the uploaded parts "
                    f"({digest}): the upload stays pending; send the parts again or "
                    "complete it with the right ones.",
                    param="md5",
                )
            now = int(time.time())
            expires_in = default_expires_in(upload.purpose, upload.file_expires_after)
            file = FileRecord(
                id=key,
                org_id=upload.org_id,
                project_id=upload.project_id,
                bytes=upload.bytes,
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
                filename=upload.filename,
                purpose=upload.purpose,
                mime_type=upload.mime_type,
                blob_key=key,
            )
            since = await lease.settle()
            try:
                await self.meta.finish_completion(
                    upload.id, file, self.settings.org_quota_bytes, since=since
                )
            except QuotaExceeded as exc:
                raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
            except UploadNotFound:
                raise no_such_upload(upload.id) from None
            except UploadNotPending as exc:  # expired by the sweeper meanwhile
                raise not_pending(exc.record, "complete it") from None
            finished = True
            self.digests.pop(upload.id)
        finally:
            if not finished:
                with anyio.CancelScope(shield=True):
                    since = await lease.settle()
                    await self._undo_completion(
                        dataclasses.replace(upload, completing_since=since), composed
                    )
        with anyio.CancelScope(shield=True):
            await self._remove_keys([p.blob_key for p in ordered])
        done = dataclasses.replace(upload, status="completed", file_id=file.id)
        return done, file

    async def _read_check(self, key: str, validator: Validator | None) -> str:
        """Read an object once: its md5, and its content checked by `validator` (which
        raises on a refused file), both in a worker thread chunk by chunk."""
        digest = hashlib.md5(usedforsecurity=False)

        def take(chunk: Chunk) -> None:
            digest.update(chunk)
            if validator is not None:
                validator.feed(chunk)

        async for chunk in self.blobs.read(key):
            await anyio.to_thread.run_sync(take, chunk)
        if validator is not None:
            await anyio.to_thread.run_sync(validator.finish)
        return digest.hexdigest()

    async def _undo_completion(self, upload: UploadRecord, composed: bool) -> None:
        try:
            await self._undo(upload, composed)
        except Exception:
            # The next sweep tries again (and a later one, once the completion's lease has
            # lapsed, from the database alone, should this server stop meanwhile).
            log.exception(
                "could not put upload %s back to pending: the sweeper will try again",
                upload.id,
            )
            self._undo_later[upload.id] = (upload, composed)

    async def _undo(self, upload: UploadRecord, composed: bool) -> None:
        if composed:
            # Not when another completion took this one over: the key is its own now.
            now = await self.meta.get_upload(Owner(upload.org_id, upload.project_id), upload.id)
            if now is not None and now.completing_since == upload.completing_since:
                await self._remove_keys([upload.file_key])
        await self.meta.abort_completion(upload.id, since=upload.completing_since)

    # -- cancel --
    async def cancel(self, owner: Owner, upload_id: str) -> UploadRecord:
        """Cancel the owner's pending upload: its reservation is given back and its parts'
        bytes removed. Errors as `add_part`; cancelling a completed (or cancelled) upload is
        a 400."""
        if not is_upload_id(upload_id):
            raise no_such_upload(upload_id)
        now = int(time.time())
        try:
            record, keys = await self.meta.cancel_upload(
                owner, upload_id, now, stale_before=now - S.COMPLETION_TAKEOVER_SECONDS
            )
        except UploadNotFound:
            raise no_such_upload(upload_id) from None
        except UploadNotPending as exc:
            raise not_pending(exc.record, "cancel it") from None
        self.digests.pop(record.id)
        with anyio.CancelScope(shield=True):
            # The file's key too: a completion given up may have joined the parts there
            # (none can finish now that the upload is cancelled).
            await self._remove_keys([*keys, record.file_key])
        return record

    # -- housekeeping --
    async def sweep_expired(self, now: int) -> int:
        """Expire the uploads (of every owner) still pending or being completed
        `UPLOAD_SWEEP_MARGIN_SECONDS` after their `expires_at`: their reservations go back, their
        parts' bytes and any composed file bytes are removed. How many expired."""
        count = 0
        while batch := await self.meta.pop_expired_uploads(
            now - S.UPLOAD_SWEEP_MARGIN_SECONDS, S.SWEEP_BATCH
        ):
            for record, keys in batch:
                await self._remove_keys([*keys, record.file_key])
            count += len(batch)
        return count

    async def reopen_completions(self, now: int, *, alone: bool = False) -> int:
        """Put back to pending the uploads whose completion will not end by itself, so that
        they may be completed or cancelled at once: those whose undo failed here (the
        database was unreachable), and those whose completion began
        `COMPLETION_TAKEOVER_SECONDS` ago or more (its server stopped). When this server
        is `alone` (it alone writes to the stores, and completes nothing yet: at its
        start), every upload being completed is put back, and what its completion joined
        is removed. How many were put back."""
        for upload_id, (upload, composed) in list(self._undo_later.items()):
            try:
                await self._undo(upload, composed)
            except Exception as exc:  # still unreachable: the next sweep tries again
                log.warning("could not put upload %s back to pending: %s", upload_id, exc)
                continue
            del self._undo_later[upload_id]
        stale_before = None if alone else now - S.COMPLETION_TAKEOVER_SECONDS
        count = 0
        while batch := await self.meta.reopen_completions(stale_before, S.SWEEP_BATCH):
            for record in batch:
                log.warning(
                    "upload %s was being completed since %s by a server that stopped: "
                    "pending again",
                    record.id,
                    record.completing_since,
                )
            if alone:
                # Nothing completes meanwhile: the joined bytes are no completion's.
                await self._remove_keys([r.file_key for r in batch])
            count += len(batch)
        return count

    async def _remove_keys(self, keys: Sequence[str]) -> None:
        for key in keys:
            try:
                await self.blobs.delete(key)
            except Exception:  # no row names them now: the sweeper finds them
                log.exception("could not remove the bytes of %s", key)


__all__ = [
    "UploadsService",
    "no_such_upload",
    "not_pending",
]
