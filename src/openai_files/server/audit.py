"""The audit log: which change records which event, who acted, and what an event says.

An event is appended in the transaction of the change it records (each store call that
changes something takes the events of its change: `MetadataStore`, "The audit log"), so
there is no change without its event and no event without its change. The functions here
make the events of each change from the records the store returns; `audit_log_object`
writes a stored event as OpenAI's `AuditLog`.

OpenAI's event types are recorded for the Administration API's changes: projects
(`project.created`, `.updated`, `.archived`), service accounts (`service_account.created`,
`.deleted`) and keys (`api_key.created`, `.deleted`: a project's keys, and admin keys,
which have no project). Ours, the extensions (`EXTENSION_EVENT_TYPES`), record the files,
uploads and batches. The actor is the key that acted (OpenAI's `api_key` actor: its id,
and its service account's); the server itself, or its command line, acts as no one
(`actor` null). An event never holds a key's secret or hash, nor a file's content; a
file's name and purpose it does hold.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from . import settings as S
from ._audit_types import OPENAI_EVENT_TYPES
from .errors import InvalidRequest
from .ids import is_project_id, new_audit_log_id
from .stores import (
    AdminKeyRecord,
    AuditQuery,
    AuditRecord,
    BatchRecord,
    FileRecord,
    KeyRecord,
    ProjectRecord,
    ServiceAccountRecord,
    UploadRecord,
)

#: OpenAI's types that this server records.
OPENAI_RECORDED = (
    "api_key.created",
    "api_key.deleted",
    "project.created",
    "project.updated",
    "project.archived",
    "service_account.created",
    "service_account.deleted",
)
#: Our types (docs/api.md, "Audit log"): changes of files, uploads and batches, and a file
#: downloaded through a console link.
EXTENSION_EVENT_TYPES = (
    "file.created",
    "file.deleted",
    "file.downloaded",
    "upload.created",
    "upload.completed",
    "upload.cancelled",
    "batch.created",
    "batch.cancelled",
)
#: Every type a listing may ask for: OpenAI's (most of which this server never records)
#: and ours.
EVENT_TYPES = OPENAI_EVENT_TYPES | frozenset(EXTENSION_EVENT_TYPES)


@dataclasses.dataclass(frozen=True)
class Actor:
    """Who made a change: the key it came with (a project's, or an admin key) and the
    service account that owns that key, if one does."""

    key_id: str
    service_account_id: str | None = None

    @classmethod
    def of(cls, key: KeyRecord | AdminKeyRecord) -> Actor:
        return cls(key.id, getattr(key, "service_account_id", None))


def event(
    kind: str,
    org_id: str,
    actor: Actor | None,
    *,
    project_id: str | None,
    resource_id: str,
    data: dict[str, Any] | None = None,
    changes_requested: dict[str, Any] | None = None,
) -> AuditRecord:
    """An event of the organization's log, made now, about `resource_id`: its object under
    its type says the resource's id and, when given, the `data` it was made with or the
    `changes_requested` (OpenAI's names)."""
    event_id, effective_at = new_audit_log_id()
    details: dict[str, Any] = {"id": resource_id}
    if data is not None:
        details["data"] = data
    if changes_requested is not None:
        details["changes_requested"] = changes_requested
    return AuditRecord(
        id=event_id,
        org_id=org_id,
        type=kind,
        effective_at=effective_at,
        project_id=project_id,
        actor_id=actor.key_id if actor else None,
        actor_service_account_id=actor.service_account_id if actor else None,
        resource_id=resource_id,
        details=json.dumps(details, separators=(",", ":")),
    )


# -- the Administration API's changes (OpenAI's types) --


def key_created(key: KeyRecord | AdminKeyRecord, actor: Actor | None) -> AuditRecord:
    """A key made: a project's (in its project) or an admin key (no project)."""
    project_id = key.project_id if isinstance(key, KeyRecord) else None
    return event("api_key.created", key.org_id, actor, project_id=project_id, resource_id=key.id)


def key_deleted(key: KeyRecord | AdminKeyRecord, actor: Actor | None) -> AuditRecord:
    """A key revoked: deleted, or with its service account or its project."""
    project_id = key.project_id if isinstance(key, KeyRecord) else None
    return event("api_key.deleted", key.org_id, actor, project_id=project_id, resource_id=key.id)


def project_created(project: ProjectRecord, actor: Actor) -> AuditRecord:
    data = {"name": project.name, "title": project.name}
    return event(
        "project.created",
        project.org_id,
        actor,
        project_id=project.id,
        resource_id=project.id,
        data=data,
    )


def project_updated(project: ProjectRecord, actor: Actor) -> AuditRecord:
    """A project renamed: OpenAI calls the name a project's `title`."""
    return event(
        "project.updated",
        project.org_id,
        actor,
        project_id=project.id,
        resource_id=project.id,
        changes_requested={"title": project.name},
    )


def project_archived(
    project: ProjectRecord, revoked: Sequence[KeyRecord], actor: Actor
) -> list[AuditRecord]:
    """A project archived, and each key it revoked."""
    archived = event(
        "project.archived", project.org_id, actor, project_id=project.id, resource_id=project.id
    )
    return [archived, *(key_deleted(k, actor) for k in revoked)]


def service_account_created(
    account: ServiceAccountRecord, key: KeyRecord | None, actor: Actor
) -> list[AuditRecord]:
    """A service account made, and its key when it was made with one."""
    made = event(
        "service_account.created",
        account.org_id,
        actor,
        project_id=account.project_id,
        resource_id=account.id,
        data={"role": account.role},
    )
    return [made] if key is None else [made, key_created(key, actor)]


def service_account_deleted(
    account: ServiceAccountRecord, revoked: Sequence[KeyRecord], actor: Actor
) -> list[AuditRecord]:
    """A service account deleted, and each key it revoked."""
    deleted = event(
        "service_account.deleted",
        account.org_id,
        actor,
        project_id=account.project_id,
        resource_id=account.id,
    )
    return [deleted, *(key_deleted(k, actor) for k in revoked)]


# -- files, uploads and batches (ours) --


def _file_data(file: FileRecord) -> dict[str, Any]:
    return {"filename": file.filename, "purpose": file.purpose, "bytes": file.bytes}


def file_created(
    file: FileRecord, actor: Actor | None, upload_id: str | None = None
) -> AuditRecord:
    """A file made: sent to POST /v1/files, or the file an upload's completion made."""
    data = {**_file_data(file), "expires_at": file.expires_at}
    if upload_id is not None:
        data["upload_id"] = upload_id
    return event(
        "file.created",
        file.org_id,
        actor,
        project_id=file.project_id,
        resource_id=file.id,
        data=data,
    )


def file_deleted(file: FileRecord, actor: Actor | None) -> AuditRecord:
    return event(
        "file.deleted",
        file.org_id,
        actor,
        project_id=file.project_id,
        resource_id=file.id,
        data=_file_data(file),
    )


def file_downloaded(file: FileRecord, actor: Actor) -> AuditRecord:
    """A file's content sent through a console download link (the key that asked for the
    link acted)."""
    return event(
        "file.downloaded",
        file.org_id,
        actor,
        project_id=file.project_id,
        resource_id=file.id,
        data=_file_data(file),
    )


def upload_created(upload: UploadRecord, actor: Actor | None) -> AuditRecord:
    data = {"filename": upload.filename, "purpose": upload.purpose, "bytes": upload.bytes}
    return event(
        "upload.created",
        upload.org_id,
        actor,
        project_id=upload.project_id,
        resource_id=upload.id,
        data=data,
    )


def upload_completed(
    upload: UploadRecord, file: FileRecord, actor: Actor | None
) -> list[AuditRecord]:
    """An upload completed, and the file it made."""
    completed = event(
        "upload.completed",
        upload.org_id,
        actor,
        project_id=upload.project_id,
        resource_id=upload.id,
        data={"file_id": file.id},
    )
    return [completed, file_created(file, actor, upload_id=upload.id)]


def upload_cancelled(upload: UploadRecord, actor: Actor | None) -> AuditRecord:
    return event(
        "upload.cancelled",
        upload.org_id,
        actor,
        project_id=upload.project_id,
        resource_id=upload.id,
    )


def batch_created(batch: BatchRecord, actor: Actor | None) -> AuditRecord:
    data = {
        "endpoint": batch.endpoint,
        "input_file_id": batch.input_file_id,
        "completion_window": batch.completion_window,
    }
    return event(
        "batch.created",
        batch.org_id,
        actor,
        project_id=batch.project_id,
        resource_id=batch.id,
        data=data,
    )


def batch_cancelled(batch: BatchRecord, actor: Actor | None) -> AuditRecord:
    """A batch asked to cancel (it is "cancelling" until its requests in flight end)."""
    return event(
        "batch.cancelled", batch.org_id, actor, project_id=batch.project_id, resource_id=batch.id
    )


def recording(*events: AuditRecord) -> Callable[[object], Iterable[AuditRecord]]:
    """An `audit` argument that records `events` whatever the call returns (for a call
    whose change the caller knows whole beforehand)."""
    return lambda _: events


# -- the listing --


def audit_log_object(record: AuditRecord, project_name: str | None) -> dict[str, Any]:
    """A stored event as OpenAI's `AuditLog`: its id, type, time, project (with its name,
    when it has a row), actor (null: the server or its command line acted) and, under its
    type, its own object."""
    out: dict[str, Any] = {
        "id": record.id,
        "type": record.type,
        "effective_at": record.effective_at,
    }
    if record.project_id is not None:
        project = {"id": record.project_id}
        if project_name is not None:
            project["name"] = project_name
        out["project"] = project
    out["actor"] = _actor_object(record)
    out[record.type] = json.loads(record.details)
    return out


def _actor_object(record: AuditRecord) -> dict[str, Any] | None:
    if record.actor_id is None:
        return None
    api_key: dict[str, Any] = {"id": record.actor_id}
    if record.actor_service_account_id is None:
        api_key["type"] = "user"
    else:
        api_key["type"] = "service_account"
        api_key["service_account"] = {"id": record.actor_service_account_id}
    return {"type": "api_key", "api_key": api_key}


def check_query(query: AuditQuery, emails: Sequence[str], tenant_only: bool) -> AuditQuery | None:
    """The listing's query once its values are checked: each list at most
    `AUDIT_FILTER_MAX_VALUES` values, each event type one of OpenAI's or ours (a 400 in
    OpenAI's words otherwise). None when it can match no event: actors' emails (no key
    here has one) or tenant-scoped events only (this server records none)."""
    for param, values in (
        ("event_types[]", query.types),
        ("project_ids[]", query.project_ids),
        ("actor_ids[]", query.actor_ids),
        ("actor_emails[]", emails),
        ("resource_ids[]", query.resource_ids),
    ):
        if len(values) > S.AUDIT_FILTER_MAX_VALUES:
            raise InvalidRequest(
                f"Invalid '{param}': array too long. Expected an array with maximum length "
                f"{S.AUDIT_FILTER_MAX_VALUES}, but got an array with length {len(values)} "
                "instead.",
                param=param,
            )
    for param, values in (
        ("project_ids[]", query.project_ids),
        ("actor_ids[]", query.actor_ids),
        ("resource_ids[]", query.resource_ids),
    ):
        for value in values:
            if not is_project_id(value):  # printable text of up to 256 characters
                raise InvalidRequest(
                    f"Invalid value for '{param}': {value!r} is not an id.", param=param
                )
    for index, kind in enumerate(query.types):
        if kind not in EVENT_TYPES:
            raise InvalidRequest(
                f"Invalid value for 'event_types[{index}]': {kind!r} is not an audit log "
                "event type.",
                param=f"event_types[{index}]",
            )
    if emails or tenant_only:
        return None
    return query
