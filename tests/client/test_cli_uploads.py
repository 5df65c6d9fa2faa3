"""`openai-files upload` of a large file (one bar for the whole file) and `openai-files
uploads list | cancel`, through `main()`, against the real server."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from openai_files import Client
from openai_files._upload_state import STATE_SUFFIX
from openai_files.cli import main

from .._extras import import_or_skip

pytestmark = pytest.mark.usefixtures("env")

MIB = 1024 * 1024


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_upload_of_a_large_file_goes_in_parts_with_one_bar(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import_or_skip("rich", "cli")
    monkeypatch.setenv("OPENAI_FILES_UPLOAD_THRESHOLD", str(4 * MIB))
    monkeypatch.setenv("OPENAI_FILES_PART_SIZE", str(MIB))
    src = tmp_path / "big.bin"
    src.write_bytes(bytes(range(256)) * (9 * MIB // 256))
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code = main(["upload", str(src), "--purpose", "vision", "--json"])
    shown = terminal.getvalue()
    assert code == 0, shown
    f = json.loads(capsys.readouterr().out)
    assert f["bytes"] == 9 * MIB
    # One bar, for the whole file (not one per part of 1 MiB, which gets none).
    assert shown.count("upload big.bin") >= 1 and "9.4/9.4 MB" in shown
    assert "1.0/1.0 MB" not in shown
    with Client() as client:
        done = client.list_uploads(status="completed").data
        assert [u.file.id if u.file else None for u in done] == [f["id"]]
        assert client.content(f["id"]) == src.read_bytes()
    assert not (tmp_path / "big.bin.openai-upload.json").exists()


def test_uploads_list_and_cancel(capsys: pytest.CaptureFixture[str], client: openai.OpenAI) -> None:
    code = main(["uploads", "list"])
    assert code == 0 and capsys.readouterr().out == "no pending uploads\n"
    code = main(["uploads", "list", "--status", "all"])
    assert code == 0 and capsys.readouterr().out == "no uploads\n"
    upload = client.uploads.create(
        filename="big.bin", purpose="vision", bytes=3 * MIB, mime_type="image/png"
    )
    code = main(["uploads", "list"])
    out = capsys.readouterr().out
    header, row = out.splitlines()
    assert code == 0 and header.split()[:2] == ["ID", "BYTES"]
    assert row.startswith(upload.id) and row.endswith("vision   big.bin")
    code = main(["uploads", "cancel", upload.id])
    assert code == 0 and capsys.readouterr().out == f"cancelled {upload.id} (big.bin)\n"
    code = main(["uploads", "list", "--json", "--status", "cancelled"])
    listed = json.loads(capsys.readouterr().out)
    assert [(u["id"], u["status"]) for u in listed["data"]] == [(upload.id, "cancelled")]
    code = main(["uploads", "cancel", upload.id])
    err = capsys.readouterr().err
    assert code == 2 and "already cancelled" in err and err.count("\n") == 1


def test_uploads_list_of_all_statuses_has_a_status_column(
    capsys: pytest.CaptureFixture[str], client: openai.OpenAI
) -> None:
    made = [
        client.uploads.create(
            filename=f"{name}.bin", purpose="vision", bytes=MIB, mime_type="image/png"
        )
        for name in ("kept", "dropped")
    ]
    client.uploads.cancel(made[1].id)
    code = main(["uploads", "list", "--status", "all"])
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert code == 0 and header.split() == [
        "ID", "STATUS", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME",
    ]  # fmt: skip
    shown = {row.split()[0]: (row.split()[1], row.split()[-1]) for row in rows}
    assert shown == {made[0].id: ("pending", "kept.bin"), made[1].id: ("cancelled", "dropped.bin")}
    # One status: no column for it.
    code = main(["uploads", "list", "--status", "cancelled"])
    header, row = capsys.readouterr().out.splitlines()
    assert "STATUS" not in header and row.startswith(made[1].id)


def _interrupted_upload(src: Path, api_key: str, base_url: str) -> str:
    """An upload of `src` stopped after two parts, as by a crash; its id."""
    from .test_uploads import Interrupted, Watch, big_file

    big_file(src)
    watch = Watch(stop_after=2)
    options: dict[str, Any] = {"upload_threshold": MIB, "part_size": 256 * 1024}
    with (
        httpx.Client(transport=watch) as http,
        Client(api_key, base_url=base_url, http_client=http, max_retries=0, **options) as c,
        pytest.raises(Interrupted),
    ):
        c.upload(src, purpose="vision")
    assert (src.parent / (src.name + STATE_SUFFIX)).exists()
    return watch.upload_ids[0]


@pytest.mark.parametrize("by", ["id", "file", "state file"])
def test_uploads_cancel_removes_the_state_file(
    by: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "big.bin"
    upload_id = _interrupted_upload(src, env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"])
    given = {"id": upload_id, "file": "big.bin", "state file": "big.bin" + STATE_SUFFIX}[by]
    code = main(["uploads", "cancel", given])
    out = capsys.readouterr().out
    assert code == 0 and out == (
        f"cancelled {upload_id} (big.bin)\nremoved big.bin{STATE_SUFFIX}\n"
    )
    assert not (tmp_path / ("big.bin" + STATE_SUFFIX)).exists()
    with Client() as client:
        assert client.list_uploads(status="cancelled").data[0].id == upload_id
    # A file without a state file: nothing to cancel, said so.
    code = main(["uploads", "cancel", "big.bin"])
    err = capsys.readouterr().err
    assert code == 2 and "no upload of big.bin to cancel" in err


def test_upload_after_a_cancel_that_left_the_state_file_starts_afresh(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
) -> None:
    monkeypatch.setenv("OPENAI_FILES_UPLOAD_THRESHOLD", str(MIB))
    monkeypatch.setenv("OPENAI_FILES_PART_SIZE", str(256 * 1024))
    src = tmp_path / "big.bin"
    upload_id = _interrupted_upload(src, env["OPENAI_API_KEY"], env["OPENAI_BASE_URL"])
    # Cancelled from elsewhere (another folder, the console): the state file stays.
    with Client() as client:
        client.cancel_upload(upload_id)
    assert (tmp_path / ("big.bin" + STATE_SUFFIX)).exists()
    code = main(["upload", str(src), "--purpose", "vision", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    f = json.loads(captured.out)
    assert not (tmp_path / ("big.bin" + STATE_SUFFIX)).exists()
    with Client() as client:
        assert client.content(f["id"]) == src.read_bytes()
        completed = client.list_uploads(status="completed").data
        assert [u.id for u in completed] != [upload_id] and len(completed) == 1
