"""Two organizations, two projects each: no route ever shows one tenant another's file."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from .._inprocess import AppServer
from ._contract import assert_error


@pytest.fixture
def tenants(server: AppServer) -> Iterator[dict[str, httpx.Client]]:
    run = uuid.uuid4().hex[:6]
    clients = {}
    # The same project name in both organizations: the pair is the owner, not the name.
    for org in ("a", "b"):
        for project in ("p1", "p2"):
            key = server.create_key(f"org-{org}{run}", f"proj_{project}")
            clients[f"{org}/{project}"] = server.http(key)
    yield clients
    for c in clients.values():
        c.close()


def test_every_route_across_tenants(tenants: dict[str, httpx.Client]) -> None:
    owner = tenants["a/p1"]
    made = owner.post(
        "/files", files={"file": ("secret.jsonl", b'{"secret": 1}\n')}, data={"purpose": "batch"}
    ).json()
    file_id = made["id"]
    for name, other in tenants.items():
        if name == "a/p1":
            continue
        missing = f"No such File object: {file_id}"
        assert_error(other.get(f"/files/{file_id}"), 404, missing, param="id")
        assert_error(other.get(f"/files/{file_id}/content"), 404, missing, param="id")
        assert other.head(f"/files/{file_id}/content").status_code == 404
        assert_error(other.delete(f"/files/{file_id}"), 404, missing, param="id")
        assert other.get("/files").json()["data"] == []
        assert other.get("/files", params={"purpose": "batch"}).json()["data"] == []
        assert_error(other.get("/files", params={"after": file_id}), 400, missing, param="after")
    # Still whole for its owner.
    assert owner.get(f"/files/{file_id}").json() == made
    assert owner.get(f"/files/{file_id}/content").content == b'{"secret": 1}\n'
    assert [f["id"] for f in owner.get("/files").json()["data"]] == [file_id]


def test_listing_is_per_project(tenants: dict[str, httpx.Client]) -> None:
    ids = {}
    for name, c in tenants.items():
        ids[name] = c.post(
            "/files", files={"file": (f"{name}.txt", b"x")}, data={"purpose": "vision"}
        ).json()["id"]
    for name, c in tenants.items():
        assert [f["id"] for f in c.get("/files").json()["data"]] == [ids[name]]


def test_organization_header(tenants: dict[str, httpx.Client], server: AppServer) -> None:
    c = tenants["b/p2"]
    r = c.get("/files")
    org = r.headers["openai-organization"]
    assert org.startswith("org-b")
    assert c.get("/files", headers={"OpenAI-Organization": org}).status_code == 200
    assert_error(
        c.get("/files", headers={"OpenAI-Organization": "org-someone-else"}),
        401,
        "OpenAI-Organization header should match organization for API key",
        code="mismatched_organization",
    )
    assert_error(
        c.get("/files", headers={"OpenAI-Project": "proj_p1"}),
        401,
        "OpenAI-Project header should match project for API key",
        code="mismatched_project",
    )
