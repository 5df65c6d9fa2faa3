"""OpenAI's Administration API on both deployments, with httpx (the official SDK has no admin
resource): every route, its paging and errors, one organization's admin key against
another's, each kind of key where the other is needed, and keys that stop working at once.

Every answer is checked against the schema OpenAI's description gives its operation
(docs/openai-admin-openapi.yml), by a hook on the clients made here.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import assert_admin_answer, assert_error

#: OpenAI's sentences for a key without a scope (docs/api.md, "Administration API").
DATA_SCOPE = (
    "You have insufficient permissions for this operation. Missing scopes: {}. Check that you "
    "have the correct role in your organization (Reader, Writer, Owner) and project (Member, "
    "Owner), and if you're using a restricted API key, that it has the necessary scopes."
)
ADMIN_SCOPE = (
    "You have insufficient permissions for this operation. Missing scopes: {}. Check that you "
    "have the correct role in your organization, and if you're using a restricted API key, "
    "that it has the necessary scopes."
)
INCORRECT = re.compile(r"Incorrect API key provided: sk-\S+\*\*\*\*\S{4}\. .*")

#: Every route of the Administration API, as (method, path, JSON body); `{p}` is a project
#: of the organization, `{k}` an admin key, `{s}` a service account, `{a}` a project's key.
ROUTES: list[tuple[str, str, dict[str, Any] | None]] = [
    ("GET", "/organization/admin_api_keys", None),
    ("POST", "/organization/admin_api_keys", {"name": "x"}),
    ("GET", "/organization/admin_api_keys/{k}", None),
    ("DELETE", "/organization/admin_api_keys/{k}", None),
    ("GET", "/organization/projects", None),
    ("POST", "/organization/projects", {"name": "x"}),
    ("GET", "/organization/projects/{p}", None),
    ("POST", "/organization/projects/{p}", {"name": "y"}),
    ("POST", "/organization/projects/{p}/archive", None),
    ("GET", "/organization/projects/{p}/service_accounts", None),
    ("POST", "/organization/projects/{p}/service_accounts", {"name": "bot"}),
    ("GET", "/organization/projects/{p}/service_accounts/{s}", None),
    ("DELETE", "/organization/projects/{p}/service_accounts/{s}", None),
    ("GET", "/organization/projects/{p}/api_keys", None),
    ("GET", "/organization/projects/{p}/api_keys/{a}", None),
    ("DELETE", "/organization/projects/{p}/api_keys/{a}", None),
]


def _checked(response: httpx.Response) -> None:
    response.read()
    assert_admin_answer(response.request.method, response.request.url.path, response)


@pytest.fixture
def http(server: AppServer) -> Iterator[Callable[[str | None], httpx.Client]]:
    """httpx clients of the API as a key, each answer of the Administration API checked
    against OpenAI's schema."""
    made: list[httpx.Client] = []

    def client(key: str | None) -> httpx.Client:
        c = server.http(key, event_hooks={"response": [_hook]})
        made.append(c)
        return c

    yield client
    for c in made:
        c.close()


def _hook(response: httpx.Response) -> None:
    if response.request.url.path.startswith("/v1/organization/"):
        _checked(response)


@pytest.fixture
def org() -> str:
    return "org-" + uuid.uuid4().hex[:10]


@pytest.fixture
def admin(server: AppServer, http: Callable[[str | None], httpx.Client], org: str) -> httpx.Client:
    """An admin key's client, of a new organization."""
    return http(server.create_admin_key(org))


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, (response.status_code, response.text[:500])
    assert response.headers["content-type"] == "application/json"
    return response.json()


def new_project(admin: httpx.Client, name: str = "Project") -> dict[str, Any]:
    return ok(admin.post("/organization/projects", json={"name": name}))  # type: ignore[no-any-return]


def new_account(admin: httpx.Client, project_id: str, name: str = "bot") -> dict[str, Any]:
    return ok(  # type: ignore[no-any-return]
        admin.post(f"/organization/projects/{project_id}/service_accounts", json={"name": name})
    )


def pages(admin: httpx.Client, path: str, limit: int, **query: str) -> list[dict[str, Any]]:
    """Every page of a listing, checked as OpenAI pages one: `first_id`, `last_id`, exact
    `has_more`, each page after the last id of the one before."""
    out: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        params = {"limit": str(limit), **query, **({"after": after} if after else {})}
        page = ok(admin.get(path, params=params))
        assert page["object"] == "list"
        data = page["data"]
        assert len(data) <= limit
        assert (page["first_id"], page["last_id"]) == (
            (data[0]["id"], data[-1]["id"]) if data else (None, None)
        )
        out.extend(data)
        if not page["has_more"]:
            return out
        assert len(data) == limit
        after = data[-1]["id"]


# -- admin keys --


def test_admin_keys(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    made = ok(
        admin.post("/organization/admin_api_keys", json={"name": "CI", "expires_in_seconds": 3600})
    )
    assert made["object"] == "organization.admin_api_key" and made["name"] == "CI"
    assert made["value"].startswith("sk-admin-")
    assert made["redacted_value"] == made["value"][:13] + "****" + made["value"][-4:]
    assert made["expires_at"] == made["created_at"] + 3600
    assert made["last_used_at"] is None
    # The value is answered once: never again.
    shown = ok(admin.get(f"/organization/admin_api_keys/{made['id']}"))
    assert shown == {k: v for k, v in made.items() if k != "value"}
    listed = pages(admin, "/organization/admin_api_keys", 1)
    assert made["id"] in [k["id"] for k in listed] and len(listed) == 2
    assert all("value" not in k for k in listed)
    newest_first = pages(admin, "/organization/admin_api_keys", 1, order="desc")
    assert newest_first == listed[::-1]
    # The new key works, then is deleted, and fails at once.
    second = http(made["value"])
    assert ok(second.get("/organization/projects"))["data"] == []
    gone = ok(second.delete(f"/organization/admin_api_keys/{made['id']}"))
    assert gone == {
        "id": made["id"],
        "object": "organization.admin_api_key.deleted",
        "deleted": True,
    }
    assert_error(second.get("/organization/projects"), 401, INCORRECT, code="invalid_api_key")
    missing = f"No API key found with id '{made['id']}'."
    assert_error(
        admin.get(f"/organization/admin_api_keys/{made['id']}"), 404, missing, param="key_id"
    )
    assert_error(
        admin.delete(f"/organization/admin_api_keys/{made['id']}"), 404, missing, param="key_id"
    )
    left = [k["id"] for k in listed if k["id"] != made["id"]]
    assert [k["id"] for k in pages(admin, "/organization/admin_api_keys", 5)] == left


def test_an_admin_key_without_expiry_and_one_that_expires(
    http: Callable[[str | None], httpx.Client], admin: httpx.Client
) -> None:
    forever = ok(admin.post("/organization/admin_api_keys", json={"name": "forever"}))
    assert forever["expires_at"] is None
    brief = ok(
        admin.post("/organization/admin_api_keys", json={"name": "brief", "expires_in_seconds": 1})
    )
    client = http(brief["value"])
    deadline = time.time() + 5
    while time.time() < brief["expires_at"] + 0.2 and time.time() < deadline:
        time.sleep(0.2)
    assert_error(client.get("/organization/projects"), 401, INCORRECT, code="invalid_api_key")
    # Listed until it is deleted (OpenAI lists a key whose time is up).
    assert brief["id"] in [k["id"] for k in pages(admin, "/organization/admin_api_keys", 10)]


@pytest.mark.parametrize(
    ("body", "message", "param"),
    [
        pytest.param({}, "Missing required parameter: 'name'.", "name", id="no-name"),
        pytest.param(
            {"name": ""},
            "Invalid 'name': empty string. Expected a string with minimum length 1, but got "
            "an empty string instead.",
            "name",
            id="empty-name",
        ),
        pytest.param(
            {"name": "x" * 257},
            "Invalid 'name': string too long. Expected a string with maximum length 256, but "
            "got a string with length 257 instead.",
            "name",
            id="long-name",
        ),
        pytest.param(
            {"name": 3},
            "Invalid type for 'name': expected a string, but got an integer instead.",
            "name",
            id="name-type",
        ),
        pytest.param(
            {"name": "x", "expires_in_seconds": 0},
            "Invalid 'expires_in_seconds': integer below minimum value. Expected a value >= 1, "
            "but got 0 instead.",
            "expires_in_seconds",
            id="expires-0",
        ),
        pytest.param(
            {"name": "x", "expires_in_seconds": 31536001},
            "Invalid 'expires_in_seconds': integer above maximum value. Expected a value <= "
            "31536000, but got 31536001 instead.",
            "expires_in_seconds",
            id="expires-over-a-year",
        ),
        pytest.param(
            {"name": "x", "scopes": []}, "Unknown parameter: 'scopes'.", "scopes", id="unknown"
        ),
    ],
)
def test_admin_key_requests_checked(
    admin: httpx.Client, body: dict[str, Any], message: str, param: str
) -> None:
    assert_error(admin.post("/organization/admin_api_keys", json=body), 400, message, param=param)


def test_limits_per_organization_and_project(deployment: Deployment) -> None:
    """Projects and admin keys per organization, service accounts per project, each up to
    its setting; one more is a 400 in OpenAI's shape (code `limit_reached`) that stores
    nothing. The store serializes creates at a limit (the conformance suite races them)."""
    app = deployment.app(
        {
            "OPENAI_FILES_MAX_PROJECTS_PER_ORG": "2",
            "OPENAI_FILES_MAX_SERVICE_ACCOUNTS_PER_PROJECT": "1",
            "OPENAI_FILES_MAX_ADMIN_KEYS_PER_ORG": "2",
        }
    )
    try:
        with app.http(app.create_admin_key("org-" + uuid.uuid4().hex[:10])) as admin:
            project = new_project(admin, "one")["id"]
            new_project(admin, "two")
            assert_error(
                admin.post("/organization/projects", json={"name": "three"}),
                400,
                "This organization has 2 projects, the most this server allows "
                "(--max-projects-per-org); archived projects count too.",
                code="limit_reached",
            )
            assert len(pages(admin, "/organization/projects", 10)) == 2
            account = new_account(admin, project)["id"]
            accounts = f"/organization/projects/{project}/service_accounts"
            refused = (
                "This project has 1 service accounts, the most this server allows "
                "(--max-service-accounts-per-project): delete one to make another."
            )
            more = admin.post(accounts, json={"name": "more"})
            assert_error(more, 400, refused, code="limit_reached")
            ok(admin.delete(f"{accounts}/{account}"))
            new_account(admin, project)
            made = ok(admin.post("/organization/admin_api_keys", json={"name": "second"}))
            assert_error(
                admin.post("/organization/admin_api_keys", json={"name": "third"}),
                400,
                "This organization has 2 admin keys, the most this server allows "
                "(--max-admin-keys-per-org): delete one to make another.",
                code="limit_reached",
            )
            ok(admin.delete(f"/organization/admin_api_keys/{made['id']}"))
            ok(admin.post("/organization/admin_api_keys", json={"name": "third"}))
    finally:
        app.stop()


# -- projects --
# -- projects --


def test_projects(admin: httpx.Client) -> None:
    made = new_project(admin, "Web")
    assert made["id"].startswith("proj_") and made["object"] == "organization.project"
    assert (made["name"], made["archived_at"], made["status"]) == ("Web", None, "active")
    path = f"/organization/projects/{made['id']}"
    assert ok(admin.get(path)) == made
    renamed = ok(admin.post(path, json={"name": "Web app"}))
    assert renamed == {**made, "name": "Web app"}
    assert ok(admin.post(path, json={})) == renamed  # nothing to change
    assert ok(admin.post(path, json={"name": None})) == renamed
    other = new_project(admin, "Other")
    archived = ok(admin.post(f"{path}/archive"))
    assert archived["status"] == "archived" and archived["archived_at"] >= made["created_at"]
    assert ok(admin.post(f"{path}/archive")) == archived  # once archived, as it is
    assert ok(admin.get(path)) == archived
    assert [p["id"] for p in pages(admin, "/organization/projects", 10)] == [other["id"]]
    listed = pages(admin, "/organization/projects", 10, include_archived="true")
    assert [p["id"] for p in listed] == [made["id"], other["id"]]
    assert listed[0] == archived
    assert pages(admin, "/organization/projects", 10, include_archived="false") == [other]
    message = f"Project '{made['id']}' is archived. Archived projects cannot be used or updated."
    assert_error(admin.post(path, json={"name": "z"}), 400, message, param="project_id")
    assert_error(admin.post(path, json={}), 400, message, param="project_id")


def test_project_requests_checked(admin: httpx.Client) -> None:
    project = new_project(admin)
    unsupported = "'{}' is not supported by this server; leave it out."
    for body, message, param in [
        ({}, "Missing required parameter: 'name'.", "name"),
        (
            {"name": ["a"]},
            "Invalid type for 'name': expected a string, but got an array instead.",
            "name",
        ),
        ({"name": "a", "owner": "me"}, "Unknown parameter: 'owner'.", "owner"),
        (
            {"name": "a", "residency": "EU_STORAGE_PROCESSING"},
            unsupported.format("residency"),
            "residency",
        ),
        (
            {"name": "a", "external_key_id": "k"},
            unsupported.format("external_key_id"),
            "external_key_id",
        ),
    ]:
        assert_error(admin.post("/organization/projects", json=body), 400, message, param=param)
    path = f"/organization/projects/{project['id']}"
    assert_error(
        admin.post(path, json={"name": ""}),
        400,
        "Invalid 'name': empty string. Expected a string with minimum length 1, but got an "
        "empty string instead.",
        param="name",
    )
    assert_error(
        admin.post("/organization/projects", content=b"{"),
        400,
        re.compile(r"We could not parse the JSON body of your request\..*"),
    )
    assert ok(admin.get(path))["name"] == "Project"  # nothing changed


@pytest.mark.parametrize(
    "hidden",
    [
        pytest.param("\x00", id="nul"),
        pytest.param("\x07", id="bell"),
        pytest.param("\t", id="tab"),
        pytest.param("\n", id="newline"),
        pytest.param("\x1b", id="escape"),
        pytest.param("\x7f", id="del"),
        pytest.param("\x85", id="c1-next-line"),
        pytest.param("\u2028", id="line-separator"),
        pytest.param("\u2029", id="paragraph-separator"),
        pytest.param("\u202e", id="right-to-left-override"),
        pytest.param("\u2066", id="left-to-right-isolate"),
        pytest.param("\u200f", id="right-to-left-mark"),
    ],
)
def test_names_with_hidden_characters_refused(admin: httpx.Client, hidden: str) -> None:
    """A name that would not show as it reads (or that PostgreSQL cannot store: NUL) is a
    400 naming `name`, wherever a name is given, and nothing is made or renamed."""
    project = new_project(admin, "Kept")
    path = f"/organization/projects/{project['id']}"
    name = f"a{hidden}b"
    message = (
        f"Invalid 'name': the character {hidden!a} at position 1 is not allowed. A name "
        "may not hold control characters, line or paragraph separators or bidirectional "
        "formatting characters."
    )
    # JSON with \u escapes, as a client's encoder writes it by default.
    body = json.dumps({"name": name}).encode()
    headers = {"content-type": "application/json"}
    for where in [
        "/organization/admin_api_keys",
        "/organization/projects",
        path,
        f"{path}/service_accounts",
    ]:
        answer = admin.post(where, content=body, headers=headers)
        assert_error(answer, 400, message, param="name")
    assert pages(admin, "/organization/projects", 10) == [project]
    assert pages(admin, f"{path}/service_accounts", 10) == []
    assert all(k["name"][-1:] != "b" for k in pages(admin, "/organization/admin_api_keys", 100))


def test_a_name_in_any_script_is_kept(admin: httpx.Client) -> None:
    """What `hidden_character` refuses is narrow: letters of any script, emoji (with their
    joiners), spaces and punctuation are a name as given."""
    name = "Équipe 東京 — ÄÖ 👩\u200d💻 'x' \"y\""
    made = new_project(admin, name)
    assert made["name"] == name
    assert ok(admin.get(f"/organization/projects/{made['id']}"))["name"] == name


def test_listing_cursors_of_the_wrong_shape(admin: httpx.Client) -> None:
    """An `after` that cannot be an id of what is listed is the 400 of an unknown cursor,
    before the store sees it (PostgreSQL refuses NUL in text: it was a 500)."""
    project = new_project(admin)["id"]
    base = f"/organization/projects/{project}"
    for path, after, what in [
        ("/organization/projects", "a\x00b", "project"),
        ("/organization/projects", "proj_\x07", "project"),
        ("/organization/admin_api_keys", "key_a\x00", "API key"),
        ("/organization/admin_api_keys", "proj_x", "API key"),
        (f"{base}/service_accounts", "svc_acct_\x00", "service account"),
        (f"{base}/service_accounts", "key_abc", "service account"),
        (f"{base}/api_keys", "key_\x00", "API key"),
        (f"{base}/api_keys", "svc_acct_abc", "API key"),
    ]:
        answer = admin.get(path, params={"after": after})
        assert_error(answer, 400, f"No {what} found with id '{after}'.", param="after")


@pytest.mark.parametrize(
    ("query", "message", "param"),
    [
        *(
            pytest.param(
                {"limit": value},
                f"Invalid 'limit': expected an integer between 1 and 100, got '{value}'.",
                "limit",
                id=f"limit-{value}",
            )
            for value in ("0", "101", "x")
        ),
        pytest.param(
            {"after": "proj_nope"}, "No project found with id 'proj_nope'.", "after", id="after"
        ),
        pytest.param(
            {"include_archived": "yes"},
            "Invalid value for 'include_archived': 'yes'. Supported values are: 'true' and "
            "'false'.",
            "include_archived",
            id="include-archived",
        ),
    ],
)
def test_project_listing_checked(
    admin: httpx.Client, query: dict[str, str], message: str, param: str
) -> None:
    assert_error(admin.get("/organization/projects", params=query), 400, message, param=param)


def test_listings_page_by_creation(server: AppServer, admin: httpx.Client, org: str) -> None:
    """Each listing pages in creation order, `limit` at a time, with OpenAI's ids at both
    ends and an exact `has_more`; its default page is 20."""
    projects = [new_project(admin, f"p{i}") for i in range(23)]
    assert len(ok(admin.get("/organization/projects"))["data"]) == 20
    assert pages(admin, "/organization/projects", 4) == projects
    assert pages(admin, "/organization/projects", 23) == projects
    project = projects[0]["id"]
    accounts = [new_account(admin, project, f"bot{i}") for i in range(5)]
    for _ in range(2):
        server.create_key(org, project)
    listed = pages(admin, f"/organization/projects/{project}/service_accounts", 2)
    assert [a["id"] for a in listed] == [a["id"] for a in accounts]
    keys = pages(admin, f"/organization/projects/{project}/api_keys", 3)
    assert len(keys) == 7
    assert [k["created_at"] for k in keys] == sorted(k["created_at"] for k in keys)
    assert {a["api_key"]["id"] for a in accounts} < {k["id"] for k in keys}
    for i in range(4):
        ok(admin.post("/organization/admin_api_keys", json={"name": f"k{i}"}))
    assert len(pages(admin, "/organization/admin_api_keys", 2)) == 5
    for path in (
        f"/organization/projects/{project}/service_accounts",
        f"/organization/projects/{project}/api_keys",
        "/organization/admin_api_keys",
    ):
        assert_error(
            admin.get(path, params={"limit": "101"}),
            400,
            "Invalid 'limit': expected an integer between 1 and 100, got '101'.",
            param="limit",
        )
        assert_error(
            admin.get(path, params={"after": "key_nope"}),
            400,
            re.compile(r"No .* found with id 'key_nope'\."),
            param="after",
        )


# -- service accounts, and a project's keys --


def test_a_service_account_key_works_for_its_project(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    project, sibling = new_project(admin, "A")["id"], new_project(admin, "B")["id"]
    made = new_account(admin, project, "uploader")
    key = made["api_key"]
    assert made["role"] == "member" and made["id"].startswith("svc_acct_")
    assert key["value"].startswith("sk-svcacct-") and key["name"] == "Secret key"
    assert key["object"] == "organization.project.service_account.api_key"
    path = f"/organization/projects/{project}/service_accounts/{made['id']}"
    shown = ok(admin.get(path))
    assert shown == {k: v for k, v in made.items() if k != "api_key"}
    # The key reaches /v1/files of its project, and only of it.
    bot = http(key["value"])
    uploaded = ok(bot.post("/files", files={"file": ("a.txt", b"hi")}, data={"purpose": "vision"}))
    assert [f["id"] for f in ok(bot.get("/files"))["data"]] == [uploaded["id"]]
    assert bot.get("/files").headers["openai-organization"] == org
    neighbour = http(server.create_key(org, sibling))
    assert ok(neighbour.get("/files"))["data"] == []
    assert_error(
        neighbour.get(f"/files/{uploaded['id']}"),
        404,
        f"No such File object: {uploaded['id']}",
        param="id",
    )
    # Listed among the project's keys, owned by the service account.
    listed = ok(admin.get(f"/organization/projects/{project}/api_keys"))["data"]
    assert listed == [
        {
            "object": "organization.project.api_key",
            "redacted_value": key["value"][:15] + "****" + key["value"][-4:],
            "name": "Secret key",
            "created_at": key["created_at"],
            "last_used_at": None,
            "id": key["id"],
            "owner_project_access": "active",
            "owner": {
                "type": "service_account",
                "service_account": {
                    "id": made["id"],
                    "name": "uploader",
                    "created_at": made["created_at"],
                    "role": "member",
                },
            },
        }
    ]
    # Its key is deleted with it, not alone.
    key_path = f"/organization/projects/{project}/api_keys/{key['id']}"
    assert ok(admin.get(key_path)) == listed[0]
    assert_error(
        admin.delete(key_path),
        400,
        f"API key '{key['id']}' belongs to the service account '{made['id']}': delete the "
        "service account to delete its key.",
        param="api_key_id",
    )
    assert ok(bot.get("/files"))["data"]  # still works
    gone = ok(admin.delete(path))
    assert gone == {
        "object": "organization.project.service_account.deleted",
        "id": made["id"],
        "deleted": True,
    }
    assert_error(bot.get("/files"), 401, INCORRECT, code="invalid_api_key")
    missing = f"No service account found with id '{made['id']}'."
    assert_error(admin.get(path), 404, missing, param="service_account_id")
    assert_error(admin.delete(path), 404, missing, param="service_account_id")
    assert_error(
        admin.get(key_path), 404, f"No API key found with id '{key['id']}'.", param="api_key_id"
    )
    assert ok(admin.get(f"/organization/projects/{project}/api_keys"))["data"] == []


def test_a_service_account_without_a_key(admin: httpx.Client) -> None:
    project = new_project(admin)["id"]
    made = ok(
        admin.post(
            f"/organization/projects/{project}/service_accounts",
            json={"name": "watcher", "create_service_account_only": True},
        )
    )
    assert (made["role"], made["api_key"]) == ("none", None)
    assert ok(admin.get(f"/organization/projects/{project}/api_keys"))["data"] == []
    assert_error(
        admin.post(f"/organization/projects/{project}/service_accounts", json={}),
        400,
        "Missing required parameter: 'name'.",
        param="name",
    )


def test_a_deleted_key_stops_at_once(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    """A key made on the command line, listed as a user's, deleted by the admin: the next
    request fails, though the server had just checked (and cached) it."""
    project = new_project(admin)["id"]
    key = server.create_key(org, project)
    client = http(key)
    assert ok(client.get("/files"))["data"] == []  # checked, and trusted for a second
    (listed,) = ok(admin.get(f"/organization/projects/{project}/api_keys"))["data"]
    assert listed["owner"] == {"type": "user"} and listed["name"] == "Secret key"
    assert listed["redacted_value"] == key[:7] + "****" + key[-4:]
    gone = ok(admin.delete(f"/organization/projects/{project}/api_keys/{listed['id']}"))
    assert gone == {
        "object": "organization.project.api_key.deleted",
        "id": listed["id"],
        "deleted": True,
    }
    assert_error(client.get("/files"), 401, INCORRECT, code="invalid_api_key")
    missing = f"No API key found with id '{listed['id']}'."
    assert_error(
        admin.delete(f"/organization/projects/{project}/api_keys/{listed['id']}"),
        404,
        missing,
        param="api_key_id",
    )
    for access, count in (("active", 0), ("any", 0), ("inactive", 0)):
        page = ok(
            admin.get(
                f"/organization/projects/{project}/api_keys",
                params={"owner_project_access": access},
            )
        )
        assert len(page["data"]) == count
    other = server.create_key(org, project)
    shown = ok(
        admin.get(
            f"/organization/projects/{project}/api_keys", params={"owner_project_access": "active"}
        )
    )
    assert [k["redacted_value"] for k in shown["data"]] == [other[:7] + "****" + other[-4:]]
    inactive = ok(
        admin.get(
            f"/organization/projects/{project}/api_keys",
            params={"owner_project_access": "inactive"},
        )
    )
    assert inactive["data"] == []
    assert_error(
        admin.get(
            f"/organization/projects/{project}/api_keys", params={"owner_project_access": "x"}
        ),
        400,
        "Invalid value for 'owner_project_access': 'x'. Supported values are: 'active', "
        "'inactive' and 'any'.",
        param="owner_project_access",
    )


def test_archiving_a_project_stops_its_keys(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    project = new_project(admin)["id"]
    account = new_account(admin, project)
    keys = [account["api_key"]["value"], server.create_key(org, project)]
    clients = [http(k) for k in keys]
    for c in clients:
        assert ok(c.get("/files"))["data"] == []
    ok(admin.post(f"/organization/projects/{project}/archive"))
    for c in clients:
        assert_error(c.get("/files"), 401, INCORRECT, code="invalid_api_key")
    assert ok(admin.get(f"/organization/projects/{project}/api_keys"))["data"] == []
    message = f"Project '{project}' is archived. Archived projects cannot be used or updated."
    base = f"/organization/projects/{project}/service_accounts"
    assert_error(admin.get(base), 400, message, param="project_id")
    assert_error(admin.post(base, json={"name": "late"}), 400, message, param="project_id")
    assert_error(admin.get(f"{base}/{account['id']}"), 400, message, param="project_id")
    assert_error(admin.delete(f"{base}/{account['id']}"), 400, message, param="project_id")


# -- who may call what --


def _fill(path: str, ids: dict[str, str]) -> str:
    return path.format(**ids)


def test_another_organizations_admin_key_finds_nothing(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    project = new_project(admin, "Secret")
    account = new_account(admin, project["id"])
    cli_key = server.create_key(org, project["id"])
    (admin_key,) = ok(admin.get("/organization/admin_api_keys"))["data"]
    ids = {
        "p": project["id"],
        "k": admin_key["id"],
        "s": account["id"],
        "a": account["api_key"]["id"],
    }
    stranger = http(server.create_admin_key("org-" + uuid.uuid4().hex[:10]))
    for method, path, body in ROUTES:
        if "{" not in path:
            continue
        answer = stranger.request(method, _fill(path, ids), json=body)
        assert answer.status_code == 404, (method, path, answer.text)
        message = answer.json()["error"]["message"]
        assert re.fullmatch(r"No (project|API key) found with id '[^']+'\.", message), message
    # Its own listings hold none of it, and do not page from it.
    assert (
        ok(stranger.get("/organization/projects", params={"include_archived": "true"}))["data"]
        == []
    )
    assert admin_key["id"] not in [
        k["id"] for k in ok(stranger.get("/organization/admin_api_keys"))["data"]
    ]
    for path, after in (
        ("/organization/projects", project["id"]),
        ("/organization/admin_api_keys", admin_key["id"]),
    ):
        assert_error(
            stranger.get(path, params={"after": after}),
            400,
            re.compile(r"No .* found with id .*"),
            param="after",
        )
    # All of it is still there, and works.
    assert ok(admin.get(f"/organization/projects/{project['id']}")) == project
    assert ok(http(cli_key).get("/files"))["data"] == []
    assert ok(http(account["api_key"]["value"]).get("/files"))["data"] == []
    listed = ok(admin.get(f"/organization/projects/{project['id']}/api_keys"))["data"]
    assert len(listed) == 2


def test_a_project_key_reaches_no_admin_route(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    project = new_project(admin)
    account = new_account(admin, project["id"])
    (admin_key,) = ok(admin.get("/organization/admin_api_keys"))["data"]
    ids = {
        "p": project["id"],
        "k": admin_key["id"],
        "s": account["id"],
        "a": account["api_key"]["id"],
    }
    for key in (server.create_key(org, project["id"]), account["api_key"]["value"]):
        client = http(key)
        for method, path, body in ROUTES:
            scope = "api.management.read" if method == "GET" else "api.management.write"
            assert_error(
                client.request(method, _fill(path, ids), json=body), 403, ADMIN_SCOPE.format(scope)
            )
    assert ok(admin.get(f"/organization/projects/{project['id']}")) == project  # untouched


def test_an_admin_key_reaches_no_data_route(
    http: Callable[[str | None], httpx.Client], admin: httpx.Client
) -> None:
    for method, path, scope in [
        ("GET", "/files", "api.files.read"),
        ("POST", "/files", "api.files.write"),
        ("GET", "/files/file-abc", "api.files.read"),
        ("GET", "/files/file-abc/content", "api.files.read"),
        ("DELETE", "/files/file-abc", "api.files.write"),
        ("POST", "/uploads", "api.files.write"),
        ("GET", "/uploads", "api.files.read"),
        ("GET", "/batches", "api.batch.read"),
        ("POST", "/batches", "api.batch.write"),
        ("POST", "/batches/batch_abc/cancel", "api.batch.write"),
    ]:
        answer = admin.request(method, path)
        assert_error(answer, 401, DATA_SCOPE.format(scope))
    # The console's API reads files: the same answer.
    answer = admin.get(admin.base_url.join("/console/api/usage"))
    assert_error(answer, 401, DATA_SCOPE.format("api.files.read"))


def test_keys_that_are_not_admin_keys(
    server: AppServer, http: Callable[[str | None], httpx.Client], org: str
) -> None:
    for client in (http(None), http("sk-admin-" + "x" * 43), http("sk-" + "y" * 43)):
        answer = client.get("/organization/projects")
        assert answer.status_code == 401
    assert_error(
        http(None).get("/organization/projects"),
        401,
        re.compile(r"You didn't provide an API key\. .*"),
    )
    assert_error(
        http("sk-admin-" + "x" * 43).get("/organization/projects"),
        401,
        INCORRECT,
        code="invalid_api_key",
    )
    assert_error(http("sk-admin-" + "x" * 43).get("/files"), 401, INCORRECT, code="invalid_api_key")
    admin = http(server.create_admin_key(org))
    assert (
        ok(admin.get("/organization/projects", headers={"OpenAI-Organization": org}))["data"] == []
    )
    assert admin.get("/organization/projects").headers["openai-organization"] == org
    assert_error(
        admin.get("/organization/projects", headers={"OpenAI-Organization": "org-other"}),
        401,
        "OpenAI-Organization header should match organization for API key",
        code="mismatched_organization",
    )


@pytest.mark.parametrize(
    "path",
    [
        "/organization/projects/proj_nope",
        "/organization/projects/%00",
        "/organization/projects/proj_nope/service_accounts",
        "/organization/projects/proj_nope/api_keys",
    ],
)
def test_unknown_ids(admin: httpx.Client, path: str) -> None:
    answer = admin.get(path)
    assert answer.status_code == 404
    assert re.fullmatch(r"No project found with id '.*'\.", answer.json()["error"]["message"])


def test_unknown_ids_under_a_project(admin: httpx.Client) -> None:
    project = new_project(admin)["id"]
    accounts = f"/organization/projects/{project}/service_accounts"
    for path, param, what in [
        (f"{accounts}/svc_acct_nope", "service_account_id", "service account"),
        (f"{accounts}/bad%20id", "service_account_id", "service account"),
        (f"/organization/projects/{project}/api_keys/key_nope", "api_key_id", "API key"),
        ("/organization/admin_api_keys/key_nope", "key_id", "API key"),
    ]:
        for method in ("GET", "DELETE"):
            answer = admin.request(method, path)
            wanted = re.compile(f"No {what} found with id '.*'\\.")
            assert_error(answer, 404, wanted, param=param)


def test_no_default_project_and_no_route_beyond_openais_subset(
    server: AppServer, http: Callable[[str | None], httpx.Client], admin: httpx.Client, org: str
) -> None:
    """The project of a first key (`proj_default`) is renamed and archived like any other;
    the Administration API's calls this server does not have are the usual 404."""
    key = http(server.create_key(org, "proj_default"))
    path = "/organization/projects/proj_default"
    assert ok(admin.post(path, json={"name": "Default"}))["name"] == "Default"
    assert ok(admin.post(f"{path}/archive"))["status"] == "archived"
    assert_error(key.get("/files"), 401, INCORRECT, code="invalid_api_key")
    project = new_project(admin)["id"]
    account = new_account(admin, project)["id"]
    base = f"/organization/projects/{project}/service_accounts/{account}"
    for method, where in [
        ("POST", base),
        ("POST", f"{base}/api_keys"),
    ]:
        assert_error(
            admin.request(method, where, json={"name": "x"}),
            404,
            f"Invalid URL ({method} /v1{where})",
        )
    # An OpenAI-Project header means nothing to an admin key (it has no project).
    assert ok(admin.get("/organization/projects", headers={"OpenAI-Project": "proj_any"}))
