"""What an upload holds while its bytes arrive, and how it gives it back when it fails.

A `Reservation` is a lease in the metadata store: it holds quota for the bytes to come and
names the key they are written under, so that no sweeper (of any replica) takes them for an
orphan. It lapses `reservation_ttl_seconds` after it was last renewed, so an upload renews
it while its bytes arrive (`renew`), and gives it back (`release`) unless its row replaced
it. Bytes that no row will name are removed (`remove_bytes`, `discard`); what cannot be
given back or removed is logged and left to the lease's lapse and to the sweeper.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from .ids import new_reservation_id
from .settings import Settings
from .stores import BlobStore, BlobWriter, MetadataStore
from .stores._manifest import owner_of

log = logging.getLogger("openai_files.server")

#: The quota given for a reservation of no bytes (one that only names a key).
NO_QUOTA = 2**62


class Reservation:
    """A held reservation (`hold`): renewed while bytes arrive, released when given up."""

    def __init__(self, meta: MetadataStore, settings: Settings, reservation_id: str) -> None:
        self.meta = meta
        self.id = reservation_id
        self.ttl = settings.reservation_ttl_seconds
        self._renew_at = time.monotonic() + self.ttl / 3

    @classmethod
    async def hold(
        cls,
        meta: MetadataStore,
        settings: Settings,
        *,
        org_id: str,
        nbytes: int,
        key: str,
        quota: int = NO_QUOTA,
        reservation_id: str | None = None,
    ) -> Reservation:
        """Hold `nbytes` of `org_id`'s `quota` and name `key` (`MetadataStore.reserve`:
        QuotaExceeded when they do not fit), under a new id unless one is given."""
        rid = reservation_id or new_reservation_id()
        expires_at = int(time.time() + settings.reservation_ttl_seconds)
        await meta.reserve(rid, org_id, nbytes, quota, expires_at, key)
        return cls(meta, settings, rid)

    async def renew(self) -> None:
        """Extend the lease by its TTL, once a third of it has passed since the last time
        (called as bytes arrive: a long upload keeps its quota and its key)."""
        if time.monotonic() >= self._renew_at:
            await self.meta.renew(self.id, int(time.time() + self.ttl))
            self._renew_at = time.monotonic() + self.ttl / 3

    async def release(self) -> None:
        """Give the reservation back; a failure is logged (the lease lapses by itself)."""
        try:
            await self.meta.release(self.id)
        except Exception:
            log.exception("could not release reservation %s", self.id)


async def remove_bytes(blobs: BlobStore, *keys: str) -> None:
    """Delete the bytes under each of `keys`, which no row names (any more); a failure is
    logged, and the sweep finds the bytes again."""
    for key in keys:
        try:
            await blobs.delete(key)
        except Exception:
            log.exception("could not remove the bytes of %s", key)


async def named_keys(meta: MetadataStore, keys: Sequence[str]) -> set[str]:
    """The subset of `keys` that a row names (`MetadataStore.named_blob_keys`), an upload's
    part counting as named while its file's key is (`_manifest.owner_of`): a completed
    file keeps its parts, which go when it goes."""
    owners = {k: o for k in keys if (o := owner_of(k)) is not None}
    asked = list(dict.fromkeys([*keys, *owners.values()]))
    named = await meta.named_blob_keys(asked) if asked else set()
    return {k for k in keys if k in named or owners.get(k) in named}


async def remove_unnamed_bytes(meta: MetadataStore, blobs: BlobStore, *keys: str) -> None:
    """Delete the bytes of files whose rows are gone (deleted, expired), but those a row
    still names: a batch not yet ended keeps its input file's bytes until it ends (the
    sweeper removes them then)."""
    try:
        named = await named_keys(meta, keys)
    except Exception:
        log.exception("could not tell which of %d keys are still named", len(keys))
        return  # the sweep finds the bytes again
    await remove_bytes(blobs, *(k for k in keys if k not in named))


async def discard(blobs: BlobStore, key: str, writer: BlobWriter, committed: bool) -> None:
    """Give up the bytes an upload wrote under `key`: removed when `committed`, else the
    write is aborted; a failure is logged (the sweeper removes what no row names)."""
    if committed:
        await remove_bytes(blobs, key)
        return
    try:
        await writer.abort()
    except Exception:
        log.exception("could not discard the bytes of %s", key)
