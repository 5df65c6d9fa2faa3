"""`openai-files batches create | list | get | cancel`, through `main()`: their use checked
before any request, the view of a batch being waited for, then whole batches on the real
server run against the fake engine."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_files import (
    APIConnectionError,
    Batch,
    Client,
    InternalServerError,
    NotFoundError,
)
from openai_files.cli import _batches_cmds as bcmds
from openai_files.cli import main

from .._extras import import_or_skip
from .._server import ServerProcess
from .test_batches import ENDPOINT, batch_json, jsonl, request_line

#: Nothing listens here: a command that sent a request would fail with "cannot connect".
NOWHERE = "http://127.0.0.1:9/v1"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --- use, checked before any request -----------------------------------------------------


def test_help_names_the_commands_and_the_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["batches", "--help"])
    out = capsys.readouterr().out
    assert done.value.code == 0
    for command in ("create", "list", "get", "cancel"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["batches", "create", "--help"])
    out = capsys.readouterr().out
    for said in (
        "--endpoint",
        "--wait",
        "requests.output.jsonl",
        ".errors.jsonl",
        "openai-files batches get ID",
        "openai-files batches cancel ID",
        "file-...",
    ):
        assert said in out, said  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["{src}", "-o", "out.jsonl"], "-o/--output and --errors save a batch's "
                     "files: add --wait", id="output-without-wait"),
        pytest.param(["{src}", "--errors", "e.jsonl"], "-o/--output and --errors", id="errors"),
        pytest.param(["{src}", "--metadata", "novalue"], "--metadata takes KEY=VALUE, got "
                     "'novalue'", id="metadata-without-equals"),
        pytest.param(["{src}", "--metadata", "=v"], "--metadata takes KEY=VALUE", id="no-key"),
        pytest.param(["{src}", "--metadata", "k=1", "--metadata", "k=2"], "--metadata: 'k' is "
                     "given twice", id="metadata-twice"),
        pytest.param(["{missing}"], "no such file: {missing} (give a .jsonl file or a file id)",
                     id="missing-file"),
        pytest.param(["{dir}"], "is a directory: {dir}", id="directory"),
        pytest.param(["{src}", "--wait", "-o", "{taken}"], "{taken} exists: use --force",
                     id="output-exists"),
        pytest.param(["{src}", "--wait"], "{dir}/requests.output.jsonl exists: use --force",
                     id="default-output-exists"),
        pytest.param(["file-abc", "--wait", "--errors", "{taken}"], "{taken} exists",
                     id="errors-exist"),
        pytest.param(["{src}", "--wait", "-o", "{dir}/x", "--errors", "{dir}/x"],
                     "-o and --errors name the same file: {dir}/x", id="same-file"),
        pytest.param(["{src}", "--wait", "-o", "{dir}/nope/out.jsonl"], "no such directory: "
                     "{dir}/nope", id="no-folder"),
    ],
)  # fmt: skip
def test_bad_use_is_one_line_before_any_request(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")
    src = tmp_path / "requests.jsonl"
    src.write_text("{}\n")
    taken = tmp_path / "taken.jsonl"
    taken.write_text("")
    (tmp_path / "requests.output.jsonl").write_text("")  # where the default -o goes
    monkeypatch.chdir(tmp_path)
    names = {"src": src, "missing": tmp_path / "nope.jsonl", "dir": tmp_path, "taken": taken}
    argv = [a.format(**names) for a in argv]
    base = ["batches", "create", "--endpoint", "/v1/chat/completions", "--base-url", NOWHERE]
    code, out, err = run(capsys, *base, *argv)
    assert code == 2 and out == ""
    assert err.startswith(f"openai-files: error: {message.format(**names)}"), err
    assert err.count("\n") == 1


def test_the_results_are_named_after_the_file() -> None:
    paths = bcmds.result_paths
    assert paths("data/requests.jsonl", None, None) == (
        Path("data/requests.output.jsonl"),
        Path("data/requests.errors.jsonl"),
    )
    assert paths("file-abc", None, None) == (
        Path("file-abc.output.jsonl"),
        Path("file-abc.errors.jsonl"),
    )
    assert paths("r.jsonl", "out/results.jsonl", None) == (
        Path("out/results.jsonl"),
        Path("out/results.errors.jsonl"),
    )
    assert paths("r.jsonl", "x.output.jsonl", "e.txt") == (Path("x.output.jsonl"), Path("e.txt"))


def test_metadata_pairs() -> None:
    assert bcmds.parse_metadata([]) is None
    assert bcmds.parse_metadata(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}


# --- the view of a batch being waited for --------------------------------------------------


def batch(status: str, total: int = 0, completed: int = 0, failed: int = 0) -> Batch:
    counts = {"total": total, "completed": completed, "failed": failed}
    return Batch.from_dict(batch_json("batch_1", status=status, request_counts=counts))


def test_off_a_terminal_a_line_per_change_of_status() -> None:
    stream = io.StringIO()
    with bcmds.batch_view(stream=stream) as view:
        for b in (batch("validating"), batch("validating"), batch("in_progress", 10, 2),
                  batch("in_progress", 10, 5, 1), batch("completed", 10, 8, 2)):  # fmt: skip
            view(b)
    assert stream.getvalue().splitlines() == [
        "batch_1: validating",
        "batch_1: in_progress (2 of 10 requests done)",
        "batch_1: completed (10 of 10 requests done)",
    ]


def test_on_a_terminal_a_bar_of_the_requests() -> None:
    import_or_skip("rich", "cli")
    stream = Terminal()
    with bcmds.batch_view(stream=stream) as view:
        view(batch("validating"))
        view(batch("in_progress", 40, 10, 3))
        view(batch("completed", 40, 35, 5))
    shown = stream.getvalue()
    assert "batch_1 completed" in shown and "40/40" in shown and "5 failed" in shown
    stream = Terminal()
    with bcmds.batch_view(enabled=False, stream=stream) as view:
        view(batch("validating"))
    assert stream.getvalue() == "batch_1: validating\n"


def test_without_rich_lines_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "rich.progress", None)
    stream = Terminal()
    with bcmds.batch_view(stream=stream) as view:
        view(batch("in_progress", 3, 1))
    assert stream.getvalue() == "batch_1: in_progress (1 of 3 requests done)\n"


class Flaky:
    """A client whose `retrieve_batch` answers in turn from `answers` (errors are raised)."""

    def __init__(self, *answers: Batch | Exception) -> None:
        self.answers = list(answers)

    def retrieve_batch(self, batch_id: str) -> Batch:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def test_follow_waits_out_a_server_out_of_reach(monkeypatch: pytest.MonkeyPatch) -> None:
    request = httpx.Request("GET", "http://127.0.0.1:9/v1/batches/batch_1")
    down = APIConnectionError(request)
    busy = InternalServerError("Error code: 503 - busy", response=httpx.Response(503,
                               request=request), body=None)  # fmt: skip
    slept: list[float] = []
    monkeypatch.setattr(bcmds, "_sleep", slept.append)
    seen: list[str] = []
    client: Any = Flaky(down, busy, batch("in_progress", 2, 1), down, batch("completed", 2, 2))
    done = bcmds.follow(client, batch("validating"), lambda b: seen.append(b.status))
    assert done.status == "completed" and seen == ["validating", "in_progress", "completed"]
    assert slept == [bcmds.POLL_SECONDS] * 5
    # For longer than WAIT_PATIENCE_SECONDS, the error ends the wait.
    monkeypatch.setattr(bcmds, "WAIT_PATIENCE_SECONDS", -1.0)
    with pytest.raises(APIConnectionError):
        bcmds.follow(Flaky(down, batch("completed")), batch("validating"), seen.append)  # type: ignore[arg-type]
    gone = NotFoundError("Error code: 404 - gone", response=httpx.Response(404, request=request),
                         body=None)  # fmt: skip
    monkeypatch.setattr(bcmds, "WAIT_PATIENCE_SECONDS", 300.0)
    with pytest.raises(NotFoundError):  # not a server's trouble: at once
        bcmds.follow(Flaky(gone, batch("completed")), batch("validating"), seen.append)  # type: ignore[arg-type]


# --- on the real server, against the fake engine --------------------------------------------


@pytest.fixture
def batch_env(
    batch_server: ServerProcess, batch_key: str, monkeypatch: pytest.MonkeyPatch
) -> ServerProcess:
    """The commands pointed at the batch server, polling every 0.1 s."""
    for name in ("OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", batch_key)
    monkeypatch.setenv("OPENAI_BASE_URL", batch_server.base_url)
    monkeypatch.setattr(bcmds, "POLL_SECONDS", 0.1)
    return batch_server


def write_requests(path: Path, *lines: dict[str, Any]) -> Path:
    path.write_bytes(jsonl(*lines))
    return path


def test_create_wait_saves_the_output_and_error_files(
    capsys: pytest.CaptureFixture[str], batch_env: ServerProcess, tmp_path: Path
) -> None:
    src = write_requests(
        tmp_path / "requests.jsonl",
        request_line("a", "one"),
        request_line("b", "two", fault={"status": 400, "message": "no such model"}),
        request_line("c", "three"),
    )
    out_path = tmp_path / "out" / "results.jsonl"
    out_path.parent.mkdir()
    code, out, err = run(
        capsys, "batches", "create", str(src), "--endpoint", ENDPOINT, "--wait", "-o",
        str(out_path), "--metadata", "run=nightly",
    )  # fmt: skip
    assert code == 0, err
    lines = out.splitlines()
    size = src.stat().st_size
    assert lines[0].startswith("uploaded file-") and lines[0].endswith(f"requests.jsonl, {size} B")
    batch_id = lines[1].split()[1]
    assert lines[1].startswith(f"created {batch_id} (validating): {ENDPOINT} over file-")
    errors_path = tmp_path / "out" / "results.errors.jsonl"
    assert lines[2].startswith("saved output file-") and f"to {out_path} (" in lines[2]
    assert lines[3].startswith("saved errors file-") and f"to {errors_path} (" in lines[3]
    assert lines[4:] == [f"{batch_id} completed: 2 of 3 requests completed, 1 failed"]
    assert err.splitlines()[0] == f"{batch_id}: validating"  # off a terminal: lines
    assert err.splitlines()[-1] == f"{batch_id}: completed (3 of 3 requests done)"
    assert [json.loads(x)["custom_id"] for x in out_path.read_text().splitlines()] == ["a", "c"]
    assert [json.loads(x)["custom_id"] for x in errors_path.read_text().splitlines()] == ["b"]

    code, out, _ = run(capsys, "batches", "get", batch_id)
    assert code == 0 and f"id:                {batch_id}" in out
    assert "request_counts:    2 completed, 1 failed, 3 in all" in out
    assert "metadata.run:      nightly" in out and " UTC)" in out
    code, out, _ = run(capsys, "batches", "get", batch_id, "--json")
    got = json.loads(out)
    assert code == 0 and got["status"] == "completed" and got["metadata"] == {"run": "nightly"}
    code, out, _ = run(capsys, "batches", "list")
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "ENDPOINT", "DONE", "FAILED", "INPUT"]
    assert row.startswith(f"{batch_id}  completed  ") and f"{ENDPOINT}  3/3   1       file-" in row
    # The same again would replace the files: refused unless --force, before any batch.
    argv = ["batches", "create", str(src), "--endpoint", ENDPOINT, "--wait", "-o", str(out_path)]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err == f"openai-files: error: {out_path} exists: use --force to replace it\n"
    code, out, _ = run(capsys, "batches", "list", "--json")
    assert [b["id"] for b in json.loads(out)["data"]] == [batch_id]


def test_create_by_file_id_with_json(
    capsys: pytest.CaptureFixture[str],
    batch_env: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    src = write_requests(tmp_path / "r.jsonl", request_line("a", "one"))
    code, out, _ = run(capsys, "upload", str(src), "--purpose", "batch", "--json")
    file_id = json.loads(out)["id"]
    monkeypatch.chdir(tmp_path)
    code, out, err = run(
        capsys, "batches", "create", file_id, "--endpoint", ENDPOINT, "--wait", "--json"
    )
    assert code == 0, err
    batch = json.loads(out)  # nothing else on stdout
    assert batch["status"] == "completed" and batch["input_file_id"] == file_id
    saved = tmp_path / f"{file_id}.output.jsonl"
    assert json.loads(saved.read_text())["custom_id"] == "a"
    assert not (tmp_path / f"{file_id}.errors.jsonl").exists()  # no error file: none saved


def test_create_without_wait_then_get_list_and_cancel(
    capsys: pytest.CaptureFixture[str], batch_env: ServerProcess, tmp_path: Path
) -> None:
    slow = [request_line(str(i), "x", fault={"latency": 1}) for i in range(40)]
    src = write_requests(tmp_path / "slow.jsonl", *slow)
    code, out, _ = run(capsys, "batches", "create", str(src), "--endpoint", ENDPOINT)
    assert code == 0
    batch_id = out.splitlines()[1].split()[1]
    assert batch_id.startswith("batch_")
    code, out, _ = run(capsys, "batches", "cancel", batch_id)
    assert code == 0 and out in (f"{batch_id}: cancelling\n", f"{batch_id}: cancelled\n")
    code, out, _ = run(capsys, "batches", "create", str(src), "--endpoint", ENDPOINT, "--json")
    assert code == 0 and json.loads(out)["status"] == "validating"
    second = json.loads(out)["id"]
    code, out, _ = run(capsys, "batches", "list", "--limit", "1")
    shown = out.splitlines()[1].split()[0]  # made in one second: either comes first
    assert code == 0 and shown in (batch_id, second) and len(out.splitlines()) == 3
    assert out.splitlines()[2] == f"(more after {shown}: use --after {shown})"
    code, out, _ = run(capsys, "batches", "list", "--after", shown, "--json")
    assert [b["id"] for b in json.loads(out)["data"]] == list({batch_id, second} - {shown})
    code, out, err = run(capsys, "batches", "cancel", second, "--json")
    assert code == 0 and json.loads(out)["id"] == second, err


def test_wait_ends_non_zero_when_the_batch_fails(
    capsys: pytest.CaptureFixture[str], batch_env: ServerProcess, tmp_path: Path
) -> None:
    src = write_requests(
        tmp_path / "bad.jsonl",
        request_line("a", "x"),
        request_line("b", "y", url="/v1/embeddings"),
    )
    code, out, err = run(capsys, "batches", "create", str(src), "--endpoint", ENDPOINT, "--wait")
    batch_id = out.splitlines()[1].split()[1]
    assert code == 1 and len(out.splitlines()) == 2  # uploaded, created: nothing saved
    last = err.splitlines()[-1]
    assert last.startswith(f"openai-files: error: batch {batch_id} failed: line 2: ")
    assert last.endswith("[invalid_url]")
    assert not (tmp_path / "bad.output.jsonl").exists()


def test_ctrl_c_while_waiting_leaves_the_batch_running(
    capsys: pytest.CaptureFixture[str],
    batch_env: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = [request_line(str(i), "x", fault={"latency": 1}) for i in range(20)]
    src = write_requests(tmp_path / "slow.jsonl", *slow)

    def interrupt(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bcmds, "_sleep", interrupt)
    code, out, err = run(capsys, "batches", "create", str(src), "--endpoint", ENDPOINT, "--wait")
    assert code == 130
    batch_id = out.splitlines()[1].split()[1]
    assert err.splitlines()[1:] == [
        f"openai-files: interrupted: batch {batch_id} keeps running",
        f"openai-files: follow it with: openai-files batches get {batch_id}",
        f"openai-files: cancel it with: openai-files batches cancel {batch_id}",
    ]
    with Client() as client:
        assert client.retrieve_batch(batch_id).status in ("validating", "in_progress")
        assert client.cancel_batch(batch_id).status in ("cancelling", "cancelled")
    assert not (tmp_path / "slow.output.jsonl").exists()


def test_wait_ends_non_zero_when_the_batch_is_cancelled(
    capsys: pytest.CaptureFixture[str],
    batch_env: ServerProcess,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow = [request_line(str(i), "x", fault={"latency": 1}) for i in range(20)]
    src = write_requests(tmp_path / "slow.jsonl", *slow)
    cancelled: list[str] = []

    def cancel_once(batch: Batch) -> Batch:
        if not cancelled:
            with Client() as client:
                cancelled.append(client.cancel_batch(batch.id).id)
        return batch

    follow = bcmds.follow
    monkeypatch.setattr(
        bcmds, "follow", lambda client, batch, view: follow(client, cancel_once(batch), view)
    )
    code, _, err = run(capsys, "batches", "create", str(src), "--endpoint", ENDPOINT, "--wait")
    assert code == 1 and cancelled
    said = rf"openai-files: error: batch {cancelled[0]} cancelled: \d+ of \d+ requests completed, "
    assert re.fullmatch(said + r"\d+ failed", err.splitlines()[-1]), err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param(["get", "batch_nope"], "404: No batch found with id 'batch_nope'. [request ",
                     id="no-such-batch"),
        pytest.param(["cancel", "batch_nope"], "404: No batch found", id="cancel-no-such-batch"),
        pytest.param(["create", "{src}", "--endpoint", "/v1/nope"], "400: '/v1/nope' is not one "
                     "of", id="bad-endpoint"),
        pytest.param(["create", "file-nope", "--endpoint", ENDPOINT], "400: No such File object: "
                     "file-nope", id="no-such-input"),
        pytest.param(["list", "--limit", "0"], "400: Invalid 'limit'", id="bad-limit"),
    ],
)  # fmt: skip
def test_refusals_are_one_line(
    capsys: pytest.CaptureFixture[str],
    batch_env: ServerProcess,
    tmp_path: Path,
    argv: list[str],
    message: str,
) -> None:
    src = write_requests(tmp_path / "r.jsonl", request_line("a", "x"))
    code, out, err = run(capsys, "batches", *[a.format(src=src) for a in argv])
    # A refused batch leaves its file uploaded: the line saying so gives its id, to reuse.
    assert out == "" or re.fullmatch(r"uploaded file-\w+: r\.jsonl, \d+ B\n", out)
    assert code == 2 and err.startswith(f"openai-files: error: {message}"), err
    assert err.count("\n") == 1
