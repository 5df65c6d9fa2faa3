"""What a store raises: a refusal the service answers, or the store out of reach."""

from __future__ import annotations

from typing import Literal

from ._records import BatchRecord, ProjectRecord, UploadRecord


class QuotaExceeded(Exception):
    """A reservation or insert would take the organization past its quota."""

    def __init__(self, used: int, requested: int, quota: int) -> None:
        super().__init__(f"{used} + {requested} > {quota}")
        self.used = used
        self.requested = requested
        self.quota = quota


class CursorNotFound(Exception):
    """The `after` id of a listing names no row of the owner."""


class UploadNotFound(Exception):
    """The upload id names no upload of the owner (unknown, or another owner's: the two are
    not told apart)."""


class UploadNotPending(Exception):
    """The upload takes no more parts, completion or cancellation: `record` says why by its
    status ("completing", "completed", "cancelled", or "expired", also for one past its
    `expires_at` that the sweeper has not reached yet)."""

    def __init__(self, record: UploadRecord) -> None:
        super().__init__(f"upload {record.id} is {record.status}")
        self.record = record


class UploadFull(Exception):
    """A part would take the parts of its upload past the upload's declared `bytes`:
    `held` bytes are in its parts already, the part has `requested` more."""

    def __init__(self, record: UploadRecord, held: int, requested: int) -> None:
        super().__init__(f"upload {record.id}: {held} + {requested} > {record.bytes}")
        self.record = record
        self.held = held
        self.requested = requested


class PendingUploadsExceeded(Exception):
    """A new upload would pass a limit on its project's pending uploads: their number
    (`what` "uploads": `held` pending, `requested` 1 more) or their reserved bytes (`what`
    "bytes": `held` reserved, `requested` more); `limit` is the limit passed."""

    def __init__(self, what: Literal["uploads", "bytes"], held: int, requested: int, limit: int):
        super().__init__(f"{what}: {held} + {requested} > {limit}")
        self.what = what
        self.held = held
        self.requested = requested
        self.limit = limit


class StoreUnavailable(Exception):
    """The database or object store cannot be reached now; the request may be retried."""


class SchemaMismatch(Exception):
    """The database has a schema this version does not know (migrate first), or the
    migration cannot run (the user may not create tables)."""


class BatchNotCancellable(Exception):
    """The batch has ended or is finalizing: `record` (its status says which) is not
    cancelled."""

    def __init__(self, record: BatchRecord) -> None:
        super().__init__(f"batch {record.id} is {record.status}")
        self.record = record


class BatchInputGone(Exception):
    """The input file of a new batch is no longer the owner's live file (deleted or expired
    between its check and the batch's insert): no batch was stored."""


class LimitReached(Exception):
    """A new project, service account or admin key would pass its limit: `limit` of them
    exist already. Nothing was stored."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"at most {limit}")
        self.limit = limit


class TooManyBatches(Exception):
    """A new batch would pass its project's limit of batches not yet ended: `held` of them
    already, at most `limit`."""

    def __init__(self, held: int, limit: int) -> None:
        super().__init__(f"{held} batches >= {limit}")
        self.held = held
        self.limit = limit


class LeaseLost(Exception):
    """The worker no longer holds the batch's lease (it lapsed and another worker took the
    batch, or the batch moved on): what it was doing is dropped; nothing was changed."""


class StoreNotEmpty(Exception):
    """A restore's rows go only into a store whose tables hold none: `table` holds `rows`."""

    def __init__(self, table: str, rows: int) -> None:
        super().__init__(f"table {table} holds {rows} row{'' if rows == 1 else 's'}")
        self.table = table
        self.rows = rows


class RowsRefused(Exception):
    """A restore's rows that cannot be loaded: the copy's table is not one this code made,
    or the database refuses a row (the message names the table, and the row when known);
    nothing was loaded."""


class ProjectNotFound(Exception):
    """The project id names no project of the organization: nothing was stored."""


class ProjectArchived(Exception):
    """The project is archived: it takes no new key or service account, and no change;
    nothing was stored. `record` is the project."""

    def __init__(self, record: ProjectRecord) -> None:
        super().__init__(f"project {record.id} of {record.org_id} is archived")
        self.record = record
