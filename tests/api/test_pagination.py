"""Paging on (created_at, id): over a thousand files, many sharing each second."""

from __future__ import annotations

import collections
import concurrent.futures
from collections.abc import Callable
from typing import Any

import pytest

from .._inprocess import AppServer
from ._contract import assert_error, assert_schema

COUNT = 1200  # over 999, the largest page size tested below that needs two pages


@pytest.fixture(scope="module")
def many(server: AppServer) -> tuple[str, list[dict[str, Any]]]:
    """A tenant with COUNT files, uploaded concurrently so that many share each second."""
    key = server.create_key("org-paging", "proj_paging")

    with server.http(key, timeout=60) as http:

        def upload(i: int) -> dict[str, Any]:
            purpose = "batch" if i % 5 == 0 else "fine-tune"
            r = http.post(
                "/files", files={"file": (f"{i}.jsonl", b"{}\n")}, data={"purpose": purpose}
            )
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            files = list(pool.map(upload, range(COUNT)))
    return key, files


def _sorted(files: list[dict[str, Any]], order: str) -> list[str]:
    ranked = sorted(files, key=lambda f: (f["created_at"], f["id"]), reverse=order == "desc")
    return [f["id"] for f in ranked]


def test_many_files_share_a_second(many: tuple[str, list[dict[str, Any]]]) -> None:
    """Ties on created_at are what the id tie-break is for: the listing tests below are
    only worth their name if many files share a second (hundreds on an idle machine; the
    bound leaves room for a loaded CI runner)."""
    per_second = collections.Counter(f["created_at"] for f in many[1])
    assert max(per_second.values()) >= 20, per_second


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("limit", [1, 7, 100, 999, 10_000])
def test_auto_pagination_sees_each_file_once_in_order(
    server: AppServer, many: tuple[str, list[dict[str, Any]]], order: str, limit: int
) -> None:
    key, files = many
    with server.openai(key) as client:
        seen = [f.id for f in client.files.list(limit=limit, order=order)]  # type: ignore[arg-type]
    assert seen == _sorted(files, order)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_purpose_filter_pages(
    server: AppServer, many: tuple[str, list[dict[str, Any]]], order: str
) -> None:
    key, files = many
    batch = [f for f in files if f["purpose"] == "batch"]
    with server.openai(key) as client:
        seen = [f.id for f in client.files.list(purpose="batch", limit=33, order=order)]  # type: ignore[arg-type]
    assert seen == _sorted(batch, order)


def test_has_more_and_cursor_ids_are_exact(
    server: AppServer, many: tuple[str, list[dict[str, Any]]]
) -> None:
    key, files = many
    expected = _sorted(files, "desc")
    with server.http(key) as http:
        full = http.get("/files").json()
        assert_schema("ListFilesResponse", full)
        assert [f["id"] for f in full["data"]] == expected and full["has_more"] is False
        page = http.get("/files", params={"limit": COUNT - 1}).json()
        assert page["has_more"] is True
        assert page["first_id"] == expected[0] and page["last_id"] == expected[-2]
        last = http.get("/files", params={"limit": 5, "after": expected[-2]}).json()
        assert [f["id"] for f in last["data"]] == [expected[-1]]
        assert last["has_more"] is False
        empty = http.get("/files", params={"after": expected[-1]}).json()
        assert empty == {
            "object": "list",
            "data": [],
            "first_id": None,
            "last_id": None,
            "has_more": False,
        }
        exact = http.get("/files", params={"limit": COUNT}).json()
        assert len(exact["data"]) == COUNT and exact["has_more"] is False


def test_default_limit_is_10000(server: AppServer, new_key: Callable[..., str]) -> None:
    key = new_key()
    with server.http(key) as http:
        r = http.get("/files")
        assert r.json()["data"] == []
        assert_error(
            http.get("/files", params={"limit": 10_001}),
            400,
            "Invalid 'limit': expected an integer between 1 and 10000, got '10001'.",
            param="limit",
        )


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"order": "asc"},
        {"limit": "23"},
        {"limit": "21", "order": "asc"},
        {"purpose": "fine-tune"},
        {"purpose": "batch", "order": "asc", "limit": "7"},
        {"limit": "10000"},
    ],
)
def test_a_long_listing_streamed_in_batches_is_the_same_json(
    many: tuple[str, list[dict[str, Any]]],
    server: AppServer,
    monkeypatch: pytest.MonkeyPatch,
    query: dict[str, str],
) -> None:
    """A listing longer than a batch is written as it is read, batch by batch (memory:
    one batch, not the page); its bytes are those of the listing rendered whole."""
    from openai_files.server import settings

    key, files = many
    with server.http(key) as http:
        monkeypatch.setattr(settings, "LIST_BATCH", 100_000)  # rendered whole
        whole = http.get("/files", params=query)
        third = _sorted(files, query.get("order", "desc"))[len(files) // 3]
        after = http.get("/files", params={**query, "after": third})
        monkeypatch.setattr(settings, "LIST_BATCH", 4)
        streamed = http.get("/files", params=query)
        streamed_after = http.get("/files", params={**query, "after": third})
    assert whole.status_code == streamed.status_code == 200
    assert "content-length" in whole.headers and "content-length" not in streamed.headers
    assert streamed.content == whole.content
    assert streamed_after.content == after.content
    assert_schema("ListFilesResponse", streamed.json())
