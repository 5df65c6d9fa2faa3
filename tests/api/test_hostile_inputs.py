"""Hostile inputs: every one a clean 4xx in the envelope (or the documented success).

Each case runs on both deployments; PostgreSQL refuses a NUL byte in text, so a value that
reaches a store unchecked shows up here as a 500 on {PostgreSQL, S3}.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import assert_error

ALLOWED = "['assistants', 'batch', 'fine-tune', 'vision', 'user_data', 'evals']"
BOUNDARY = "hostile-boundary-1234"


@pytest.fixture
def http(server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    with server.http(api_key, timeout=60) as c:
        yield c


def _part(name: str, body: bytes, *, extra: str = "", headers: bytes = b"") -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"{extra}\r\n'.encode()
    return f"--{BOUNDARY}\r\n".encode() + disposition + headers + b"\r\n" + body + b"\r\n"


def _body(*parts: bytes) -> bytes:
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def _post(http: httpx.Client, body: bytes, boundary: str = BOUNDARY) -> httpx.Response:
    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    return http.post("/files", content=body, headers=headers)


def _file_part(content: bytes = b"x", filename: str = "a.txt", ctype: bytes | None = None) -> bytes:
    headers = b"" if ctype is None else b"Content-Type: " + ctype + b"\r\n"
    return _part("file", content, extra=f'; filename="{filename}"', headers=headers)


def _upload(http: httpx.Client, *fields: bytes, content: bytes = b"x") -> httpx.Response:
    return _post(http, _body(_part("purpose", b"vision"), *fields, _file_part(content)))


def _assert_nothing_stored(http: httpx.Client) -> None:
    assert http.get("/files").json()["data"] == []


def _assert_stored(http: httpx.Client, answer: httpx.Response, content: bytes) -> None:
    """The upload succeeded, and the one file stored holds exactly `content`."""
    assert answer.status_code == 200, answer.text
    made = answer.json()
    assert made["bytes"] == len(content)
    assert [f["id"] for f in http.get("/files").json()["data"]] == [made["id"]]
    stored = http.get(f"/files/{made['id']}/content")
    assert stored.status_code == 200, stored.text
    assert stored.content == content


# -- ids, cursors and purposes outside their alphabet (defect 5) ---------------------------

BAD_IDS = [
    "file-%00abc",
    "file-abc%00",
    "file-%0Aabc",
    "file-%0D%0Aabc",
    "file-%1B%5B31mred",
    "file-%09abc",
    "file-a%20b",
    "file-%E2%82%AC",
    "file-%F0%9F%98%80",
    "%E2%82%AC",
    "file-%FF%FE",
    "file-",
    "FILE-abcdef",
    "file_abcdef",
    "file-abc.def",
    "file-abc%27%3B--",
    "file-" + "a" * 65,
    "x" * 2000,
]


@pytest.mark.parametrize("raw", BAD_IDS)
def test_bad_file_id_is_a_404_on_every_route(http: httpx.Client, raw: str) -> None:
    expected = f"No such File object: {unquote(raw)}"
    assert_error(http.get(f"/files/{raw}"), 404, expected, param="id")
    assert_error(http.delete(f"/files/{raw}"), 404, expected, param="id")
    assert_error(http.get(f"/files/{raw}/content"), 404, expected, param="id")
    assert http.head(f"/files/{raw}/content").status_code == 404


BAD_CURSORS = [
    "file-\x00abc",
    "file-abc\x00",
    "file-\nabc",
    "file-\x1b[31m",
    "file-€",
    "file-😀",
    "file-",
    "file-abc def",
    "file-" + "a" * 65,
    "abc",
    "' OR 1=1 --",
]


@pytest.mark.parametrize("after", BAD_CURSORS)
def test_bad_cursor_is_a_400(http: httpx.Client, after: str) -> None:
    assert_error(
        http.get("/files", params={"after": after}),
        400,
        f"No such File object: {after}",
        param="after",
    )


BAD_LIST_PURPOSES = [
    "vision\x00",
    "\x00",
    "vision\n",
    "vi sion",
    "visión",
    "\x1b[31m",
    "vision;drop",
    "vision'",
    "a" * 65,
]


@pytest.mark.parametrize("purpose", BAD_LIST_PURPOSES)
def test_bad_list_purpose_is_a_400(http: httpx.Client, purpose: str) -> None:
    assert_error(
        http.get("/files", params={"purpose": purpose}),
        400,
        f"Invalid value for 'purpose': {purpose!r}. A purpose is letters, digits, '-' and "
        "'_' (e.g. 'assistants').",
        param="purpose",
    )


@pytest.mark.parametrize("purpose", ["nope", "ASSISTANTS", "batch_output", "fine-tune-results"])
def test_well_formed_unknown_list_purpose_is_an_empty_page(
    http: httpx.Client, purpose: str
) -> None:
    r = http.get("/files", params={"purpose": purpose})
    assert r.status_code == 200, r.text
    assert r.json()["data"] == []


@pytest.mark.parametrize(
    "purpose", ["vision\x00", "\x00", "batch\x00x", "vision\x1b", "💥", "vision ", "Vision"]
)
def test_bad_upload_purpose_is_a_400(http: httpx.Client, purpose: str) -> None:
    body = _body(_part("purpose", purpose.encode()), _file_part())
    assert_error(
        _post(http, body), 400, f"{purpose!r} is not one of {ALLOWED} - 'purpose'", param="purpose"
    )
    _assert_nothing_stored(http)


# -- limit and order (defect 15) ---------------------------------------------------------


@pytest.mark.parametrize(
    "limit",
    ["\u0665", "1_0", "+5", "-1", " 5", "5 ", "0x10", "1e3", "5.0", "", "0", "10001", "9" * 5000],
)
def test_limit_is_ascii_digits_in_range(http: httpx.Client, limit: str) -> None:
    assert_error(
        http.get("/files", params={"limit": limit}),
        400,
        f"Invalid 'limit': expected an integer between 1 and 10000, got {limit!r}.",
        param="limit",
    )


@pytest.mark.parametrize("order", ["ASC", "asc\x00", "", "desc ", "random", "asc,desc"])
def test_bad_order_is_a_400(http: httpx.Client, order: str) -> None:
    assert_error(
        http.get("/files", params={"order": order}),
        400,
        f"Invalid value for 'order': {order!r}. Supported values are: 'asc' and 'desc'.",
        param="order",
    )


# -- the multipart envelope (defects 6, 13) ---------------------------------------------


@pytest.mark.parametrize("length", [71, 256, 257, 1000])
def test_long_boundary_is_a_400(http: httpx.Client, length: int) -> None:
    boundary = "b" * length
    body = _body(_part("purpose", b"vision"), _file_part()).replace(
        BOUNDARY.encode(), boundary.encode()
    )
    assert_error(
        _post(http, body, boundary),
        400,
        f"The multipart boundary is {length} characters long; at most 70 are allowed (RFC 2046).",
    )
    _assert_nothing_stored(http)


def test_boundary_of_70_characters_is_accepted(http: httpx.Client) -> None:
    boundary = "b" * 70
    # The content holds what a parser that cut the boundary short would take for one.
    content = b"x\r\n--" + b"b" * 69 + b"\r\n--" + b"b" * 71 + b"\r\ny"
    body = _body(_part("purpose", b"vision"), _file_part(content)).replace(
        BOUNDARY.encode(), boundary.encode()
    )
    _assert_stored(http, _post(http, body, boundary), content)


@pytest.mark.parametrize("boundary", [b'"abc "', b"caf\xe9", b"a\tb"])
def test_boundary_outside_printable_ascii_is_a_400(http: httpx.Client, boundary: bytes) -> None:
    headers = {b"content-type": b"multipart/form-data; boundary=" + boundary}
    assert_error(
        http.post("/files", content=b"--x--\r\n", headers=headers),
        400,
        "The multipart boundary may hold only printable ASCII characters (RFC 2046).",
    )


@pytest.mark.parametrize(
    "content_type",
    ["multipart/form-data", "multipart/form-data; boundary=", "multipart/form-data;"],
)
def test_missing_boundary_is_a_400(http: httpx.Client, content_type: str) -> None:
    assert_error(
        http.post("/files", content=b"x", headers={"content-type": content_type}),
        400,
        "The multipart/form-data body has no boundary.",
    )


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "multipart/mixed; boundary=x", "application/x-www-form-urlencoded"],
)
def test_not_multipart_is_a_400(http: httpx.Client, content_type: str) -> None:
    assert_error(
        http.post("/files", content=b"purpose=vision", headers={"content-type": content_type}),
        400,
        f"Invalid Content-Type header ({content_type}), expected multipart/form-data.",
    )


@pytest.mark.parametrize("fields", [99, 1000, 100_000])
def test_too_many_parts_is_a_400(http: httpx.Client, fields: int) -> None:
    # 99 extra fields, `purpose` and `file`: 101 parts, one over the default of 100.
    extra = b"".join(_part(f"f{i}", b"") for i in range(fields))
    started = time.monotonic()
    assert_error(
        _upload(http, extra),
        400,
        "Too many parts in the multipart/form-data body: at most 100 are accepted.",
    )
    assert time.monotonic() - started < 10
    _assert_nothing_stored(http)


def test_parts_up_to_the_limit_are_accepted(http: httpx.Client) -> None:
    extra = b"".join(_part(f"f{i}", b"v") for i in range(98))  # 100 parts in all
    content = b"the file part, the last of 100\n" * 100
    _assert_stored(http, _upload(http, extra, content=content), content)


MALFORMED = re.compile(r"Malformed multipart/form-data body: .+")


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        (b"".join(f"X-H{i}: v\r\n".encode() for i in range(20)), "many headers"),
        (b"X-Long: " + b"v" * 10_000 + b"\r\n", "one long header"),
        (b"X-" + b"n" * 10_000 + b": v\r\n", "a long header name"),
    ],
)
def test_part_headers_are_bounded(http: httpx.Client, headers: bytes, why: str) -> None:
    body = _body(_part("purpose", b"vision"), _part("file", b"x", headers=headers))
    assert_error(_post(http, body), 400, MALFORMED)
    _assert_nothing_stored(http)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"garbage",
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nvis'.encode(),
        f"--{BOUNDARY}\r\nno colon here\r\n\r\nx\r\n--{BOUNDARY}--\r\n".encode(),
    ],
    ids=["empty", "garbage", "cut-short", "bad-header"],
)
def test_malformed_body_is_a_400(http: httpx.Client, body: bytes) -> None:
    r = _post(http, body)
    assert r.status_code == 400, r.text
    assert_error(r, 400, re.compile(r"Malformed multipart/form-data body: .+"))
    _assert_nothing_stored(http)


def test_part_without_a_name_is_a_400(http: httpx.Client) -> None:
    body = _body(f"--{BOUNDARY}\r\nContent-Disposition: form-data\r\n\r\nx\r\n".encode())
    assert_error(_post(http, body), 400, "A multipart part has no name in its Content-Disposition.")


# -- the type a file part declares (defect 1) ---------------------------------------------

BAD_TYPES = [
    b"text/plain\x01x",
    b"text/plain\x0b",
    b"text/plain\x7f",
    b"text/plain\x00",
    b"\x00",
    "text/plain; charset=€".encode(),
    b"text/plain; charset=\xe9",
    b"text\x1b[31m/plain",
    b"text",
    b"text/",
    b"/plain",
    b"text/plain/x",
    b"text/plain; x",
    b'text/plain; a="unterminated',
    b"text/pl ain",
    b"a/" + b"b" * 300,
]


@pytest.mark.parametrize("ctype", BAD_TYPES)
def test_bad_part_type_is_stored_as_octet_stream(http: httpx.Client, ctype: bytes) -> None:
    body = _body(_part("purpose", b"vision"), _file_part(b"hello", ctype=ctype))
    r = _post(http, body)
    assert r.status_code == 200, r.text
    file_id = r.json()["id"]
    got = http.get(f"/files/{file_id}/content")
    assert got.status_code == 200
    assert got.content == b"hello"
    assert got.headers["content-type"] == "application/octet-stream"
    head = http.head(f"/files/{file_id}/content")
    assert head.status_code == 200
    assert head.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    "ctype",
    [
        "text/plain",
        "text/plain; charset=utf-8",
        'text/plain; name="a b; c"',
        "application/vnd.openai+jsonl",
        "image/png;q=1;x=y",
    ],
)
def test_valid_part_type_is_kept(http: httpx.Client, ctype: str) -> None:
    body = _body(_part("purpose", b"vision"), _file_part(b"hello", ctype=ctype.encode()))
    file_id = _post(http, body).json()["id"]
    assert http.get(f"/files/{file_id}/content").headers["content-type"] == ctype


# -- expires_after (defect 15) ----------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        {"anchor": "created_at", "seconds": 3600},
        {"anchor": "created_at", "seconds": "7200"},
        {"anchor": "created_at", "seconds": 2592000, "other": 1},
    ],
)
def test_json_expires_after_is_honoured(http: httpx.Client, value: dict[str, object]) -> None:
    r = _upload(http, _part("expires_after", json.dumps(value).encode()))
    assert r.status_code == 200, r.text
    made = r.json()
    assert made["expires_at"] == made["created_at"] + int(str(value["seconds"]))
    assert http.get(f"/files/{made['id']}").json()["expires_at"] == made["expires_at"]


SECONDS_RANGE = "expected an integer between 3600 and 2592000"


@pytest.mark.parametrize(
    ("raw", "message", "param"),
    [
        (
            '{"anchor": "created_at", "seconds": 3599}',
            f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got '3599'.",
            "expires_after[seconds]",
        ),
        (
            '{"anchor": "created_at", "seconds": 3600.5}',
            f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got '3600.5'.",
            "expires_after[seconds]",
        ),
        (
            '{"anchor": "created_at", "seconds": true}',
            f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got 'true'.",
            "expires_after[seconds]",
        ),
        (
            '{"anchor": "created_at", "seconds": "+3600"}',
            f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got '+3600'.",
            "expires_after[seconds]",
        ),
        (
            '{"anchor": "created_at"}',
            f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got None.",
            "expires_after[seconds]",
        ),
        (
            '{"anchor": "last_used", "seconds": 3600}',
            "Invalid value for 'expires_after[anchor]': 'last_used'. Supported values are: "
            "'created_at'.",
            "expires_after[anchor]",
        ),
        (
            '{"seconds": 3600}',
            "Missing required parameter: 'expires_after[anchor]'.",
            "expires_after[anchor]",
        ),
    ],
)
def test_bad_json_expires_after_values(
    http: httpx.Client, raw: str, message: str, param: str
) -> None:
    assert_error(_upload(http, _part("expires_after", raw.encode())), 400, message, param=param)
    _assert_nothing_stored(http)


@pytest.mark.parametrize(
    "raw", ["3600", "not json", "[1, 2]", "{}", '"created_at"', "null", "{" * 100, "[" * 60_000]
)
def test_json_expires_after_that_is_no_object_is_a_400(http: httpx.Client, raw: str) -> None:
    shown = raw if len(raw) <= 100 else raw[:100] + "..."
    assert_error(
        _upload(http, _part("expires_after", raw.encode())),
        400,
        "Invalid 'expires_after': expected a JSON object like "
        f'{{"anchor": "created_at", "seconds": 3600}}, got {shown!r}.',
        param="expires_after",
    )
    _assert_nothing_stored(http)


def test_json_and_bracket_expires_after_together_is_a_400(http: httpx.Client) -> None:
    fields = _part("expires_after", b'{"anchor": "created_at", "seconds": 3600}') + _part(
        "expires_after[anchor]", b"created_at"
    )
    assert_error(
        _upload(http, fields),
        400,
        "Send 'expires_after' either as one JSON field or as 'expires_after[anchor]' and "
        "'expires_after[seconds]', not both.",
        param="expires_after",
    )


@pytest.mark.parametrize(
    "seconds",
    ["\u0663\u0666\u0660\u0660", "3_600", "+3600", " 3600", "3600 ", "0x1000", "9" * 5000],
)
def test_bracket_expires_after_seconds_are_ascii_digits(http: httpx.Client, seconds: str) -> None:
    fields = _part("expires_after[anchor]", b"created_at") + _part(
        "expires_after[seconds]", seconds.encode()
    )
    assert_error(
        _upload(http, fields),
        400,
        f"Invalid 'expires_after[seconds]': {SECONDS_RANGE}, got {seconds!r}.",
        param="expires_after[seconds]",
    )


# -- filenames (defect 15: filename*) -----------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("; filename=\"plain.txt\"; filename*=UTF-8''caf%C3%A9.txt", "café.txt"),
        ("; filename*=UTF-8''%E2%82%AC%20rates.txt", "€ rates.txt"),
        ("; filename*=utf-8'en'na%C3%AFve.txt", "naïve.txt"),
        ("; filename*=ISO-8859-1''caf%E9.txt", "café.txt"),
        ("; filename*=UTF-8''..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("; filename*=UTF-8''a%00b%0Ac.txt", "abc.txt"),
        ("; filename=\"fallback.txt\"; filename*=UTF-8''%FF%FE.txt", "fallback.txt"),
        ("; filename=\"fallback.txt\"; filename*=KOI8-R''%C1.txt", "fallback.txt"),
        ('; filename="fallback.txt"; filename*=no-quotes.txt', "fallback.txt"),
        # Inside a quoted value it is text, not a parameter (review finding 11).
        ("; filename=\"a; filename*=UTF-8''b.txt\"", "a; filename*=UTF-8''b.txt"),
        ('; filename="x.txt"; FILENAME*="UTF-8\'\'caf%C3%A9.txt"', "café.txt"),
    ],
)
def test_extended_filename(http: httpx.Client, extra: str, expected: str) -> None:
    body = _body(_part("purpose", b"vision"), _part("file", b"x", extra=extra))
    r = _post(http, body)
    assert r.status_code == 200, r.text
    assert r.json()["filename"] == expected


# -- downloads: Range, If-None-Match, Content-Disposition (defect 9) ----------------------


def _stored(http: httpx.Client, content: bytes, filename: str = "a.bin") -> str:
    r = http.post("/files", files={"file": (filename, content)}, data={"purpose": "vision"})
    assert r.status_code == 200, r.text
    file_id: str = r.json()["id"]
    return file_id


@pytest.mark.parametrize("header", ["bytes=-5", "bytes=-1", "bytes=0-", "bytes=0-0", "bytes=-0"])
def test_any_range_of_an_empty_file_is_a_416(http: httpx.Client, header: str) -> None:
    file_id = _stored(http, b"")
    r = http.get(f"/files/{file_id}/content", headers={"Range": header})
    assert_error(r, 416, "Requested range not satisfiable.")
    assert r.headers["content-range"] == "bytes */0"
    assert http.get(f"/files/{file_id}/content").status_code == 200


@pytest.mark.parametrize(
    "header",
    [
        "bytes=+1-2",
        "bytes=1-+2",
        "bytes=\u0660-1",
        "bytes=1_0-",
        "bytes=-",
        "bytes=" + "9" * 30 + "-",
        "bytes=-" + "9" * 5000,
        "bytes=1-2-3",
        "bytes=0x1-2",
        "bytes=a-1",
    ],
)
def test_range_that_is_not_ascii_digits_is_ignored(http: httpx.Client, header: str) -> None:
    file_id = _stored(http, b"0123456789")
    r = http.get(f"/files/{file_id}/content", headers={b"Range": header.encode("utf-8")})
    assert r.status_code == 200, r.text
    assert r.content == b"0123456789"


@pytest.mark.parametrize(
    ("template", "status"),
    [
        ('"{id}"', 304),
        ('W/"{id}"', 304),
        ('"other", "{id}"', 304),
        ('"other",W/"{id}"', 304),
        ('"a" ,  "b" , "{id}"', 304),
        ("*", 304),
        ('"other"', 200),
        ('W/"other"', 200),
        ('"{id}x"', 200),
        ("{id}", 200),
    ],
)
def test_if_none_match(http: httpx.Client, template: str, status: int) -> None:
    file_id = _stored(http, b"abc")
    r = http.get(
        f"/files/{file_id}/content", headers={"If-None-Match": template.format(id=file_id)}
    )
    assert r.status_code == status
    if status == 304:
        assert r.content == b""
        assert r.headers["etag"] == f'"{file_id}"'
    else:
        assert r.content == b"abc"


@pytest.mark.parametrize(
    ("name", "fallback", "encoded"),
    [
        ("plain.txt", "plain.txt", "plain.txt"),
        ("café €.txt", "caf_ _.txt", "caf%C3%A9%20%E2%82%AC.txt"),
        ('say "hi".txt', "say _hi_.txt", "say%20%22hi%22.txt"),
        ("日本.txt", "__.txt", "%E6%97%A5%E6%9C%AC.txt"),
    ],
)
def test_content_disposition_has_an_ascii_fallback(
    http: httpx.Client, name: str, fallback: str, encoded: str
) -> None:
    file_id = _stored(http, b"x", name)
    r = http.get(f"/files/{file_id}/content")
    assert r.headers["content-disposition"] == (
        f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    )


def test_curl_remote_header_name_keeps_the_name(deployment: Deployment, tmp_path: Path) -> None:
    # curl needs a socket: a real server.
    server = deployment.server()
    try:
        api_key = server.create_key("org-curl", "proj_curl")
        headers = {"Authorization": f"Bearer {api_key}"}
        with httpx.Client(base_url=server.base_url, headers=headers) as http:
            file_id = _stored(http, b"bytes of a report", "report-2024.csv")
        done = _curl_download(server.base_url, api_key, file_id, tmp_path)
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report-2024.csv").read_bytes() == b"bytes of a report"


def _curl_download(
    base_url: str, api_key: str, file_id: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    """`curl -OJ`: the file saved under the name the answer's Content-Disposition gives."""
    return subprocess.run(
        [
            "curl",
            "-sS",
            "-OJ",
            "-H",
            f"Authorization: Bearer {api_key}",
            f"{base_url}/files/{file_id}/content",
        ],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
