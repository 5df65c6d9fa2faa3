"""OpenAI's Administration API's routes (`/v1/organization/...`): parse the request, call
the rules (`admin.py`) as the request's admin key, render (`admin_objects.py`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .. import settings as S
from .._forms import ascii_int
from ..admin import AdminService
from ..admin_objects import (
    admin_key_object,
    deleted_object,
    new_admin_key_object,
    new_service_account_object,
    project_key_object,
    project_object,
    service_account_object,
)
from ..audit import audit_log_object
from ..errors import InvalidRequest
from ..ids import is_audit_log_id
from ..objects import page_of
from ..stores import AuditQuery, Order
from ._common import json_body, params, request_admin_key, route_table


def admin_of(request: Request) -> AdminService:
    service: AdminService = request.app.state.admin
    return service


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit")
    if raw is None:
        return S.ADMIN_LIST_LIMIT_DEFAULT
    limit = ascii_int(raw, 4) or -1
    if not 1 <= limit <= S.ADMIN_LIST_LIMIT_MAX:
        raise InvalidRequest(
            f"Invalid 'limit': expected an integer between 1 and {S.ADMIN_LIST_LIMIT_MAX}, "
            f"got {raw!r}.",
            param="limit",
        )
    return limit


def _choice(query: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = query.get(name, default)
    if value not in allowed:
        quoted = [repr(a) for a in allowed]
        supported = ", ".join(quoted[:-1]) + " and " + quoted[-1]
        raise InvalidRequest(
            f"Invalid value for '{name}': {value!r}. Supported values are: {supported}.",
            param=name,
        )
    return value


def _after(query: Mapping[str, str]) -> str | None:
    return query.get("after") or None


def _path(request: Request, name: str) -> str:
    value: str = request.path_params[name]
    return value


def _refuse_unsupported(body: Mapping[str, Any], *names: str) -> None:
    """Parameters of OpenAI's that this server does not support: a 400 unless null."""
    for name in names:
        if body.get(name) is not None:
            raise InvalidRequest(
                f"'{name}' is not supported by this server; leave it out.", param=name
            )


# -- admin keys --


async def create_admin_key(request: Request) -> Response:
    actor = await request_admin_key(request)
    body = params(
        await json_body(request), required={"name": str}, optional={"expires_in_seconds": int}
    )
    key = await admin_of(request).create_admin_key(
        actor, body["name"], body.get("expires_in_seconds")
    )
    return JSONResponse(new_admin_key_object(key))


async def list_admin_keys(request: Request) -> Response:
    actor = await request_admin_key(request)
    query = request.query_params
    order: Order = "asc" if _choice(query, "order", ("asc", "desc"), "asc") == "asc" else "desc"
    records, more = await admin_of(request).list_admin_keys(
        actor, _after(query), _limit(query), order
    )
    return JSONResponse(page_of([admin_key_object(r) for r in records], more))


async def retrieve_admin_key(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).get_admin_key(actor, _path(request, "key_id"))
    return JSONResponse(admin_key_object(record))


async def delete_admin_key(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).delete_admin_key(actor, _path(request, "key_id"))
    return JSONResponse(deleted_object("organization.admin_api_key", record.id))


# -- projects --


async def create_project(request: Request) -> Response:
    actor = await request_admin_key(request)
    body = params(
        await json_body(request),
        required={"name": str},
        optional={"residency": str, "external_key_id": str},
    )
    _refuse_unsupported(body, "residency", "external_key_id")
    record = await admin_of(request).create_project(actor, body["name"])
    return JSONResponse(project_object(record))


async def list_projects(request: Request) -> Response:
    actor = await request_admin_key(request)
    query = request.query_params
    archived = _choice(query, "include_archived", ("true", "false"), "false") == "true"
    records, more = await admin_of(request).list_projects(
        actor, _after(query), _limit(query), archived
    )
    return JSONResponse(page_of([project_object(r) for r in records], more))


async def retrieve_project(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).get_project(actor, _path(request, "project_id"))
    return JSONResponse(project_object(record))


async def modify_project(request: Request) -> Response:
    actor = await request_admin_key(request)
    body = params(
        await json_body(request), required={}, optional={"name": str, "external_key_id": str}
    )
    _refuse_unsupported(body, "external_key_id")
    record = await admin_of(request).modify_project(
        actor, _path(request, "project_id"), body.get("name")
    )
    return JSONResponse(project_object(record))


async def archive_project(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).archive_project(actor, _path(request, "project_id"))
    return JSONResponse(project_object(record))


# -- service accounts --


async def create_service_account(request: Request) -> Response:
    actor = await request_admin_key(request)
    body = params(
        await json_body(request),
        required={"name": str},
        optional={"create_service_account_only": bool},
    )
    account, key = await admin_of(request).create_service_account(
        actor,
        _path(request, "project_id"),
        body["name"],
        with_key=not body.get("create_service_account_only"),
    )
    return JSONResponse(new_service_account_object(account, key))


async def list_service_accounts(request: Request) -> Response:
    actor = await request_admin_key(request)
    query = request.query_params
    records, more = await admin_of(request).list_service_accounts(
        actor, _path(request, "project_id"), _after(query), _limit(query)
    )
    return JSONResponse(page_of([service_account_object(r) for r in records], more))


async def retrieve_service_account(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).get_service_account(
        actor, _path(request, "project_id"), _path(request, "service_account_id")
    )
    return JSONResponse(service_account_object(record))


async def delete_service_account(request: Request) -> Response:
    actor = await request_admin_key(request)
    record = await admin_of(request).delete_service_account(
        actor, _path(request, "project_id"), _path(request, "service_account_id")
    )
    return JSONResponse(deleted_object("organization.project.service_account", record.id))


# -- a project's API keys --


async def list_project_keys(request: Request) -> Response:
    actor = await request_admin_key(request)
    query = request.query_params
    access = _choice(query, "owner_project_access", ("active", "inactive", "any"), "any")
    keys, more = await admin_of(request).list_project_keys(
        actor, _path(request, "project_id"), _after(query), _limit(query)
    )
    if access == "inactive":  # every key listed is its owner's, whose access is active
        keys, more = [], False
    return JSONResponse(page_of([project_key_object(k, a) for k, a in keys], more))


async def retrieve_project_key(request: Request) -> Response:
    actor = await request_admin_key(request)
    key, account = await admin_of(request).get_project_key(
        actor, _path(request, "project_id"), _path(request, "api_key_id")
    )
    return JSONResponse(project_key_object(key, account))


async def delete_project_key(request: Request) -> Response:
    actor = await request_admin_key(request)
    key = await admin_of(request).delete_project_key(
        actor, _path(request, "project_id"), _path(request, "api_key_id")
    )
    return JSONResponse(deleted_object("organization.project.api_key", key.id))


# -- the audit log --

#: The bounds of `effective_at` a listing may give (`effective_at[gt]=...`).
_EFFECTIVE_AT = ("gt", "gte", "lt", "lte")


def _values(request: Request, name: str) -> tuple[str, ...]:
    """A list parameter, as `name[]=a&name[]=b` (OpenAI's form) or `name=a&name=b`."""
    query = request.query_params
    return (*query.getlist(f"{name}[]"), *query.getlist(name))


def _effective_at(query: Mapping[str, str]) -> tuple[int | None, int | None]:
    """`effective_at[gt|gte|lt|lte]` as the first and last second included."""
    since: int | None = None
    until: int | None = None
    for bound in _EFFECTIVE_AT:
        name = f"effective_at[{bound}]"
        raw = query.get(name)
        if raw is None:
            continue
        value = ascii_int(raw, 12)
        if value is None:
            raise InvalidRequest(
                f"Invalid '{name}': expected an integer (Unix seconds), got {raw!r}.", param=name
            )
        if bound.startswith("g"):
            first = value + 1 if bound == "gt" else value
            since = first if since is None else max(since, first)
        else:
            last = value - 1 if bound == "lt" else value
            until = last if until is None else min(until, last)
    return since, until


def _cursor(query: Mapping[str, str], name: str) -> str | None:
    value = query.get(name) or None
    if value is not None and not is_audit_log_id(value):
        raise InvalidRequest(
            f"Invalid '{name}': {value!r} is not the id of an audit log event.", param=name
        )
    return value


async def list_audit_logs(request: Request) -> Response:
    actor = await request_admin_key(request)
    query = request.query_params
    since, until = _effective_at(query)
    wanted = AuditQuery(
        limit=_limit(query),
        types=_values(request, "event_types"),
        project_ids=_values(request, "project_ids"),
        actor_ids=_values(request, "actor_ids"),
        resource_ids=_values(request, "resource_ids"),
        since=since,
        until=until,
        after=_cursor(query, "after"),
        before=_cursor(query, "before"),
    )
    tenant_only = _choice(query, "tenant_only", ("true", "false"), "false") == "true"
    events, more = await admin_of(request).list_audit_logs(
        actor, wanted, _values(request, "actor_emails"), tenant_only
    )
    return JSONResponse(page_of([audit_log_object(e, name) for e, name in events], more))


_PROJECT = "/v1/organization/projects/{project_id}"

routes = route_table(
    {
        "/v1/organization/admin_api_keys": {"GET": list_admin_keys, "POST": create_admin_key},
        "/v1/organization/admin_api_keys/{key_id}": {
            "GET": retrieve_admin_key,
            "DELETE": delete_admin_key,
        },
        "/v1/organization/audit_logs": {"GET": list_audit_logs},
        "/v1/organization/projects": {"GET": list_projects, "POST": create_project},
        _PROJECT: {"GET": retrieve_project, "POST": modify_project},
        f"{_PROJECT}/archive": {"POST": archive_project},
        f"{_PROJECT}/service_accounts": {
            "GET": list_service_accounts,
            "POST": create_service_account,
        },
        f"{_PROJECT}/service_accounts/{{service_account_id}}": {
            "GET": retrieve_service_account,
            "DELETE": delete_service_account,
        },
        f"{_PROJECT}/api_keys": {"GET": list_project_keys},
        f"{_PROJECT}/api_keys/{{api_key_id}}": {
            "GET": retrieve_project_key,
            "DELETE": delete_project_key,
        },
    }
)
