"""OpenAI's Uploads API against the app, on both deployments: the official SDK's calls
(sync and async), every error the API document lists, tenancy, the quota and expiry."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import openai
import pytest

from openai_files.server import settings as settings_module
from openai_files.server.stores import Owner, PartRecord, StoreUnavailable
from openai_files.server.stores._manifest import part_key

from .._inprocess import ROOT_URL, AppServer, asgi_scope
from .._server import Deployment
from .._server import sql as _sql
from ._contract import assert_error, assert_schema

GiB = 1024**3


def _check_upload(raw: dict[str, Any]) -> None:
    """The upload object has OpenAI's keys, in its order, and fits its schema (whose `file`
    is written as nullable in a way JSON Schema does not read: checked apart)."""
    assert list(raw) == [
        "id",
        "object",
        "bytes",
        "created_at",
        "expires_at",
        "filename",
        "purpose",
        "status",
        "file",
    ]
    assert_schema("Upload", {k: v for k, v in raw.items() if not (k == "file" and v is None)})


def _set_upload_expiry(server: AppServer, upload_id: str, at: int) -> None:
    """Set an upload's expiry in the database, as if its hour had passed."""
    _sql(server, "UPDATE uploads SET expires_at = ? WHERE id = ?", at, upload_id)


def _age_upload(server: AppServer, upload: dict[str, Any], expires_at: int) -> None:
    """Move an upload's expiry to `expires_at`, and its reservation's by as much, as if
    the clock had moved on."""
    by = upload["expires_at"] - expires_at
    _sql(
        server, "UPDATE reservations SET expires_at = expires_at - ? WHERE id = ?", by, upload["id"]
    )
    _set_upload_expiry(server, upload["id"], expires_at)


def _sweep(server: AppServer) -> dict[str, int]:
    counts: dict[str, int] = server.portal.call(server.app.state.service.sweep)
    return counts


def _blob_exists(server: AppServer, key: str) -> bool:
    """Whether the object `key` exists; for a part's id, its bytes, under the key they
    have (`<file key>.<part id>`)."""
    blobs = server.app.state.service.blobs
    if key.startswith("part_"):
        found = [k for k in server.portal.call(_all_keys, server) if k.endswith(f".{key}")]
        if not found:
            return False
        [key] = found

    async def run() -> bool:
        try:
            async for _ in blobs.read(key):
                break
        except FileNotFoundError:
            return False
        return True

    return bool(server.portal.call(run))


def _usage(server: AppServer, org_id: str) -> int:
    """The organization's bytes: its files' and its reservations'."""
    files = int(server.portal.call(server.app.state.service.meta.usage, org_id))
    held = _sql(server, "SELECT SUM(bytes) FROM reservations WHERE org_id = ?", org_id)
    return files + int(held or 0)


@pytest.fixture
def org() -> str:
    return f"org-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def org_key(new_key: Callable[..., str], org: str) -> str:
    return new_key(org, f"proj_{uuid.uuid4().hex[:10]}")


@pytest.fixture
def http(server: AppServer, api_key: str) -> Iterator[httpx.Client]:
    with server.http(api_key) as c:
        yield c


def _create(http: httpx.Client, **fields: Any) -> dict[str, Any]:
    body = {"filename": "data.bin", "purpose": "vision", "bytes": 10, "mime_type": "text/plain"}
    body.update(fields)
    r = http.post("/uploads", json=body)
    assert r.status_code == 200, r.text
    raw: dict[str, Any] = r.json()
    return raw


def _part(http: httpx.Client, upload_id: str, data: bytes) -> httpx.Response:
    return http.post(f"/uploads/{upload_id}/parts", files={"data": ("blob", data)})


def _part_id(http: httpx.Client, upload_id: str, data: bytes) -> str:
    r = _part(http, upload_id, data)
    assert r.status_code == 200, r.text
    part_id: str = r.json()["id"]
    return part_id


# -- the SDK --------------------------------------------------------------------------


def _batch_lines(count: int) -> bytes:
    line = '{"custom_id": "r%d", "method": "POST", "url": "/v1/embeddings", "body": {}}\n'
    return "".join(line % i for i in range(count)).encode()


def test_create_parts_out_of_order_complete_download(client: openai.OpenAI) -> None:
    content = _batch_lines(100)[:3000]
    content = content[: content.rindex(b"\n") + 1]
    pieces = [content[:1000], content[1000:2500], content[2500:]]
    before = int(time.time())
    response = client.uploads.with_raw_response.create(
        bytes=len(content), filename="data.jsonl", mime_type="application/jsonl", purpose="batch"
    )
    _check_upload(response.http_response.json())
    upload = response.parse()
    assert upload.id.startswith("upload_")
    assert (upload.object, upload.status, upload.file) == ("upload", "pending", None)
    assert (upload.bytes, upload.filename, upload.purpose) == (len(content), "data.jsonl", "batch")
    assert before <= upload.created_at <= int(time.time())
    assert upload.expires_at == upload.created_at + 3600

    # The parts arrive last first, and are put in order by the completion.
    ids = {}
    for index in (2, 0, 1):
        raw = client.uploads.parts.with_raw_response.create(upload.id, data=pieces[index])
        assert_schema("UploadPart", raw.http_response.json())
        part = raw.parse()
        assert part.id.startswith("part_") and part.object == "upload.part"
        assert part.upload_id == upload.id
        ids[index] = part.id

    md5 = hashlib.md5(content).hexdigest()
    done_raw = client.uploads.with_raw_response.complete(
        upload.id, part_ids=[ids[0], ids[1], ids[2]], md5=md5
    )
    _check_upload(done_raw.http_response.json())
    done = done_raw.parse()
    assert done.status == "completed" and done.file is not None
    assert done.file.id.startswith("file-")
    assert (done.file.bytes, done.file.purpose) == (len(content), "batch")
    assert done.file.expires_at == done.file.created_at + 30 * 24 * 3600  # batch: 30 days
    assert client.files.retrieve(done.file.id) == done.file
    assert client.files.content(done.file.id).content == content
    # Its parts' bytes are gone; the file's remain.
    assert client.files.list().data == [done.file]


def test_parts_in_parallel(client: openai.OpenAI, server: AppServer) -> None:
    content = os.urandom(64 * 1024 + 7)
    size = 8 * 1024
    pieces = [content[i : i + size] for i in range(0, len(content), size)]
    upload = client.uploads.create(
        bytes=len(content), filename="x.bin", mime_type="application/octet-stream", purpose="vision"
    )
    with ThreadPoolExecutor(4) as pool:
        parts = list(pool.map(lambda p: client.uploads.parts.create(upload.id, data=p), pieces))
    assert len({p.id for p in parts}) == len(pieces)
    done = client.uploads.complete(upload.id, part_ids=[p.id for p in parts])
    assert done.file is not None
    assert client.files.content(done.file.id).content == content
    # The parts are the file's now (its manifest names them): they go when it goes.
    keys = [part_key(done.file.id, p.id) for p in parts]
    assert all(_blob_exists(server, k) for k in keys)
    client.files.delete(done.file.id)
    assert not any(_blob_exists(server, k) for k in keys)
    assert not _blob_exists(server, done.file.id)


def test_upload_file_chunked_from_path_and_bytes(client: openai.OpenAI, tmp_path: Path) -> None:
    content = os.urandom(10_000)
    path = tmp_path / "big.pdf"
    path.write_bytes(content)
    md5 = hashlib.md5(content).hexdigest()
    done = client.uploads.upload_file_chunked(
        file=path, mime_type="application/pdf", purpose="assistants", part_size=3000, md5=md5
    )
    assert done.status == "completed" and done.file is not None
    assert done.filename == "big.pdf"
    with pytest.raises(openai.BadRequestError):  # downloads of assistants files are refused
        client.files.content(done.file.id)
    assert client.files.retrieve(done.file.id).bytes == len(content)

    done = client.uploads.upload_file_chunked(
        file=content,
        filename="mem.bin",
        bytes=len(content),
        mime_type="application/octet-stream",
        purpose="vision",
        part_size=4096,
    )
    assert done.file is not None
    assert client.files.content(done.file.id).content == content


def test_async_sdk(aclient: openai.AsyncOpenAI) -> None:
    content = os.urandom(5000)

    async def run() -> None:
        async with aclient:
            upload = await aclient.uploads.create(
                bytes=len(content), filename="a.bin", mime_type="image/png", purpose="vision"
            )
            halves = [content[:2500], content[2500:]]
            parts = await asyncio.gather(
                *(aclient.uploads.parts.create(upload.id, data=h) for h in halves)
            )
            done = await aclient.uploads.complete(upload.id, part_ids=[p.id for p in parts])
            assert done.file is not None
            got = await aclient.files.content(done.file.id)
            assert got.content == content

            chunked = await aclient.uploads.upload_file_chunked(
                file=content,
                filename="b.bin",
                bytes=len(content),
                mime_type="image/png",
                purpose="vision",
                part_size=1024,
            )
            assert chunked.file is not None
            assert (await aclient.files.content(chunked.file.id)).content == content

            other = await aclient.uploads.create(
                bytes=1, filename="c.bin", mime_type="image/png", purpose="vision"
            )
            cancelled = await aclient.uploads.cancel(other.id)
            assert (cancelled.id, cancelled.status, cancelled.file) == (other.id, "cancelled", None)

    asyncio.run(run())


def test_cancel_removes_parts(client: openai.OpenAI, server: AppServer) -> None:
    upload = client.uploads.create(
        bytes=10, filename="a.bin", mime_type="text/plain", purpose="assistants"
    )
    part = client.uploads.parts.create(upload.id, data=b"12345")
    file_key = _sql(server, "SELECT file_key FROM uploads WHERE id = ?", upload.id)
    key = part_key(str(file_key), part.id)
    assert _blob_exists(server, key)
    # Its row names its key now; the reservation that named it while it streamed is gone.
    assert _sql(server, "SELECT COUNT(*) FROM reservations WHERE id = ?", part.id) == 0
    raw = client.uploads.with_raw_response.cancel(upload.id)
    _check_upload(raw.http_response.json())
    assert raw.parse().status == "cancelled"
    assert not _blob_exists(server, key)


def test_empty_upload(http: httpx.Client) -> None:
    upload = _create(http, bytes=0)
    r = http.post(f"/uploads/{upload['id']}/complete", json={"part_ids": []})
    assert r.status_code == 200, r.text
    assert r.json()["file"]["bytes"] == 0


# -- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message", "param"),
    [
        (
            {"bytes": 8 * GiB + 1},
            f"Invalid 'bytes': {8 * GiB + 1} is more than an upload may hold, {8 * GiB} bytes.",
            "bytes",
        ),
        (
            {"bytes": 200 * 1024 * 1024 + 1, "purpose": "batch", "filename": "b.jsonl"},
            "Invalid 'bytes': 209715201 is more than a batch file may hold, 209715200 bytes.",
            "bytes",
        ),
        (
            {"bytes": -1},
            "Invalid 'bytes': integer below minimum value. Expected a value >= 0, but got -1 "
            "instead.",
            "bytes",
        ),
        (
            {"purpose": "fine-tune", "filename": "train.csv"},
            "Invalid file format for Fine-Tuning API. Must be .jsonl",
            "filename",
        ),
        (
            {"purpose": "nope"},
            "'nope' is not one of ['assistants', 'batch', 'fine-tune', 'vision', 'user_data', "
            "'evals'] - 'purpose'",
            "purpose",
        ),
        (
            {"mime_type": "not a type"},
            "Invalid 'mime_type': 'not a type' is not a MIME type; expected 'type/subtype', "
            "such as 'application/jsonl' or 'application/pdf'.",
            "mime_type",
        ),
        (
            {"filename": ""},
            "Invalid 'filename': expected a file name of 1 to 255 characters.",
            "filename",
        ),
        (
            {"bytes": "10"},
            "Invalid type for 'bytes': expected an integer, but got a string instead.",
            "bytes",
        ),
        (
            {"bytes": True},
            "Invalid type for 'bytes': expected an integer, but got a boolean instead.",
            "bytes",
        ),
        (
            {"filename": None},
            "Invalid type for 'filename': expected a string, but got null instead.",
            "filename",
        ),
        ({"color": "blue"}, "Unknown parameter: 'color'.", "color"),
    ],
)
def test_create_errors(
    http: httpx.Client, fields: dict[str, Any], message: str, param: str
) -> None:
    body = {"filename": "data.bin", "purpose": "assistants", "bytes": 10, "mime_type": "text/plain"}
    body.update(fields)
    assert_error(http.post("/uploads", json=body), 400, message, param=param)


def test_create_missing_and_unparsable(http: httpx.Client) -> None:
    assert_error(
        http.post("/uploads", json={"filename": "a", "purpose": "vision", "bytes": 1}),
        400,
        "Missing required parameter: 'mime_type'.",
        param="mime_type",
    )
    for body in (b"{not json", b"[1, 2]", b""):
        r = http.post("/uploads", content=body, headers={"content-type": "application/json"})
        assert_error(r, 400, re.compile(r"We could not parse the JSON body of your request\. .*"))


@pytest.mark.parametrize(
    ("expires_after", "message", "param"),
    [
        (
            {"anchor": "created_at", "seconds": 3599},
            "Invalid 'expires_after.seconds': expected an integer between 3600 and 2592000, "
            "got 3599.",
            "expires_after.seconds",
        ),
        (
            {"anchor": "created_at", "seconds": 2592001},
            "Invalid 'expires_after.seconds': expected an integer between 3600 and 2592000, "
            "got 2592001.",
            "expires_after.seconds",
        ),
        (
            {"anchor": "last_active_at", "seconds": 3600},
            "Invalid value for 'expires_after.anchor': 'last_active_at'. Supported values "
            "are: 'created_at'.",
            "expires_after.anchor",
        ),
        (
            {"seconds": 3600},
            "Missing required parameter: 'expires_after.anchor'.",
            "expires_after.anchor",
        ),
        (
            {"anchor": "created_at", "seconds": "3600"},
            "Invalid type for 'expires_after.seconds': expected an integer, but got a string "
            "instead.",
            "expires_after.seconds",
        ),
        (
            {"anchor": "created_at", "seconds": 3600, "days": 1},
            "Unknown parameter: 'expires_after.days'.",
            "expires_after.days",
        ),
        (
            "1h",
            "Invalid type for 'expires_after': expected an object, but got a string instead.",
            "expires_after",
        ),
    ],
)
def test_create_expires_after_errors(
    http: httpx.Client, expires_after: Any, message: str, param: str
) -> None:
    body = {"filename": "a", "purpose": "vision", "bytes": 1, "mime_type": "image/png"}
    r = http.post("/uploads", json={**body, "expires_after": expires_after})
    assert_error(r, 400, message, param=param)


@pytest.mark.parametrize("purpose", ["batch", "assistants"])
def test_expires_after_sets_the_files_expiry(
    client: openai.OpenAI, aclient: openai.AsyncOpenAI, purpose: str
) -> None:
    content = _batch_lines(3)
    upload = client.uploads.create(
        bytes=len(content),
        filename="data.jsonl",
        mime_type="application/jsonl",
        purpose=purpose,  # type: ignore[arg-type]
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert upload.expires_at == upload.created_at + 3600  # the upload's own hour
    part = client.uploads.parts.create(upload.id, data=content)
    done = client.uploads.complete(upload.id, part_ids=[part.id])
    assert done.file is not None
    assert done.file.expires_at == done.file.created_at + 7200
    assert client.files.retrieve(done.file.id).expires_at == done.file.created_at + 7200

    async def via_async() -> None:
        up = await aclient.uploads.create(
            bytes=len(content),
            filename="data.jsonl",
            mime_type="application/jsonl",
            purpose=purpose,  # type: ignore[arg-type]
            expires_after={"anchor": "created_at", "seconds": 2592000},
        )
        p = await aclient.uploads.parts.create(up.id, data=content)
        finished = await aclient.uploads.complete(up.id, part_ids=[p.id])
        assert finished.file is not None
        assert finished.file.expires_at == finished.file.created_at + 2592000

    async def in_client() -> None:
        async with aclient:
            await via_async()

    asyncio.run(in_client())

    # Without it, a batch file expires after 30 days and any other never.
    plain = client.uploads.create(
        bytes=len(content),
        filename="data.jsonl",
        mime_type="application/jsonl",
        purpose=purpose,  # type: ignore[arg-type]
    )
    part = client.uploads.parts.create(plain.id, data=content)
    file = client.uploads.complete(plain.id, part_ids=[part.id]).file
    assert file is not None
    expected = file.created_at + 30 * 24 * 3600 if purpose == "batch" else None
    assert file.expires_at == expected


def test_part_errors(http: httpx.Client) -> None:
    upload = _create(http, bytes=10)
    uid = upload["id"]
    r = http.post(f"/uploads/{uid}/parts", files={"other": ("x", b"1")})
    assert_error(r, 400, "'data' is a required property", param="data")
    r = http.post(f"/uploads/{uid}/parts", json={"data": "abc"})
    assert r.status_code == 400
    assert_error(
        _part(http, "upload_doesnotexist", b"x"),
        404,
        "No such Upload object: upload_doesnotexist",
        param="upload_id",
    )
    assert_error(
        _part(http, "file-abc", b"x"), 404, "No such Upload object: file-abc", param="upload_id"
    )


def test_part_over_the_limit(deployment: Deployment) -> None:
    server = deployment.app(env={"OPENAI_FILES_MAX_PART_BYTES": "1000"})
    try:
        key = server.create_key("org-small", "proj_small")
        with server.http(key) as http:
            uid = _create(http, bytes=5000)["id"]
            too_large = "Part is too large. The maximum size is 1000 bytes."
            # Announced by its length (refused before reading), and streamed without one.
            assert_error(
                _part(http, uid, b"x" * 70_000), 413, too_large, param="data", code="file_too_large"
            )

            def body() -> Iterator[bytes]:
                yield b'--b\r\nContent-Disposition: form-data; name="data"; filename="d"\r\n\r\n'
                yield b"x" * 1001
                yield b"\r\n--b--\r\n"

            r = http.post(
                f"/uploads/{uid}/parts",
                content=body(),
                headers={"content-type": "multipart/form-data; boundary=b"},
            )
            assert_error(r, 413, too_large, param="data", code="file_too_large")
            part = _part_id(http, uid, b"x" * 1000)
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
            assert r.status_code == 400  # 1000 of 5000 bytes

            # More than the upload's bytes: refused.
            small = _create(http, bytes=3)["id"]
            first = _part_id(http, small, b"xy")
            assert_error(_part(http, small, b"xy"), 400, _full(small, 3), param="data")
        # Nothing but the accepted parts was kept.
        keys = server.portal.call(_all_keys, server)
        assert sorted(k.partition(".")[2] for k in keys) == sorted([part, first])
    finally:
        server.stop()


def _full(upload_id: str, nbytes: int) -> str:
    return (
        f"The parts of upload {upload_id} would hold more than the {nbytes} bytes it was "
        "created with: complete it with the parts it has, or create a new upload."
    )


async def _all_keys(server: AppServer) -> list[str]:
    return [k async for k in server.app.state.service.blobs.list_object_keys(time.time() + 60)]


def test_complete_errors(http: httpx.Client, server: AppServer) -> None:
    uid = _create(http, bytes=10)["id"]
    a = _part_id(http, uid, b"12345")
    b = _part_id(http, uid, b"67890")
    other_upload = _create(http, bytes=3)["id"]
    foreign = _part_id(http, other_upload, b"abc")

    def complete(**body: Any) -> httpx.Response:
        return http.post(f"/uploads/{uid}/complete", json=body)

    assert_error(
        complete(part_ids=[a]),
        400,
        f"The parts given add up to 5 bytes, but upload {uid} was created with bytes=10: "
        "complete it with parts that add up to its size.",
        param="part_ids",
    )
    assert_error(
        complete(part_ids=[a, "part_unknown"]),
        400,
        f"Part part_unknown is not a part of upload {uid}: send the ids that "
        f"POST /v1/uploads/{uid}/parts returned.",
        param="part_ids",
    )
    assert_error(
        complete(part_ids=[a, foreign]),
        400,
        f"Part {foreign} is not a part of upload {uid}: send the ids that "
        f"POST /v1/uploads/{uid}/parts returned.",
        param="part_ids",
    )
    assert_error(
        complete(part_ids=[a, a]),
        400,
        f"Part {a} is given more than once in 'part_ids': each part may be used once.",
        param="part_ids",
    )
    assert_error(
        complete(part_ids=[a, b], md5="xyz"),
        400,
        "Invalid 'md5': expected 32 hexadecimal digits, got 'xyz'.",
        param="md5",
    )
    assert_error(
        complete(part_ids=[a, 1]),
        400,
        "Invalid type for 'part_ids[1]': expected a string, but got an integer instead.",
        param="part_ids[1]",
    )
    assert_error(complete(), 400, "Missing required parameter: 'part_ids'.", param="part_ids")
    # The wrong md5: refused, the upload stays pending and its parts stay.
    wrong = hashlib.md5(b"something else").hexdigest()
    right = hashlib.md5(b"1234567890").hexdigest()
    assert_error(
        complete(part_ids=[b, a], md5=wrong),
        400,
        f"The md5 given ({wrong}) does not match the md5 of the uploaded parts "
        f"({hashlib.md5(b'6789012345').hexdigest()}): the upload stays pending; send the "
        "parts again or complete it with the right ones.",
        param="md5",
    )
    r = complete(part_ids=[b, a], md5=right)
    assert r.status_code == 400  # b then a is not what the md5 says
    # Every refused completion left the upload pending: it still takes parts and completes.
    r = complete(part_ids=[a, b], md5=right.upper())
    assert r.status_code == 200, r.text
    file_id = r.json()["file"]["id"]
    assert http.get(f"/files/{file_id}/content").content == b"1234567890"

    # Completed: no more parts, no second completion, no cancellation.
    already = f"Upload {uid} is already completed, so you cannot {{}}: its file is ready."
    assert_error(_part(http, uid, b"x"), 400, already.format("add a part"), param="upload_id")
    assert_error(complete(part_ids=[a, b]), 400, already.format("complete it"), param="upload_id")
    assert_error(
        http.post(f"/uploads/{uid}/cancel"), 400, already.format("cancel it"), param="upload_id"
    )


def test_completion_checks_the_content_as_files_do(http: httpx.Client) -> None:
    """A batch file made of parts is refused, as on POST /v1/files, when a line is not a
    JSON object (OpenAI's words, the line named, across parts); the upload stays pending,
    and the same parts in the right order complete it."""
    good = _batch_lines(3)
    key, value = b'{"a": ', b"[1, 2]}\n"
    size = len(good) + len(key) + len(value)
    uid = _create(http, filename="in.jsonl", purpose="batch", bytes=size)["id"]
    head = _part_id(http, uid, good[:50])
    tail = _part_id(http, uid, good[50:])
    first, second = _part_id(http, uid, key), _part_id(http, uid, value)
    r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [head, tail, second, first]})
    assert_error(
        r,
        400,
        "Expected file to have JSONL format, where every line is a JSON dictionary. Line 4 "
        'is not a dictionary (HINT: line starts with: "[1, ...").',
        param="file",
    )
    r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [head, tail, first, second]})
    assert r.status_code == 200, r.text
    assert http.get(f"/files/{r.json()['file']['id']}/content").content == good + key + value


def test_racing_completions_make_one_file(client: openai.OpenAI, http: httpx.Client) -> None:
    content = os.urandom(300_000)
    uid = _create(http, bytes=len(content))["id"]
    parts = [_part_id(http, uid, content[i : i + 100_000]) for i in range(0, len(content), 100_000)]

    def complete(_: int) -> httpx.Response:
        return http.post(f"/uploads/{uid}/complete", json={"part_ids": parts})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(complete, range(6)))
    assert sorted(r.status_code for r in answers) == [200, 400, 400, 400, 400, 400]
    for r in answers:
        if r.status_code == 400:
            assert_error(
                r,
                400,
                re.compile(
                    rf"Upload {uid} is already (being completed: wait for that completion "
                    r"to answer instead of trying to complete it \(.*\)|completed, so you "
                    r"cannot complete it: its file is ready)\."
                ),
                param="upload_id",
            )
    [file] = client.files.list().data
    assert client.files.content(file.id).content == content


def test_a_client_gone_mid_part_leaves_no_bytes(
    server: AppServer, http: httpx.Client, api_key: str
) -> None:
    uid = _create(http, bytes=10_000_000)["id"]
    before = set(server.portal.call(_all_keys, server))
    head = b'--b\r\nContent-Disposition: form-data; name="data"; filename="d"\r\n\r\n'
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": head + b"x" * 3_000_000, "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[MutableMapping[str, Any]] = []
    named_while_streaming: list[Any] = []
    held = "SELECT blob_key FROM reservations WHERE id LIKE 'part_%' AND bytes = 0"

    async def receive() -> dict[str, Any]:
        if messages[0]["type"] == "http.disconnect":
            # Mid-part: a reservation of no bytes names the part's key for the sweepers.
            key = await anyio.to_thread.run_sync(_sql, server, held)
            named_while_streaming.append(key)
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = asgi_scope(
        "POST",
        f"/v1/uploads/{uid}/parts",
        api_key,
        [(b"content-type", b"multipart/form-data; boundary=b")],
    )
    server.portal.call(server.app, scope, receive, send)
    assert sent[0]["status"] == 499
    [key] = named_while_streaming
    assert key is not None and key.partition(".")[2].startswith("part_")
    assert _sql(server, held) is None  # released
    assert set(server.portal.call(_all_keys, server)) == before
    blobs = server.app.state.service.blobs
    assert server.portal.call(blobs.remove_stale_temp, time.time() + 60) == 0
    # The upload still takes parts.
    assert _part(http, uid, b"x" * 10).status_code == 200


class _Work:
    """The database work of the statements the app runs, while counting: on SQLite the
    virtual machine's instructions (every row visited costs some), on PostgreSQL the rows
    each plan node touched (as EXPLAIN ANALYZE reports, run in a savepoint rolled back).
    Both are counts, not times: they do not change with the machine's load."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from openai_files.server.stores import postgres, sqlite
        from openai_files.server.stores._sql_dialect import POSTGRES

        self.count = 0
        self.on = False
        run_sqlite, run_postgres = sqlite._execute, postgres._execute

        def tick() -> int:
            self.count += 1
            return 0

        def counted_sqlite(conn: sqlite3.Connection, stmt: Any) -> Any:
            if not self.on:
                return run_sqlite(conn, stmt)
            conn.set_progress_handler(tick, 1)
            try:
                return run_sqlite(conn, stmt)
            finally:
                conn.set_progress_handler(None, 1)

        async def counted_postgres(conn: Any, stmt: Any) -> Any:
            if self.on:
                sql = POSTGRES.render(stmt.sql)
                savepoint = conn.transaction()
                await savepoint.start()
                try:
                    plan = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *stmt.args)
                finally:
                    await savepoint.rollback()
                self.count += _rows_touched(json.loads(plan)[0]["Plan"])
            return await run_postgres(conn, stmt)

        monkeypatch.setattr(sqlite, "_execute", counted_sqlite)
        monkeypatch.setattr(postgres, "_execute", counted_postgres)

    def of(self, call: Callable[[], Any]) -> int:
        self.count, self.on = 0, True
        try:
            call()
        finally:
            self.on = False
        return self.count


def _rows_touched(node: dict[str, Any]) -> int:
    rows = node.get("Actual Rows", 0) * node.get("Actual Loops", 1)
    rows += node.get("Rows Removed by Filter", 0) + node.get("Rows Removed by Index Recheck", 0)
    return int(rows) + sum(_rows_touched(child) for child in node.get("Plans", []))


def test_adding_a_part_costs_the_same_at_the_5000th(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database's work for one part does not grow with the parts the upload has: the
    5,011th part costs what the 11th did (the service once read every part to add them up,
    which made an upload of 10,000 parts quadratic)."""
    work = _Work(monkeypatch)
    server = deployment.app(env={"OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "3600"})
    try:
        owner = Owner("org-many-parts", "proj_many_parts")
        with server.http(server.create_key(owner.org_id, owner.project_id)) as http:
            uid = _create(http, bytes=6000)["id"]
            for _ in range(10):
                _part_id(http, uid, b"x")
            few = work.of(lambda: _part_id(http, uid, b"x"))
            meta = server.app.state.service.meta

            async def add_parts(n: int) -> None:  # rows only: no part's bytes are read here
                now = int(time.time())
                for start in range(0, n, 500):
                    await asyncio.gather(
                        *(
                            meta.add_part(owner, PartRecord(p, uid, 1, now, p), now)
                            for p in (f"part_many{i}" for i in range(start, start + 500))
                        )
                    )

            server.portal.call(add_parts, 5000)
            many = work.of(lambda: _part_id(http, uid, b"x"))
        assert few > 0
        assert many <= few * 1.2 + 10, (few, many)
    finally:
        server.stop()


def _completing(uid: str) -> str:
    return (
        f"Upload {uid} is already being completed: wait for that completion to answer "
        "instead of trying to complete it (a completion whose server stopped is taken over "
        "by a new one 10 minutes after it was last heard from)."
    )


def test_a_completion_whose_server_died_is_taken_over(
    server: AppServer, http: httpx.Client, org: str, org_key: str
) -> None:
    """A server that died while completing leaves the upload `completing`, with what it
    joined (here, in the wrong order) under the file's key: ten minutes after that
    completion began, a new one takes it over and makes the file right."""
    with server.http(org_key) as http:
        uid = _create(http, bytes=8)["id"]
        first, second = _part_id(http, uid, b"abcd"), _part_id(http, uid, b"efgh")
        key = _sql(server, "SELECT file_key FROM uploads WHERE id = ?", uid)
        blobs = server.app.state.service.blobs
        server.portal.call(
            blobs.compose, key, [(part_key(key, second), 4), (part_key(key, first), 4)]
        )
        began = int(time.time())

        def dead_since(at: int) -> None:
            _sql(
                server,
                "UPDATE uploads SET status = 'completing', completing_since = ? WHERE id = ?",
                at,
                uid,
            )

        dead_since(began - 590)
        body = {"part_ids": [first, second], "md5": hashlib.md5(b"abcdefgh").hexdigest()}
        r = http.post(f"/uploads/{uid}/complete", json=body)
        assert_error(r, 400, _completing(uid), param="upload_id")
        assert http.get("/uploads").json()["data"][0]["status"] == "pending"

        # Taken over, but refused (a wrong md5): pending again, the joined bytes removed.
        dead_since(began - 601)
        r = http.post(f"/uploads/{uid}/complete", json={**body, "md5": "0" * 32})
        assert r.status_code == 400 and r.json()["error"]["param"] == "md5", r.text
        assert _sql(server, "SELECT status FROM uploads WHERE id = ?", uid) == "pending"
        assert _sql(server, "SELECT completing_since FROM uploads WHERE id = ?", uid) is None
        assert not _blob_exists(server, key)

        # Taken over again, and finished: the file has the right bytes, counted once.
        server.portal.call(
            blobs.compose, key, [(part_key(key, second), 4), (part_key(key, first), 4)]
        )
        dead_since(began - 3000)
        r = http.post(f"/uploads/{uid}/complete", json=body)
        assert r.status_code == 200, r.text
        done = r.json()
        assert done["status"] == "completed" and done["file"]["id"] == key
        assert http.get(f"/files/{key}/content").content == b"abcdefgh"
        # The parts are the file's now: they stay until it goes.
        assert _blob_exists(server, first) and _blob_exists(server, second)
        assert _usage(server, org) == 8
        assert _sql(server, "SELECT completing_since FROM uploads WHERE id = ?", uid) is None


def test_expiry_of_a_completion_cut_short_removes_what_it_joined(
    server: AppServer, http: httpx.Client
) -> None:
    """A server that died while completing leaves the upload `completing` with its joined
    bytes: the upload shows `pending`, and after its hour the sweeper removes both."""
    uid = _create(http, bytes=4)["id"]
    part = _part_id(http, uid, b"abcd")
    key = _sql(server, "SELECT file_key FROM uploads WHERE id = ?", uid)
    blobs = server.app.state.service.blobs
    server.portal.call(blobs.compose, key, [(part_key(key, part), 4)])
    _sql(
        server,
        "UPDATE uploads SET status = 'completing', completing_since = ? WHERE id = ?",
        int(time.time()),
        uid,
    )
    r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
    assert_error(r, 400, _completing(uid), param="upload_id")
    _set_upload_expiry(server, uid, int(time.time()) - 601)
    assert _sweep(server)["expired_uploads"] >= 1
    assert not _blob_exists(server, part)
    assert not _blob_exists(server, key)
    assert _sql(server, "SELECT status FROM uploads WHERE id = ?", uid) == "expired"


def test_cancel_takes_over_a_completion_whose_server_died(
    server: AppServer, org: str, org_key: str
) -> None:
    """Cancel, like complete, takes over a completion begun ten minutes ago or more (its
    server died): the reservation goes back, and the parts and what it joined are removed."""
    with server.http(org_key) as http:
        uid = _create(http, bytes=4)["id"]
        part = _part_id(http, uid, b"abcd")
        key = _sql(server, "SELECT file_key FROM uploads WHERE id = ?", uid)
        blobs = server.app.state.service.blobs
        server.portal.call(blobs.compose, key, [(part_key(key, part), 4)])
        began = int(time.time())
        sql = "UPDATE uploads SET status = 'completing', completing_since = ? WHERE id = ?"
        _sql(server, sql, began - 590, uid)
        r = http.post(f"/uploads/{uid}/cancel")
        message = _completing(uid).replace("complete it", "cancel it")
        assert_error(r, 400, message, param="upload_id")
        assert _usage(server, org) == 4
        _sql(server, sql, began - 601, uid)
        r = http.post(f"/uploads/{uid}/cancel")
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled"
        assert _sql(server, "SELECT completing_since FROM uploads WHERE id = ?", uid) is None
        assert not _blob_exists(server, part) and not _blob_exists(server, key)
        assert _usage(server, org) == 0


def test_the_sweeper_reopens_a_completion_whose_server_died(
    server: AppServer, http: httpx.Client
) -> None:
    """A completion begun ten minutes ago or more is put back to pending by the sweeper (a
    server that stopped mid-way may never come back); a younger one is left running."""
    dead, running = _create(http, bytes=4)["id"], _create(http, bytes=4)["id"]
    parts = {uid: _part_id(http, uid, b"abcd") for uid in (dead, running)}
    now = int(time.time())
    sql = "UPDATE uploads SET status = 'completing', completing_since = ? WHERE id = ?"
    _sql(server, sql, now - 601, dead)
    _sql(server, sql, now - 10, running)
    _sweep(server)
    assert _sql(server, "SELECT status FROM uploads WHERE id = ?", dead) == "pending"
    assert _sql(server, "SELECT completing_since FROM uploads WHERE id = ?", dead) is None
    assert _sql(server, "SELECT status FROM uploads WHERE id = ?", running) == "completing"
    r = http.post(f"/uploads/{dead}/complete", json={"part_ids": [parts[dead]]})
    assert r.status_code == 200, r.text
    assert http.get(f"/files/{r.json()['file']['id']}/content").content == b"abcd"
    _sql(server, "UPDATE uploads SET status = 'pending' WHERE id = ?", running)


def _short_lease(server: AppServer, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Completions taken for dead after 2 s without renewal, renewed every 0.25 s; the
    store's compose, as it was."""
    monkeypatch.setattr(settings_module, "COMPLETION_TAKEOVER_SECONDS", 2)
    monkeypatch.setattr(settings_module, "COMPLETION_RENEW_SECONDS", 0.25)
    return server.app.state.service.uploads.blobs.compose


def test_a_running_completion_renews_its_lease(
    server: AppServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion that runs longer than the takeover bound (a slow join) renews its lease
    while it runs: the sweeper does not put it back to pending, no other completion takes it
    over, and it finishes."""
    blobs = server.app.state.service.uploads.blobs
    compose = _short_lease(server, monkeypatch)

    async def slow(key: str, parts: Any) -> bool:
        await anyio.sleep(4)
        return bool(await compose(key, parts))

    monkeypatch.setattr(blobs, "compose", slow)
    uid = _create(http, bytes=4)["id"]
    part = _part_id(http, uid, b"abcd")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(http.post, f"/uploads/{uid}/complete", json={"part_ids": [part]})
        time.sleep(3)  # the completion began more than the bound ago
        _sweep(server)
        assert _sql(server, "SELECT status FROM uploads WHERE id = ?", uid) == "completing"
        r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
        assert r.status_code == 400 and "already being completed" in r.text, r.text
        r = running.result(timeout=60)
    assert r.status_code == 200, r.text
    assert http.get(f"/files/{r.json()['file']['id']}/content").content == b"abcd"


def test_a_completion_taken_over_is_stopped(
    server: AppServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A completion whose renewals did not land for the takeover bound (set back here in the
    database) is taken over by another, which checks the parts' md5 and completes: the
    first, still running, is stopped at its next renewal, and never joins its parts over
    the checked file."""
    uploads = server.app.state.service.uploads
    compose = _short_lease(server, monkeypatch)
    renew = uploads.meta.renew_completion
    began: list[str] = []
    taken_over = threading.Event()

    async def slow_first(key: str, parts: Any) -> bool:
        began.append(key)
        if len(began) == 1:
            # Stopped here by its renewal; were it not, it would join in the wrong order.
            await anyio.sleep(60)
        return bool(await compose(key, parts))

    async def after_the_takeover(upload_id: str, since: int, now: int) -> bool:
        # No renewal lands before the second completion has finished: the first, on
        # finding its lease gone, then sees the upload completed, however slow the machine.
        deadline = time.monotonic() + 30
        while not taken_over.is_set() and time.monotonic() < deadline:
            await anyio.sleep(0.01)
        return bool(await renew(upload_id, since, now))

    monkeypatch.setattr(uploads.blobs, "compose", slow_first)
    monkeypatch.setattr(uploads.meta, "renew_completion", after_the_takeover)
    uid = _create(http, bytes=8)["id"]
    first, second = _part_id(http, uid, b"abcd"), _part_id(http, uid, b"efgh")
    with ThreadPoolExecutor(1) as pool:
        # In the wrong order, with no md5 to catch it.
        slow = pool.submit(
            http.post, f"/uploads/{uid}/complete", json={"part_ids": [second, first]}
        )
        deadline = time.monotonic() + 30
        while not began and time.monotonic() < deadline:
            time.sleep(0.05)
        assert began
        sql = "UPDATE uploads SET completing_since = ? WHERE id = ?"
        _sql(server, sql, int(time.time()) - 601, uid)
        body = {"part_ids": [first, second], "md5": hashlib.md5(b"abcdefgh").hexdigest()}
        r = http.post(f"/uploads/{uid}/complete", json=body)
        taken_over.set()
        assert r.status_code == 200, r.text
        key = r.json()["file"]["id"]
        late = slow.result(timeout=30)
    assert late.status_code == 400 and "already completed" in late.text, late.text
    assert http.get(f"/files/{key}/content").content == b"abcdefgh"


def test_an_undo_that_failed_is_tried_again_by_the_sweeper(
    server: AppServer, http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused completion whose undo fails (the database unreachable for a moment) does
    not leave its upload "completing" for ten minutes: the next sweep puts it back."""
    uploads = server.app.state.service.uploads
    real_abort = uploads.meta.abort_completion
    failed: list[str] = []

    async def unreachable_once(upload_id: str, since: int | None = None) -> bool:
        if not failed:
            failed.append(upload_id)
            raise StoreUnavailable("PostgreSQL is unreachable: connection refused")
        return bool(await real_abort(upload_id, since=since))

    monkeypatch.setattr(uploads.meta, "abort_completion", unreachable_once)
    uid = _create(http, bytes=4)["id"]
    part = _part_id(http, uid, b"abcd")
    r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part], "md5": "0" * 32})
    assert r.status_code == 400 and r.json()["error"]["param"] == "md5", r.text
    assert failed == [uid]
    assert _sql(server, "SELECT status FROM uploads WHERE id = ?", uid) == "completing"
    _sweep(server)
    assert _sql(server, "SELECT status FROM uploads WHERE id = ?", uid) == "pending"
    r = http.post(f"/uploads/{uid}/cancel")
    assert r.status_code == 200, r.text
    assert not _blob_exists(server, part)


def test_strict_validation_at_completion(deployment: Deployment) -> None:
    server = deployment.app(env={"OPENAI_FILES_STRICT_VALIDATION": "true"})
    try:
        with server.http(server.create_key("org-strict", "proj_strict")) as http:
            uid = _create(http, bytes=8, filename="a.png", purpose="vision")["id"]
            part = _part_id(http, uid, b"not an image"[:8])
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
            assert r.status_code == 400, r.text
            assert r.json()["error"]["param"] == "file"
            assert r.json()["error"]["message"].startswith(
                "The file is not a PNG, JPEG, WEBP or non-animated GIF image"
            )
            png = (Path(__file__).parents[1] / "data" / "validation" / "image.png").read_bytes()
            uid = _create(http, bytes=len(png), filename="a.png", purpose="vision")["id"]
            part = _part_id(http, uid, png)
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
            assert r.status_code == 200, r.text
    finally:
        server.stop()


def test_a_restart_keeps_pending_uploads(deployment: Deployment) -> None:
    """A server that starts alone drops leftover reservations, but not those of uploads
    still pending: their quota stays held, and they complete after the restart."""
    from .._inprocess import AppServer

    server = deployment.app()
    restarted = None
    try:
        key = server.create_key("org-restart", "proj_restart")
        with server.http(key) as http:
            uid = _create(http, bytes=4)["id"]
            part = _part_id(http, uid, b"abcd")
        server.stop()
        restarted = AppServer(server.data_dir, server.env).start()
        assert _usage(restarted, "org-restart") == 4
        with restarted.http(key) as http:
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
            assert r.status_code == 200, r.text
        assert _usage(restarted, "org-restart") == 4
    finally:
        (restarted or server).stop()


def test_cancelled_upload_errors(http: httpx.Client) -> None:
    uid = _create(http, bytes=2)["id"]
    a = _part_id(http, uid, b"ab")
    assert http.post(f"/uploads/{uid}/cancel").json()["status"] == "cancelled"
    msg = (
        f"Upload {uid} is already cancelled, so you cannot {{}}: create a new upload to send "
        "this file."
    )
    assert_error(_part(http, uid, b"x"), 400, msg.format("add a part"), param="upload_id")
    assert_error(
        http.post(f"/uploads/{uid}/complete", json={"part_ids": [a]}),
        400,
        msg.format("complete it"),
        param="upload_id",
    )
    assert_error(
        http.post(f"/uploads/{uid}/cancel"), 400, msg.format("cancel it"), param="upload_id"
    )


def test_another_tenants_upload_is_a_404(
    server: AppServer, http: httpx.Client, new_key: Callable[..., str]
) -> None:
    uid = _create(http, bytes=2)["id"]
    part = _part_id(http, uid, b"ab")
    missing = f"No such Upload object: {uid}"
    with server.http(new_key()) as other:
        assert_error(_part(other, uid, b"ab"), 404, missing, param="upload_id")
        r = other.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
        assert_error(r, 404, missing, param="upload_id")
        assert_error(other.post(f"/uploads/{uid}/cancel"), 404, missing, param="upload_id")
    r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
    assert r.status_code == 200, r.text


# -- quota and expiry -----------------------------------------------------------------


def test_quota_reserved_given_back_counted_once(
    server: AppServer, org: str, org_key: str, new_key: Callable[..., str]
) -> None:
    with server.http(org_key) as http:
        assert _usage(server, org) == 0
        cancelled = _create(http, bytes=1000)["id"]
        assert _usage(server, org) == 1000
        http.post(f"/uploads/{cancelled}/cancel").raise_for_status()
        assert _usage(server, org) == 0

        uid = _create(http, bytes=6)["id"]
        assert _usage(server, org) == 6
        part = _part_id(http, uid, b"abcdef")
        assert _usage(server, org) == 6
        http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]}).raise_for_status()
        assert _usage(server, org) == 6  # the file, once

    # Twelve uploads of 8 GiB, of two projects (each may reserve half the quota), hold 96 GiB
    # of the 100 GiB quota: a thirteenth, of a third project, does not fit.
    for _ in range(2):
        with server.http(new_key(org, f"proj_{uuid.uuid4().hex[:10]}")) as http:
            for _ in range(6):
                _create(http, bytes=8 * GiB)
    with server.http(new_key(org, f"proj_{uuid.uuid4().hex[:10]}")) as http:
        r = http.post(
            "/uploads",
            json={"filename": "a", "purpose": "vision", "bytes": 8 * GiB, "mime_type": "image/png"},
        )
        assert_error(
            r,
            400,
            re.compile(r"Organization storage limit exceeded: .*"),
            param="bytes",
            code="storage_limit_exceeded",
        )


def test_expiry_removes_parts_and_gives_quota_back(
    server: AppServer, org: str, org_key: str
) -> None:
    with server.http(org_key) as http:
        upload = _create(http, bytes=10)
        uid = upload["id"]
        parts = [_part_id(http, uid, b"12345"), _part_id(http, uid, b"67890")]
        assert all(_blob_exists(server, p) for p in parts)
        assert _usage(server, org) == 10

        # Past its hour but not swept yet: refused as expired. (Its reservation is moved as
        # the clock would have moved it.)
        _age_upload(server, upload, int(time.time()) - 1)
        expired = (
            f"Upload {uid} has expired (an upload must be completed within an hour of its "
            "creation): create a new upload."
        )
        assert_error(_part(http, uid, b"x"), 400, expired, param="upload_id")
        r = http.post(f"/uploads/{uid}/complete", json={"part_ids": parts})
        assert_error(r, 400, expired, param="upload_id")

        # The sweeper leaves it a margin (a completion begun in its last minutes may still
        # be joining its parts), then takes it; until then its parts count against the quota.
        _sweep(server)
        assert all(_blob_exists(server, p) for p in parts)
        assert _bytes_used(http) == 10
        _age_upload(server, upload, int(time.time()) - 601)
        counts = _sweep(server)
        assert counts["expired_uploads"] >= 1
        assert not any(_blob_exists(server, p) for p in parts)
        assert _usage(server, org) == 0
        assert _bytes_used(http) == 0
        assert_error(http.post(f"/uploads/{uid}/cancel"), 400, expired, param="upload_id")
        # The kind is one of the metrics' (the sweeper counts what `sweep` returns).
        metrics = server.app.state.metrics.registry.get_sample_value(
            "openai_files_swept_total", {"kind": "expired_uploads"}
        )
        assert metrics is not None


def _bytes_used(http: httpx.Client) -> int:
    """What the organization's quota counts, as the console's usage route reports it."""
    r = http.get(f"{ROOT_URL}/console/api/usage")
    assert r.status_code == 200, r.text
    used: int = r.json()["bytes_used"]
    return used


def test_parts_stay_within_the_uploads_bytes_and_the_quota(deployment: Deployment) -> None:
    """Uploads created with `bytes: 0` take no part, and so leave the whole quota to a file
    (a part used to be taken past the declared bytes, uncounted)."""
    quota = 100_000
    server = deployment.app(
        env={"OPENAI_FILES_ORG_QUOTA_BYTES": str(quota), "OPENAI_FILES_MAX_PART_BYTES": "64000"}
    )
    try:
        key = server.create_key("org-parts", "proj_parts")
        with server.http(key) as http:
            for _ in range(5):
                uid = _create(http, bytes=0)["id"]
                assert_error(_part(http, uid, b"x" * 64_000), 400, _full(uid, 0), param="data")
            assert _bytes_used(http) == 0
            r = http.post("/files", data={"purpose": "vision"}, files={"file": b"x" * quota})
            assert r.status_code == 200, r.text
            assert _bytes_used(http) == quota
            keys = server.portal.call(_all_keys, server)
            assert keys == [r.json()["id"]]  # no part's bytes beside the file
    finally:
        server.stop()


def test_racing_parts_never_pass_the_uploads_bytes(deployment: Deployment) -> None:
    """Ten parts sent at once to an upload that has room for three: three are taken, the
    others refused, whichever check (as the part begins, or as it is added) sees them."""
    quota, declared, size, n = 100_000, 30_000, 10_000, 10
    server = deployment.app(env={"OPENAI_FILES_ORG_QUOTA_BYTES": str(quota)})
    try:
        key = server.create_key("org-race-parts", "proj_race_parts")
        with server.http(key) as http:
            uid = _create(http, bytes=declared)["id"]
            start = threading.Barrier(n)

            def send(i: int) -> httpx.Response:
                with server.http(key) as own:
                    start.wait()
                    return _part(own, uid, bytes([i]) * size)

            with ThreadPoolExecutor(n) as pool:
                answers = list(pool.map(send, range(n)))
            accepted = [r.json()["id"] for r in answers if r.status_code == 200]
            assert len(accepted) == declared // size
            for r in answers:
                if r.status_code != 200:
                    assert_error(r, 400, _full(uid, declared), param="data")
            # Only the accepted parts' bytes are kept, and the quota counts them.
            keys = server.portal.call(_all_keys, server)
            assert sorted(k.partition(".")[2] for k in keys) == sorted(accepted)
            assert _bytes_used(http) == declared
            # A file of the room the upload holds is refused beside it; one that fits is not.
            r = http.post(
                "/files",
                data={"purpose": "vision"},
                files={"file": b"x" * (quota - declared + 1)},
            )
            assert_error(
                r,
                400,
                re.compile(r"Organization storage limit exceeded: .*"),
                param="file",
                code="storage_limit_exceeded",
            )
            r = http.post(
                "/files", data={"purpose": "vision"}, files={"file": b"x" * (quota - declared)}
            )
            assert r.status_code == 200, r.text
            # The upload completes with the parts it took.
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": accepted})
            assert r.status_code == 200, r.text
            assert _bytes_used(http) == quota
    finally:
        server.stop()


def _pending_bytes_exceeded(project: str, held: int, more: int, limit: int) -> str:
    return (
        f"The pending uploads of project {project} reserve {held} bytes; {more} more would "
        f"pass the {limit} bytes a project's pending uploads may reserve together: "
        f"{_WAIT_FOR_PENDING}; an expired upload gives its bytes back when the sweeper "
        "removes it, about ten minutes after it expires."
    )


def _pending_bytes_too_large(size: int, limit: int) -> str:
    return (
        f"An upload of {size} bytes is more than the {limit} bytes a project's pending "
        "uploads may reserve together (the server's --max-pending-upload-bytes, by default "
        "half its --org-quota-bytes): create a smaller upload, or ask the server's operator "
        "to raise that limit."
    )


_WAIT_FOR_PENDING = (
    "complete or cancel one of them (GET /v1/uploads lists them), or wait for them to "
    "expire (an hour after their creation)"
)


def test_one_project_cannot_hold_its_organizations_quota(deployment: Deployment) -> None:
    """A project's pending uploads reserve at most half the organization's quota by default:
    another project of the organization still has room."""
    quota = 100_000
    server = deployment.app(env={"OPENAI_FILES_ORG_QUOTA_BYTES": str(quota)})
    try:
        greedy = server.create_key("org-shared", "proj_greedy")
        other = server.create_key("org-shared", "proj_other")
        with server.http(greedy) as http:
            r = http.post(
                "/uploads",
                json={"filename": "a", "purpose": "vision", "bytes": quota, "mime_type": "a/b"},
            )
            limit = quota // 2
            # Larger than the limit: no wait would make room for it.
            message = _pending_bytes_too_large(quota, limit)
            assert_error(r, 400, message, param="bytes", code="pending_upload_bytes_exceeded")
            _create(http, bytes=limit)
            r = http.post(
                "/uploads",
                json={"filename": "a", "purpose": "vision", "bytes": 1, "mime_type": "a/b"},
            )
            message = _pending_bytes_exceeded("proj_greedy", limit, 1, limit)
            assert_error(r, 400, message, param="bytes", code="pending_upload_bytes_exceeded")
        with server.http(other) as http:
            uid = _create(http, bytes=1)["id"]
            part = _part_id(http, uid, b"x")
            r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [part]})
            assert r.status_code == 200, r.text
            r = http.post("/files", data={"purpose": "vision"}, files={"file": b"y" * 1000})
            assert r.status_code == 200, r.text
    finally:
        server.stop()


def test_a_projects_pending_uploads_are_bounded(deployment: Deployment) -> None:
    """Uploads created at once by one project: no more than the limit are accepted, the
    others refused in the envelope; a finished one makes room, another project has its own."""
    n, limit = 12, 4
    server = deployment.app(env={"OPENAI_FILES_MAX_PENDING_UPLOADS": str(limit)})
    try:
        key = server.create_key("org-many", "proj_many")
        start = threading.Barrier(n)

        def create(_: int) -> httpx.Response:
            with server.http(key) as http:
                start.wait()
                return http.post(
                    "/uploads",
                    json={"filename": "a", "purpose": "vision", "bytes": 1, "mime_type": "a/b"},
                )

        with ThreadPoolExecutor(n) as pool:
            answers = list(pool.map(create, range(n)))
        created = [r.json()["id"] for r in answers if r.status_code == 200]
        assert len(created) == limit
        message = (
            f"Project proj_many has {limit} pending uploads, the most it may have at once: "
            f"{_WAIT_FOR_PENDING}."
        )
        for r in answers:
            if r.status_code != 200:
                assert_error(r, 400, message, code="too_many_pending_uploads")
        with server.http(key) as http:
            assert len(http.get("/uploads").json()["data"]) == limit
            assert_error(_raw_create(http), 400, message, code="too_many_pending_uploads")
            http.post(f"/uploads/{created[0]}/cancel").raise_for_status()
            _create(http, bytes=1)
        with server.http(server.create_key("org-many", "proj_few")) as http:
            _create(http, bytes=1)
    finally:
        server.stop()


def _raw_create(http: httpx.Client) -> httpx.Response:
    body = {"filename": "a", "purpose": "vision", "bytes": 1, "mime_type": "a/b"}
    return http.post("/uploads", json=body)


def test_finished_uploads_are_kept_for_the_retention_then_forgotten(
    deployment: Deployment,
) -> None:
    retention = 7200
    server = deployment.app(env={"OPENAI_FILES_UPLOAD_RETENTION_SECONDS": str(retention)})
    try:
        key = server.create_key("org-kept", "proj_kept")
        with server.http(key) as http:
            done = _create(http, bytes=1)
            part = _part_id(http, done["id"], b"z")
            r = http.post(f"/uploads/{done['id']}/complete", json={"part_ids": [part]})
            file_id = r.json()["file"]["id"]
            cancelled = _create(http, bytes=1)
            http.post(f"/uploads/{cancelled['id']}/cancel").raise_for_status()
            pending = _create(http, bytes=1)
            # Within the retention (its hour ended a little less than `retention` ago), a
            # finished upload is listed and answered with its status, as before.
            now = int(time.time())
            for upload in (done, cancelled):
                _age_upload(server, upload, now - retention + 60)
            assert _sweep(server)["finished_uploads"] == 0
            listed = http.get("/uploads", params={"status": "all"}).json()["data"]
            assert {u["id"] for u in listed} == {done["id"], cancelled["id"], pending["id"]}
            assert_error(
                http.post(f"/uploads/{done['id']}/cancel"),
                400,
                f"Upload {done['id']} is already completed, so you cannot cancel it: its file "
                "is ready.",
                param="upload_id",
            )
            # Past it, the sweeper deletes their rows: unknown ids; the file stays.
            for upload in (done, cancelled):
                _age_upload(server, upload, now - retention - 1)
            assert _sweep(server)["finished_uploads"] == 2
            listed = http.get("/uploads", params={"status": "all"}).json()["data"]
            assert [u["id"] for u in listed] == [pending["id"]]
            for upload in (done, cancelled):
                uid = upload["id"]
                not_found = f"No such Upload object: {uid}"
                r = http.post(f"/uploads/{uid}/cancel")
                assert_error(r, 404, not_found, param="upload_id")
            assert http.get(f"/files/{file_id}/content").content == b"z"
            # The kind is one of the metrics' (the sweeper counts what `sweep` returns).
            metrics = server.app.state.metrics.registry.get_sample_value(
                "openai_files_swept_total", {"kind": "finished_uploads"}
            )
            assert metrics is not None
    finally:
        server.stop()


# -- listing (ours) ---------------------------------------------------------------------


def test_list_uploads(server: AppServer, http: httpx.Client, new_key: Callable[..., str]) -> None:
    def listed(**params: Any) -> dict[str, Any]:
        r = http.get("/uploads", params=params)
        assert r.status_code == 200, r.text
        page: dict[str, Any] = r.json()
        assert list(page) == ["object", "data", "has_more"] and page["object"] == "list"
        for item in page["data"]:
            _check_upload(item)
        return page

    def ids(page: dict[str, Any]) -> list[str]:
        return [u["id"] for u in page["data"]]

    assert listed() == {"object": "list", "data": [], "has_more": False}
    pending = [_create(http, bytes=3) for _ in range(3)]
    cancelled = _create(http, bytes=3)
    http.post(f"/uploads/{cancelled['id']}/cancel").raise_for_status()
    completed = _create(http, bytes=3)
    part = _part_id(http, completed["id"], b"abc")
    done = http.post(f"/uploads/{completed['id']}/complete", json={"part_ids": [part]}).json()
    expired = _create(http, bytes=3)
    _set_upload_expiry(server, expired["id"], int(time.time()) - 1)
    # One being completed shows, as everywhere, as pending.
    completing = _create(http, bytes=3)
    _sql(server, "UPDATE uploads SET status = 'completing' WHERE id = ?", completing["id"])

    def newest_first(*uploads: dict[str, Any]) -> list[str]:
        ordered = sorted(uploads, key=lambda u: (u["created_at"], u["id"]), reverse=True)
        return [u["id"] for u in ordered]

    default = listed()
    assert ids(default) == newest_first(*pending, completing) and not default["has_more"]
    assert all(u["status"] == "pending" and u["file"] is None for u in default["data"])
    assert listed(status="pending") == default
    assert ids(listed(status="cancelled")) == [cancelled["id"]]
    only_done = listed(status="completed")["data"]
    assert only_done == [done]  # with its file
    assert only_done[0]["file"]["id"] == done["file"]["id"]
    exp = listed(status="expired")["data"]
    assert [(u["id"], u["status"]) for u in exp] == [(expired["id"], "expired")]
    everything = listed(status="all")
    assert ids(everything) == newest_first(*pending, cancelled, completed, expired, completing)

    # Pages: `limit` and `has_more`.
    first = listed(limit=2)
    assert ids(first) == ids(default)[:2] and first["has_more"]
    assert listed(limit=4)["has_more"] is False
    assert listed(status="all", limit=7)["has_more"] is False
    assert listed(status="all", limit=6)["has_more"] is True
    assert listed(status="expired", limit=1)["has_more"] is False

    # Once swept, an expired upload is still listed as expired.
    _set_upload_expiry(server, expired["id"], int(time.time()) - 601)
    _sweep(server)
    assert ids(listed(status="expired")) == [expired["id"]]

    # Another tenant's uploads are not listed.
    with server.http(new_key()) as other:
        r = other.get("/uploads", params={"status": "all"})
        assert r.json() == {"object": "list", "data": [], "has_more": False}

    for bad in ("0", "1001", "-1", "x", "1.5"):
        assert_error(
            http.get("/uploads", params={"limit": bad}),
            400,
            f"Invalid 'limit': expected an integer between 1 and 1000, got {bad!r}.",
            param="limit",
        )
    assert_error(
        http.get("/uploads", params={"status": "completing"}),
        400,
        "Invalid value for 'status': 'completing'. Supported values are: 'pending', "
        "'completed', 'cancelled', 'expired', 'all'.",
        param="status",
    )


def test_the_last_sweep_shows_in_the_metrics(deployment: Deployment) -> None:
    """When the sweeper last ran, and what that run removed, are gauges of /metrics; the
    log says what it removed."""
    server = deployment.app(env={"OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "0.2"})
    try:
        registry = server.app.state.metrics.registry

        def gauge(name: str, **labels: str) -> float:
            value = registry.get_sample_value(name, labels)
            assert value is not None, name
            return float(value)

        # The first sweep ran at start.
        started = gauge("openai_files_sweep_last_run_timestamp_seconds")
        assert time.time() - 60 < started <= time.time()
        assert gauge("openai_files_sweep_last_success_timestamp_seconds") == started
        with server.http(server.create_key("org-sweep-gauge", "proj_sweep_gauge")) as http:
            uid = _create(http, bytes=4)["id"]
            part = _part_id(http, uid, b"abcd")
        _set_upload_expiry(server, uid, int(time.time()) - 601)
        deadline = time.monotonic() + 20
        while gauge("openai_files_sweep_last_removed", kind="expired_uploads") < 1:
            assert time.monotonic() < deadline, "no sweep removed the upload"
            time.sleep(0.05)
        last = gauge("openai_files_sweep_last_run_timestamp_seconds")
        assert started < last <= time.time()
        assert not _blob_exists(server, part)
        assert re.search(r"sweep removed \{[^}]*'expired_uploads': 1", server.log_text())
        # The next run removes nothing, and says so.
        deadline = time.monotonic() + 20
        while gauge("openai_files_sweep_last_removed", kind="expired_uploads") != 0:
            assert time.monotonic() < deadline, "no later sweep"
            time.sleep(0.05)
        assert gauge("openai_files_sweep_last_run_timestamp_seconds") > last
        rendered = server.app.state.metrics.render().decode()
        assert 'openai_files_sweep_last_removed{kind="expired_uploads"} 0.0' in rendered
    finally:
        server.stop()
