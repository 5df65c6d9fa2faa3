"""The client commands of `openai-files`, through `main()`, against the real server."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import openai
import pytest

from openai_files.cli import _client_cmds as cmds
from openai_files.cli import main
from openai_files.cli._common import shown

from .._extras import import_or_skip

pytestmark = pytest.mark.usefixtures("env")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def upload_json(capsys: pytest.CaptureFixture[str], path: Path, *extra: str) -> dict[str, Any]:
    code, out, err = run(capsys, "upload", str(path), "--json", *extra)
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_upload_list_get_download_delete(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "train.jsonl"
    src.write_bytes(b'{"x": 1}\n' * 100)
    code, out, err = run(capsys, "upload", str(src), "--purpose", "fine-tune")
    assert code == 0 and err == ""
    assert out.startswith("uploaded file-") and "train.jsonl, 900 B, purpose fine-tune" in out
    file_id = out.split()[1].rstrip(":")

    code, out, _ = run(capsys, "list")
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ["ID", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME"]
    assert row.startswith(file_id) and row.endswith("fine-tune  train.jsonl")

    code, out, _ = run(capsys, "get", file_id)
    assert code == 0 and f"id:             {file_id}" in out and "bytes:          900" in out

    (tmp_path / "dl").mkdir()
    monkeypatch.chdir(tmp_path / "dl")
    code, out, _ = run(capsys, "download", file_id)
    assert code == 0 and out == f"saved {file_id} to train.jsonl (900 B)\n"
    assert (tmp_path / "dl" / "train.jsonl").read_bytes() == src.read_bytes()
    code, _, err = run(capsys, "download", file_id)
    assert (
        code == 2 and err == "openai-files: error: train.jsonl exists: use --force to replace it\n"
    )
    code, out, _ = run(capsys, "download", file_id, "-o", "copy.jsonl", "--json")
    assert code == 0 and json.loads(out) == {"id": file_id, "path": "copy.jsonl", "bytes": 900}

    code, out, _ = run(capsys, "delete", file_id)
    assert code == 0 and out == f"deleted {file_id}\n"
    code, out, _ = run(capsys, "list")
    assert code == 0 and out == "no files\n"


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"png")
    uploaded = upload_json(capsys, src, "--purpose", "vision", "--expires-after", "3600")
    assert uploaded["expires_at"] == uploaded["created_at"] + 3600
    other = upload_json(capsys, src, "--purpose", "vision", "--name", "b.png")
    code, out, _ = run(capsys, "list", "--json", "--limit", "1", "--order", "asc")
    page = json.loads(out)
    assert code == 0 and page["has_more"] is True and len(page["data"]) == 1
    code, out, _ = run(capsys, "list", "--all", "--json", "--purpose", "vision")
    assert json.loads(out)["data"] == sorted(
        [uploaded, other], key=lambda f: (f["created_at"], f["id"]), reverse=True
    )
    code, out, _ = run(capsys, "get", uploaded["id"], "--json")
    assert json.loads(out) == uploaded
    code, out, _ = run(capsys, "delete", uploaded["id"], "--json")
    assert json.loads(out) == {"id": uploaded["id"], "object": "file", "deleted": True}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        pytest.param(["get", "file-nope"], 2, "404: No such File object: file-nope [request req_",
                     id="not-found"),
        pytest.param(["upload", "{missing}", "--purpose", "vision"], 2, "no such file: ",
                     id="missing-local-file"),
        pytest.param(["upload", "{src}", "--purpose", "nope"], 2, "400: 'nope' is not one of",
                     id="bad-purpose"),
        pytest.param(["list", "--api-key", "sk-wrong-0123456789"], 2,
                     "401: Incorrect API key provided: sk-wron****6789", id="bad-key"),
        pytest.param(["list", "--base-url", "http://127.0.0.1:9/v1"], 1,
                     "cannot connect to http://127.0.0.1:9/v1: ", id="unreachable"),
    ],
)  # fmt: skip
def test_errors_are_one_line_with_an_exit_code(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], code: int, message: str
) -> None:
    src = tmp_path / "x.txt"
    src.write_bytes(b"x")
    argv = [a.format(missing=tmp_path / "missing.txt", src=src) for a in argv]
    got, out, err = run(capsys, *argv)
    assert got == code and out == ""
    assert err.startswith(f"openai-files: error: {message}") and err.count("\n") == 1, err


def test_no_key_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    code, _, err = run(capsys, "list")
    assert code == 2 and "--api-key" in err and "OPENAI_API_KEY" in err


def test_the_server_commands_are_still_there(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for command in [*cmds.COMMANDS, "serve", "keys"]:
        assert command in out


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_shows_rate_and_time_left_on_a_terminal() -> None:
    import_or_skip("rich", "cli")
    stream = Terminal()
    total = cmds.PROGRESS_MIN_BYTES
    with cmds.progress_bar("upload big.bin", stream=stream) as progress:
        assert progress is not None
        for done in range(0, total + 1, total // 4):
            progress(done, total)
    shown = stream.getvalue()
    assert "upload big.bin" in shown and "8.4/8.4 MB" in shown and "/s" in shown


def test_the_progress_bar_shows_a_name_as_it_is_escaped() -> None:
    """A name from the server (or a file) is text: rich's markup in it neither styles the
    bar nor, unbalanced, ends the command, and a bidi override shows as its escape."""
    stream = Terminal()
    total = cmds.PROGRESS_MIN_BYTES
    with cmds.progress_bar("download evil\u202e[/b][red]x.bin", stream=stream) as progress:
        assert progress is not None
        progress(total, total)
    shown = stream.getvalue()
    assert "download evil\\u202e[/b][red]x.bin" in shown and "\u202e" not in shown


def test_no_progress_bar_off_a_terminal_or_for_small_files() -> None:
    with cmds.progress_bar("x", stream=io.StringIO()) as progress:
        assert progress is None
    with cmds.progress_bar("x", enabled=False, stream=Terminal()) as progress:
        assert progress is None
    stream = Terminal()
    with cmds.progress_bar("small", stream=stream) as progress:
        assert progress is not None
        progress(10, 10)
    assert stream.getvalue() == ""


def test_no_progress_bar_without_rich(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "rich.progress", None)
    with cmds.progress_bar("x", stream=Terminal()) as progress:
        assert progress is None


#: The bidirectional controls (embeddings, overrides, isolates, marks) and other characters
#: that would not show.
HIDDEN = [*map(chr, range(0x202A, 0x202F)), *map(chr, range(0x2066, 0x206A))]
HIDDEN += ["\u200e", "\u200f", "\u061c", "\u200b", "\ufeff", "\u2028", "\x1b", "\U000e0041"]


def test_names_show_their_invisible_characters_escaped(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    client: openai.OpenAI,
) -> None:
    """`evil\\u202etxt.exe` would read `evilexe.txt` in a terminal: the tables and `get`
    show such characters as escapes, while the name stays as sent (`--json`, the API)."""
    src = tmp_path / "x.txt"
    src.write_bytes(b"x")
    name = "evil\u202etxt.exe"
    code, out, _ = run(capsys, "upload", str(src), "--purpose", "vision", "--name", name)
    assert code == 0 and "evil\\u202etxt.exe, 1 B" in out and "\u202e" not in out
    file_id = out.split()[1].rstrip(":")
    code, out, _ = run(capsys, "list")
    assert code == 0 and out.splitlines()[1].endswith("vision   evil\\u202etxt.exe")
    code, out, _ = run(capsys, "get", file_id)
    assert code == 0 and "filename:       evil\\u202etxt.exe\n" in out
    code, out, _ = run(capsys, "get", file_id, "--json")
    assert json.loads(out)["filename"] == name
    # `download` saves under the server's name, and says so escaped.
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "download", file_id)
    assert code == 0 and out == f"saved {file_id} to evil\\u202etxt.exe (1 B)\n"
    assert (tmp_path / name).read_bytes() == b"x"
    # `uploads cancel` names the upload it cancelled, escaped too.
    upload = client.uploads.create(filename=name, purpose="vision", bytes=1, mime_type="image/png")
    code, out, _ = run(capsys, "uploads", "cancel", upload.id)
    assert code == 0 and out == f"cancelled {upload.id} (evil\\u202etxt.exe)\n"
    # Every bidirectional control and invisible character is escaped; what shows is kept,
    # the joiners of scripts and emoji too.
    for ch in HIDDEN:
        escape = f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
        assert shown(f"a{ch}b") == f"a{escape}b", hex(ord(ch))
    kept = "caf\u00e9 \u05e9\u05dc\u05d5\u05dd \U0001f468\u200d\U0001f469 "
    kept += "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"
    assert shown(kept) == kept
