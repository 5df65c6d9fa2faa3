"""Completing an upload (Uploads API): its parts made into the file, checked, and turned
into the file's row, while a lease fences the completion against another that takes it over.

The parts become the file by a manifest the blob store writes under the file's key (their
keys and sizes, in order: `BlobStore.compose`): no byte is copied, and the parts stay where
they are, now the file's. Until the transaction that makes the file commits, the parts are
still the upload's (their rows name them) and undoing the completion removes only the
manifest: a crash at any point leaves the upload completable again, or the file whole.

A completion marks its upload "completing" (`completing_since`, the lease) and renews the
lease while it runs. Should its server stop, another completion, a cancellation or the
sweeper takes the upload over once the lease is `COMPLETION_TAKEOVER_SECONDS` old; a
completion that finds itself taken over stops, and does nothing more. A completion that
fails puts the upload back to pending and removes what it joined; when even that fails (the
database is unreachable), the sweeper tries again (`reopen`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Sequence

import anyio

from . import settings as S
from .audit import Actor, recording, upload_completed
from .digests import RunningDigests
from .errors import InvalidRequest
from .ids import is_upload_id
from .purposes import validator
from .records import file_record
from .reservations import remove_bytes
from .settings import Settings
from .stores import (
    BlobStore,
    FileRecord,
    MetadataStore,
    Owner,
    UploadRecord,
)
from .upload_errors import answered, no_such_upload, not_pending
from .validation import check_stream

log = logging.getLogger("openai_files.server")

_MD5 = re.compile(r"[0-9a-fA-F]{32}")


@dataclasses.dataclass
class Lease:
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


class Completions:
    """The completions of uploads on a metadata store and a blob store (`complete`), and
    the putting back of those that will not end by themselves (`reopen`)."""

    def __init__(
        self, settings: Settings, meta: MetadataStore, blobs: BlobStore, digests: RunningDigests
    ) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self.digests = digests
        #: Completions whose undo failed (the database was unreachable), by upload id, with
        #: whether they had joined bytes: the sweeper tries again (`reopen`).
        self._undo_later: dict[str, tuple[UploadRecord, bool]] = {}

    async def complete(
        self,
        owner: Owner,
        upload_id: str,
        part_ids: Sequence[str],
        md5: str | None,
        *,
        actor: Actor | None = None,
    ) -> tuple[UploadRecord, FileRecord]:
        """Complete the owner's pending upload from `part_ids`, in file order, as `actor`;
        its record (completed) and the new file's.

        Errors as `add_part` for the upload; a second completion, racing or later, is a 400.
        Each id must name a part of this upload, once; the parts' sizes must add up to the
        declared bytes. The parts are composed into the file's key by the store; when `md5`
        is given or the purpose's content is checked (`validation.py`, as on POST
        /v1/files), the composed bytes are read once for both, and a mismatch or a refused
        line removes them and leaves the upload pending (it may be completed again with
        the right parts). Then one transaction inserts the file (consuming the
        reservation; the quota counts it once), marks the upload completed, drops its
        part rows and writes the audit log's `upload.completed` and `file.created`; the
        parts' bytes are removed last.
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
        with answered(upload_id, "complete it"):
            upload = await self.meta.begin_completion(
                owner, upload_id, now, stale_before=now - S.COMPLETION_TAKEOVER_SECONDS
            )
        # The completion renews its lease while it runs, beside it; should another take it
        # over meanwhile (its renewals did not land for the takeover bound), it is stopped
        # at once, and whatever it had not yet done it does not do.
        lease = Lease(upload.completing_since)
        outcome: list[tuple[UploadRecord, FileRecord]] = []
        failure: list[Exception] = []

        async def run() -> None:
            try:
                outcome.append(await self._complete(upload, part_ids, md5, lease, actor))
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

    async def _keep_lease(self, upload_id: str, lease: Lease, scope: anyio.CancelScope) -> None:
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
        self,
        upload: UploadRecord,
        part_ids: Sequence[str],
        md5: str | None,
        lease: Lease,
        actor: Actor | None,
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
            kept = await self.blobs.compose(key, [(p.blob_key, p.bytes) for p in ordered])
            composed = True
            checker = validator(self.settings, upload.purpose)
            # The md5 computed as the parts arrived, when they arrived in order, one
            # after the other, at this server; else the composed bytes are read once.
            digest = self.digests.md5_of(upload.id, part_ids) if checker is None else None
            if (md5 is not None and digest is None) or checker is not None:
                read = hashlib.md5(usedforsecurity=False)
                # The parts once, in order; the next chunk is read while one is hashed.
                await check_stream(checker, self.blobs.read(key), read, ahead=2)
                digest = read.hexdigest()
            if md5 is not None and digest != md5.lower():
                raise InvalidRequest(
                    f"The md5 given ({md5}) does not match the md5 of the uploaded parts "
                    f"({digest}): the upload stays pending; send the parts again or "
                    "complete it with the right ones.",
                    param="md5",
                )
            file = file_record(
                key=key,
                org_id=upload.org_id,
                project_id=upload.project_id,
                size=upload.bytes,
                filename=upload.filename,
                purpose=upload.purpose,
                mime_type=upload.mime_type,
                expires_in=upload.file_expires_after,
            )
            since = await lease.settle()
            # An upload expired by the sweeper meanwhile is no longer pending.
            with answered(upload.id, "complete it"):
                await self.meta.finish_completion(
                    upload.id,
                    file,
                    self.settings.org_quota_bytes,
                    since=since,
                    audit=recording(*upload_completed(upload, file, actor)),
                )
            finished = True
            self.digests.pop(upload.id)
        finally:
            if not finished:
                with anyio.CancelScope(shield=True):
                    since = await lease.settle()
                    await self._undo_completion(
                        dataclasses.replace(upload, completing_since=since), composed
                    )
        # Parts sent but not given (they hold no byte: the parts given add up to the
        # upload's bytes, which all its parts together never pass) are no one's now; the
        # parts given go too when they were copied into the file (from before manifests).
        used = set(part_ids) if kept else set()
        with anyio.CancelScope(shield=True):
            await remove_bytes(
                self.blobs, *(p.blob_key for p in parts.values() if p.id not in used)
            )
        done = dataclasses.replace(upload, status="completed", file_id=file.id)
        return done, file

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
                # The manifest only: the parts are the upload's again.
                await self.blobs.delete(upload.file_key, parts=False)
        await self.meta.abort_completion(upload.id, since=upload.completing_since)

    async def reopen(self, now: int, *, alone: bool = False) -> int:
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
                # Nothing completes meanwhile: the joined bytes are no completion's (a
                # manifest's parts are the upload's again: they stay).
                for record in batch:
                    try:
                        await self.blobs.delete(record.file_key, parts=False)
                    except Exception:  # the sweeper removes it once the upload goes
                        log.exception("could not remove the bytes of %s", record.file_key)
            count += len(batch)
        return count
