"""The rules of the Uploads API: a file of up to 8 GB sent as parts, then completed.

An upload reserves its declared bytes against the organization's quota when it is created
(the reservation is named by the upload's id and names the key the file will have). Each
part is an ordinary object under its own key, the file's key and the part's id
(`_manifest.part_key`), written before the part's row. Completion (`completion.py`) has the
store write a manifest, the parts' keys in order, under the file's key (no byte is copied:
`BlobStore.compose`), checks the md5 when one is given, then one transaction turns the
reservation into the file's row; the parts then belong to the file. Cancelling or expiring an upload
gives the reservation back and removes its parts' bytes. Like `service.py`, this module
decides on plain values and returns records; `routes/uploads.py` holds the HTTP; the
errors are in `upload_errors.py`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Sequence

import anyio

from . import settings as S
from .audit import Actor, recording, upload_cancelled, upload_created
from .completion import Completions
from .digests import RunningDigests
from .errors import FileTooLarge, InvalidRequest, StorageLimitExceeded
from .ids import is_upload_id, new_file_id, new_part_id, new_upload_id
from .purposes import check_format, check_purpose, check_upload_size
from .records import shown_status
from .reservations import Reservation, discard, remove_bytes
from .settings import Settings
from .stores import (
    BlobStore,
    FileRecord,
    MetadataStore,
    Owner,
    PartRecord,
    PendingUploadsExceeded,
    QuotaExceeded,
    UploadRecord,
)
from .stores._manifest import part_key
from .upload_errors import answered, no_such_upload, not_pending, too_many_pending, upload_full


class UploadsService:
    """Uploads API operations over a metadata store and a blob store."""

    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self.digests = RunningDigests()
        self.completions = Completions(settings, meta, blobs, self.digests)

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
        actor: Actor | None = None,
    ) -> UploadRecord:
        """A new pending upload of `owner`'s (made by `actor`, for the audit log's
        `upload.created`), expiring an hour after now. Its file, once
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
                audit=recording(upload_created(record, actor)),
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
            shown = [r for r in found if shown_status(r, now) == status]
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
        if shown_status(record, int(time.time())) == "expired":
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
        count, used = await self.meta.parts_total(upload.id)
        room = upload.bytes - used
        running = self.digests.start(upload.id, count)
        # The part's bytes go into a copy, kept only when the part is added.
        digest = running.digest.copy() if running is not None else None
        part_id = new_part_id()
        blob_key = part_key(upload.file_key, part_id)
        # It holds no bytes (the upload's reservation holds them): no quota can refuse it.
        reservation = await Reservation.hold(
            self.meta,
            self.settings,
            org_id=owner.org_id,
            nbytes=0,
            key=blob_key,
            reservation_id=part_id,
        )
        writer = self.blobs.writer(blob_key, buffer_bytes=S.UPLOAD_PART_BUFFER_BYTES)
        size = 0
        committed = added = False
        try:
            async for chunk in data:
                await reservation.renew()
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
                blob_key=blob_key,
            )
            with answered(upload_id, "add a part"):
                await self.meta.add_part(owner, part, int(time.time()))
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
                    await discard(self.blobs, blob_key, writer, committed)
                await reservation.release()

    # -- complete (completion.py) --
    async def complete(
        self,
        owner: Owner,
        upload_id: str,
        part_ids: Sequence[str],
        md5: str | None,
        *,
        actor: Actor | None = None,
    ) -> tuple[UploadRecord, FileRecord]:
        """Complete the owner's pending upload from `part_ids` (`Completions.complete`)."""
        return await self.completions.complete(owner, upload_id, part_ids, md5, actor=actor)

    async def reopen_completions(self, now: int, *, alone: bool = False) -> int:
        """Put back to pending the uploads whose completion will not end by itself
        (`Completions.reopen`)."""
        return await self.completions.reopen(now, alone=alone)

    # -- cancel --
    async def cancel(
        self, owner: Owner, upload_id: str, *, actor: Actor | None = None
    ) -> UploadRecord:
        """Cancel the owner's pending upload: its reservation is given back and its parts'
        bytes removed. Errors as `add_part`; cancelling a completed (or cancelled) upload is
        a 400."""
        if not is_upload_id(upload_id):
            raise no_such_upload(upload_id)
        now = int(time.time())
        with answered(upload_id, "cancel it"):
            record, keys = await self.meta.cancel_upload(
                owner,
                upload_id,
                now,
                stale_before=now - S.COMPLETION_TAKEOVER_SECONDS,
                audit=lambda done: [upload_cancelled(done[0], actor)],
            )
        self.digests.pop(record.id)
        with anyio.CancelScope(shield=True):
            # The file's key too: a completion given up may have joined the parts there
            # (none can finish now that the upload is cancelled).
            await remove_bytes(self.blobs, *keys, record.file_key)
        return record

    # -- housekeeping --
    async def sweep_expired(self, now: int) -> int:
        """Expire the uploads (of every owner) still pending or being completed
        `UPLOAD_SWEEP_MARGIN_SECONDS` after their `expires_at`: their reservations go back,
        their parts' bytes and any composed file bytes are removed. How many expired."""
        count = 0
        while batch := await self.meta.pop_expired_uploads(
            now - S.UPLOAD_SWEEP_MARGIN_SECONDS, S.SWEEP_BATCH
        ):
            for record, keys in batch:
                await remove_bytes(self.blobs, *keys, record.file_key)
            count += len(batch)
        return count


__all__ = ["UploadsService"]
