"""The rows a metadata store keeps, as records, and what a blob store's reader yields."""

from __future__ import annotations

import dataclasses
from typing import Literal


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


@dataclasses.dataclass(frozen=True)
class UploadRecord:
    """An upload of OpenAI's Uploads API: a file arriving in parts.

    `status` is "pending" (taking parts), "completing" (ours: one completion is assembling
    it; clients see "pending"), "completed", "cancelled" or "expired". `file_key` is the blob
    key the completed file will have, chosen at creation (its reservation names it);
    `file_id` is the file's id once completed, else None. `file_expires_after` is the
    completed file's `expires_after` in seconds after its creation (None: the purpose's
    default). `completing_since` is when the current completion began (set while
    "completing", else None).
    """

    id: str
    org_id: str
    project_id: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    created_at: int
    expires_at: int
    status: str
    file_id: str | None
    file_key: str
    file_expires_after: int | None = None
    completing_since: int | None = None


@dataclasses.dataclass(frozen=True)
class PartRecord:
    """One part of an upload: an ordinary blob under its own key (`blob_key`)."""

    id: str
    upload_id: str
    bytes: int
    created_at: int
    blob_key: str


Order = Literal["asc", "desc"]
#: A piece of an object being read: bytes, or a view of a buffer the store owns.
Chunk = bytes | memoryview
