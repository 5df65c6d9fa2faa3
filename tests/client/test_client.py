"""`Client` and `AsyncClient` against the real server (each test runs with both)."""

from __future__ import annotations

import inspect
import io
from pathlib import Path
from typing import Any

import pytest

from openai_files import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    FileObject,
    MissingAPIKeyError,
    NotFoundError,
)


def test_roundtrip_from_and_to_paths(files: Any, tmp_path: Path) -> None:
    src = tmp_path / "report.pdf"
    src.write_bytes(bytes(range(256)) * 4096)  # 1 MiB
    f = files.upload(src, purpose="vision")
    assert isinstance(f, FileObject)
    assert (f.filename, f.bytes, f.purpose, f.status) == (
        "report.pdf",
        src.stat().st_size,
        "vision",
        "processed",
    )
    assert files.retrieve(f.id) == f
    out = tmp_path / "out" / "copy.pdf"
    out.parent.mkdir()
    assert files.download(f.id, out) == src.stat().st_size
    assert out.read_bytes() == src.read_bytes()
    assert list(out.parent.iterdir()) == [out]  # the temporary file is gone
    assert files.content(f.id) == src.read_bytes()
    deleted = files.delete(f.id)
    assert deleted.deleted and deleted.id == f.id
    with pytest.raises(NotFoundError):
        files.retrieve(f.id)


def test_upload_bytes_and_file_objects_with_names(files: Any) -> None:
    a = files.upload(b"hello", purpose="user_data", filename="hello.txt")
    assert (a.filename, a.bytes) == ("hello.txt", 5)
    buf = io.BytesIO(b"skip:payload")
    buf.seek(5)  # a file object is sent from where it stands
    b = files.upload(buf, purpose="vision", filename="p.bin", mime_type="application/x-test")
    assert b.bytes == 7 and files.content(b.id) == b"payload"
    c = files.upload(iter([b'{"a":', b" 1}\n"]), purpose="batch", filename="x.jsonl")
    assert c.bytes == 9 and c.expires_at is not None  # batch files expire by default


def test_expires_after(files: Any) -> None:
    f = files.upload(b"x", purpose="vision", filename="x.png", expires_after=3600)
    assert f.expires_at == f.created_at + 3600


def test_progress_callbacks(files: Any, tmp_path: Path) -> None:
    src = tmp_path / "data.bin"
    src.write_bytes(b"z" * 300_000)
    seen: list[tuple[int, int | None]] = []
    f = files.upload(src, purpose="vision", progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 300_000) and seen[-1] == (300_000, 300_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    got: list[tuple[int, int | None]] = []
    files.download(f.id, tmp_path / "copy.bin", progress=lambda d, t: got.append((d, t)))
    assert got[0] == (0, 300_000) and got[-1] == (300_000, 300_000)


def test_list_and_iter_files_follow_pages(files: Any) -> None:
    ids = {files.upload(b"x", purpose="vision", filename=f"{i}.png").id for i in range(5)}
    files.upload(b"{}\n", purpose="batch", filename="b.jsonl")
    page = files.list("vision", limit=2, order="asc")
    assert len(page.data) == 2 and page.has_more and page.last_id == page.data[-1].id
    nxt = files.list("vision", limit=2, order="asc", after=page.last_id)
    assert not {f.id for f in nxt.data} & {f.id for f in page.data}
    everything = list(files.iter_files("vision", page_size=2))
    assert [f.id for f in everything] == [f.id for f in files.list("vision").data]
    assert {f.id for f in everything} == ids
    assert len(list(files.iter_files(page_size=4))) == 6


def test_typed_errors_carry_the_error_fields(files: Any) -> None:
    with pytest.raises(NotFoundError) as nf:
        files.retrieve("file-nope")
    assert (nf.value.status_code, nf.value.param, nf.value.code) == (404, "id", None)
    assert nf.value.type == "invalid_request_error"
    assert nf.value.request_id is not None and nf.value.request_id.startswith("req_")
    assert "No such File object: file-nope" in str(nf.value)
    with pytest.raises(BadRequestError) as bad:
        files.upload(b"x", purpose="nonsense", filename="x.txt")
    assert bad.value.param == "purpose"
    f = files.upload(b"x", purpose="assistants", filename="x.txt")
    with pytest.raises(BadRequestError, match="Not allowed to download files of purpose"):
        files.content(f.id)


def test_a_refused_download_leaves_nothing(files: Any, tmp_path: Path) -> None:
    f = files.upload(b"x", purpose="assistants", filename="x.txt")
    with pytest.raises(BadRequestError):
        files.download(f.id, tmp_path / "x.txt")
    assert list(tmp_path.iterdir()) == []


def test_a_wrong_key_is_an_authentication_error(server: Any) -> None:
    import asyncio

    with (
        Client("sk-wrong-0123456789abcdef", base_url=server.base_url) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.list()
    assert info.value.code == "invalid_api_key" and info.value.status_code == 401

    async def use_async() -> None:
        async with AsyncClient("sk-wrong-0123456789abcdef", base_url=server.base_url) as aclient:
            await aclient.list()

    with pytest.raises(AuthenticationError):
        asyncio.run(use_async())


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_no_key_is_refused_at_construction(cls: type[Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(MissingAPIKeyError, match="OPENAI_API_KEY"):
        cls()


def test_environment_supplies_key_and_url(env: dict[str, str]) -> None:
    with Client() as client:
        assert client.base_url == env["OPENAI_BASE_URL"]
        assert client.list().data == []


def test_both_drivers_offer_the_same_methods() -> None:
    def public(cls: type[Any]) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_") and name != "close"
        }

    sync, asyn = public(Client), public(AsyncClient)
    assert sync.keys() == asyn.keys()
    for name, signature in sync.items():
        assert signature.parameters == asyn[name].parameters, name
        assert inspect.iscoroutinefunction(vars(AsyncClient)[name]) or name == "iter_files"
