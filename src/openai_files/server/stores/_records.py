"""The rows a metadata store keeps, as records, and what a blob store's reader yields."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Literal, TypeAlias, TypeVar

T = TypeVar("T")


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
    """A project's API key. `name` is what the Administration API shows (None for keys of
    the releases before names); `service_account_id` names the service account that owns
    it (None: made with `openai-files keys create`)."""

    id: str
    org_id: str
    project_id: str
    key_hash: str
    hint: str
    created_at: int
    revoked_at: int | None
    name: str | None = None
    service_account_id: str | None = None


@dataclasses.dataclass(frozen=True)
class AdminKeyRecord:
    """An organization's admin key (`sk-admin-...`): it reaches the Administration API of
    its organization and nothing else. `expires_at` None: it does not expire."""

    id: str
    org_id: str
    key_hash: str
    hint: str
    name: str | None
    created_at: int
    expires_at: int | None
    revoked_at: int | None


@dataclasses.dataclass(frozen=True)
class ProjectRecord:
    """A project of an organization; its id is unique within the organization only.
    Archived (`archived_at` set) it keeps its row, and has no active key."""

    org_id: str
    id: str
    name: str
    created_at: int
    archived_at: int | None = None


@dataclasses.dataclass(frozen=True)
class ServiceAccountRecord:
    """A service account of a project: a bot identity that owns the project keys made with
    it. `role` is OpenAI's: "member", or "none" for one made without a key."""

    id: str
    org_id: str
    project_id: str
    name: str
    role: str
    created_at: int


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


@dataclasses.dataclass(frozen=True)
class BatchRecord:
    """A batch of OpenAI's Batch API: its request, status, counts and results.

    `status` is OpenAI's: "validating", "in_progress", "finalizing", "completed", "failed",
    "cancelling", "cancelled", "expired". `input_blob_key` is the input file's blob key, kept
    while the batch runs (its bytes stay until the batch ends, even if the file is deleted).
    `metadata` and `errors` are JSON texts (an object; a list of OpenAI's batch errors).
    `output_key` and `error_key` name the blobs a finalizing batch writes (its output and
    error files' keys once they exist). `lease_owner` and `lease_until` say which worker
    validates or finalizes it, until when (None: no worker).
    """

    id: str
    org_id: str
    project_id: str
    endpoint: str
    input_file_id: str
    input_blob_key: str
    completion_window: str
    status: str
    created_at: int
    expires_at: int
    metadata: str | None = None
    output_expires_after: int | None = None
    model: str | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    errors: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    output_key: str | None = None
    error_key: str | None = None
    lease_owner: str | None = None
    lease_until: int | None = None


@dataclasses.dataclass(frozen=True)
class BatchRequestRecord:
    """One request (a line) of a batch: where its body lies in the input file, and its state.

    `status` moves "queued" -> "running" (claimed by the worker `lease_owner` until
    `lease_until`; a lapsed lease makes it claimable again) -> "done", once its result is
    stored: `outcome` "completed" (the output file's line) or "failed" (the error file's),
    `result` the line's JSON text.
    """

    batch_id: str
    line: int
    custom_id: str
    body_offset: int
    body_length: int
    model: str | None
    status: str = "queued"
    attempts: int = 0
    lease_owner: str | None = None
    lease_until: int | None = None
    outcome: str | None = None
    result: str | None = None


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What a worker learned of one request it ran: recorded by `record_batch_results`."""

    batch_id: str
    line: int
    outcome: str  # "completed" or "failed"
    result: str  # the output or error file's line, JSON text without its newline
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


@dataclasses.dataclass(frozen=True)
class AuditRecord:
    """One event of an organization's audit log, as stored: appended in the transaction of
    the change it records, never changed after (the retention removes it whole).

    `id` sorts as its time (`audit_log-` and `ids.new_sorted_id`'s digits), so a listing
    by id is one by `effective_at` too. `actor_id` is the key that acted and
    `actor_service_account_id` the service account that owns it (both None: the server or
    its command line acted); `resource_id` the object acted on; `details` the JSON text of
    the event's own object (under its `type` in OpenAI's shape), which the service builds
    and the store keeps as given: never a secret, a hash or a file's content."""

    id: str
    org_id: str
    type: str
    effective_at: int
    project_id: str | None
    actor_id: str | None
    actor_service_account_id: str | None
    resource_id: str | None
    details: str


#: Turns what a store call returned into the events that record its change, which the
#: store writes in the call's own transaction (a call's `audit=` argument).
Audit: TypeAlias = Callable[[T], Iterable[AuditRecord]]


@dataclasses.dataclass(frozen=True)
class AuditQuery:
    """Which of an organization's events a listing wants (`list_audit_logs`): those of one
    of the `types`, `project_ids`, `actor_ids` (a key's id or its service account's) and
    `resource_ids` given (an empty tuple: any), with `effective_at` from `since` to `until`
    (both included, None: unbounded), newest first strictly after (older than) the event
    id `after`, or, with `before`, the `limit` strictly newer than `before`."""

    limit: int
    types: tuple[str, ...] = ()
    project_ids: tuple[str, ...] = ()
    actor_ids: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    since: int | None = None
    until: int | None = None
    after: str | None = None
    before: str | None = None
