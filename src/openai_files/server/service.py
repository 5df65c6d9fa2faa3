"""The rules of the Files API: tenancy, limits, quotas, expiry, and the order of writes.

Stores hold the mechanism, routes the HTTP (`_forms.py`, `objects.py`); this module, with
`purposes.py`, decides on plain values and returns records. An upload's bytes are written
under a fresh key and committed durably *before* the row that makes the file visible; a
delete removes the row first, then the bytes. What a crash leaves between is for `sweep`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator

import anyio

from . import settings as S
from ._framing import smallest_file_bytes
from .audit import Actor, file_created, file_deleted, recording
from .errors import InvalidRequest, StorageLimitExceeded, no_such_file
from .ids import is_file_id, new_file_id, new_reservation_id
from .purposes import (
    check_download,
    check_format,
    check_purpose,
    check_size,
    validator,
)
from .records import file_record
from .reservations import Reservation, discard, remove_unnamed_bytes
from .settings import Settings
from .stores import (
    BlobStore,
    BlobWriter,
    CursorNotFound,
    FileRecord,
    MetadataStore,
    Order,
    Owner,
    QuotaExceeded,
)
from .sweep import Sweep
from .uploads import UploadsService
from .validation import Validator, check_stream, feed, finish


class Upload:
    """One upload being received (`FilesService.upload`): its bytes go to a fresh key, and
    each rule refuses it as soon as what arrived breaks it, not once the body has ended."""

    def __init__(
        self,
        service: FilesService,
        owner: Owner,
        file_id: str,
        held: Reservation,
        actor: Actor | None = None,
    ):
        self.service = service
        self.owner = owner
        self.actor = actor
        self.file_id = file_id
        self.reservation = held
        self.purpose: str | None = None  # the first one given
        self.filename = self.mime_type = ""
        self.writer: BlobWriter | None = None
        #: Checks the content as it streams, when the purpose came before the file (as the
        #: SDK sends it); else the stored bytes are read back once before the row is written.
        self.validator: Validator | None = None
        self.streamed = False
        self.size = 0
        self.committed = self.inserted = False

    def given_purpose(self, purpose: str) -> None:
        """Each purpose sent must be uploadable and fit the file's name; the first counts."""
        check_purpose(purpose)
        if self.purpose is None:
            self.purpose = purpose
        if self.writer is not None:
            check_format(purpose, self.filename)

    def start_file(self, filename: str, mime_type: str) -> None:
        """The file's name must fit the purpose, when given first; its bytes go to a new key."""
        if self.purpose is not None:
            check_format(self.purpose, filename)
        self.filename, self.mime_type = filename, mime_type
        if self.purpose is not None:
            self.streamed = True
            self.validator = validator(self.service.settings, self.purpose)
        self.writer = self.service.blobs.writer(self.file_id)

    async def write(self, data: bytes) -> None:
        """A file larger than its purpose allows is refused at its first byte too many; a
        long upload renews its reservation, so that it keeps its quota and its key."""
        self.size += len(data)
        check_size(self.service.settings, self.purpose, self.size)
        await feed(self.validator, data)
        assert self.writer is not None
        await self.writer.write(data)
        await self.reservation.renew()

    def check_complete(self) -> str:
        """The upload's purpose, once the form has ended, when it has an uploadable purpose
        and a file whose name fits it and whose size is within the limit."""
        purpose = check_purpose(self.purpose)
        if self.writer is None:
            raise InvalidRequest("'file' is a required property", param="file")
        check_format(purpose, self.filename)
        check_size(self.service.settings, self.purpose, self.size)
        return purpose

    async def finish(self, expires_in: int | None) -> FileRecord:
        """Commit the bytes durably, then insert the row that makes the file visible, with
        the quota checked and its `file.created` event written in the same transaction."""
        purpose = self.check_complete()
        await finish(self.validator)
        assert self.writer is not None
        await self.writer.commit()
        self.committed = True
        late = None if self.streamed else validator(self.service.settings, purpose)
        if late is not None and self.size:  # the purpose came after the file: read back once
            await check_stream(late, self.service.blobs.read(self.file_id, 0, self.size))
        elif late is not None:
            await finish(late)
        record = file_record(
            key=self.file_id,
            org_id=self.owner.org_id,
            project_id=self.owner.project_id,
            size=self.size,
            filename=self.filename,
            purpose=purpose,
            mime_type=self.mime_type,
            expires_in=expires_in,
        )
        settings = self.service.settings
        try:
            await self.service.meta.insert_file(
                record,
                self.reservation.id,
                settings.org_quota_bytes,
                audit=recording(file_created(record, self.actor)),
            )
        except QuotaExceeded as exc:
            raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
        self.inserted = True
        return record

    async def undo(self) -> None:
        """Give back what an upload not finished holds: its bytes and its reservation."""
        if self.writer is not None:
            await discard(self.service.blobs, self.file_id, self.writer, self.committed)
        await self.reservation.release()


@dataclasses.dataclass(frozen=True)
class ListQuery:
    """The parameters of a listing of files, checked (`objects.parse_list_query`)."""

    purpose: str | None
    limit: int
    order: Order
    after: str | None


class FilesService:
    """Files API operations over a metadata store and a blob store."""

    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        #: The Uploads API's rules, on the same stores (its expired uploads are swept here).
        self.uploads = UploadsService(settings, meta, blobs)
        self._sweep = Sweep(self.uploads)

    # -- upload --
    @contextlib.asynccontextmanager
    async def upload(
        self, owner: Owner, content_length: int | None, *, actor: Actor | None = None
    ) -> AsyncIterator[Upload]:
        """An upload of `owner`'s, to be fed its form and finished (`Upload.finish`), by
        `actor` (None: the server's own).

        A body the organization's quota cannot hold is refused before a byte is read (one
        longer than the largest file and its form, by the route: `announced_length`).
        Unless the upload is finished, whatever it wrote and held is given back, also when
        the client went away.
        """
        file_id = new_file_id()
        # The reservation names the key before any byte is written: the sweeper of any
        # replica leaves the key alone until the row replaces the reservation.
        held = await self._reserve(owner, content_length or 0, file_id)
        upload = Upload(self, owner, file_id, held, actor)
        try:
            yield upload
        finally:
            if not upload.inserted:
                # Shielded: a client that went away must not leave bytes or a reservation.
                with anyio.CancelScope(shield=True):
                    await upload.undo()

    async def _reserve(self, owner: Owner, content_length: int, key: str) -> Reservation:
        """Hold quota for an upload before its body is read; refuse one that cannot fit.

        The body's length bounds the file's size from above, and from below once the
        multipart framing is taken off. The upper bound is held when it fits; else the lower
        bound, and the insert's own atomic check decides. When even the lower bound does
        not fit, the upload is refused before a byte of it is read. Without a length
        (a chunked body) nothing is held, and the insert decides.
        """
        quota = self.settings.org_quota_bytes
        upper = min(content_length, self.settings.max_file_bytes)
        lower = smallest_file_bytes(upper)
        reservation_id = new_reservation_id()
        for nbytes in (upper, lower):
            try:
                return await Reservation.hold(
                    self.meta,
                    self.settings,
                    org_id=owner.org_id,
                    nbytes=nbytes,
                    key=key,
                    quota=quota,
                    reservation_id=reservation_id,
                )
            except QuotaExceeded as exc:
                if nbytes == lower:
                    raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
        raise AssertionError("unreachable")

    # -- read --
    async def get(self, owner: Owner, file_id: str) -> FileRecord:
        """The owner's live file. A file another tenant owns, an expired one and an id not
        shaped like ours are all reported exactly like a missing one (a 404)."""
        if not is_file_id(file_id):
            raise no_such_file(file_id)
        record = await self.meta.get_file(owner, file_id, int(time.time()))
        if record is None:
            raise no_such_file(file_id)
        return record

    async def list_files(
        self, owner: Owner, query: ListQuery, position: tuple[int, str] | None = None
    ) -> tuple[list[FileRecord], bool]:
        """A page of the owner's live files in creation order, and whether more follow.

        Only the owner's files are seen. A cursor `after` that names none of them (another
        tenant's file, an expired or deleted one) is refused as a missing file; a
        `position` (`created_at`, id) of the owner's last row seen goes on after it
        whether or not that row still exists (`after` is then not read).
        """
        after = None if position is not None else query.after
        if after is not None and not is_file_id(after):
            raise no_such_file(after, param="after")
        try:
            return await self.meta.list_files(
                owner,
                purpose=query.purpose,
                limit=query.limit,
                order=query.order,
                after=after,
                now=int(time.time()),
                position=position,
            )
        except CursorNotFound:
            raise no_such_file(str(after), param="after") from None

    async def list_batches(
        self, owner: Owner, query: ListQuery
    ) -> AsyncIterator[tuple[list[FileRecord], bool]]:
        """The listing `query` asks for, as `list_files`, read `LIST_BATCH` files at a time:
        each batch and whether more files follow it. Each batch goes on after the last row
        of the one before, whether or not that row still exists; memory holds one batch,
        not the listing."""
        sent = 0
        position: tuple[int, str] | None = None
        while True:
            batch_query = dataclasses.replace(query, limit=min(query.limit - sent, S.LIST_BATCH))
            batch, more = await self.list_files(owner, batch_query, position)
            yield batch, more
            sent += len(batch)
            if not batch or not more or sent >= query.limit:
                return
            position = (batch[-1].created_at, batch[-1].id)

    async def for_download(self, owner: Owner, file_id: str) -> FileRecord:
        """The owner's file, as `get`, when its content may be downloaded: files of the
        purposes `assistants` and `user_data` may not, unless the server allows all."""
        record = await self.get(owner, file_id)
        check_download(self.settings, record.purpose)
        return record

    # -- delete --
    async def delete(self, owner: Owner, file_id: str, *, actor: Actor | None = None) -> FileRecord:
        """Remove the owner's live file and return its record; missing or not the owner's
        is a 404, as in `get`. The row goes first (the file is gone for every reader and
        its bytes leave the quota), with its `file.deleted` event by `actor`, then the
        bytes, even when the client went away; bytes that could not be removed are left to
        the sweep."""
        if not is_file_id(file_id):
            raise no_such_file(file_id)
        record = await self.meta.delete_file(
            owner,
            file_id,
            int(time.time()),
            audit=lambda r: [file_deleted(r, actor)] if r else [],
        )
        if record is None:
            raise no_such_file(file_id)
        with anyio.CancelScope(shield=True):
            await remove_unnamed_bytes(self.meta, self.blobs, record.blob_key)
        return record

    # -- housekeeping --
    async def sweep(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Remove what expiry, crashes and failures left (see `sweep.Sweep`); what was
        removed, by kind."""
        return await self._sweep.run(grace_seconds)


__all__ = ["FilesService", "ListQuery", "Upload"]
