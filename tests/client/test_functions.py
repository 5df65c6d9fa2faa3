"""The seed's five calls and `assert_response_http_ok`, against the real server."""

from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import pytest

from openai_files import (
    MissingAPIKeyError,
    ResponseNotOKError,
    assert_response_http_ok,
    files_delete,
    files_list,
    files_retrieve,
    files_retrieve_content,
    files_upload,
)

from ._helpers import BASE_URL, Recorder, json_response

pytestmark = pytest.mark.usefixtures("env")

FILE_KEYS = [
    "id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
    "status_details",
]  # fmt: skip


def test_upload_retrieve_content_delete(tmp_path: Path) -> None:
    response = files_upload(b"%PDF-1.4 hello", "example.pdf", "application/pdf", "vision")
    assert_response_http_ok(response)
    assert response.status == 200 and response.mimetype == "application/json"
    assert list(response.data) == FILE_KEYS
    assert response.data["filename"] == "example.pdf" and response.data["bytes"] == 14
    assert response.headers["content-type"] == ["application/json"]
    assert response.request_id is not None and response.request_id.startswith("req_")
    file_id = response.data["id"]

    got = files_retrieve(file_id)
    assert_response_http_ok(got)
    assert got.data == response.data

    content = files_retrieve_content(file_id)
    assert_response_http_ok(content)
    assert content.data == b"%PDF-1.4 hello"
    assert content.mimetype == "application/pdf"

    deleted = files_delete(file_id)
    assert_response_http_ok(deleted)
    assert deleted.data == {"id": file_id, "object": "file", "deleted": True}
    assert files_retrieve(file_id).status == 404


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda p: p, id="path"),
        pytest.param(lambda p: str(p), id="str-path"),
        pytest.param(lambda p: p.open("rb"), id="file-object"),
        pytest.param(lambda p: io.BytesIO(p.read_bytes()), id="bytesio"),
    ],
)
def test_upload_accepts_paths_and_file_objects(tmp_path: Path, make: object) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"a": 1}\n' * 1000)
    data = make(path)  # type: ignore[operator]
    response = files_upload(data, "train.jsonl", "application/jsonl", "fine-tune")
    if hasattr(data, "close"):
        data.close()
    assert_response_http_ok(response)
    assert response.data["bytes"] == 9000
    assert files_retrieve_content(response.data["id"]).data == path.read_bytes()


def test_list_with_and_without_purpose() -> None:
    a = files_upload(b"x", "a.png", "image/png", "vision").data["id"]
    b = files_upload(b"{}\n", "b.jsonl", "application/jsonl", "batch").data["id"]
    everything = files_list(None)
    assert_response_http_ok(everything)
    assert everything.data["object"] == "list" and everything.data["has_more"] is False
    assert {f["id"] for f in everything.data["data"]} == {a, b}
    assert [f["id"] for f in files_list("batch").data["data"]] == [b]
    assert {f["id"] for f in files_list("  ").data["data"]} == {a, b}
    assert {f["id"] for f in files_list().data["data"]} == {a, b}


@pytest.mark.parametrize(
    ("purpose", "query"),
    [
        pytest.param(None, "", id="none"),
        pytest.param("", "", id="empty"),
        pytest.param("  ", "", id="blank"),
        pytest.param("batch", "purpose=batch", id="batch"),
    ],
)
def test_list_sends_purpose_only_when_given(purpose: str | None, query: str) -> None:
    recorder = Recorder(json_response(200, {"object": "list", "data": [], "has_more": False}))
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    files_list(purpose, base_url=BASE_URL, http_client=http)
    assert recorder.requests[0].url.query.decode() == query


def test_not_found_message_is_the_seeds() -> None:
    response = files_retrieve_content("file-qvrjsmEk7yPElJzMOegsf0xf")
    assert response.status == 404
    assert isinstance(response.data, str)  # the error body as text, as the seed says
    assert response.error["error"]["param"] == "id"
    with pytest.raises(ResponseNotOKError) as info:
        assert_response_http_ok(response)
    assert str(info.value) == (
        "HTTP response is not HTTP_OK!\n"
        "\n"
        "HTTP Status: 404\n"
        "Mimetype:    application/json\n"
        "\n"
        "Response:\n"
        "{\n"
        '  "error": {\n'
        '    "message": "No such File object: file-qvrjsmEk7yPElJzMOegsf0xf",\n'
        '    "type": "invalid_request_error",\n'
        '    "param": "id",\n'
        '    "code": null\n'
        "  }\n"
        "}"
    )
    assert info.value.response is response


def test_refused_download_message_is_the_seeds() -> None:
    file_id = files_upload(b"%PDF", "example.pdf", "application/pdf", "assistants").data["id"]
    response = files_retrieve_content(file_id)
    with pytest.raises(ResponseNotOKError) as info:
        assert_response_http_ok(response)
    assert str(info.value).startswith("HTTP response is not HTTP_OK!\n\nHTTP Status: 400\n")
    shown = str(info.value).split("Response:\n", 1)[1]
    assert json.loads(shown)["error"]["message"] == (
        "Not allowed to download files of purpose: assistants"
    )


def test_a_text_error_body_is_shown_as_it_came() -> None:
    recorder = Recorder(
        httpx.Response(
            502, text="Bad gateway\n  upstream down", headers={"content-type": "text/plain"}
        )
    )
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    response = files_list(None, base_url=BASE_URL, http_client=http, max_retries=0)
    assert response.data == "Bad gateway\n  upstream down" and response.error is None
    with pytest.raises(ResponseNotOKError) as info:
        assert_response_http_ok(response)
    assert str(info.value) == (
        "HTTP response is not HTTP_OK!\n\nHTTP Status: 502\nMimetype:    text/plain\n\n"
        "Response:\nBad gateway\n  upstream down"
    )


def test_assert_ok_returns_nothing_on_200() -> None:
    assert assert_response_http_ok(files_list(None)) is None  # type: ignore[func-returns-value]


def test_debug_prints_request_and_response_with_the_key_masked(
    api_key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    response = files_upload(b"hello", "hello.txt", "text/plain", "user_data", debug=True)
    assert_response_http_ok(response)
    err = capsys.readouterr().err
    assert api_key not in err
    assert f"authorization: Bearer {api_key[:7]}****{api_key[-4:]}" in err
    assert "> POST http://127.0.0.1:" in err and "/v1/files" in err
    assert "content-type: multipart/form-data; boundary=" in err
    assert "(body: " in err
    assert "< 200 OK (mimetype: application/json" in err
    assert f"x-request-id: {response.request_id}" in err


def test_the_key_option_wins_over_the_environment(new_key: object) -> None:
    other = new_key()  # type: ignore[operator]
    mine = files_upload(b"x", "x.txt", "text/plain", "user_data", openai_api_key=other)
    assert_response_http_ok(mine)
    assert files_list(None).data["data"] == []  # the environment's key: another tenant
    assert len(files_list(None, openai_api_key=other).data["data"]) == 1


def test_a_bad_key_is_an_answer_not_an_exception() -> None:
    response = files_list(None, openai_api_key="sk-wrong-key-0123456789")
    assert response.status == 401
    assert response.error["error"]["code"] == "invalid_api_key"
    assert "sk-wron****6789" in response.data


def test_no_key_fails_before_any_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    recorder = Recorder(json_response(200, {}))
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    with pytest.raises(MissingAPIKeyError) as info:
        files_list(None, http_client=http)
    assert "openai_api_key=" in str(info.value) and "OPENAI_API_KEY" in str(info.value)
    assert recorder.requests == []


def test_unknown_options_are_refused() -> None:
    with pytest.raises(TypeError, match="unknown option"):
        files_list(None, api_key="sk-x")  # type: ignore[call-arg]
