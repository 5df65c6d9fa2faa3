"""The two store interfaces: metadata (rows) and blobs (bytes).

Mechanism only: a store knows nothing of purposes, size limits or HTTP. The service decides
the rules and the order of writes: bytes are written durably under a fresh key *before* the
row that makes them visible is committed; a delete removes the row first, then the bytes;
a sweeper removes bytes that no row names once they are older than a grace period.
Whether the deployment has one writer (`one_writer`) decides what a start may clean up at
once: with other writers, their uploads in flight hold reservations and temp data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from ._errors import SchemaMismatch
from ._records import (
    AdminKeyRecord,
    Audit,
    AuditQuery,
    AuditRecord,
    BatchRecord,
    BatchRequestRecord,
    BatchResult,
    Chunk,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    PartRecord,
    ProjectRecord,
    ServiceAccountRecord,
    UploadRecord,
)


class MetadataStore(Protocol):
    """Rows of files, API keys, projects, per-organization usage, and quota reservations.

    Every method is a coroutine and runs its blocking work off the event loop. Every write
    is one transaction: it happens whole or not at all, also when it raises. A request's
    queries on files and uploads filter on the owner (the sweeper's `pop_expired`,
    `pop_expired_uploads` and `named_blob_keys` see every owner; the upload calls by bare id
    come after the owner was checked). The store may be shared by several server processes
    (`shared`); every guarantee below holds between processes as between tasks of one.
    Any method may raise StoreUnavailable when the database cannot be reached (the request
    may be retried); other driver errors mean a bug (e.g. a duplicate id).

    The audit log: each call that changes what a client can see (keys, projects, service
    accounts, files, uploads, batches) takes `audit`, a function of what the call returns
    to the events that record its change. When the call changes something, the store calls
    it inside the call's transaction and appends its events there: the change and its
    events commit together or not at all, also when the process dies; an `audit` that
    raises undoes the change (the error goes to the caller). A call that changes nothing
    (a missing row, a key revoked already) calls no `audit` and writes no event. Events
    are never changed; `purge_audit_logs` alone removes them, by age.
    """

    #: The schema version this code reads and writes.
    SCHEMA_VERSION: ClassVar[int]
    #: Whether opening the store for `serve` may create or upgrade its schema by itself
    #: (the embedded default); others need `openai-files migrate`.
    AUTO_MIGRATE: ClassVar[bool]

    @property
    def shared(self) -> bool:
        """Whether other server processes may use this database at the same time (True for
        PostgreSQL; False for SQLite, whose file belongs to one server). When it is False,
        every row in the database was written by this process or a dead earlier one."""
        ...

    async def open(self) -> None:
        """Connect (a file database: open it). A server that cannot be reached or refuses
        the URL's credentials raises StoreUnavailable, one line naming it and what to fix."""
        ...

    async def close(self) -> None:
        """Let go of connections and threads; safe to call twice. The store is not used
        after it."""
        ...

    async def ping(self) -> None:
        """Prove that the opened database answers now, with one cheap read that writes
        nothing (readiness, `GET /readyz`, asks at most once a second). Raises
        StoreUnavailable, one line saying what failed, when it does not; a database that
        hangs hangs here too (the caller bounds the wait, then stops waiting). A ping that
        runs in a worker thread, which cannot be stopped, starts no other while one runs:
        callers wait for that one (`_shared_call.SharedCall`)."""
        ...

    async def migrate(self) -> int:
        """Create or upgrade the schema to SCHEMA_VERSION; the version now in place.

        Idempotent, and safe to run from several processes at once: one of them migrates,
        the others find it done. Raises SchemaMismatch when the database is newer than this
        code, or when the user may not create tables.
        """
        ...

    async def schema_version(self) -> int:
        """The version of the schema in the database; 0 when there is none. Writes nothing."""
        ...

    async def row_counts(self) -> dict[str, int]:
        """How many rows each table of the schema in place holds (`tables_at` of its
        version; empty when there is no schema). Writes nothing."""
        ...

    # -- backup and restore: every table, whatever tables the schema's steps made --
    async def snapshot(self, dest: Path) -> int:
        """Copy every table of the schema (`tables_at` of its version) as of one instant
        into a new SQLite database at `dest`, made by the same schema steps; the schema
        version copied. Other processes go on writing meanwhile, and no row they commit
        after that instant is in the copy. Raises FileExistsError when `dest` exists, and
        SchemaMismatch for a database with no schema or one newer than this code (no copy
        is left then)."""
        ...

    async def load(self, source: Path) -> dict[str, int]:
        """Insert every row of the copy `source` (made by `snapshot`, then migrated to this
        code's SCHEMA_VERSION) into this store, whose schema must be SCHEMA_VERSION too
        (else SchemaMismatch), in one transaction: every row or none, also when it raises
        or the process dies. Raises StoreNotEmpty, inserting nothing, when a table holds a
        row; no other writer can add one between that check and the commit. The rows
        inserted, per table."""
        ...

    # -- keys --
    async def add_api_key(self, record: KeyRecord, *, audit: Audit[None] | None = None) -> None:
        """Store a new key of a project, in one transaction with its project's row: a
        project that has none yet gets one (named after its id, created at the key's
        `created_at`). Raises ProjectArchived, storing nothing, when the project is
        archived; a key racing `archive_project` is either stored before it (and revoked by
        it) or refused. Ids and hashes are random and never reused: a duplicate raises (the
        driver's integrity error) and stores nothing."""
        ...

    async def add_first_api_key(
        self, record: KeyRecord, *, audit: Audit[bool] | None = None
    ) -> bool:
        """Store `record` (as `add_api_key` does) only when the database holds no key at
        all, admin keys and revoked ones included; whether it did. Atomic: of calls racing
        on a database without keys, from any processes, exactly one stores its key
        (replicas starting together on a new database mint one first key, not one each)."""
        ...

    async def find_api_key(self, key_hash: str) -> KeyRecord | None:
        """The key with this hash, revoked or not (the caller checks `revoked_at`); None
        when there is none."""
        ...

    async def get_api_key(self, key_id: str) -> KeyRecord | None:
        """The key with this id, revoked or not (the caller checks `revoked_at`); None when
        there is none."""
        ...

    async def list_api_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones too, in `(created_at, id)` order."""
        ...

    async def revoke_api_key(
        self, key_id: str, now: int, *, audit: Audit[bool] | None = None
    ) -> bool:
        """Mark a key revoked at `now`: True when this call revoked it; False when no such
        key exists or it was revoked already (its first `revoked_at` stays). Atomic: of
        calls racing on one key, from any processes, exactly one returns True."""
        ...

    # -- the Administration API: projects, service accounts, admin keys --
    # A project's id is unique within its organization only; every call names both. Keys
    # and service accounts of a project are added, and the project archived, each holding
    # the project's row: racing calls, from any processes, see one another whole.

    async def create_project(
        self, record: ProjectRecord, limit: int = 0, *, audit: Audit[None] | None = None
    ) -> None:
        """Store a new project. A duplicate (organization, id) raises (the driver's
        integrity error) and stores nothing. With `limit` (0: none), LimitReached, storing
        nothing, when the organization has `limit` projects (archived ones count); creates
        racing at the limit are serialized, so that it is never passed."""
        ...

    async def get_project(self, org_id: str, project_id: str) -> ProjectRecord | None:
        """The organization's project, archived or not; None when it has none of that id."""
        ...

    async def list_projects(
        self, org_id: str, *, after: str | None, limit: int, include_archived: bool
    ) -> tuple[list[ProjectRecord], bool]:
        """One page of the organization's projects (archived ones only when
        `include_archived`), at most `limit`, in `(created_at, id)` order strictly after the
        project `after`, and whether more follow. CursorNotFound when `after` names no
        project of the organization (an archived one may: paging goes on from it)."""
        ...

    async def rename_project(
        self,
        org_id: str,
        project_id: str,
        name: str,
        *,
        audit: Audit[ProjectRecord | None] | None = None,
    ) -> ProjectRecord | None:
        """Set the project's name; its record after, or None when the organization has no
        such project. ProjectArchived, changing nothing, when it is archived."""
        ...

    async def archive_project(
        self,
        org_id: str,
        project_id: str,
        now: int,
        *,
        audit: Audit[tuple[ProjectRecord, list[KeyRecord]] | None] | None = None,
    ) -> tuple[ProjectRecord, list[KeyRecord]] | None:
        """Archive the project at `now` and revoke every active key of it, in one
        transaction: its record after, and the keys it revoked (as `revoke_api_key` would
        have revoked each). The same transaction moves its batches still validating or in
        progress to "cancelling" (as `cancel_batch`) and cancels its pending uploads (as
        `cancel_upload`, their parts' bytes left to the orphan sweep); its files stay. An
        archived project is returned as it is, with no key (a change of nothing: no
        event). None when the organization has no such project."""
        ...

    async def list_project_keys(
        self, owner: Owner, *, after: str | None, limit: int
    ) -> tuple[list[tuple[KeyRecord, ServiceAccountRecord | None]], bool]:
        """One page of the project's active keys, each with the service account that owns it
        (None for a key made on the command line), at most `limit`, in `(created_at, id)`
        order strictly after the key `after`, and whether more follow. CursorNotFound when
        `after` names no key of the project (a revoked one may)."""
        ...

    async def get_project_key(
        self, owner: Owner, key_id: str
    ) -> tuple[KeyRecord, ServiceAccountRecord | None] | None:
        """The project's active key and its service account (None: none owns it); None when
        the key is unknown, revoked or another project's (not told apart)."""
        ...

    async def create_service_account(
        self,
        account: ServiceAccountRecord,
        key: KeyRecord | None,
        limit: int = 0,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        """Store a service account of its project and, when given, its first key (whose
        `service_account_id` names it), in one transaction. ProjectNotFound or
        ProjectArchived, storing nothing, when the project does not exist or is archived.
        A duplicate id or key hash raises (the driver's integrity error) and stores
        nothing. With `limit` (0: none), LimitReached, storing nothing, when the project
        has `limit` service accounts (its row, held, serializes racing creates)."""
        ...

    async def get_service_account(
        self, owner: Owner, account_id: str
    ) -> ServiceAccountRecord | None:
        """The project's service account; None when unknown or another project's."""
        ...

    async def list_service_accounts(
        self, owner: Owner, *, after: str | None, limit: int
    ) -> tuple[list[ServiceAccountRecord], bool]:
        """One page of the project's service accounts, at most `limit`, in `(created_at, id)`
        order strictly after `after`, and whether more follow. CursorNotFound when `after`
        names no service account of the project."""
        ...

    async def delete_service_account(
        self,
        owner: Owner,
        account_id: str,
        now: int,
        *,
        audit: Audit[tuple[ServiceAccountRecord, list[KeyRecord]] | None] | None = None,
    ) -> tuple[ServiceAccountRecord, list[KeyRecord]] | None:
        """Delete the project's service account and revoke its active keys at `now`, in one
        transaction: its record and the keys revoked; None when unknown, another project's
        or already deleted. Atomic: of deletes racing on one account, exactly one gets it."""
        ...

    async def add_admin_key(
        self, record: AdminKeyRecord, limit: int = 0, *, audit: Audit[None] | None = None
    ) -> None:
        """Store a new admin key. A duplicate id or hash raises (the driver's integrity
        error) and stores nothing. With `limit` (0: none), LimitReached, storing nothing,
        when the organization has `limit` admin keys not revoked (expired ones count),
        serialized as `create_project`. Admin keys are kept apart from project keys:
        `find_api_key` never finds one."""
        ...

    async def find_admin_key(self, key_hash: str) -> AdminKeyRecord | None:
        """The admin key with this hash, revoked or expired or not; None when none."""
        ...

    async def get_admin_key(self, key_id: str) -> AdminKeyRecord | None:
        """The admin key with this id, of any organization, revoked or expired or not;
        None when none."""
        ...

    async def list_admin_keys(
        self, org_id: str, *, after: str | None, limit: int, order: Order
    ) -> tuple[list[AdminKeyRecord], bool]:
        """One page of the organization's admin keys not revoked (expired ones too), at most
        `limit`, in `(created_at, id)` order (`order`) strictly after the key `after`, and
        whether more follow. CursorNotFound when `after` names no admin key of the
        organization (a revoked one may)."""
        ...

    async def list_all_admin_keys(self) -> list[AdminKeyRecord]:
        """Every admin key of every organization, revoked ones too, in `(created_at, id)`
        order."""
        ...

    async def revoke_admin_key(
        self, key_id: str, now: int, *, audit: Audit[bool] | None = None
    ) -> bool:
        """Mark an admin key revoked at `now`, as `revoke_api_key` marks a project's key:
        True when this call revoked it; of racing calls exactly one returns True."""
        ...

    # -- the audit log --
    async def add_audit_logs(self, events: Sequence[AuditRecord]) -> None:
        """Append events that record no change of the store's (a file downloaded), in one
        transaction. A duplicate id raises (the driver's integrity error) and stores
        nothing."""
        ...

    async def list_audit_logs(
        self, org_id: str, query: AuditQuery
    ) -> tuple[list[tuple[AuditRecord, str | None]], bool]:
        """One page of the organization's events that `query` asks for, newest first (by
        id, which sorts as `effective_at`), at most `query.limit`, each with the name of
        its project (None: no project, or none of that id), and whether more follow in
        the direction of the paging (older ones; newer ones when paging back with
        `before`). A cursor is a position: it need not name an event still stored."""
        ...

    async def purge_audit_logs(self, before: int, limit: int) -> int:
        """Remove up to `limit` events whose `effective_at` is before `before`, oldest
        first; how many (the retention, by the sweeper). Safe with racing callers."""
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

        Raises QuotaExceeded (reserving nothing) when the bytes of the organization's
        unexpired files + its unlapsed reservations + `nbytes` > `quota`; `used` is the sum
        before `nbytes`. The check and the reservation are one transaction: calls racing
        from any number of processes can never together pass the quota. The reservation
        lapses at `expires_at` (it then counts no more); while it exists, lapsed or not,
        `blob_key` counts as named (see `named_blob_keys`). A duplicate `reservation_id`
        raises (the driver's integrity error).
        """
        ...

    async def renew(self, reservation_id: str, expires_at: int) -> None:
        """Move a reservation's end to `expires_at`, without a quota check.

        A reservation released, consumed by `insert_file` or purged stays gone (no error);
        one that lapsed but was not purged yet counts again.
        """
        ...

    async def release(self, reservation_id: str) -> None:
        """Give a reservation back at once. Idempotent: no error if it is gone."""
        ...

    async def usage(self, org_id: str) -> int:
        """Bytes of the organization's file rows: live files, and expired ones until
        `pop_expired` removes them; reservations do not count. 0 for an organization
        with no file."""
        ...

    async def committed_bytes(self, org_id: str, now: int) -> int:
        """What the quota counts for the organization at `now`: the bytes of its unexpired
        files plus its unlapsed reservations (the sum `reserve` compares with the quota).
        Reads only, and holds no lock: a figure to show, not to decide on."""
        ...

    # -- secrets --
    async def server_secret(self, name: str, candidate: str, now: int) -> str:
        """The secret the servers share under `name`: the first call stores `candidate`
        (made at `now`), every later one returns the stored value. Calls racing from any
        processes all return the one value stored."""
        ...

    # -- files --
    async def insert_file(
        self,
        record: FileRecord,
        reservation_id: str | None,
        quota: int,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        """Make a file visible, in one transaction with its quota accounting.

        Drops the reservation `reservation_id` (if given and still there), adds the bytes
        to the organization's usage and checks the total against `quota` at
        `record.created_at`: the organization's unexpired files + its other unlapsed
        reservations + the file. Raises QuotaExceeded when it would pass, and then changes
        nothing: the row is not inserted and the reservation is still held. Racing inserts
        never together pass the quota. A duplicate id or blob key raises (the driver's
        integrity error) and changes nothing.
        """
        ...

    async def get_file(self, owner: Owner, file_id: str, now: int) -> FileRecord | None:
        """The owner's live file (no expiry, or one after `now`); None when the id is
        unknown, expired, or another owner's (the three are not told apart)."""
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
        position: tuple[int, str] | None = None,
    ) -> tuple[list[FileRecord], bool]:
        """One page of the owner's live files (of `purpose`, when given), at most `limit`,
        in `(created_at, id)` order strictly after the row `after`, and `has_more`: whether
        more rows follow. `position`, when given instead of `after`, is the `(created_at,
        id)` to go on after, whether or not that row still exists (a listing streamed in
        batches goes on from its last row even when it was deleted meanwhile).

        `after` may name a file that has expired since the last page (paging goes on from
        it). Raises CursorNotFound when `after` names no row of the owner (deleted, or
        never its). Paging by `(created_at, id)`, a row live through the whole paging is
        seen exactly once, whatever else is inserted or deleted between pages.
        """
        ...

    async def delete_file(
        self,
        owner: Owner,
        file_id: str,
        now: int,
        *,
        audit: Audit[FileRecord | None] | None = None,
    ) -> FileRecord | None:
        """Remove the owner's live file's row and take its bytes off the usage, in one
        transaction; the removed record, or None (unknown, expired, another owner's, or
        already gone). Atomic: of deletes racing on one file, from any processes, exactly
        one gets the record (and the usage goes down once)."""
        ...

    async def pop_expired(self, now: int, limit: int) -> list[FileRecord]:
        """Remove up to `limit` rows of files expired at `now` (any owner; `expires_at <=
        now`), take their bytes off the usage, and return them: the caller deletes their
        bytes. Racing callers (replicas sweeping at once) never get the same row; a caller
        that gets fewer than `limit` rows may still leave rows another caller holds."""
        ...

    async def named_blob_keys(self, keys: Sequence[str]) -> set[str]:
        """The subset of `keys` that a file row (expired or not, until popped), a
        reservation (lapsed or not, until purged) or an upload's part row (until the upload
        is completed, cancelled or expired) names: the sweeper removes bytes only under keys
        that are not named. `insert_file` drops a reservation and adds the row that names
        its key in one transaction, so a key stays named throughout."""
        ...

    async def purge_reservations(self, now: int | None) -> None:
        """Drop the reservations lapsed at `now` (`expires_at <= now`), or all of them when
        `now` is None but those of uploads still pending or completing. Idempotent. None
        drops the reservations of uploads in flight in other processes too: only a
        deployment with one writer (`one_writer`) may ask it, at start.
        """
        ...

    # -- uploads (OpenAI's Uploads API) --
    # An upload holds the reservation `upload.id` (the service calls `reserve` with it, for
    # `upload.bytes` and naming `upload.file_key`, before `insert_upload`) until it is
    # completed (the file consumes it), cancelled or expired (it is released). Its status
    # moves pending -> completing -> completed, completing -> pending (abort), pending ->
    # cancelled, and pending or completing -> expired; each move is one transaction that
    # holds the upload's row, so racing moves of one upload have exactly one winner.

    async def insert_upload(self, record: UploadRecord) -> None:
        """Store a new upload (status "pending"). A duplicate id raises (the driver's
        integrity error) and stores nothing."""
        ...

    async def open_upload(
        self,
        record: UploadRecord,
        *,
        quota: int,
        reserved_until: int,
        max_pending: int,
        max_pending_bytes: int,
        audit: Audit[None] | None = None,
    ) -> None:
        """Reserve a new upload's bytes and store it, in one transaction: the reservation
        `record.id` of `record.bytes`, naming `record.file_key`, lapsing at
        `reserved_until`, as `reserve` makes it (QuotaExceeded the same way), then the
        upload as `insert_upload` stores it.

        Before either, the limits of its project (`record`'s organization and project):
        PendingUploadsExceeded ("uploads") when it has `max_pending` uploads or more that
        clients see pending at `record.created_at` (as `count_pending_uploads` counts
        them), PendingUploadsExceeded ("bytes") when the unlapsed reservations of its
        uploads still pending or completing, plus `record.bytes`, would pass
        `max_pending_bytes`. On any error nothing is stored. Calls racing from any
        processes, for any projects of one organization, never together pass a limit."""
        ...

    async def get_upload(self, owner: Owner, upload_id: str) -> UploadRecord | None:
        """The owner's upload, in any status; None when the id is unknown or another
        owner's (not told apart). The status is the stored one: a "pending" upload past its
        `expires_at` that the sweeper has not reached yet is still "pending" here."""
        ...

    async def list_uploads(
        self, owner: Owner, status: str | None, limit: int
    ) -> list[UploadRecord]:
        """The owner's uploads, newest first (`(created_at, id)` descending), at most
        `limit`; only those of `status` when given, where "pending" also matches
        "completing" (clients see both as pending)."""
        ...

    async def count_pending_uploads(self, owner: Owner, now: int) -> int:
        """How many of the owner's uploads are "pending" or "completing" and unexpired at
        `now`: those clients see as pending."""
        ...

    async def add_part(self, owner: Owner, part: PartRecord, now: int) -> UploadRecord:
        """Record a part of the upload `part.upload_id` (its bytes are already durable
        under `part.blob_key`), if that upload is the owner's, "pending" and unexpired at
        `now` (`expires_at > now`), in one transaction; the upload's record.

        Raises UploadNotFound (unknown, or another owner's) or UploadNotPending (its record:
        "completing", "completed", "cancelled", "expired", also "expired" for a pending one
        past its `expires_at`), and stores nothing. Raises UploadFull, storing nothing,
        when the upload's parts and this one would hold more than its `bytes`: the check
        holds the upload's row, so parts racing from any processes never together pass
        it (the upload's reservation of its `bytes` thus always covers its parts). A part
        racing `begin_completion`,
        `cancel_upload` or the sweeper is either recorded before the move or refused. A
        duplicate part id or blob key raises (the driver's integrity error)."""
        ...

    async def parts_total(self, upload_id: str) -> tuple[int, int]:
        """How many parts an upload has and their bytes (any owner: the caller has checked
        it), as `list_parts` would add them up, read without reading the parts: adding a
        part costs the same at its 10,000th as at its first. (0, 0) for an unknown id."""
        ...

    async def list_parts(self, upload_id: str) -> list[PartRecord]:
        """The part rows of an upload (any owner: the caller has checked it), in the order
        `add_part` recorded them; empty once the upload is completed, cancelled or expired,
        or for an unknown id."""
        ...

    async def begin_completion(
        self, owner: Owner, upload_id: str, now: int, stale_before: int | None = None
    ) -> UploadRecord:
        """Move the owner's pending, unexpired upload to "completing", `completing_since`
        = `now`; its record, so changed. The same errors as `add_part`. Atomic: of calls
        racing on one upload, from any processes, exactly one wins; the others get
        UploadNotPending with status "completing" (or the status a racing cancel or sweep
        left). With `stale_before`, an unexpired upload "completing" since `stale_before` or
        earlier (or since an unknown time: a row older than schema step 5) is taken over
        the same way: its completion's server is taken for dead. `completing_since` is the
        attempt's token for `finish_completion` and `abort_completion`."""
        ...

    async def finish_completion(
        self,
        upload_id: str,
        file: FileRecord,
        quota: int,
        since: int | None = None,
        *,
        audit: Audit[None] | None = None,
    ) -> None:
        """Complete a "completing" upload with its file, in one transaction: the file row is
        inserted consuming the reservation `upload_id` exactly as `insert_file(file,
        upload_id, quota)` does (QuotaExceeded the same way), the upload becomes "completed"
        with `file_id = file.id`, and its part rows are deleted (the caller then deletes the
        part blobs). Raises UploadNotFound for an unknown id and UploadNotPending when the
        upload is not "completing" (e.g. the sweeper expired it meanwhile: the caller
        deletes the file's bytes), or, with `since`, when its `completing_since` is not
        `since` (another completion took it over); on any error nothing changes."""
        ...

    async def renew_completion(self, upload_id: str, since: int, now: int) -> bool:
        """Renew a running completion's lease: `completing_since` = `now` if the upload is
        "completing" since `since` (no other completion took it over); whether it was.
        `now` is the attempt's token from then on."""
        ...

    async def abort_completion(self, upload_id: str, since: int | None = None) -> bool:
        """Move a "completing" upload back to "pending" (its completion failed: it may be
        completed again, with parts kept); whether it moved. No error, and no change, in
        any other status, for an unknown id, or, with `since`, when its
        `completing_since` is not `since` (another completion took it over)."""
        ...

    async def cancel_upload(
        self,
        owner: Owner,
        upload_id: str,
        now: int,
        stale_before: int | None = None,
        *,
        audit: Audit[tuple[UploadRecord, list[str]]] | None = None,
    ) -> tuple[UploadRecord, list[str]]:
        """Cancel the owner's pending, unexpired upload, in one transaction: status
        "cancelled", its reservation released, its part rows deleted; its record (with that
        status) and its parts' blob keys in arrival order (the caller deletes those bytes).
        The same errors as `add_part`; atomic as `begin_completion`. With `stale_before`, an
        upload "completing" since then or earlier is cancelled too, as `begin_completion`
        takes it over (its completion's server is taken for dead)."""
        ...

    async def reopen_completions(self, stale_before: int | None, limit: int) -> list[UploadRecord]:
        """Move up to `limit` uploads (any owner) "completing" since `stale_before` or
        earlier (or since an unknown time), or every "completing" one when `stale_before` is
        None (the caller knows that no completion runs), back to "pending", in one
        transaction; their records as they were (status "completing", with the
        `completing_since` of the completion given up). A completion that is finishing
        meanwhile (its row locked) is skipped, so is an upload another caller reopens."""
        ...

    async def pop_expired_uploads(
        self, now: int, limit: int
    ) -> list[tuple[UploadRecord, list[str]]]:
        """Expire up to `limit` uploads (any owner) that are "pending" or "completing" with
        `expires_at <= now`: status "expired", reservation released, part rows deleted; each
        record (with that status) and its parts' blob keys in arrival order (the caller
        deletes those bytes). Racing callers (replicas sweeping at once) never get the same
        upload; a caller that gets fewer than `limit` may still leave uploads another
        caller holds."""
        ...

    async def purge_uploads(self, expired_before: int, limit: int) -> int:
        """Delete up to `limit` rows of uploads (any owner) that are "completed",
        "cancelled" or "expired" and whose `expires_at` is at or before `expired_before`;
        how many. They hold no parts or reservation (their files are rows of their own and
        stay): once deleted, they are unknown ids. Safe with racing callers."""
        ...

    # -- batches (OpenAI's Batch API) --
    # A batch's status moves as OpenAI's: validating -> in_progress -> finalizing ->
    # completed, validating -> failed, validating or in_progress -> cancelling -> cancelled,
    # in_progress -> expired. A worker (an id of its own) takes a batch's lease to validate
    # or finalize it (`lease_batch`) and each request's lease to run it
    # (`claim_batch_requests`); leases lapse unless renewed (`renew_batch_leases`), and a
    # lapsed one may be taken by any worker. A batch not yet ended names its input file's
    # blob key and its `output_key` and `error_key` (`named_blob_keys`).

    async def create_batch(
        self, record: BatchRecord, now: int, max_active: int, *, audit: Audit[None] | None = None
    ) -> None:
        """Store a new batch, in one transaction with the checks that its input file
        (`record.input_file_id`, whose bytes are `record.input_blob_key`) is still the
        owner's live file at `now` (else BatchInputGone) and that its project has fewer
        than `max_active` batches not yet ended (else TooManyBatches); on any error
        nothing is stored. Creates racing from any processes never together pass
        `max_active`. A file delete racing the create either comes first (the create
        raises) or finds the batch naming the file's bytes."""
        ...

    async def get_batch(self, owner: Owner, batch_id: str) -> BatchRecord | None:
        """The owner's batch; None when unknown or another owner's (not told apart)."""
        ...

    async def list_batches(
        self, owner: Owner, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        """One page of the owner's batches, newest first (`(created_at, id)` descending),
        strictly after the batch `after`, at most `limit`, and whether more follow. Raises
        CursorNotFound when `after` names no batch of the owner."""
        ...

    async def cancel_batch(
        self,
        owner: Owner,
        batch_id: str,
        now: int,
        *,
        audit: Audit[BatchRecord | None] | None = None,
    ) -> BatchRecord | None:
        """Move the owner's validating or in-progress batch to "cancelling" (`cancelling_at`
        = `now`); its record. One already cancelling or cancelled is returned unchanged (a
        change of nothing: no event);
        BatchNotCancellable for any other status; None when unknown or another owner's.
        No request is claimed after the move (`claim_batch_requests` holds the row)."""
        ...

    async def active_batches(self, limit: int) -> list[BatchRecord]:
        """Batches of any owner not yet ended (validating, in progress, finalizing,
        cancelling), oldest first, at most `limit`: the work of the batch workers."""
        ...

    async def batch_counts(self) -> dict[str, int]:
        """How many batches there are of each status (for /metrics)."""
        ...

    async def lease_batch(
        self, batch_id: str, worker: str, now: int, until: int, statuses: Sequence[str]
    ) -> BatchRecord | None:
        """Take the batch's lease for `worker` until `until`, if its status is one of
        `statuses` and no other worker holds an unlapsed lease (at `now`); its record, or
        None. Atomic: of workers racing for one batch, at most one gets it."""
        ...

    async def update_batch(
        self,
        batch_id: str,
        worker: str,
        statuses: Sequence[str] | None,
        changes: Mapping[str, Any],
    ) -> BatchRecord:
        """Set columns of a batch whose lease `worker` holds (and whose status is one of
        `statuses`, when given); its record after. LeaseLost, changing nothing, otherwise.
        Only a worker's columns (status, timestamps, counts, errors, results, lease) may
        change: ValueError for the others. No `changes`: the record as it is, once the
        lease is checked."""
        ...

    async def add_batch_requests(
        self, batch_id: str, worker: str, rows: Sequence[BatchRequestRecord]
    ) -> None:
        """Store requests of a validating batch whose lease `worker` holds (LeaseLost
        otherwise, storing nothing). A duplicate (batch, line) raises (the driver's
        integrity error)."""
        ...

    async def clear_batch_requests(self, batch_id: str, worker: str) -> None:
        """Delete every request row of a batch whose lease `worker` holds (a validation
        that starts over); LeaseLost otherwise."""
        ...

    async def claim_batch_requests(
        self, batch_id: str, worker: str, now: int, until: int, limit: int
    ) -> list[BatchRequestRecord]:
        """Claim up to `limit` requests of an in-progress, unexpired batch for `worker`
        until `until`: first those whose lease lapsed at `now` (their worker is taken for
        dead: they are sent again), then queued ones, lowest line first; each becomes
        "running" with `attempts` one more. Their records, in line order; empty when the
        batch is not in progress (cancelled, expired, finalizing) or has nothing to claim.
        Workers racing never claim the same request; none waits for another's rows."""
        ...

    async def renew_batch_leases(self, worker: str, until: int) -> int:
        """Move to `until` the end of every lease `worker` holds (running requests, and
        batches not yet ended); how many."""
        ...

    async def release_batch_requests(
        self, worker: str, batch_id: str | None = None, lines: Sequence[int] | None = None
    ) -> int:
        """Put `worker`'s running requests (of `batch_id`, of `lines` of it, when given)
        back in the queue, unsent; how many. Without `batch_id` and `lines` (all its work
        given back), the leases it holds on batches are let go too. `worker` "*" means
        every worker's: only a deployment with one writer may ask that, at start (no other
        worker runs)."""
        ...

    async def record_batch_results(self, worker: str, results: Sequence[BatchResult]) -> list[bool]:
        """Store results, in one transaction: each request still running under `worker`'s
        lease, unlapsed now, of a batch whose finalizing has not begun (no `output_key`),
        becomes "done" with its outcome and output line, and its batch's counts
        (`completed` or `failed`, and the token usage) grow by it; whether each was
        recorded. A result whose lease `worker` no longer holds changes nothing: a request
        is recorded and counted once, whichever workers ran it."""
        ...

    async def running_batch_requests(self, batch_id: str, now: int) -> int:
        """How many of the batch's requests are running under a lease unlapsed at `now`."""
        ...

    async def batch_request_page(
        self, batch_id: str, after_line: int, limit: int, max_bytes: int | None = None
    ) -> list[BatchRequestRecord]:
        """Up to `limit` request rows of the batch after line `after_line`, in line order
        (done or not): what finalizing writes out, a page at a time. With `max_bytes`, the
        page ends before the row whose result would take the page's results past it (a
        page has one row at least, whatever its size)."""
        ...

    async def finish_batch(
        self,
        batch_id: str,
        worker: str,
        statuses: Sequence[str],
        files: Sequence[FileRecord],
        changes: Mapping[str, Any],
    ) -> BatchRecord:
        """End a batch whose lease `worker` holds and whose status is one of `statuses`, in
        one transaction: the `files` (its output and error files, their bytes durable
        already) are inserted and counted in their organization's usage (never refused
        for the quota), its request rows are deleted, `changes` are set as `update_batch`
        sets them and its lease is let go; its record after. LeaseLost, changing nothing,
        otherwise."""
        ...


def one_writer(meta: MetadataStore, blobs: BlobStore) -> bool:
    """Whether this process is the only writer of its deployment: no other process uses its
    database, and it holds its blob store for itself (a local folder it has locked with
    `lock_exclusive`). Then, at start, every reservation and every temp file and object no
    row names is a leftover of an earlier run, which may go at once; otherwise another
    server may have an upload in flight that they belong to."""
    return not meta.shared and not blobs.shared


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
    """One object being written, by one task. Nothing is visible under its key before
    `commit`; a writer that is neither committed nor aborted leaves leftovers that the
    sweeper removes (`remove_stale_temp`, `abort_stale_uploads`)."""

    async def write(self, chunk: bytes) -> None:
        """Add bytes (the store may buffer them). Raises RuntimeError after `commit` or
        `abort`; StoreUnavailable or OSError (a full disk) when the store refuses them."""
        ...

    async def commit(self) -> None:
        """Make the bytes durable and visible under the key, atomically: a reader sees the
        whole object or none. When it raises (StoreUnavailable, OSError) nothing is visible
        and the writer is aborted. A second commit of the same key replaces the object
        whole (keys are never reused, so the service never does)."""
        ...

    async def abort(self) -> None:
        """Discard everything written; safe to call more than once or after a failure."""
        ...


class BlobStore(Protocol):
    """Immutable objects under string keys.

    Atomic: no client can observe a partially written object. A missing key raises the
    built-in FileNotFoundError; a key the store cannot hold (a `/`, `..`, empty) raises
    ValueError; an unreachable store raises StoreUnavailable. Several processes may use one
    store at once unless it is held by one (`lock_exclusive`, `shared`).

    A store whose objects are plain files may also offer `local_path(key) -> Path` (the
    local folder does): an HTTP server that can send a file by path (ASGI pathsend) then
    sends a whole object without it passing through Python.
    """

    @property
    def shared(self) -> bool:
        """Whether other processes may write to this store now: True for S3, and for a
        local folder until this process holds it (`lock_exclusive`); False while held."""
        ...

    async def open(self) -> None:
        """Get ready (a local folder makes its layout); asks a remote store nothing."""
        ...

    async def close(self) -> None:
        """Let go of what `open` took; safe to call twice."""
        ...

    async def check(self) -> None:
        """The start check: one cheap request with the store's credentials. Raises
        StoreUnavailable, one line naming what to fix (credentials, bucket, endpoint).
        A local folder has nothing to check."""
        ...

    async def ping(self) -> None:
        """Prove that the opened store answers now, cheaply (readiness, `GET /readyz`, asks
        at most once a second): S3 lists a prefix that holds nothing; a local folder makes
        and removes an empty file in it. Raises StoreUnavailable, or OSError from a folder
        that took no file; a store that hangs hangs here too (the caller bounds the wait,
        then stops waiting). A ping that runs in a worker thread, which cannot be stopped,
        starts no other while one runs: callers wait for that one
        (`_shared_call.SharedCall`). Unlike `check`, it may be called only on an opened
        store."""
        ...

    def lock_exclusive(self) -> Callable[[], None]:
        """Hold the store for this process alone, where it can be held; the function that
        lets it go.

        A local folder takes an OS lock on its folder (nested within one process: each
        call needs its release) and is no longer `shared` while held; another process
        holding it raises BlockingIOError naming its pid. S3 is shared by design: it holds
        nothing, stays `shared`, and its release does nothing.
        """
        ...

    def release_reserve(self) -> bool:
        """The disk is full: give back the space the store keeps for that case, so that the
        database can still write and a delete can free space; whether there was any. Blocking
        (call it in a worker thread); safe to call any time. The store takes its reserve
        again once the disk has room. A store with no disk of its own (S3) returns False."""
        ...

    def writer(self, key: str, *, buffer_bytes: int | None = None) -> BlobWriter:
        """A writer for a new object under `key` (ValueError for an unsafe key).

        `buffer_bytes`: about how many bytes the writer may hold in memory at once, for a
        caller that streams many objects side by side (None: the store's own setting). A
        store that buffers (S3 sends parts) sizes its buffers by it; one that writes
        straight to disk holds a chunk at most, and takes no notice of it."""
        ...

    async def compose(self, key: str, sources: Sequence[tuple[str, int]]) -> bool:
        """Make object `key` the concatenation of the objects `sources`, (key, size) pairs,
        in that order, durably; whether the sources became `key`'s parts.

        When every source is a part key of `key` (`_manifest.part_key`: an upload's parts),
        the store writes a manifest, their list, and copies nothing: the sources stay where
        they are and now belong to `key` (True): reading `key` reads across them, deleting
        `key` deletes them, and the caller must not delete them. Other sources are copied,
        without reading them through this process where the store can avoid it (a local
        folder copies in the kernel, S3 copies parts server-side), and stay the caller's to
        delete (False).

        Atomic: `key` appears whole or not at all; an existing `key` is replaced whole, as
        a writer's commit replaces it. Raises FileNotFoundError when a source is missing and
        ValueError when a source's size is not the one given (or a key is unsafe), leaving
        `key` as it was.
        """
        ...

    async def parts_of(self, key: str) -> list[tuple[str, int]] | None:
        """The parts, in order, of the composed object `key` ((key, size) pairs, as
        `compose` was given them); None for an object stored whole, or none."""
        ...

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[Chunk]:
        """Stream bytes `[start, end)` of an object (to its end when `end` is None); the
        caller keeps `0 <= start <= end <= size`, and `end <= start` gives no bytes. Raises
        FileNotFoundError (also for an empty range) when the object does not exist, at the
        first step of the iteration.

        Chunks may be memoryviews of the store's own buffers (no copy on the way out).
        """
        ...

    async def delete(self, key: str, *, parts: bool = True) -> None:
        """Remove an object. Idempotent: no error if it is already gone (a racing delete
        of the same key succeeds too). A composed object's parts go with it, then its
        manifest (a delete cut short is done again by the next); with `parts=False`, only
        the manifest goes and the parts stay (a completion undone: its upload still holds
        them)."""
        ...

    def list_object_keys(self, older_than: float) -> AsyncIterator[str]:
        """Keys of committed objects last written before the Unix time `older_than`, in no
        particular order (a composed object's key, and each of its parts'). Never a write
        in progress; an object committed or deleted while the listing runs may or may not
        be in it."""
        ...

    async def remove_stale_temp(self, older_than: float) -> int:
        """Remove leftovers of unfinished writes (temp files) last written before
        `older_than`; how many. Never those of a writer of this process still open; a
        store that keeps no temp files (S3) returns 0."""
        ...

    async def abort_stale_uploads(
        self,
        older_than: float,
        named: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> int:
        """Abort the unfinished multipart uploads started before `older_than` whose key
        `named` does not name (a live upload's reservation names its key); how many.

        A failed listing or abort of the store is logged, not raised (the next sweep tries
        again; a bucket's lifecycle rule is the safety net); an error of `named` is raised.
        A store without multipart uploads (a local folder, whose unfinished writes are temp
        files) returns 0.
        """
        ...
