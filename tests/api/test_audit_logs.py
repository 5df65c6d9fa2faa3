"""The audit log (`GET /v1/organization/audit_logs`) on both deployments, with httpx: each
change recorded after it is made, with its actor, project and resource; the filters and
the paging; one organization's admin key against another's; a project's key refused.

Every answer of the Administration API is checked against the schema its operation has in
docs/openai-admin-openapi.yml (OpenAI's, with our event types beside OpenAI's).
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openai_files.server._audit_types import OPENAI_EVENT_TYPES
from openai_files.server.audit import EXTENSION_EVENT_TYPES, OPENAI_RECORDED
from openai_files.server.settings import SWEEP_BATCH
from openai_files.testing._metadata_audit import audit_row
from openai_files.testing.engine import FakeEngine

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import ADMIN_SPEC_PATH, assert_admin_answer, assert_error

PATH = "/organization/audit_logs"
ADMIN_SCOPE = (
    "You have insufficient permissions for this operation. Missing scopes: "
    "api.management.read. Check that you have the correct role in your organization, and "
    "if you're using a restricted API key, that it has the necessary scopes."
)


@pytest.fixture(scope="module")
def engine() -> Iterator[FakeEngine]:
    # Slow answers: a batch is still running when it is cancelled.
    with FakeEngine(latency=5.0).start() as e:
        yield e


@pytest.fixture(scope="module")
def app(deployment: Deployment, engine: FakeEngine) -> Iterator[AppServer]:
    """The app of the deployment under test, running batches (console on)."""
    server = deployment.app({"OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url})
    try:
        yield server
    finally:
        server.stop()


def _hook(response: httpx.Response) -> None:
    if response.request.url.path.startswith("/v1/organization/"):
        response.read()
        assert_admin_answer(response.request.method, response.request.url.path, response)


@pytest.fixture
def http(app: AppServer) -> Iterator[Callable[..., httpx.Client]]:
    """httpx clients of the app as a key (of the API under /v1, or of its root), every
    answer of the Administration API checked against its schema."""
    made: list[httpx.Client] = []

    def client(key: str | None, root: bool = False) -> httpx.Client:
        options: dict[str, Any] = {"event_hooks": {"response": [_hook]}}
        if root:
            options["base_url"] = app.root_url
        c = app.http(key, **options)
        made.append(c)
        return c

    yield client
    for c in made:
        c.close()


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    return response.json()


def events(admin: httpx.Client, **query: Any) -> list[dict[str, Any]]:
    """Every event of the listing `query` asks for, newest first, paged by `after`."""
    out: list[dict[str, Any]] = []
    params = {"limit": 100, **query}
    while True:
        page = ok(admin.get(PATH, params=params))
        assert page["object"] == "list"
        data = page["data"]
        assert (page["first_id"], page["last_id"]) == (
            (data[0]["id"], data[-1]["id"]) if data else (None, None)
        )
        out.extend(data)
        if not page["has_more"]:
            return out
        params["after"] = data[-1]["id"]


def summary(event: dict[str, Any]) -> tuple[Any, ...]:
    """What an event says, in short: type, resource, actor key, project."""
    actor = event["actor"]
    return (
        event["type"],
        event[event["type"]]["id"],
        actor and actor["api_key"]["id"],
        event.get("project", {}).get("id"),
    )


def key_id_of(app: AppServer, secret: str) -> str:
    from openai_files.server.auth import hash_key

    meta = app.app.state.service.meta
    record = app.portal.call(meta.find_api_key, hash_key(secret))
    if record is None:
        record = app.portal.call(meta.find_admin_key, hash_key(secret))
    assert record is not None
    return str(record.id)


def user_actor(key_id: str) -> dict[str, Any]:
    return {"type": "api_key", "api_key": {"id": key_id, "type": "user"}}


# -- every change, recorded --


def test_each_change_is_recorded_with_its_actor_project_and_resource(
    app: AppServer, http: Callable[..., httpx.Client]
) -> None:
    org = "org-" + uuid.uuid4().hex[:10]
    admin_secret = app.create_admin_key(org)  # on the command line: no actor
    admin_id = key_id_of(app, admin_secret)
    admin = http(admin_secret)
    expected: list[tuple[Any, ...]] = [("api_key.created", admin_id, None, None)]

    project = ok(admin.post("/organization/projects", json={"name": "Research"}))
    p = project["id"]
    expected.append(("project.created", p, admin_id, p))
    ok(admin.post(f"/organization/projects/{p}", json={"name": "Research 2"}))
    expected.append(("project.updated", p, admin_id, p))
    account = ok(admin.post(f"/organization/projects/{p}/service_accounts", json={"name": "bot"}))
    bot_key_id, bot_secret = account["api_key"]["id"], account["api_key"]["value"]
    expected += [
        ("service_account.created", account["id"], admin_id, p),
        ("api_key.created", bot_key_id, admin_id, p),
    ]
    other_admin = ok(admin.post("/organization/admin_api_keys", json={"name": "CI"}))
    ok(admin.delete(f"/organization/admin_api_keys/{other_admin['id']}"))
    expected += [
        ("api_key.created", other_admin["id"], admin_id, None),
        ("api_key.deleted", other_admin["id"], admin_id, None),
    ]

    # The service account's key makes a file; a key made on the command line the rest.
    bot = http(bot_secret)
    made = bot.post(
        "/files", files={"file": ("bot.jsonl", b'{"a": 1}\n')}, data={"purpose": "batch"}
    )
    bot_file_object = ok(made)
    bot_file = bot_file_object["id"]
    expected.append(("file.created", bot_file, bot_key_id, p))
    user_secret = app.create_key(org, p)
    user_id = key_id_of(app, user_secret)
    expected.append(("api_key.created", user_id, None, p))
    user = http(user_secret)
    file_id = ok(
        user.post("/files", files={"file": ("notes.txt", b"hello")}, data={"purpose": "vision"})
    )["id"]
    expected.append(("file.created", file_id, user_id, p))
    console = http(user_secret, root=True)
    url = ok(console.post("/console/api/download-links", json={"file_id": file_id}))["url"]
    assert console.head(url).status_code == 200  # no bytes sent: not a download
    assert console.get(url).content == b"hello"
    expected.append(("file.downloaded", file_id, user_id, p))
    ok(user.delete(f"/files/{file_id}"))
    expected.append(("file.deleted", file_id, user_id, p))

    data = b"0123456789"
    upload = ok(
        user.post(
            "/uploads",
            json={"filename": "u.txt", "purpose": "vision", "bytes": 10, "mime_type": "text/plain"},
        )
    )
    expected.append(("upload.created", upload["id"], user_id, p))
    part = ok(user.post(f"/uploads/{upload['id']}/parts", files={"data": ("p", data)}))
    done = ok(user.post(f"/uploads/{upload['id']}/complete", json={"part_ids": [part["id"]]}))
    expected += [
        ("upload.completed", upload["id"], user_id, p),
        ("file.created", done["file"]["id"], user_id, p),
    ]
    dropped = ok(
        user.post(
            "/uploads",
            json={"filename": "v.txt", "purpose": "vision", "bytes": 3, "mime_type": "text/plain"},
        )
    )
    ok(user.post(f"/uploads/{dropped['id']}/cancel"))
    expected += [
        ("upload.created", dropped["id"], user_id, p),
        ("upload.cancelled", dropped["id"], user_id, p),
    ]

    batch = ok(
        bot.post(
            "/batches",
            json={
                "input_file_id": bot_file,
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
    )
    # Asked twice: the second changes nothing, and is not recorded.
    for _ in range(2):
        assert ok(bot.post(f"/batches/{batch['id']}/cancel"))["status"] in (
            "cancelling",
            "cancelled",
        )
    expected += [
        ("batch.created", batch["id"], bot_key_id, p),
        ("batch.cancelled", batch["id"], bot_key_id, p),
    ]

    # A key deleted; a service account deleted with its key; the project archived, with the
    # last key still active in it.
    spare = app.create_key(org, p)
    spare_id = key_id_of(app, spare)
    ok(admin.delete(f"/organization/projects/{p}/api_keys/{spare_id}"))
    expected += [
        ("api_key.created", spare_id, None, p),
        ("api_key.deleted", spare_id, admin_id, p),
    ]
    ok(admin.delete(f"/organization/projects/{p}/service_accounts/{account['id']}"))
    expected += [
        ("service_account.deleted", account["id"], admin_id, p),
        ("api_key.deleted", bot_key_id, admin_id, p),
    ]
    ok(admin.post(f"/organization/projects/{p}/archive"))
    ok(admin.post(f"/organization/projects/{p}/archive"))  # archived already: nothing
    expected += [
        ("project.archived", p, admin_id, p),
        ("api_key.deleted", user_id, admin_id, p),
    ]

    listed = events(admin)
    assert [summary(e) for e in reversed(listed)] == expected
    ids = [e["id"] for e in listed]
    assert ids == sorted(ids, reverse=True) and len(set(ids)) == len(ids)
    times = [e["effective_at"] for e in listed]
    assert times == sorted(times, reverse=True)

    # What the objects say, in OpenAI's shape (ours too).
    by_type = {(e["type"], e[e["type"]]["id"]): e for e in listed}
    created = by_type["project.created", p]
    assert created["project"] == {"id": p, "name": "Research 2"}  # its name now
    assert created["actor"] == user_actor(admin_id)
    assert created["project.created"] == {
        "id": p,
        "data": {"name": "Research", "title": "Research"},
    }
    assert by_type["project.updated", p]["project.updated"] == {
        "id": p,
        "changes_requested": {"title": "Research 2"},
    }
    assert by_type["service_account.created", account["id"]]["service_account.created"] == {
        "id": account["id"],
        "data": {"role": "member"},
    }
    admin_made = by_type["api_key.created", admin_id]
    assert admin_made["actor"] is None and "project" not in admin_made
    assert admin_made["api_key.created"] == {"id": admin_id}
    bot_made = by_type["file.created", bot_file]
    assert bot_made["actor"] == {
        "type": "api_key",
        "api_key": {
            "id": bot_key_id,
            "type": "service_account",
            "service_account": {"id": account["id"]},
        },
    }
    assert bot_made["file.created"] == {
        "id": bot_file,
        "data": {
            "filename": "bot.jsonl",
            "purpose": "batch",
            "bytes": 9,
            "expires_at": bot_file_object["expires_at"],
        },
    }
    file_data = {"filename": "notes.txt", "purpose": "vision", "bytes": 5}
    assert by_type["file.downloaded", file_id]["file.downloaded"] == {
        "id": file_id,
        "data": file_data,
    }
    assert by_type["file.deleted", file_id]["file.deleted"] == {"id": file_id, "data": file_data}
    assert by_type["upload.created", upload["id"]]["upload.created"] == {
        "id": upload["id"],
        "data": {"filename": "u.txt", "purpose": "vision", "bytes": 10},
    }
    assert by_type["upload.completed", upload["id"]]["upload.completed"] == {
        "id": upload["id"],
        "data": {"file_id": done["file"]["id"]},
    }
    assert by_type["file.created", done["file"]["id"]]["file.created"]["data"] == {
        "filename": "u.txt",
        "purpose": "vision",
        "bytes": 10,
        "expires_at": None,
        "upload_id": upload["id"],
    }
    assert by_type["upload.cancelled", dropped["id"]]["upload.cancelled"] == {"id": dropped["id"]}
    assert by_type["batch.created", batch["id"]]["batch.created"] == {
        "id": batch["id"],
        "data": {
            "endpoint": "/v1/chat/completions",
            "input_file_id": bot_file,
            "completion_window": "24h",
        },
    }
    assert by_type["batch.cancelled", batch["id"]]["batch.cancelled"] == {"id": batch["id"]}

    # No secret, no hash, no content anywhere in the log.
    text = str(listed)
    for secret in (admin_secret, bot_secret, user_secret, spare):
        assert secret not in text and hashlib.sha256(secret.encode()).hexdigest() not in text
    assert "hello" not in text and "0123456789" not in text


def test_a_change_refused_records_nothing(
    app: AppServer, http: Callable[..., httpx.Client]
) -> None:
    org = "org-" + uuid.uuid4().hex[:10]
    admin = http(app.create_admin_key(org))
    before = events(admin)
    user = http(app.create_key(org, "proj_" + uuid.uuid4().hex[:8]))
    made = events(admin)
    assert len(made) == len(before) + 1  # the key
    # A file refused (no purpose), a delete of a file that is not there, a project key's
    # delete of another project's key, a second delete of an admin key.
    assert user.post("/files", files={"file": ("a.txt", b"x")}).status_code == 400
    assert user.delete("/files/file-" + "a" * 24).status_code == 404
    other = ok(admin.post("/organization/admin_api_keys", json={"name": "x"}))
    ok(admin.delete(f"/organization/admin_api_keys/{other['id']}"))
    assert admin.delete(f"/organization/admin_api_keys/{other['id']}").status_code == 404
    assert admin.post("/organization/projects", json={"name": ""}).status_code == 400
    after = events(admin)
    assert [e["type"] for e in after[: len(after) - len(made)]] == [
        "api_key.deleted",
        "api_key.created",
    ]


# -- filters and paging --


@pytest.fixture
def busy_org(
    app: AppServer, http: Callable[..., httpx.Client]
) -> tuple[httpx.Client, dict[str, Any]]:
    """An organization with two projects, a service account and a few files: its admin
    client, and the ids made."""
    org = "org-" + uuid.uuid4().hex[:10]
    admin = http(app.create_admin_key(org))
    a = ok(admin.post("/organization/projects", json={"name": "A"}))["id"]
    b = ok(admin.post("/organization/projects", json={"name": "B"}))["id"]
    account = ok(admin.post(f"/organization/projects/{b}/service_accounts", json={"name": "s"}))
    bot = http(account["api_key"]["value"])
    files = [
        ok(bot.post("/files", files={"file": (f"{i}.txt", b"x")}, data={"purpose": "vision"}))["id"]
        for i in range(3)
    ]
    ok(bot.delete(f"/files/{files[0]}"))
    return admin, {
        "a": a,
        "b": b,
        "account": account["id"],
        "bot_key": account["api_key"]["id"],
        "files": files,
    }


def test_filters(busy_org: tuple[httpx.Client, dict[str, Any]]) -> None:
    admin, made = busy_org
    everything = events(admin)
    # The admin key, 2 projects, an account and its key, 3 files and a delete.
    assert len(everything) == 9

    def listed(**query: Any) -> list[tuple[Any, ...]]:
        return [summary(e) for e in events(admin, **query)]

    def kept(test: Callable[[dict[str, Any]], bool]) -> list[tuple[Any, ...]]:
        return [summary(e) for e in everything if test(e)]

    assert listed(**{"event_types[]": ["file.created", "file.deleted"]}) == kept(
        lambda e: e["type"].startswith("file.")
    )
    assert listed(**{"project_ids[]": [made["a"]]}) == kept(
        lambda e: e.get("project", {}).get("id") == made["a"]
    )
    # An actor is its key's id or its service account's.
    by_bot = kept(lambda e: (e["actor"] or {}).get("api_key", {}).get("id") == made["bot_key"])
    assert len(by_bot) == 4
    assert listed(**{"actor_ids[]": [made["bot_key"]]}) == by_bot
    assert listed(**{"actor_ids[]": [made["account"]]}) == by_bot
    assert listed(**{"resource_ids[]": [made["files"][0], made["b"]]}) == kept(
        lambda e: e[e["type"]]["id"] in (made["files"][0], made["b"])
    )
    assert len(listed(**{"resource_ids[]": [made["files"][0]]})) == 2
    # Filters together: all of them hold.
    assert listed(**{"event_types[]": ["file.created"], "resource_ids[]": [made["files"][0]]}) == [
        ("file.created", made["files"][0], made["bot_key"], made["b"])
    ]
    # No key here has an email; no event here is tenant-scoped.
    assert listed(**{"actor_emails[]": ["someone@example.com"]}) == []
    assert listed(tenant_only="true") == []
    assert listed(tenant_only="false") == kept(lambda e: True)
    # One of OpenAI's types this server never records: a valid filter that matches nothing.
    assert listed(**{"event_types[]": ["login.succeeded"]}) == []
    # effective_at: bounds included or not as asked.
    first, last = everything[-1]["effective_at"], everything[0]["effective_at"]
    assert listed(**{"effective_at[gte]": first, "effective_at[lte]": last}) == kept(lambda e: True)
    assert listed(**{"effective_at[gt]": last}) == []
    assert listed(**{"effective_at[lt]": first}) == []
    assert listed(**{"effective_at[gte]": last}) == kept(lambda e: e["effective_at"] == last)
    assert listed(**{"effective_at[lte]": first}) == kept(lambda e: e["effective_at"] == first)


def test_paging_after_and_before(busy_org: tuple[httpx.Client, dict[str, Any]]) -> None:
    admin, _ = busy_org
    everything = events(admin)
    ids = [e["id"] for e in everything]
    # Forward, three at a time, has_more exact.
    seen: list[str] = []
    after: str | None = None
    while True:
        page = ok(admin.get(PATH, params={"limit": 3, **({"after": after} if after else {})}))
        seen += [e["id"] for e in page["data"]]
        assert page["has_more"] == (len(seen) < len(ids))
        if not page["has_more"]:
            break
        after = page["last_id"]
    assert seen == ids
    # Back from the oldest: the 3 just newer, newest first; has_more while newer remain.
    back = ok(admin.get(PATH, params={"limit": 3, "before": ids[-1]}))
    assert [e["id"] for e in back["data"]] == ids[-4:-1]
    assert back["has_more"] is True
    back = ok(admin.get(PATH, params={"limit": 3, "before": ids[3]}))
    assert [e["id"] for e in back["data"]] == ids[:3] and back["has_more"] is False
    # Both: the events between, newest first.
    between = ok(admin.get(PATH, params={"after": ids[1], "before": ids[5]}))
    assert [e["id"] for e in between["data"]] == ids[2:5]
    # The default limit is 20; one past the newest lists nothing.
    assert len(ok(admin.get(PATH))["data"]) == min(20, len(ids))
    assert ok(admin.get(PATH, params={"before": ids[0]}))["data"] == []


def test_bad_parameters_are_refused_in_openais_words(
    app: AppServer, http: Callable[..., httpx.Client]
) -> None:
    admin = http(app.create_admin_key("org-" + uuid.uuid4().hex[:10]))
    refused: list[tuple[dict[str, Any], str]] = [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"after": "file-abc"}, "after"),
        ({"before": "audit_log-"}, "before"),
        ({"effective_at[gt]": "-1"}, "effective_at[gt]"),
        ({"effective_at[lte]": "soon"}, "effective_at[lte]"),
        ({"tenant_only": "yes"}, "tenant_only"),
        ({"event_types[]": ["file.created", "file.exploded"]}, "event_types[1]"),
        ({"resource_ids[]": ["a\x00b"]}, "resource_ids[]"),
        ({"project_ids[]": [f"proj_{i}" for i in range(101)]}, "project_ids[]"),
    ]
    for params, param in refused:
        response = admin.get(PATH, params=params)
        error = assert_error(response, 400, response.json()["error"]["message"], param=param)
        assert param.split("[")[0] in error["message"], error


# -- who may read the log --


def test_another_organizations_admin_key_sees_none_of_it(
    app: AppServer,
    http: Callable[..., httpx.Client],
    busy_org: tuple[httpx.Client, dict[str, Any]],
) -> None:
    admin, made = busy_org
    assert events(admin)
    stranger = http(app.create_admin_key("org-" + uuid.uuid4().hex[:10]))
    theirs = events(stranger)
    assert [e["type"] for e in theirs] == ["api_key.created"]  # their own key only
    for query in (
        {"project_ids[]": [made["a"], made["b"]]},
        {"resource_ids[]": made["files"]},
        {"actor_ids[]": [made["bot_key"], made["account"]]},
    ):
        assert events(stranger, **query) == []


def test_a_project_key_is_refused_as_openai_refuses_it(
    app: AppServer, http: Callable[..., httpx.Client]
) -> None:
    user = http(app.create_key("org-" + uuid.uuid4().hex[:10], "proj_x"))
    assert_error(user.get(PATH), 403, ADMIN_SCOPE)
    assert_error(http(None).get(PATH), 401, re.compile(r"You didn't provide an API key\. .*"))


# -- the description carried --


def test_the_event_types_are_those_the_description_lists() -> None:
    spec = yaml.safe_load(Path(ADMIN_SPEC_PATH).read_text())
    schemas = spec["components"]["schemas"]
    assert set(schemas["AuditLogEventType"]["enum"]) == OPENAI_EVENT_TYPES
    assert tuple(schemas["AuditLogEventTypeExtension"]["enum"]) == EXTENSION_EVENT_TYPES
    assert not OPENAI_EVENT_TYPES & set(EXTENSION_EVENT_TYPES)
    assert set(OPENAI_RECORDED) <= OPENAI_EVENT_TYPES
    audit_log = schemas["AuditLog"]["properties"]
    for kind in EXTENSION_EVENT_TYPES:
        assert audit_log[kind]["x-openai-files-extension"] is True, kind
    for kind in OPENAI_RECORDED:
        assert kind in audit_log and "x-openai-files-extension" not in audit_log[kind], kind


# -- retention --


def test_the_sweeper_removes_the_events_past_their_retention_only(
    deployment: Deployment,
) -> None:
    server = deployment.app({"OPENAI_FILES_AUDIT_RETENTION_DAYS": "2"})
    try:
        org = "org-" + uuid.uuid4().hex[:10]
        admin = server.http(server.create_admin_key(org), event_hooks={"response": [_hook]})
        user = server.http(server.create_key(org, "proj_kept"))
        file_id = ok(
            user.post("/files", files={"file": ("a.txt", b"x")}, data={"purpose": "vision"})
        )["id"]
        now = int(time.time())
        cutoff = now - 2 * 86400
        # More old events than the sweeper takes at once, and one just within the retention.
        old = [
            audit_row(org, "upload.cancelled", at=cutoff - 1 - i // 100, n=i % 100)
            for i in range(2 * SWEEP_BATCH + 7)
        ]
        kept = audit_row(org, "upload.cancelled", at=cutoff + 60)
        meta = server.app.state.service.meta
        server.portal.call(meta.add_audit_logs, [*old, kept])
        before = events(admin)
        assert len(before) == len(old) + 4  # the two keys, the file, `kept`
        # A file that expires is removed by the sweeper, which acts as no one: no event.
        deployment.expire(server, file_id, now - 1)
        counts: dict[str, int] = server.portal.call(server.app.state.service.sweep)
        assert counts["audit_logs"] == len(old) and counts["expired"] == 1
        after = events(admin)
        assert [e["id"] for e in after] == [
            e["id"] for e in before if e["id"] not in {o.id for o in old}
        ]
        assert kept.id in {e["id"] for e in after}
        assert server.portal.call(server.app.state.service.sweep)["audit_logs"] == 0
        admin.close()
        user.close()
    finally:
        server.stop()
