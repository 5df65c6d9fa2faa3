"""The official `openai` SDK's `files` resource, sync and async, against the app."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path

import openai
import pytest

from .._inprocess import AppServer
from .._server import Deployment
from ._contract import assert_schema

ALL_BYTES = bytes(range(256)) * 4


def test_create_retrieve_list_content_delete(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "example.pdf"
    path.write_bytes(b"%PDF-1.4 example")
    before = int(time.time())
    response = client.files.with_raw_response.create(file=path, purpose="assistants")
    raw = response.http_response.json()
    assert_schema("OpenAIFile", raw)
    assert list(raw) == [
        "id",
        "object",
        "bytes",
        "created_at",
        "expires_at",
        "filename",
        "purpose",
        "status",
        "status_details",
    ]
    created = response.parse()
    assert created.id.startswith("file-") and len(created.id) >= 5 + 22
    assert created.object == "file"
    assert created.bytes == len(b"%PDF-1.4 example")
    assert before <= created.created_at <= int(time.time())
    assert created.expires_at is None
    assert created.filename == "example.pdf"
    assert created.purpose == "assistants"
    assert created.status == "processed"
    assert created.status_details is None

    assert client.files.retrieve(created.id) == created
    page = client.files.list()
    assert [f.id for f in page.data] == [created.id]
    assert page.has_more is False

    deleted = client.files.delete(created.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (created.id, "file", True)
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    assert client.files.list().data == []


def test_ids_are_random_and_unique(client: openai.OpenAI) -> None:
    ids = [client.files.create(file=("a.txt", b"x"), purpose="user_data").id for _ in range(20)]
    assert len(set(ids)) == 20
    assert len({i[5:9] for i in ids}) > 1  # no shared (sequential) prefix


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"", id="empty"),
        pytest.param(ALL_BYTES, id="all-256-byte-values"),
        pytest.param(b"\r\n--boundary-like\r\n" * 1000, id="boundary-lookalike"),
    ],
)
def test_content_round_trip(client: openai.OpenAI, content: bytes) -> None:
    created = client.files.create(file=("blob.bin", content), purpose="vision")
    assert created.bytes == len(content)
    response = client.files.content(created.id)
    assert response.content == content
    assert response.response.headers["content-length"] == str(len(content))


def test_path_file_object_and_tuple_with_mime_type(client: openai.OpenAI, tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_bytes(b'{"x": 1}\n')
    with path.open("rb") as fh:
        from_handle = client.files.create(file=fh, purpose="fine-tune")
    from_tuple = client.files.create(
        file=("pic.png", io.BytesIO(ALL_BYTES), "image/png"), purpose="vision"
    )
    assert from_handle.filename == "data.jsonl"
    assert client.files.content(from_handle.id).content == b'{"x": 1}\n'
    response = client.files.content(from_tuple.id)
    assert response.response.headers["content-type"] == "image/png"
    assert response.content == ALL_BYTES


@pytest.mark.parametrize(
    "name",
    [
        "résumé 東京.txt",
        "emoji 🎉.txt",
        'quote"and;semi.txt',
        "spaces  and %41.txt",
        "  padded .txt  ",
        "Cafe\u0301.txt",  # decomposed: kept as given, not normalized
    ],
)
def test_non_ascii_and_odd_filenames(client: openai.OpenAI, name: str) -> None:
    created = client.files.create(file=(name, b"hello"), purpose="user_data")
    assert created.filename == name
    assert client.files.retrieve(created.id).filename == name
    client.files.delete(created.id)


def test_filename_is_a_base_name(client: openai.OpenAI) -> None:
    created = client.files.create(file=("../../etc/passwd", b"x"), purpose="vision")
    assert created.filename == "passwd"


def test_content_disposition_names_the_file(client: openai.OpenAI) -> None:
    created = client.files.create(file=("tëst.jsonl", b"{}\n"), purpose="batch")
    headers = client.files.content(created.id).response.headers
    assert headers["content-disposition"] == (
        "attachment; filename=\"t_st.jsonl\"; filename*=UTF-8''t%C3%ABst.jsonl"
    )
    assert headers["x-content-type-options"] == "nosniff"


def test_expires_after(client: openai.OpenAI) -> None:
    created = client.files.create(
        file=("a.txt", b"x"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    assert created.expires_at == created.created_at + 3600
    assert client.files.retrieve(created.id).expires_at == created.expires_at


def test_batch_files_expire_after_30_days_by_default(client: openai.OpenAI) -> None:
    batch = client.files.create(file=("in.jsonl", b"{}\n"), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600
    other = client.files.create(file=("in.jsonl", b"{}\n"), purpose="fine-tune")
    assert other.expires_at is None
    longer = client.files.create(
        file=("in.jsonl", b"{}\n"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert longer.expires_at == longer.created_at + 7200


def test_an_expired_file_is_gone_at_once(
    client: openai.OpenAI, server: AppServer, deployment: Deployment
) -> None:
    keep = client.files.create(file=("keep.jsonl", b"{}\n"), purpose="batch")
    gone = client.files.create(
        file=("gone.txt", b"x"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 3600},
    )
    deployment.expire(server, gone.id, int(time.time()) - 1)  # as if an hour had passed
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(gone.id)
    with pytest.raises(openai.NotFoundError):
        client.files.delete(gone.id)
    assert [f.id for f in client.files.list()] == [keep.id]


def test_with_raw_response_headers(client: openai.OpenAI) -> None:
    raw = client.files.with_raw_response.create(file=("a.txt", b"abc"), purpose="user_data")
    created = raw.parse()
    assert raw.status_code == 200
    assert raw.headers["x-request-id"].startswith("req_")
    assert raw.request_id == raw.headers["x-request-id"]
    assert raw.headers["openai-version"] == "2020-10-01"
    assert int(raw.headers["openai-processing-ms"]) >= 0
    assert raw.headers["openai-organization"].startswith("org-")
    listed = client.files.with_raw_response.list()
    assert listed.headers["x-request-id"] != raw.headers["x-request-id"]
    assert [f.id for f in listed.parse().data] == [created.id]
    assert_schema("ListFilesResponse", listed.http_response.json())
    retrieved = client.files.with_raw_response.retrieve(created.id)
    assert_schema("OpenAIFile", retrieved.http_response.json())
    assert client.files.with_raw_response.delete(created.id).parse().deleted


def test_with_streaming_response(client: openai.OpenAI, tmp_path: Path) -> None:
    created = client.files.create(file=("a.bin", ALL_BYTES * 1000), purpose="vision")
    with client.files.with_streaming_response.content(created.id) as response:
        assert response.headers["content-length"] == str(len(ALL_BYTES) * 1000)
        out = tmp_path / "out.bin"
        response.stream_to_file(out)
    assert out.read_bytes() == ALL_BYTES * 1000
    with client.files.with_streaming_response.retrieve(created.id) as response:
        assert response.parse().id == created.id


def test_write_to_file(client: openai.OpenAI, tmp_path: Path) -> None:
    created = client.files.create(file=("out.jsonl", b'{"a": 1}\n'), purpose="batch")
    client.files.content(created.id).write_to_file(tmp_path / "out.jsonl")
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"a": 1}\n'


def test_list_purpose_filter(client: openai.OpenAI) -> None:
    batch = client.files.create(file=("b.jsonl", b"{}\n"), purpose="batch")
    vision = client.files.create(file=("v.png", b"png"), purpose="vision")
    assert [f.id for f in client.files.list(purpose="batch")] == [batch.id]
    assert [f.id for f in client.files.list(purpose="vision")] == [vision.id]
    assert list(client.files.list(purpose="evals")) == []
    assert {f.id for f in client.files.list()} == {batch.id, vision.id}


def test_async_client(aclient: openai.AsyncOpenAI) -> None:
    async def run() -> None:
        async with aclient:
            created = await asyncio.gather(
                *(
                    aclient.files.create(file=(f"{i}.txt", b"%d" % i), purpose="vision")
                    for i in range(10)
                )
            )
            ids = {f.id for f in created}
            seen = [f.id async for f in aclient.files.list(limit=3)]
            assert sorted(seen) == sorted(ids) and len(seen) == 10
            assert (await aclient.files.retrieve(created[0].id)).id == created[0].id
            aclient_content = await aclient.files.content(created[3].id)
            assert aclient_content.content == b"3"
            raw = await aclient.files.with_raw_response.list()
            assert raw.headers["x-request-id"].startswith("req_")
            async with aclient.files.with_streaming_response.content(created[4].id) as resp:
                assert await resp.read() == b"4"
            assert (await aclient.files.delete(created[0].id)).deleted
            with pytest.raises(openai.NotFoundError):
                await aclient.files.retrieve(created[0].id)

    asyncio.run(run())


def test_wait_for_processing_and_retrieve_content(client: openai.OpenAI) -> None:
    created = client.files.create(file=("t.jsonl", b'{"q": "\xc3\xa9"}\n'), purpose="fine-tune")
    assert client.files.wait_for_processing(created.id, poll_interval=0.01).status == "processed"
    with pytest.warns(DeprecationWarning):
        text = client.files.retrieve_content(created.id)
    assert text == '{"q": "é"}\n'
