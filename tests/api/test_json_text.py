"""What a request says in JSON is JSON (`NaN`, `Infinity` are not) and text.

A lone surrogate (`"\\ud800"` in JSON: no Unicode character) wherever a string arrives is a
400 in the envelope, never a 500: a database cannot store it, and an answer that echoes it
cannot be written as UTF-8. JSON bodies are refused where they are read, naming the
string; anywhere else (a path, a query, a form) the bytes are decoded with replacement,
and the answer is the usual one for a wrong value. Both deployments."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Route

from openai_files.server.routes._common import JSON_PARSE_ERROR

from .._inprocess import AppServer
from ._contract import assert_error

LONE = "\ud800"
WHY = (
    "holds a lone surrogate (a \\ud800-\\udfff escape that pairs with no other), which is "
    "not a Unicode character; send text as UTF-8."
)


@pytest.fixture
def http(server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    with server.http(api_key, timeout=60) as c:
        yield c


@pytest.fixture
def root(server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    with server.http(api_key, base_url=server.root_url, timeout=60) as c:
        yield c


def post_json(http: httpx.Client, url: str, body: Any) -> httpx.Response:
    """POST `body` as JSON, written as Python writes it: a lone surrogate as `\\ud800`."""
    content = json.dumps(body).encode()
    return http.post(url, content=content, headers={"content-type": "application/json"})


def new_upload(http: httpx.Client) -> str:
    body = {"filename": "a.txt", "purpose": "assistants", "bytes": 1, "mime_type": "text/plain"}
    response = post_json(http, "/uploads", body)
    assert response.status_code == 200, response.text
    upload_id: str = response.json()["id"]
    return upload_id


def add_part(http: httpx.Client, upload_id: str) -> str:
    response = http.post(f"/uploads/{upload_id}/parts", files={"data": ("blob", b"x")})
    assert response.status_code == 200, response.text
    part_id: str = response.json()["id"]
    return part_id


def test_a_filename_of_a_new_upload(http: httpx.Client) -> None:
    body = {"filename": f"a{LONE}.txt", "purpose": "batch", "bytes": 1, "mime_type": "text/plain"}
    assert_error(
        post_json(http, "/uploads", body),
        400,
        f"Invalid value for 'filename': 'a\\ud800.txt' {WHY}",
        param="filename",
    )
    assert http.get("/uploads").json()["data"] == []


def test_an_unknown_parameter_name(http: httpx.Client) -> None:
    body = {"filename": "a.txt", "purpose": "batch", "bytes": 1, "mime_type": "text/plain"}
    assert_error(
        post_json(http, "/uploads", {**body, LONE: 1}),
        400,
        f"Invalid parameter name '\\ud800': it {WHY}",
    )


def test_a_part_id_of_a_completion(http: httpx.Client) -> None:
    upload_id = new_upload(http)
    part_id = add_part(http, upload_id)
    assert_error(
        post_json(http, f"/uploads/{upload_id}/complete", {"part_ids": [part_id, LONE]}),
        400,
        f"Invalid value for 'part_ids[1]': '\\ud800' {WHY}",
        param="part_ids[1]",
    )
    done = post_json(http, f"/uploads/{upload_id}/complete", {"part_ids": [part_id]})
    assert done.status_code == 200, done.text


def test_a_file_id_of_a_download_link(root: httpx.Client) -> None:
    assert_error(
        post_json(root, "/console/api/download-links", {"file_id": f"file-{LONE}"}),
        400,
        f"Invalid value for 'file_id': 'file-\\ud800' {WHY}",
        param="file_id",
    )


def variants(body: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(param, body) for each string of `body` (a leaf value or a key) made a lone
    surrogate in turn, and one with a new key that is one."""
    if isinstance(body, dict):
        for key, value in body.items():
            inner = f"{path}.{key}" if path else key
            renamed = {(k + LONE if k == key else k): v for k, v in body.items()}
            yield f"name:{inner}", renamed
            for param, changed in variants(value, inner):
                yield param, {**body, key: changed}
    elif isinstance(body, list):
        for i, value in enumerate(body):
            for param, changed in variants(value, f"{path}[{i}]"):
                yield param, [*body[:i], changed, *body[i + 1 :]]
    elif isinstance(body, str):
        yield path, body[:3] + LONE


def test_every_string_of_every_json_body(http: httpx.Client, root: httpx.Client) -> None:
    """Each string of the three JSON bodies the server reads, and each key, is refused when
    it holds a lone surrogate, with its path as param (a key's: where it is)."""
    upload_id = new_upload(http)
    part_id = add_part(http, upload_id)
    valid = {
        "filename": "a.jsonl",
        "purpose": "batch",
        "bytes": 1,
        "mime_type": "text/plain",
        "expires_after": {"anchor": "created_at", "seconds": 3600},
    }
    routes = [
        (http, "/uploads", valid),
        (http, f"/uploads/{upload_id}/complete", {"part_ids": [part_id], "md5": "0" * 32}),
        (root, "/console/api/download-links", {"file_id": "file-abc"}),
    ]
    seen = []
    for client, url, body in routes:
        for param, changed in variants(body):
            response = post_json(client, url, changed)
            if param.startswith("name:"):
                where = param.removeprefix("name:").rpartition(".")[0]
                inside = f" in '{where}'" if where else ""
                message = f"Invalid parameter name '.*'{re.escape(inside)}: it {re.escape(WHY)}"
                assert_error(response, 400, re.compile(message, re.S), param=where or None)
            else:
                message = f"Invalid value for '{re.escape(param)}': '.*' {re.escape(WHY)}"
                assert_error(response, 400, re.compile(message, re.S), param=param)
            seen.append(param)
    assert len(seen) == 17, seen
    assert [u["id"] for u in http.get("/uploads").json()["data"]] == [upload_id]


SURROGATE_BYTES = "%ED%A0%80"  # UTF-8's way of writing U+D800, which UTF-8 refuses


def test_every_route_with_a_surrogate_in_its_path_query_or_form(
    server: AppServer, http: httpx.Client, root: httpx.Client
) -> None:
    """Paths, queries and form fields arrive as bytes, decoded with replacement (or as
    Latin-1): a surrogate written in them is never a 500, on any route."""
    routes = [
        (route.path, method)
        for route in server.app.routes
        if isinstance(route, Route)
        for method in sorted(route.methods or ())
        if method != "HEAD"
    ]
    assert len(routes) > 15
    query = "&".join(
        f"{name}={SURROGATE_BYTES}"
        for name in ("purpose", "after", "order", "limit", "status", "anchor")
    )
    for path, method in routes:
        url = re.sub(r"\{[^}]+\}", f"x{SURROGATE_BYTES}", path)
        client = http if url.startswith("/v1/") else root
        response = client.request(method, url.removeprefix("/v1") + "?" + query)
        assert response.status_code < 500, (method, url, response.text)
        if response.headers.get("content-type") == "application/json":
            assert response.json() is not None
    bad = b"\xed\xa0\x80"
    forms = [
        (b'name="purpose"', bad, b"vision"),
        (b'name="expires_after"', b'{"anchor": "\\ud800", "seconds": 3600}', b"vision"),
        (b'name="expires_after[anchor]"', bad, b"vision"),
        (b'name="file"; filename="a' + bad + b'.txt"', b"x", b"vision"),
        (b"name=\"file\"; filename*=UTF-8''a%ED%A0%80.txt", b"x", b"vision"),
    ]
    for disposition, value, purpose in forms:
        parts = [(b'name="purpose"', purpose)]
        if b'name="file"' in disposition:
            parts.append((disposition, value))
        else:
            parts += [(disposition, value), (b'name="file"; filename="a.txt"', b"x")]
        body = b"".join(
            b"--b\r\nContent-Disposition: form-data; " + d + b"\r\n\r\n" + v + b"\r\n"
            for d, v in parts
        )
        response = http.post(
            "/files",
            content=body + b"--b--\r\n",
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert response.status_code < 500, (disposition, response.text)
        assert response.json() is not None


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_not_json(
    http: httpx.Client, root: httpx.Client, constant: str
) -> None:
    """As any JSON parser but Python's, the server refuses them: in the JSON bodies, and in
    the `expires_after` field of an upload form."""
    upload_id = new_upload(http)
    bodies = [
        (
            http,
            "/uploads",
            '{"filename": "a.txt", "purpose": "batch", "bytes": %s, "mime_type": "text/plain"}',
        ),
        (
            http,
            "/uploads",
            '{"filename": "a.txt", "purpose": "batch", "bytes": 1, '
            '"mime_type": "text/plain", "expires_after": {"anchor": "created_at", "seconds": %s}}',
        ),
        (http, f"/uploads/{upload_id}/complete", '{"part_ids": [], "x": [%s]}'),
        (root, "/console/api/download-links", '{"file_id": "file-abc", "n": %s}'),
    ]
    for client, url, template in bodies:
        response = client.post(
            url, content=template % constant, headers={"content-type": "application/json"}
        )
        assert_error(response, 400, JSON_PARSE_ERROR)
    form = http.post(
        "/files",
        data={
            "purpose": "batch",
            "expires_after": f'{{"anchor": "created_at", "seconds": {constant}}}',
        },
        files={"file": ("a.jsonl", b"{}\n")},
    )
    assert_error(
        form,
        400,
        'Invalid \'expires_after\': expected a JSON object like {"anchor": "created_at", '
        f'"seconds": 3600}}, got \'{{"anchor": "created_at", "seconds": {constant}}}\'.',
        param="expires_after",
    )
