"""The rules of the Batch API's calls: create, retrieve, list, cancel, and the batch object.

A batch is stored in "validating" at once; its input is checked, and its requests run, by
the batch workers (`batch_runner.py`). The input file must be the caller's live file of
purpose `batch`; its bytes stay until the batch ends, even if the file is deleted meanwhile.
Another project's batch is answered exactly as one that does not exist.
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import settings as S
from .audit import Actor, batch_cancelled, batch_created, recording
from .batch_input import BATCH_ENDPOINTS
from .errors import APIError, InvalidRequest, NotFound, no_such_file
from .ids import is_batch_id, is_file_id, new_batch_id
from .objects import page_of
from .settings import Settings
from .stores import (
    BatchInputGone,
    BatchNotCancellable,
    BatchRecord,
    CursorNotFound,
    MetadataStore,
    Owner,
    TooManyBatches,
)

COMPLETION_WINDOWS = {"24h": 24 * 3600}


class TooManyActiveBatches(APIError):
    status_code = 429
    error_type = "invalid_request_error"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"This project has {limit} batches that have not ended, the most this server "
            "runs at once for one project; wait for one to end or cancel one.",
            code="too_many_batches",
        )


class NoEngine(InvalidRequest):
    def __init__(self) -> None:
        super().__init__(
            "This server runs no batches: no engine is set. Start it with "
            "--batch-upstream-url (or OPENAI_FILES_BATCH_UPSTREAM_URL), the base URL of an "
            "OpenAI-compatible server ending in /v1, or --batch-routes-file.",
            code="batches_not_configured",
        )


def no_such_batch(batch_id: str, param: str = "batch_id") -> APIError:
    """The 404 of a batch that does not exist *or* belongs to another project."""
    cls = NotFound if param == "batch_id" else InvalidRequest
    return cls(f"No batch found with id '{batch_id}'.", param=param)


def _one_of(value: str, allowed: Any, param: str) -> InvalidRequest:
    return InvalidRequest(f"{value!r} is not one of {list(allowed)!r} - '{param}'", param=param)


def check_metadata(metadata: Any) -> str | None:
    """OpenAI's metadata: at most 16 pairs, keys of at most 64 characters, string values of
    at most 512; its JSON text, or None."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidRequest("Invalid type for 'metadata': expected an object.", param="metadata")
    if len(metadata) > S.METADATA_MAX_PAIRS:
        raise InvalidRequest(
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{S.METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} "
            "properties instead.",
            param="metadata",
        )
    for key, value in metadata.items():
        if len(key) > S.METADATA_MAX_KEY_CHARS:
            raise InvalidRequest(
                f"Invalid 'metadata': string too long. Expected a string with maximum length "
                f"{S.METADATA_MAX_KEY_CHARS}, but got a string with length {len(key)} instead.",
                param=f"metadata.{key[:80]}",
            )
        if not isinstance(value, str):
            raise InvalidRequest(
                f"Invalid type for 'metadata.{key[:80]}': expected a string.",
                param=f"metadata.{key[:80]}",
            )
        if len(value) > S.METADATA_MAX_VALUE_CHARS:
            raise InvalidRequest(
                f"Invalid 'metadata.{key[:80]}': string too long. Expected a string with "
                f"maximum length {S.METADATA_MAX_VALUE_CHARS}, but got a string with length "
                f"{len(value)} instead.",
                param=f"metadata.{key[:80]}",
            )
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


def check_output_expires_after(value: Any) -> int | None:
    """`{"anchor": "created_at", "seconds": 3600..2592000}`: the seconds, or None."""
    if value is None:
        return None
    param = "output_expires_after"
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid type for '{param}': expected an object.", param=param)
    for name in value:
        if name not in ("anchor", "seconds"):
            raise InvalidRequest(f"Unknown parameter: '{param}.{name}'.", param=f"{param}.{name}")
    if value.get("anchor") != "created_at":
        raise InvalidRequest(
            f"Invalid value for '{param}.anchor': expected 'created_at'.", param=f"{param}.anchor"
        )
    seconds = value.get("seconds")
    low, high = S.EXPIRES_AFTER_MIN_SECONDS, S.EXPIRES_AFTER_MAX_SECONDS
    if isinstance(seconds, bool) or not isinstance(seconds, int) or not low <= seconds <= high:
        raise InvalidRequest(
            f"Invalid '{param}.seconds': expected an integer between {low} and {high}.",
            param=f"{param}.seconds",
        )
    return seconds


class BatchesService:
    """The Batch API's calls over a metadata store. `runs_batches`: whether an engine is
    set (a batch is refused otherwise: it would never run)."""

    def __init__(self, settings: Settings, meta: MetadataStore, runs_batches: bool) -> None:
        self.settings = settings
        self.meta = meta
        self.runs_batches = runs_batches

    async def create(
        self, owner: Owner, body: dict[str, Any], *, actor: Actor | None = None
    ) -> BatchRecord:
        """A new batch of the owner's from the checked parameters of `POST /v1/batches`,
        made by `actor` (the audit log's `batch.created`)."""
        endpoint = body["endpoint"]
        if endpoint not in BATCH_ENDPOINTS:
            raise _one_of(endpoint, BATCH_ENDPOINTS, "endpoint")
        window = body["completion_window"]
        if window not in COMPLETION_WINDOWS:
            raise _one_of(window, COMPLETION_WINDOWS, "completion_window")
        metadata = check_metadata(body.get("metadata"))
        output_expires_after = check_output_expires_after(body.get("output_expires_after"))
        if not self.runs_batches:
            raise NoEngine()
        file_id = body["input_file_id"]
        now = int(time.time())
        file = None
        if is_file_id(file_id):
            file = await self.meta.get_file(owner, file_id, now)
        if file is None:
            raise no_such_file(file_id, param="input_file_id")
        if file.purpose != "batch":
            raise InvalidRequest(
                f"The file {file_id} has purpose '{file.purpose}'; a batch reads a file of "
                "purpose 'batch'.",
                param="input_file_id",
            )
        record = BatchRecord(
            id=new_batch_id(),
            org_id=owner.org_id,
            project_id=owner.project_id,
            endpoint=endpoint,
            input_file_id=file_id,
            input_blob_key=file.blob_key,
            completion_window=window,
            status="validating",
            created_at=now,
            expires_at=now + COMPLETION_WINDOWS[window],
            metadata=metadata,
            output_expires_after=output_expires_after,
        )
        try:
            await self.meta.create_batch(
                record,
                now,
                self.settings.max_active_batches,
                audit=recording(batch_created(record, actor)),
            )
        except BatchInputGone:
            raise no_such_file(file_id, param="input_file_id") from None
        except TooManyBatches as exc:
            raise TooManyActiveBatches(exc.limit) from None
        return record

    async def get(self, owner: Owner, batch_id: str) -> BatchRecord:
        record = None
        if is_batch_id(batch_id):
            record = await self.meta.get_batch(owner, batch_id)
        if record is None:
            raise no_such_batch(batch_id)
        return record

    async def list(
        self, owner: Owner, after: str | None, limit: int
    ) -> tuple[list[BatchRecord], bool]:
        if after is not None and not is_batch_id(after):
            raise no_such_batch(after, param="after")
        try:
            return await self.meta.list_batches(owner, after, limit)
        except CursorNotFound:
            raise no_such_batch(str(after), param="after") from None

    async def cancel(
        self, owner: Owner, batch_id: str, *, actor: Actor | None = None
    ) -> BatchRecord:
        """Ask the owner's batch to cancel; the move to "cancelling" is the audit log's
        `batch.cancelled` by `actor` (asking again changes nothing, and records nothing)."""
        record = None
        if is_batch_id(batch_id):
            try:
                record = await self.meta.cancel_batch(
                    owner,
                    batch_id,
                    int(time.time()),
                    audit=lambda r: [batch_cancelled(r, actor)] if r else [],
                )
            except BatchNotCancellable as exc:
                raise InvalidRequest(
                    f"Cannot cancel a batch with status '{exc.record.status}'.",
                    code="batch_not_cancellable",
                ) from None
        if record is None:
            raise no_such_batch(batch_id)
        return record


def batch_object(record: BatchRecord) -> dict[str, Any]:
    """OpenAI's batch object, every key always present."""
    usage = {
        "input_tokens": record.input_tokens,
        "input_tokens_details": {"cached_tokens": record.cached_tokens},
        "output_tokens": record.output_tokens,
        "output_tokens_details": {"reasoning_tokens": record.reasoning_tokens},
        "total_tokens": record.total_tokens,
    }
    errors = None
    if record.errors is not None:
        errors = {"object": "list", "data": json.loads(record.errors)}
    return {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "model": record.model,
        "errors": errors,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": record.status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": record.created_at,
        "in_progress_at": record.in_progress_at,
        "expires_at": record.expires_at,
        "finalizing_at": record.finalizing_at,
        "completed_at": record.completed_at,
        "failed_at": record.failed_at,
        "expired_at": record.expired_at,
        "cancelling_at": record.cancelling_at,
        "cancelled_at": record.cancelled_at,
        "request_counts": {
            "total": record.total,
            "completed": record.completed,
            "failed": record.failed,
        },
        "usage": usage,
        "metadata": None if record.metadata is None else json.loads(record.metadata),
    }


def batch_list(records: list[BatchRecord], has_more: bool) -> dict[str, Any]:
    """A page of a listing of batches."""
    return page_of([batch_object(r) for r in records], has_more)


__all__ = ["BATCH_ENDPOINTS", "BatchesService", "batch_list", "batch_object"]
