"""The two store interfaces: metadata (rows) and blobs (bytes).

Mechanism only: a store knows nothing of purposes, size limits or HTTP. The service decides
the rules and the order of writes: bytes are written durably under a fresh key *before* the
row that makes them visible is committed; a delete removes the row first, then the bytes;
a sweeper removes bytes that no row names once they are older than a grace period.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import ClassVar, Literal, Protocol


@dataclasses.dataclass(frozen=True)
class Owner:
    """The tenant a request acts for: files belong to one organization *and* project."""

    org_id: str
    project_id: str


@dataclasses.dataclass(frozen=True)
class FileRecord:
    id: str
    org_id: str
    project_id: str
    bytes: int
    created_at: int
    expires_at: int | None
    filename: str
    purpose: str
    mime_type: str
    blob_key: str


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    id: str
    org_id: str
    project_id: str
    key_hash: str
    hint: str
    created_at: int
    revoked_at: int | None


class QuotaExceeded(Exception):
    """A reservation or insert would take the organization past its quota."""

    def __init__(self, used: int, requested: int, quota: int) -> None:
        super().__init__(f"{used} + {requested} > {quota}")
        self.used = used
        self.requested = requested
        self.quota = quota


class CursorNotFound(Exception):
    """The `after` id of a listing names no row of the owner."""


class StoreUnavailable(Exception):
    """The database or object store cannot be reached now; the request may be retried."""


class SchemaMismatch(Exception):
    """The database has a schema this version does not know (migrate first), or the
    migration cannot run (the user may not create tables)."""


Order = Literal["asc", "desc"]
#: A piece of an object being read: bytes, or a view of a buffer the store owns.
Chunk = bytes | memoryview


class MetadataStore(Protocol):
    """Rows of files, API keys, and per-organization usage.

    Every method is a coroutine and runs its blocking work off the event loop. Every write
    is one transaction. Queries on files always filter on the owner.
    """

    #: The schema version this code reads and writes.
    SCHEMA_VERSION: ClassVar[int]
    #: Whether opening the store for `serve` may create or upgrade its schema by itself
    #: (the embedded default); others need `openai-files migrate`.
    AUTO_MIGRATE: ClassVar[bool]

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def migrate(self) -> int:
        """Create or upgrade the schema (safe to run from several processes); the version."""
        ...

    async def schema_version(self) -> int:
        """The version of the schema in the database; 0 when there is none."""
        ...

    # -- keys --
    async def add_api_key(self, record: KeyRecord) -> None: ...

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this hash, revoked or not; None when there is none."""
        ...

    async def list_api_keys(self) -> list[KeyRecord]: ...

    async def revoke_api_key(self, key_id: str, now: int) -> bool:
        """Mark a key revoked; False when no such (unrevoked) key exists."""
        ...

    # -- quota --
    async def reserve(
        self,
        reservation_id: str,
        org_id: str,
        nbytes: int,
        quota: int,
        expires_at: int,
        blob_key: str,
    ) -> None:
        """Atomically reserve `nbytes` of the organization's quota for an upload to `blob_key`.

        Raises QuotaExceeded when used + active reservations + nbytes > quota. The check and
        the reservation are one transaction: two racing calls can never both pass the quota.
        While the reservation lives, `blob_key` counts as named (see `named_blob_keys`).
        """
        ...

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        """Move a live reservation's end to `expires_at` (no error if it is gone)."""
        ...

    async def release(self, reservation_id: str) -> None:
        """Give a reservation back (no error if it is gone)."""
        ...

    async def usage(self, org_id: str) -> int:
        """Bytes of live files of the organization."""
        ...

    # -- files --
    async def insert_file(self, record: FileRecord, reservation_id: str | None, quota: int) -> None:
        """Make a file visible, in one transaction with its quota accounting.

        Drops the reservation, adds the bytes to the organization's usage and checks the
        total (raising QuotaExceeded and changing nothing when it would pass `quota`).
        """
        ...

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        """The owner's live (unexpired) file, or None."""
        ...

    async def list_files(
        self,
        owner: Owner,
        *,
        purpose: str | None,
        limit: int,
        order: Order,
        after: str | None,
        now: int,
    ) -> tuple[list[FileRecord], bool]:
        """One page in `(created_at, id)` order strictly after `after`, and `has_more`.

        Raises CursorNotFound when `after` names no row of the owner.
        """
        ...

    async def delete_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        """Remove the owner's live file's row (and its usage); the record, or None."""
        ...

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        """Remove up to `limit` rows of expired files (any owner) and return them."""
        ...

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        """The subset of `keys` that a file row or a reservation names."""
        ...

    async def purge_reservations(self, now: int | None) -> None:
        """Drop lapsed reservations (all of them when `now` is None)."""
        ...


async def ensure_schema(meta: MetadataStore) -> None:
    """Make sure the schema is the one this code knows: migrate it when the store may do so
    by itself, else raise SchemaMismatch saying what to run."""
    if meta.AUTO_MIGRATE:
        await meta.migrate()
        return
    found = await meta.schema_version()
    if found != meta.SCHEMA_VERSION:
        what = "has no schema" if found == 0 else f"has schema version {found}"
        raise SchemaMismatch(
            f"the database {what}; this server needs version {meta.SCHEMA_VERSION}. "
            + (
                "Run `openai-files migrate` (with the same --database) first."
                if found < meta.SCHEMA_VERSION
                else "Upgrade openai-files."
            )
        )


class BlobWriter(Protocol):
    """One object being written. Nothing is visible under its key before `commit`."""

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the bytes durable and visible under the key, atomically."""
        ...

    async def abort(self) -> None:
        """Discard everything written; safe to call more than once or after a failure."""
        ...


class BlobStore(Protocol):
    """Immutable objects under string keys.

    Atomic: no client can observe a partially written object. A missing key raises the
    built-in FileNotFoundError.
    """

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    def writer(self, key: str) -> BlobWriter: ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        """Stream bytes `[start, end)` of an object (to its end when `end` is None).

        Chunks may be memoryviews of the store's own buffers (no copy on the way out).
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove an object; no error if it is already gone."""
        ...

    def list_object_keys(self, older_than: float) -> AsyncIterator[str]:
        """Keys of committed objects last written before the Unix time `older_than`."""
        ...

    async def remove_stale_temp(self, older_than: float) -> int:
        """Remove leftovers of unfinished writes started before `older_than`; how many."""
        ...
