"""Downloads: length, type, Range (206/416), validators, HEAD."""

from __future__ import annotations

from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from .._inprocess import AppServer
from ._contract import assert_error

CONTENT = bytes(range(256)) * 40  # 10,240 bytes


@pytest.fixture
def stored(server: AppServer, api_key: str) -> Iterator[tuple[httpx.Client, dict[str, object]]]:
    with server.http(api_key) as c:
        made = c.post(
            "/files",
            files={"file": ("data.bin", CONTENT, "application/x-thing")},
            data={"purpose": "vision"},
        ).json()
        yield c, made


def test_full_download_headers(stored: tuple[httpx.Client, dict[str, object]]) -> None:
    c, made = stored
    r = c.get(f"/files/{made['id']}/content", headers={"Accept": "application/binary"})
    assert r.status_code == 200
    assert r.content == CONTENT
    assert r.headers["content-length"] == str(len(CONTENT))
    assert r.headers["content-type"] == "application/x-thing"
    assert r.headers["etag"] == f'"{made["id"]}"'
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["content-disposition"] == (
        "attachment; filename=\"data.bin\"; filename*=UTF-8''data.bin"
    )
    assert parsedate_to_datetime(r.headers["last-modified"]).timestamp() == made["created_at"]


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        pytest.param("bytes=0-0", 0, 1, id="first-byte"),
        pytest.param("bytes=100-199", 100, 200, id="middle"),
        pytest.param("bytes=10000-", 10000, 10240, id="open-ended"),
        pytest.param("bytes=-40", 10200, 10240, id="suffix"),
        pytest.param("bytes=-99999", 0, 10240, id="suffix-longer-than-file"),
        pytest.param("bytes=10000-99999", 10000, 10240, id="end-past-size"),
    ],
)
def test_range(
    stored: tuple[httpx.Client, dict[str, object]], header: str, start: int, end: int
) -> None:
    c, made = stored
    r = c.get(f"/files/{made['id']}/content", headers={"Range": header})
    assert r.status_code == 206
    assert r.content == CONTENT[start:end]
    assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(CONTENT)}"
    assert r.headers["content-length"] == str(end - start)


@pytest.mark.parametrize("header", ["bytes=10240-", "bytes=99999-100000", "bytes=-0"])
def test_range_not_satisfiable(stored: tuple[httpx.Client, dict[str, object]], header: str) -> None:
    c, made = stored
    r = c.get(f"/files/{made['id']}/content", headers={"Range": header})
    assert_error(r, 416, "Requested range not satisfiable.")
    assert r.headers["content-range"] == f"bytes */{len(CONTENT)}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "items=0-5", "bytes=abc", "bytes=5-2"])
def test_ranges_we_ignore_get_the_whole_file(
    stored: tuple[httpx.Client, dict[str, object]], header: str
) -> None:
    c, made = stored
    r = c.get(f"/files/{made['id']}/content", headers={"Range": header})
    assert r.status_code == 200 and r.content == CONTENT


def test_conditional_requests(stored: tuple[httpx.Client, dict[str, object]]) -> None:
    c, made = stored
    url = f"/files/{made['id']}/content"
    etag = c.get(url).headers["etag"]
    r = c.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b""
    stale = c.get(url, headers={"Range": "bytes=0-9", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == CONTENT
    fresh = c.get(url, headers={"Range": "bytes=0-9", "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == CONTENT[:10]


def test_head(stored: tuple[httpx.Client, dict[str, object]]) -> None:
    c, made = stored
    r = c.head(f"/files/{made['id']}/content")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(len(CONTENT))
    assert r.content == b""
