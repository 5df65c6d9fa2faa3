"""The I/O-free parts: request building, the multipart body, paging, the public names."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import pytest
from python_multipart.multipart import MultipartParser

import openai_files
from openai_files import _core
from openai_files._config import Config, mask_key
from openai_files._models import FileList
from openai_files._types import UploadArgs

from ._helpers import Recorder, file_json, json_response

CONFIG = Config(api_key="sk-abcdefghijklmnop", base_url="http://files.test/v1")


def parse_multipart(body: bytes, boundary: str) -> list[tuple[dict[str, str], bytes]]:
    """The parts of a body as (headers, data), with the server's own parser."""
    parts: list[tuple[dict[str, str], bytes]] = []
    headers: dict[str, str] = {}
    field = bytearray()
    data = bytearray()

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_header_field(b: bytes, start: int, end: int) -> None:
        field[:] = b[start:end]

    def on_header_value(b: bytes, start: int, end: int) -> None:
        headers[field.decode().lower()] = b[start:end].decode()

    def on_part_data(b: bytes, start: int, end: int) -> None:
        data.extend(b[start:end])

    def on_part_end() -> None:
        parts.append((dict(headers), bytes(data)))

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
    }
    parser = MultipartParser(boundary.encode(), callbacks)
    parser.write(body)
    parser.finalize()
    return parts


def test_upload_body_is_multipart_with_an_exact_length() -> None:
    spec = _core.upload_spec(
        b"\x00\x01payload",
        UploadArgs("batch", filename='we"ird\r\nname.jsonl', expires_after=7200),
    )
    request = _core.build_request(CONFIG, spec)
    body = b"".join(request.stream)  # type: ignore[arg-type]
    assert int(request.headers["content-length"]) == len(body)
    assert spec.body is not None
    parts = parse_multipart(body, spec.body.boundary)
    assert [p[0]["content-disposition"] for p in parts] == [
        'form-data; name="purpose"',
        'form-data; name="expires_after[anchor]"',
        'form-data; name="expires_after[seconds]"',
        'form-data; name="file"; filename="we%22ird%0D%0Aname.jsonl"',
    ]
    assert [p[1] for p in parts] == [b"batch", b"created_at", b"7200", b"\x00\x01payload"]
    assert parts[3][0]["content-type"] == "application/octet-stream"


def test_request_headers() -> None:
    config = Config(
        api_key="sk-abcdefghijklmnop",
        base_url="http://files.test/v1",
        organization="org-1",
        project="proj_1",
        headers={"X-Extra": "1"},
    )
    request = _core.build_request(config, _core.content_spec("file-a/b"))
    assert request.url == "http://files.test/v1/files/file-a%2Fb/content"
    assert request.headers["authorization"] == "Bearer sk-abcdefghijklmnop"
    assert request.headers["accept"] == "application/binary"
    assert request.headers["openai-organization"] == "org-1"
    assert request.headers["openai-project"] == "proj_1"
    assert request.headers["x-extra"] == "1"
    assert request.headers["host"] == "files.test"
    assert request.extensions["timeout"]["read"] == 600.0


@pytest.mark.parametrize("bad", ["", "  ", None])
def test_a_file_id_is_required(bad: Any) -> None:
    with pytest.raises(ValueError, match="file id"):
        _core.retrieve_spec(bad)


def test_a_missing_path_fails_before_any_request(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError):
        _core.upload_spec(tmp_path / "missing.pdf", UploadArgs("vision"))


def test_mask_key() -> None:
    assert mask_key("sk-abc1234567890wxyz") == "sk-abc1****wxyz"
    assert mask_key("short") == "****"


def page(*ids: str, has_more: bool = True) -> FileList:
    return FileList.from_dict({"data": [file_json(i) for i in ids], "has_more": has_more})


def test_pager_follows_after_and_stops_on_a_repeated_page() -> None:
    pager = _core.Pager(None, page_size=2)
    assert [f.id for f in pager.take(page("a", "b"))] == ["a", "b"]
    assert pager.after == "b"
    assert [f.id for f in pager.take(page("c", "d"))] == ["c", "d"]
    assert pager.take(page("a", "b")) == [] and pager.done  # the server ignored `after`
    assert pager.next_page(CONFIG) is None


def test_pager_stops_on_the_last_page() -> None:
    pager = _core.Pager(None)
    assert len(pager.take(page("a", has_more=False))) == 1 and pager.done


def test_iter_files_stops_when_a_server_repeats_pages(drive: Any) -> None:
    body = {"object": "list", "data": [file_json("file-1"), file_json("file-2")], "has_more": True}
    rec = Recorder(json_response(200, body))  # the same page, whatever `after` says
    got = [f.id for f in drive(rec).iter_files(page_size=2)]
    assert got == ["file-1", "file-2"]
    assert len(rec.requests) == 2 and rec.requests[1].url.params["after"] == "file-2"


def test_all_is_sorted_and_complete() -> None:
    def isort_style(name: str) -> tuple[int, str]:  # ruff's RUF022: CONSTANTS, Classes, rest
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert openai_files.__all__ == sorted(openai_files.__all__, key=isort_style)
    public = {
        name
        for name, value in vars(openai_files).items()
        if not name.startswith("_") and not isinstance(value, type(sys))
    }
    assert public | {"__version__"} == set(openai_files.__all__)


def test_importing_the_package_pulls_in_only_httpx() -> None:
    code = (
        "import sys\n"
        "import httpx\n"
        "before = set(sys.modules)\n"
        "import openai_files\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "third = sorted(n for n in new - {'openai_files'} if n not in sys.stdlib_module_names)\n"
        "heavy = sorted({'starlette', 'uvicorn', 'openai', 'python_multipart', 'anyio'}\n"
        "               & {m.split('.')[0] for m in sys.modules})\n"
        "print(third, heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[] []"


def test_status_error_classes() -> None:
    from openai_files import _exceptions as E

    assert E.status_error_class(404) is E.NotFoundError
    assert E.status_error_class(418) is E.APIStatusError
    assert E.status_error_class(502) is E.InternalServerError
    request = httpx.Request("GET", "http://x")
    response = httpx.Response(400, request=request, headers={"x-request-id": "req_9"})
    body = {"error": {"message": "m", "type": "t", "param": "p", "code": 7}}
    error = E.BadRequestError("m", response=response, body=body)
    assert (error.code, error.param, error.type, error.request_id) == ("7", "p", "t", "req_9")
