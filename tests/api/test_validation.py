"""Content validation on POST /v1/files, over the corpus in tests/data/validation/.

Each file of the corpus is uploaded in both modes: the default (OpenAI's check: JSON lines
of objects) on the session's app, strict on an app with `--strict-validation`. A refused
file gets a 400 naming its line or byte offset, and nothing is stored.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import assert_error

CORPUS = Path(__file__).resolve().parents[1] / "data" / "validation"
CASES: list[dict[str, Any]] = json.loads((CORPUS / "cases.json").read_text())["cases"]


@pytest.fixture(scope="module")
def strict(deployment: Deployment) -> Iterator[AppServer]:
    """An app of the deployment under test with strict validation on."""
    app = deployment.app(env={"OPENAI_FILES_STRICT_VALIDATION": "true"})
    try:
        yield app
    finally:
        app.stop()


def _tenant(app: AppServer) -> httpx.Client:
    suffix = uuid.uuid4().hex[:10]
    return app.http(app.create_key(f"org-val{suffix}", f"proj_val{suffix}"))


@pytest.fixture(scope="module")
def default_http(server: AppServer) -> Iterator[httpx.Client]:
    with _tenant(server) as c:
        yield c


@pytest.fixture(scope="module")
def strict_http(strict: AppServer) -> Iterator[httpx.Client]:
    with _tenant(strict) as c:
        yield c


def _expect(
    http: httpx.Client, case: dict[str, Any], expected: Any, response: httpx.Response
) -> None:
    if expected == "accepted":
        assert response.status_code == 200, response.text
        created = response.json()
        assert created["bytes"] == (CORPUS / case["file"]).stat().st_size
        assert http.delete(f"/files/{created['id']}").json()["deleted"] is True
        return
    error = assert_error(response, 400, re.compile(".+", re.S), param="file")
    message = error["message"]
    assert expected["contains"] in message, message
    if expected.get("line") is not None:
        assert re.search(rf"\bLine {expected['line']}\b", message), message
    if expected.get("offset") is not None:
        assert f"(byte offset {expected['offset']})" in message, message
    # Nothing is stored: the tenant has no file of the case's purpose.
    assert http.get("/files", params={"purpose": case["purpose"]}).json()["data"] == []


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_default_mode_is_openai_check(default_http: httpx.Client, case: dict[str, Any]) -> None:
    data = (CORPUS / case["file"]).read_bytes()
    response = default_http.post(
        "/files", files={"file": (case["file"], data)}, data={"purpose": case["purpose"]}
    )
    _expect(default_http, case, case["default"], response)


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_strict_mode(strict_http: httpx.Client, case: dict[str, Any]) -> None:
    data = (CORPUS / case["file"]).read_bytes()
    response = strict_http.post(
        "/files", files={"file": (case["file"], data)}, data={"purpose": case["purpose"]}
    )
    _expect(strict_http, case, case["strict"], response)


def _file_then_purpose(name: str, content: bytes, purpose: str) -> tuple[bytes, dict[str, str]]:
    """A form whose `file` part comes before `purpose` (the SDK sends purpose first)."""
    boundary = "validation-boundary-42"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: application/jsonl\r\n\r\n"
    ).encode()
    body += content
    body += (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n'
        f"{purpose}\r\n--{boundary}--\r\n"
    ).encode()
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("batch_good.jsonl", "default"),
        ("batch_not_json.jsonl", "default"),
        ("batch_duplicate_custom_id.jsonl", "strict"),
        ("finetune_chat_good.jsonl", "strict"),
        ("batch_empty.jsonl", "default"),
        ("batch_empty.jsonl", "strict"),
    ],
)
def test_purpose_after_the_file_is_checked_from_the_stored_bytes(
    default_http: httpx.Client, strict_http: httpx.Client, name: str, mode: str
) -> None:
    """When `purpose` follows the file, the stored bytes are read back once and checked
    before the file's row is written: the same answer as when it came first."""
    case = next(c for c in CASES if c["file"] == name)
    http = default_http if mode == "default" else strict_http
    body, headers = _file_then_purpose(name, (CORPUS / name).read_bytes(), case["purpose"])
    _expect(http, case, case[mode], http.post("/files", content=body, headers=headers))


def test_sdk_sees_openai_error(server: AppServer) -> None:
    """The official SDK raises BadRequestError with OpenAI's message for a CSV batch file."""
    import openai

    with server.openai(server.create_key("org-valsdk", "proj_valsdk")) as client:
        with pytest.raises(openai.BadRequestError) as caught:
            client.files.create(file=("in.jsonl", b"id,text\n1,hello\n"), purpose="batch")
        assert caught.value.body == {
            "message": "Expected file to have JSONL format, where every line is a JSON "
            'dictionary. Line 1 is not a dictionary (HINT: line starts with: "id,t...").',
            "type": "invalid_request_error",
            "param": "file",
            "code": None,
        }
        assert client.files.list().data == []


def test_both_upload_paths_validate_off_the_loop_in_bounded_pieces(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/files (purpose first: as the bytes arrive; purpose after: the stored bytes
    read back) and an upload's completion feed the validator by one policy: in a worker
    thread, never on the event loop, at most `VALIDATION_PIECE_BYTES` at a time."""
    import asyncio

    from openai_files.server import settings
    from openai_files.server.validation import JsonLinesValidator

    piece = 4096
    monkeypatch.setattr(settings, "VALIDATION_PIECE_BYTES", piece)
    fed: list[tuple[int, bool]] = []
    feed = JsonLinesValidator.feed

    def spy(self: JsonLinesValidator, chunk: bytes | memoryview) -> None:
        try:
            asyncio.get_running_loop()
            on_loop = True
        except RuntimeError:
            on_loop = False
        fed.append((len(chunk), on_loop))
        feed(self, chunk)

    monkeypatch.setattr(JsonLinesValidator, "feed", spy)
    content = b"".join(b'{"custom_id": "r%05d", "body": {}}\n' % i for i in range(1000))
    assert len(content) > 8 * piece
    key = server.create_key("org-valpieces", "proj_valpieces")
    with server.openai(key) as client, server.http(key) as http:
        client.files.create(file=("first.jsonl", content), purpose="batch")
        streamed = list(fed)
        body, headers = _file_then_purpose("after.jsonl", content, "batch")
        assert http.post("/files", content=body, headers=headers).status_code == 200
        read_back = fed[len(streamed) :]
        upload = client.uploads.create(
            filename="parts.jsonl", purpose="batch", bytes=len(content), mime_type="text/jsonl"
        )
        half = len(content) // 2
        parts = [
            client.uploads.parts.create(upload.id, data=d) for d in (content[:half], content[half:])
        ]
        done = client.uploads.complete(upload.id, part_ids=[p.id for p in parts])
        assert done.status == "completed"
        completed = fed[len(streamed) + len(read_back) :]
    for path in (streamed, read_back, completed):
        assert sum(n for n, _ in path) == len(content)
        assert max(n for n, _ in path) <= piece
        assert not any(on_loop for _, on_loop in path)
