"""Housekeeping: what expiry, crashes and failures leave behind, removed by the sweeper.

Every step is safe with several replicas sweeping the same stores at once: rows are popped
by one sweeper only, and bytes are removed only under keys that no row or reservation
names, once older than the grace period.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from . import settings as S
from .reservations import named_keys, remove_bytes, remove_unnamed_bytes
from .uploads import UploadsService

log = logging.getLogger("openai_files.server")


class Sweep:
    """One sweep of the stores (`run`), as the server's sweeper calls it."""

    def __init__(self, uploads: UploadsService) -> None:
        #: The uploads' rules, on the stores swept (their expired uploads are swept too).
        self.uploads = uploads
        self.settings, self.meta, self.blobs = uploads.settings, uploads.meta, uploads.blobs
        self._next_reconcile = 0.0

    async def run(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Remove expired files, expired uploads (Uploads API) with their parts, the rows of
        uploads finished longer than their retention ago, the audit log's events older
        than theirs, lapsed reservations, stale temp files, and the bytes that no row or
        reservation names once older than the grace: what crashes and failures left."""
        grace = self.settings.sweep_grace_seconds if grace_seconds is None else grace_seconds
        now = time.time()
        counts = {"expired": 0, "temp": 0, "orphans": 0}
        while batch := await self.meta.pop_expired(int(now), S.SWEEP_BATCH):
            await remove_unnamed_bytes(self.meta, self.blobs, *(r.blob_key for r in batch))
            counts["expired"] += len(batch)
        counts["expired_uploads"] = await self.uploads.sweep_expired(int(now))
        await self.uploads.reopen_completions(int(now))
        counts["finished_uploads"] = await self._purge_finished_uploads(int(now))
        counts["audit_logs"] = await self._purge_audit_logs(int(now))
        await self.meta.purge_reservations(int(now))
        counts["temp"] = await self.blobs.remove_stale_temp(now - grace)
        # Reconciling lists every stored object, which grows with the store: do it at most
        # once a third of the grace period (an orphan is left no longer than that anyway).
        if grace_seconds is None and now < self._next_reconcile:
            return self._logged(counts)
        self._next_reconcile = now + grace / 3
        pending: list[str] = []
        async for key in self.blobs.list_object_keys(now - grace):
            pending.append(key)
            if len(pending) >= S.SWEEP_BATCH:
                counts["orphans"] += await self._remove_orphans(pending)
                pending = []
        if pending:
            counts["orphans"] += await self._remove_orphans(pending)
        # Unfinished multipart uploads of a replica killed mid-upload (S3): a live upload's
        # key is named by its reservation, renewed while its bytes arrive.
        counts["uploads"] = await self.blobs.abort_stale_uploads(now - grace, self._named)
        return self._logged(counts)

    async def _named(self, keys: Sequence[str]) -> set[str]:
        return await named_keys(self.meta, keys)

    async def _purge_finished_uploads(self, now: int) -> int:
        """Delete the rows of uploads completed, cancelled or expired whose hour ended
        more than the retention ago: until then they are listed and answered with their
        status; after, they are unknown ids (their files stay)."""
        before = now - int(self.settings.upload_retention_seconds)
        count = 0
        while deleted := await self.meta.purge_uploads(before, S.SWEEP_BATCH):
            count += deleted
        return count

    async def _purge_audit_logs(self, now: int) -> int:
        """Remove the audit log's events older than `--audit-retention-days`, SWEEP_BATCH
        at a time (one short transaction each, so a long backlog holds no lock long)."""
        before = now - self.settings.audit_retention_days * 86400
        count = 0
        while removed := await self.meta.purge_audit_logs(before, S.SWEEP_BATCH):
            count += removed
            if removed < S.SWEEP_BATCH:
                break
        return count

    @staticmethod
    def _logged(counts: dict[str, int]) -> dict[str, int]:
        if any(counts.values()):
            log.info("sweep removed %s", counts)
        else:  # every run leaves a trace at debug level; /metrics has its time
            log.debug("sweep removed nothing")
        return counts

    async def _remove_orphans(self, keys: list[str]) -> int:
        # A composed file's parts are named while the file is (`named_keys`).
        named = await named_keys(self.meta, keys)
        orphans = [k for k in keys if k not in named]
        await remove_bytes(self.blobs, *orphans)
        return len(orphans)
