"""A cache of file rows in front of a metadata store that this process alone writes.

File rows never change once written; they are only deleted (by a delete or by the sweeper)
or pass their expiry. When one process is the only writer, as the embedded default is
(it holds the data folder's lock), it sees every deletion, so a row it has read can be
served again without a thread hop or a query: retrieval by id, the hottest read, then costs
no I/O at all. Expiry is checked against the clock on every hit. A row is served from the
cache only to its owner: anyone else's lookup of a cached id goes to the store, exactly as
the lookup of an id that does not exist does, so that the two take the same time.
Everything else passes through, the upload calls too: `finish_completion` adds a new file
row, as `insert_file` does, and a row that was never there is never cached (a lookup
that finds nothing remembers nothing), so nothing cached can contradict it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from ..settings import DEFAULT_FILE_CACHE_ROWS
from ._records import Audit, FileRecord, Owner
from .base import MetadataStore

#: Rows kept (`--file-cache-rows`); the least recently used go first.
MAX_ROWS = DEFAULT_FILE_CACHE_ROWS


class FileRowCache:
    """Wraps a metadata store; only valid while no other process writes to it."""

    def __init__(self, inner: MetadataStore, max_rows: int = MAX_ROWS) -> None:
        self.inner = inner
        self.max_rows = max_rows
        self._rows: OrderedDict[str, FileRecord] = OrderedDict()
        #: Bumped by every removal: a read that overlapped one does not fill the cache.
        self._epoch = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def shared(self) -> bool:
        """The wrapped store's: the cache is only made for one that is not shared."""
        return self.inner.shared

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        record = self._rows.get(file_id)
        if record is None or not _owned_by(record, owner):
            # A miss, or someone else's row: both ask the store, which answers None for
            # another tenant's id as for a missing one. Answering a foreign id from the
            # cache would be faster than a miss, and tell that the id exists.
            epoch = self._epoch
            record = await self.inner.get_file(owner, file_id, now)
            if record is not None and epoch == self._epoch:
                self._remember(record)
            return record
        self._rows.move_to_end(file_id)
        if record.expires_at is not None and record.expires_at <= now:
            return None
        return record

    def _remember(self, record: FileRecord) -> None:
        self._rows[record.id] = record
        if len(self._rows) > self.max_rows:
            self._rows.popitem(last=False)

    def _forget(self, file_id: str) -> None:
        self._epoch += 1
        self._rows.pop(file_id, None)

    async def delete_file(
        self,
        owner: Owner,
        file_id: str,
        now: int,
        *,
        audit: Audit[FileRecord | None] | None = None,
    ) -> FileRecord | None:
        self._forget(file_id)  # before: reads from now on go to the database
        try:
            return await self.inner.delete_file(owner, file_id, now, audit=audit)
        finally:
            self._forget(file_id)  # and after: no read that overlapped it refills the cache

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        self._epoch += 1
        records = await self.inner.pop_expired(now, limit)
        for record in records:
            self._forget(record.id)
        return records

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        return await self.inner.named_blob_keys(keys)


def _owned_by(record: FileRecord, owner: Owner) -> bool:
    return record.org_id == owner.org_id and record.project_id == owner.project_id
