"""The Administration API's objects as JSON, as OpenAI writes them: admin keys, projects,
service accounts, a project's API keys, their listings and deletions.

This server has no user accounts: an admin key's owner is the organization's owner, with
no id or name; a key made on the command line is a user's with no user object
(docs/api.md, "Administration API"). No key's use is recorded: `last_used_at` is null.
"""

from __future__ import annotations

from typing import Any

from . import settings as S
from .auth import NewAdminKey, NewKey
from .stores import AdminKeyRecord, KeyRecord, ProjectRecord, ServiceAccountRecord

#: The owner of every admin key: the organization's owner, a user this server does not
#: describe further.
_ADMIN_KEY_OWNER = {"type": "user", "object": "organization.user", "role": "owner"}


def admin_key_object(record: AdminKeyRecord) -> dict[str, Any]:
    """OpenAI's `organization.admin_api_key`."""
    return {
        "object": "organization.admin_api_key",
        "id": record.id,
        "name": record.name,
        "redacted_value": record.hint,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "last_used_at": None,
        "owner": dict(_ADMIN_KEY_OWNER),
    }


def new_admin_key_object(key: NewAdminKey) -> dict[str, Any]:
    """The answer to creating an admin key: its object and, this once, its `value`."""
    return {**admin_key_object(key.record), "value": key.secret}


def project_object(record: ProjectRecord) -> dict[str, Any]:
    """OpenAI's `organization.project`."""
    return {
        "id": record.id,
        "object": "organization.project",
        "name": record.name,
        "created_at": record.created_at,
        "archived_at": record.archived_at,
        "status": "active" if record.archived_at is None else "archived",
    }


def service_account_object(record: ServiceAccountRecord) -> dict[str, Any]:
    """OpenAI's `organization.project.service_account`."""
    return {
        "object": "organization.project.service_account",
        "id": record.id,
        "name": record.name,
        "role": record.role,
        "created_at": record.created_at,
    }


def new_service_account_object(record: ServiceAccountRecord, key: NewKey | None) -> dict[str, Any]:
    """The answer to creating a service account: with its key's value, this once."""
    api_key = None
    if key is not None:
        api_key = {
            "object": "organization.project.service_account.api_key",
            "value": key.secret,
            "name": key.record.name or S.DEFAULT_KEY_NAME,
            "created_at": key.record.created_at,
            "id": key.record.id,
        }
    return {**service_account_object(record), "api_key": api_key}


def project_key_object(key: KeyRecord, account: ServiceAccountRecord | None) -> dict[str, Any]:
    """OpenAI's `organization.project.api_key`, its owner the service account that owns it,
    or a user (a key made on the command line)."""
    owner: dict[str, Any]
    if account is None:
        owner = {"type": "user"}
    else:
        owner = {
            "type": "service_account",
            "service_account": {
                "id": account.id,
                "name": account.name,
                "created_at": account.created_at,
                "role": account.role,
            },
        }
    return {
        "object": "organization.project.api_key",
        "redacted_value": key.hint,
        "name": key.name or S.DEFAULT_KEY_NAME,
        "created_at": key.created_at,
        "last_used_at": None,
        "id": key.id,
        "owner_project_access": "active",
        "owner": owner,
    }


def deleted_object(kind: str, object_id: str) -> dict[str, Any]:
    """The answer to a delete: `kind` is the object's type (`organization.project.api_key`,
    ...), `.deleted` is added."""
    return {"object": f"{kind}.deleted", "id": object_id, "deleted": True}
