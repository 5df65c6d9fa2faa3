"""The client commands' first-hour slips: which server they talk to, a base URL without
`/v1`, a closed pipe, a folder for a file, a missing download folder, a missing key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from openai_files import Client
from openai_files.cli import _client_cmds as cmds
from openai_files.cli import main

from .._server import ServerProcess

#: A port nothing listens on: a request sent there fails with "connection refused".
NOWHERE = "http://127.0.0.1:9/v1"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def help_text(capsys: pytest.CaptureFixture[str], command: str) -> str:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


@pytest.fixture
def some_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A key, for commands that fail before any server answers."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-some-key-0123456789")


# --- 1. which server -----------------------------------------------------------------------


@pytest.mark.parametrize("command", list(cmds.COMMANDS))
def test_help_says_the_default_is_openais_service(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    shown = help_text(capsys, command)
    assert "base URL: https://api.openai.com/v1 (the default: OpenAI's own service)" in shown
    assert "set OPENAI_BASE_URL=http://127.0.0.1:8000/v1" in shown


@pytest.mark.parametrize("command", list(cmds.COMMANDS))
def test_help_shows_the_base_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://files.example:8123/v1/")
    shown = help_text(capsys, command)
    assert "base URL: http://files.example:8123/v1 (from OPENAI_BASE_URL" in shown
    assert "OpenAI's own service" not in shown


@pytest.mark.usefixtures("some_key")
def test_unreachable_server_is_named_with_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "list", "--base-url", NOWHERE)
    assert code == 1 and out == ""
    assert err.startswith(f"openai-files: error: cannot connect to {NOWHERE}: ")
    assert err.endswith("(is the server running? set OPENAI_BASE_URL or --base-url)\n")
    assert err.count("\n") == 1


@pytest.mark.usefixtures("some_key")
def test_base_url_without_scheme_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "list", "--base-url", "127.0.0.1:9/v1")
    assert code == 1 and err.count("\n") == 1
    assert err.startswith("openai-files: error: bad base URL 127.0.0.1:9/v1: ")
    assert "set OPENAI_BASE_URL or --base-url, e.g. to http://127.0.0.1:8000/v1" in err


# --- 2. a base URL without /v1 ------------------------------------------------------------


@pytest.mark.usefixtures("env")
@pytest.mark.parametrize("suffix", ["", "/"])
def test_404_on_a_base_url_without_v1_suggests_it(
    capsys: pytest.CaptureFixture[str], server: ServerProcess, suffix: str
) -> None:
    code, out, err = run(capsys, "list", "--base-url", server.root_url + suffix)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(
        f"openai-files: error: 404: Invalid URL (GET /files) (did you mean {server.base_url}?)"
    ), err


@pytest.mark.usefixtures("env")
def test_404_of_a_missing_file_gets_no_suggestion(
    capsys: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    code, _, err = run(capsys, "get", "file-nope")
    assert code == 2 and err.startswith("openai-files: error: 404: No such File object: file-nope")
    assert "did you mean" not in err


# --- 3. a reader that goes away -----------------------------------------------------------


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "openai_files", *args]


def test_a_closed_pipe_ends_quietly_with_141(
    env: dict[str, str], server: ServerProcess, api_key: str
) -> None:
    # More JSON than a pipe holds, so that the command is still writing when we stop.
    with Client(api_key, base_url=server.base_url) as client, ThreadPoolExecutor(8) as pool:
        names = [f"{i:03d}-{'n' * 120}.txt" for i in range(300)]
        list(pool.map(lambda n: client.upload(b"x", purpose="vision", filename=n), names))
    proc = subprocess.Popen(
        cli("list", "--json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **env},
    )
    assert proc.stdout is not None and proc.stderr is not None
    head = [proc.stdout.readline(), proc.stdout.readline()]  # `| head -n 2`
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == 141  # as git and coreutils, killed by SIGPIPE
    assert head == [b"{\n", b'  "object": "list",\n']
    assert err == ""  # no "Traceback", no "BrokenPipeError", no "Exception ignored"


def test_a_pipe_closed_before_any_output_ends_quietly(env: dict[str, str]) -> None:
    # Output smaller than Python's buffer: written only when flushed, at the end.
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            cli("list", "--json"),
            stdout=write,
            stderr=subprocess.PIPE,
            env={**os.environ, **env},
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert done.returncode == 141
    assert done.stderr == b""


# --- 4. a folder to upload ----------------------------------------------------------------


@pytest.mark.usefixtures("some_key")
def test_upload_of_a_folder_says_so(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "some-folder"
    folder.mkdir()
    code, out, err = run(capsys, "upload", str(folder), "--purpose", "vision")
    assert (code, out) == (2, "")
    assert err == f"openai-files: error: is a directory: {folder} (upload takes a file)\n"
    code, _, err = run(capsys, "upload", str(tmp_path / "missing.txt"), "--purpose", "vision")
    assert code == 2 and err == f"openai-files: error: no such file: {tmp_path / 'missing.txt'}\n"


# --- 5. a download folder that is not there -----------------------------------------------


@pytest.mark.usefixtures("some_key")
def test_download_checks_the_folder_before_any_request(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # Nothing listens at NOWHERE: a request would end in "cannot connect".
    target = tmp_path / "missing" / "dir" / "x.txt"
    code, out, err = run(capsys, "download", "file-abc", "-o", str(target), "--base-url", NOWHERE)
    assert (code, out) == (2, "")
    assert err == (
        f"openai-files: error: no such directory: {target.parent} (create it, or give another -o)\n"
    )
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_bytes(b"x")
    code, _, err = run(
        capsys, "download", "file-abc", "-o", str(not_a_folder / "x"), "--base-url", NOWHERE
    )
    assert code == 2
    assert err == f"openai-files: error: not a directory: {not_a_folder} (give another -o)\n"


@pytest.mark.usefixtures("env")
def test_download_into_a_missing_folder_on_the_real_server(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(b"hello")
    code, out, _ = run(capsys, "upload", str(src), "--purpose", "vision", "--json")
    assert code == 0
    file_id = json.loads(out)["id"]
    target = tmp_path / "missing" / "a.txt"
    for some_id in (file_id, "file-nope"):  # the missing file's 404 never comes
        code, _, err = run(capsys, "download", some_id, "-o", str(target))
        assert code == 2
        assert err == (
            f"openai-files: error: no such directory: {target.parent} "
            "(create it, or give another -o)\n"
        )
    assert not target.parent.exists()
    target.parent.mkdir()
    code, _, err = run(capsys, "download", file_id, "-o", str(target))
    assert code == 0 and target.read_bytes() == b"hello", err


# --- 6. keys: the server's word, and where to make one ------------------------------------


def test_no_key_for_a_local_server_says_how_to_create_one(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1")
    code, _, err = run(capsys, "list")
    assert code == 2 and err.count("\n") == 1
    assert "--api-key" in err and "OPENAI_API_KEY" in err
    assert err.endswith(
        "For the server at http://127.0.0.1:8000/v1, create one on the server with "
        "`openai-files keys create`.\n"
    )


def test_no_key_for_openai_does_not_mention_keys_create(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    code, _, err = run(capsys, "list")
    assert code == 2 and "OPENAI_API_KEY" in err
    assert "keys create" not in err


@pytest.mark.usefixtures("env")
def test_401_shows_the_servers_own_message(
    capsys: pytest.CaptureFixture[str], server: ServerProcess
) -> None:
    key = "sk-wrong-0123456789"
    answer = httpx.get(f"{server.base_url}/files", headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 401
    message = answer.json()["error"]["message"]
    code, _, err = run(capsys, "list", "--api-key", key)
    assert code == 2
    assert err.startswith(f"openai-files: error: 401: {message} [request req_")
    assert "platform.openai.com" not in err
