"""The rules of OpenAI's Administration API: an organization's admin keys, projects, their
service accounts and API keys, as an admin key of the organization asks for them.

One method per action, each given the acting admin key (`actor`) and making at most one
write to the store (one transaction), which appends the audit log's events of its change
(`audit.py`). An admin key reaches its own organization only:
another organization's project, service account or key is answered exactly as one that
does not exist (404). A key revoked here (deleted, its service account deleted, its
project archived) stops working on this server at once: it leaves the key cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import audit
from . import settings as S
from ._forms import hidden_character
from .audit import Actor
from .auth import KeyCache, NewAdminKey, NewKey, new_admin_key, new_key
from .errors import APIError, InvalidRequest, NotFound
from .ids import (
    is_key_id,
    is_project_id,
    is_service_account_id,
    new_project_id,
    new_service_account_id,
)
from .stores import (
    AdminKeyRecord,
    AuditQuery,
    AuditRecord,
    CursorNotFound,
    KeyRecord,
    LimitReached,
    MetadataStore,
    Order,
    Owner,
    ProjectArchived,
    ProjectNotFound,
    ProjectRecord,
    ServiceAccountRecord,
)

#: A project's key and the service account that owns it (None: made on the command line).
ProjectKey = tuple[KeyRecord, ServiceAccountRecord | None]


def no_such_project(project_id: str, param: str = "project_id") -> APIError:
    """The 404 of a project that does not exist *or* is another organization's."""
    cls = NotFound if param == "project_id" else InvalidRequest
    return cls(f"No project found with id '{project_id}'.", param=param)


def no_such_service_account(account_id: str, param: str = "service_account_id") -> APIError:
    cls = NotFound if param == "service_account_id" else InvalidRequest
    return cls(f"No service account found with id '{account_id}'.", param=param)


def no_such_key(key_id: str, param: str = "api_key_id") -> APIError:
    cls = NotFound if param in ("api_key_id", "key_id") else InvalidRequest
    return cls(f"No API key found with id '{key_id}'.", param=param)


def project_archived(project_id: str) -> InvalidRequest:
    return InvalidRequest(
        f"Project '{project_id}' is archived. Archived projects cannot be used or updated.",
        param="project_id",
    )


def check_name(value: str, param: str = "name") -> str:
    """A name as the Administration API takes it: 1 to ADMIN_NAME_MAX_CHARS characters,
    none of them hidden (`hidden_character`), refused in OpenAI's words otherwise."""
    if not value:
        raise InvalidRequest(
            f"Invalid '{param}': empty string. Expected a string with minimum length 1, but "
            "got an empty string instead.",
            param=param,
        )
    if len(value) > S.ADMIN_NAME_MAX_CHARS:
        raise InvalidRequest(
            f"Invalid '{param}': string too long. Expected a string with maximum length "
            f"{S.ADMIN_NAME_MAX_CHARS}, but got a string with length {len(value)} instead.",
            param=param,
        )
    hidden = hidden_character(value)
    if hidden is not None:
        at, ch = hidden
        raise InvalidRequest(
            f"Invalid '{param}': the character {ch!a} at position {at} is not allowed. "
            "A name may not hold control characters, line or paragraph separators or "
            "bidirectional formatting characters.",
            param=param,
        )
    return value


def limit_reached(what: str, whose: str, limit: int, flag: str, until: str) -> InvalidRequest:
    """The 400 of a create past one of the Administration API's limits."""
    return InvalidRequest(
        f"This {whose} has {limit} {what}, the most this server allows ({flag}){until}.",
        code="limit_reached",
    )


def check_expires_in(value: int | None) -> int | None:
    """`expires_in_seconds` of a new admin key: 1 to a year, or None (never expires)."""
    if value is None:
        return None
    param = "expires_in_seconds"
    if value < 1:
        raise InvalidRequest(
            f"Invalid '{param}': integer below minimum value. Expected a value >= 1, but got "
            f"{value} instead.",
            param=param,
        )
    if value > S.ADMIN_KEY_EXPIRES_MAX_SECONDS:
        raise InvalidRequest(
            f"Invalid '{param}': integer above maximum value. Expected a value <= "
            f"{S.ADMIN_KEY_EXPIRES_MAX_SECONDS}, but got {value} instead.",
            param=param,
        )
    return value


class AdminService:
    """The Administration API's actions on a metadata store; `keys` is the server's cache
    of checked keys, which forgets every key revoked here."""

    def __init__(
        self, meta: MetadataStore, keys: KeyCache, settings: S.Settings | None = None
    ) -> None:
        self.meta = meta
        self.keys = keys
        self.settings = settings if settings is not None else S.Settings()

    # -- admin keys --

    async def create_admin_key(
        self, actor: AdminKeyRecord, name: str, expires_in: int | None
    ) -> NewAdminKey:
        """A new admin key of the actor's organization; its secret is answered once."""
        key = new_admin_key(actor.org_id, check_name(name), expires_in=check_expires_in(expires_in))
        limit = self.settings.max_admin_keys_per_org
        try:
            await self.meta.add_admin_key(
                key.record,
                limit,
                audit=audit.recording(audit.key_created(key.record, Actor.of(actor))),
            )
        except LimitReached:
            raise limit_reached(
                "admin keys",
                "organization",
                limit,
                "--max-admin-keys-per-org",
                ": delete one to make another",
            ) from None
        return key

    async def list_admin_keys(
        self, actor: AdminKeyRecord, after: str | None, limit: int, order: Order
    ) -> tuple[list[AdminKeyRecord], bool]:
        if after is not None and not is_key_id(after):
            raise no_such_key(after, "after")
        try:
            return await self.meta.list_admin_keys(
                actor.org_id, after=after, limit=limit, order=order
            )
        except CursorNotFound:
            raise no_such_key(after or "", "after") from None

    async def get_admin_key(self, actor: AdminKeyRecord, key_id: str) -> AdminKeyRecord:
        record = await self.meta.get_admin_key(key_id) if is_key_id(key_id) else None
        if record is None or record.org_id != actor.org_id or record.revoked_at is not None:
            raise no_such_key(key_id, "key_id")
        return record

    async def delete_admin_key(self, actor: AdminKeyRecord, key_id: str) -> AdminKeyRecord:
        """Revoke an admin key of the organization (the actor's own too): it stops working
        at once, everywhere (admin keys are never cached)."""
        record = await self.get_admin_key(actor, key_id)
        deleted = audit.recording(audit.key_deleted(record, Actor.of(actor)))
        if not await self.meta.revoke_admin_key(record.id, int(time.time()), audit=deleted):
            raise no_such_key(key_id, "key_id")  # a racing delete came first
        return record

    # -- projects --

    async def create_project(self, actor: AdminKeyRecord, name: str) -> ProjectRecord:
        record = ProjectRecord(actor.org_id, new_project_id(), check_name(name), int(time.time()))
        limit = self.settings.max_projects_per_org
        try:
            await self.meta.create_project(
                record,
                limit,
                audit=audit.recording(audit.project_created(record, Actor.of(actor))),
            )
        except LimitReached:
            raise limit_reached(
                "projects",
                "organization",
                limit,
                "--max-projects-per-org",
                "; archived projects count too",
            ) from None
        return record

    async def list_projects(
        self, actor: AdminKeyRecord, after: str | None, limit: int, include_archived: bool
    ) -> tuple[list[ProjectRecord], bool]:
        if after is not None and not is_project_id(after):
            raise no_such_project(after, "after")
        try:
            return await self.meta.list_projects(
                actor.org_id, after=after, limit=limit, include_archived=include_archived
            )
        except CursorNotFound:
            raise no_such_project(after or "", "after") from None

    async def get_project(self, actor: AdminKeyRecord, project_id: str) -> ProjectRecord:
        """The organization's project, archived or not; 404 otherwise."""
        record = (
            await self.meta.get_project(actor.org_id, project_id)
            if is_project_id(project_id)
            else None
        )
        if record is None:
            raise no_such_project(project_id)
        return record

    async def _open_project(self, actor: AdminKeyRecord, project_id: str) -> Owner:
        """The owner of the organization's project, when it is not archived (400)."""
        project = await self.get_project(actor, project_id)
        if project.archived_at is not None:
            raise project_archived(project_id)
        return Owner(project.org_id, project.id)

    async def modify_project(
        self, actor: AdminKeyRecord, project_id: str, name: str | None
    ) -> ProjectRecord:
        """Rename the project (`name` None: leave it); an archived one is a 400."""
        project = await self.get_project(actor, project_id)
        if name is None:
            if project.archived_at is not None:
                raise project_archived(project_id)
            return project
        try:
            renamed = await self.meta.rename_project(
                actor.org_id,
                project.id,
                check_name(name),
                audit=lambda p: [audit.project_updated(p, Actor.of(actor))] if p else [],
            )
        except ProjectArchived:
            raise project_archived(project_id) from None
        if renamed is None:
            raise no_such_project(project_id)
        return renamed

    async def archive_project(self, actor: AdminKeyRecord, project_id: str) -> ProjectRecord:
        """Archive the project and revoke its keys (one archived already: as it is)."""
        await self.get_project(actor, project_id)

        def archived(result: tuple[ProjectRecord, list[KeyRecord]] | None) -> list[AuditRecord]:
            assert result is not None  # a project archived here
            return audit.project_archived(*result, Actor.of(actor))

        result = await self.meta.archive_project(
            actor.org_id, project_id, int(time.time()), audit=archived
        )
        if result is None:
            raise no_such_project(project_id)
        project, revoked = result
        self.keys.forget(revoked)
        return project

    # -- service accounts --

    async def create_service_account(
        self, actor: AdminKeyRecord, project_id: str, name: str, with_key: bool
    ) -> tuple[ServiceAccountRecord, NewKey | None]:
        """A new service account of the project and, unless `with_key` is False, its key
        (role "member"; without a key, role "none", as OpenAI's
        `create_service_account_only`)."""
        owner = await self._open_project(actor, project_id)
        now = int(time.time())
        account = ServiceAccountRecord(
            new_service_account_id(),
            owner.org_id,
            owner.project_id,
            check_name(name),
            "member" if with_key else "none",
            now,
        )
        key = (
            new_key(owner.org_id, owner.project_id, service_account_id=account.id, now=now)
            if with_key
            else None
        )
        limit = self.settings.max_service_accounts_per_project
        made = audit.service_account_created(account, key.record if key else None, Actor.of(actor))
        try:
            await self.meta.create_service_account(
                account, key.record if key else None, limit, audit=audit.recording(*made)
            )
        except LimitReached:
            raise limit_reached(
                "service accounts",
                "project",
                limit,
                "--max-service-accounts-per-project",
                ": delete one to make another",
            ) from None
        except ProjectArchived:
            raise project_archived(project_id) from None
        except ProjectNotFound:
            raise no_such_project(project_id) from None
        return account, key

    async def list_service_accounts(
        self, actor: AdminKeyRecord, project_id: str, after: str | None, limit: int
    ) -> tuple[list[ServiceAccountRecord], bool]:
        owner = await self._open_project(actor, project_id)
        if after is not None and not is_service_account_id(after):
            raise no_such_service_account(after, "after")
        try:
            return await self.meta.list_service_accounts(owner, after=after, limit=limit)
        except CursorNotFound:
            raise no_such_service_account(after or "", "after") from None

    async def get_service_account(
        self, actor: AdminKeyRecord, project_id: str, account_id: str
    ) -> ServiceAccountRecord:
        owner = await self._open_project(actor, project_id)
        record = (
            await self.meta.get_service_account(owner, account_id)
            if is_service_account_id(account_id)
            else None
        )
        if record is None:
            raise no_such_service_account(account_id)
        return record

    async def delete_service_account(
        self, actor: AdminKeyRecord, project_id: str, account_id: str
    ) -> ServiceAccountRecord:
        """Delete the service account and revoke its keys."""
        owner = await self._open_project(actor, project_id)

        def deleted(
            result: tuple[ServiceAccountRecord, list[KeyRecord]] | None,
        ) -> list[AuditRecord]:
            assert result is not None  # an account deleted here
            return audit.service_account_deleted(*result, Actor.of(actor))

        result = (
            await self.meta.delete_service_account(
                owner, account_id, int(time.time()), audit=deleted
            )
            if is_service_account_id(account_id)
            else None
        )
        if result is None:
            raise no_such_service_account(account_id)
        account, revoked = result
        self.keys.forget(revoked)
        return account

    # -- a project's keys --

    async def list_project_keys(
        self, actor: AdminKeyRecord, project_id: str, after: str | None, limit: int
    ) -> tuple[list[ProjectKey], bool]:
        project = await self.get_project(actor, project_id)
        if after is not None and not is_key_id(after):
            raise no_such_key(after, "after")
        try:
            return await self.meta.list_project_keys(
                Owner(project.org_id, project.id), after=after, limit=limit
            )
        except CursorNotFound:
            raise no_such_key(after or "", "after") from None

    async def get_project_key(
        self, actor: AdminKeyRecord, project_id: str, key_id: str
    ) -> ProjectKey:
        project = await self.get_project(actor, project_id)
        found = (
            await self.meta.get_project_key(Owner(project.org_id, project.id), key_id)
            if is_key_id(key_id)
            else None
        )
        if found is None:
            raise no_such_key(key_id)
        return found

    async def delete_project_key(
        self, actor: AdminKeyRecord, project_id: str, key_id: str
    ) -> KeyRecord:
        """Revoke a key of the project; a service account's key is a 400 (OpenAI deletes it
        with its service account)."""
        key, account = await self.get_project_key(actor, project_id, key_id)
        if account is not None:
            raise InvalidRequest(
                f"API key '{key_id}' belongs to the service account '{account.id}': delete "
                "the service account to delete its key.",
                param="api_key_id",
            )
        deleted = audit.recording(audit.key_deleted(key, Actor.of(actor)))
        if not await self.meta.revoke_api_key(key.id, int(time.time()), audit=deleted):
            raise no_such_key(key_id)  # a racing delete came first
        self.keys.forget([key])
        return key

    # -- the audit log --

    async def list_audit_logs(
        self, actor: AdminKeyRecord, query: AuditQuery, emails: Sequence[str], tenant_only: bool
    ) -> tuple[list[tuple[AuditRecord, str | None]], bool]:
        """A page of the organization's events, newest first, that `query` asks for
        (`audit.check_query`)."""
        checked = audit.check_query(query, emails, tenant_only)
        if checked is None:
            return [], False
        return await self.meta.list_audit_logs(actor.org_id, checked)
