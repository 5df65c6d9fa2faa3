"""`openai-files dev-stack` (make scaleout): PostgreSQL, S3 and replicas on one machine,
all of it gone after Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import psutil
import pytest

from .._server import openai_files_cli
from .._services import free_port


class DevStackProcess:
    """`openai-files dev-stack` as a user starts it; stdout read line by line, stderr to a
    file."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.err_path = tmp_path / "dev-stack.err"
        err = open(self.err_path, "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openai_files", "dev-stack", *args],
            stdout=subprocess.PIPE,
            stderr=err,
            # A session of its own, as a shell gives a command: Ctrl-C goes to its group.
            start_new_session=True,
        )
        err.close()
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode().rstrip("\n"))

    def end(self) -> None:
        """Kill it if it still runs (a failed test), and close its pipe."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)
        assert self.proc.stdout is not None
        self.proc.stdout.close()

    @property
    def stdout(self) -> str:
        return "\n".join(self.lines)

    @property
    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_for(
        self, pattern: str, where: str = "stdout", timeout: float = 120.0
    ) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.stdout if where == "stdout" else self.stderr, re.M)
            if found:
                return found
            assert self.proc.poll() is None, f"dev-stack exited:\n{self.stdout}\n{self.stderr}"
            time.sleep(0.1)
        self.proc.kill()
        raise AssertionError(f"no {pattern!r} in {timeout}s:\n{self.stdout}\n{self.stderr}")

    def pids(self) -> list[int]:
        return [int(p) for p in re.findall(r"\(pid (\d+)\)", self.stderr)]


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _processes_in(folder: str) -> list[str]:
    """Live processes whose command line names `folder` (PostgreSQL, weed, replicas)."""
    found = []
    for p in psutil.process_iter(["cmdline", "status"]):
        cmdline = " ".join(p.info["cmdline"] or [])
        if folder in cmdline and p.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(cmdline)
    return found


def _refused(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_two_replicas_share_the_stores_and_ctrl_c_removes_everything(tmp_path: Path) -> None:
    stack = DevStackProcess(tmp_path, "--port", "0")
    try:
        stack.wait_for(r"^Press Ctrl-C to stop everything and remove (\S+)$")
        out = stack.stdout
        folder = re.search(r"remove (\S+)$", out, re.M)[1]  # type: ignore[index]
        urls = re.findall(r"^  replica \d: (http://127\.0\.0\.1:\d+/v1)$", out, re.M)
        key = re.search(r"^export OPENAI_API_KEY=(\S+)$", out, re.M)[1]  # type: ignore[index]
        base = re.search(r"^export OPENAI_BASE_URL=(\S+)$", out, re.M)[1]  # type: ignore[index]
        assert len(urls) == 2 and urls[0] != urls[1] and base == urls[0]
        assert Path(folder).is_dir()
        ports = [int(p) for p in re.findall(r"127\.0\.0\.1:(\d+)", out)]
        # Two replicas, PostgreSQL and S3: four processes, each said with its PID.
        pids = stack.pids()
        assert len(pids) == 4 and not any(_gone(p) for p in pids), stack.stderr

        content = b'{"custom_id": "1"}\n' * 1000
        with (
            openai.OpenAI(base_url=urls[0], api_key=key, max_retries=0) as one,
            openai.OpenAI(base_url=urls[1], api_key=key, max_retries=0) as two,
        ):
            made = one.files.create(file=("requests.jsonl", content), purpose="batch")
            assert two.files.retrieve(made.id) == made
            assert two.files.content(made.id).content == content

        # Ctrl-C in a terminal: SIGINT to the command's process group.
        os.killpg(stack.proc.pid, signal.SIGINT)
        assert stack.proc.wait(60) == 0, stack.stderr
    finally:
        stack.end()
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p)]
    assert _processes_in(folder) == []
    assert not Path(folder).exists()
    assert all(_refused(p) for p in ports)
    assert "Traceback" not in stack.stderr
    assert f"stopped; removed {folder}" in stack.stderr


def test_sigterm_while_starting_stops_what_was_started(tmp_path: Path) -> None:
    stack = DevStackProcess(tmp_path, "--port", "0")
    try:
        found = stack.wait_for(r"PostgreSQL on 127\.0\.0\.1:(\d+) \(pid (\d+)\)", "stderr")
        folder = re.search(r"temporary folder (\S+)", stack.stderr)[1]  # type: ignore[index]
        port, pid = int(found[1]), int(found[2])
        assert not _gone(pid)
        stack.proc.send_signal(signal.SIGTERM)  # to the command alone, as `kill` does
        assert stack.proc.wait(60) == 0, stack.stderr
    finally:
        stack.end()
    assert _gone(pid) and _refused(port)
    assert _processes_in(folder) == []
    assert not Path(folder).exists()
    assert "Press Ctrl-C" not in stack.stdout


def test_a_taken_port_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    try:
        done = openai_files_cli(
            "dev-stack", "--port", str(port), env={**os.environ, "TMPDIR": str(temp)}
        )
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"openai-files: error: port {port} on 127.0.0.1 is taken: give another first port "
        "with --port (0: free ports)"
    )
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize("flag", ["--postgres-port", "--s3-port"])
def test_a_taken_service_port_is_one_line_before_anything_starts(tmp_path: Path, flag: str) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    temp = tmp_path / "tmp"
    temp.mkdir()
    try:
        done = openai_files_cli(
            "dev-stack", flag, str(port), env={**os.environ, "TMPDIR": str(temp)}
        )
    finally:
        taken.close()
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"openai-files: error: port {port} on 127.0.0.1 is taken: give another with {flag} "
        "(0: a free port)"
    )
    assert list(temp.iterdir()) == []


def test_postgresql_and_s3_listen_on_the_ports_given(tmp_path: Path) -> None:
    postgres_port, s3_port = free_port(), free_port()
    stack = DevStackProcess(
        tmp_path,
        *("--port", "0", "--replicas", "1"),
        *("--postgres-port", str(postgres_port), "--s3-port", str(s3_port)),
    )
    try:
        stack.wait_for(r"^Press Ctrl-C")
        out = stack.stdout
        assert f"  database:  postgresql://postgres@127.0.0.1:{postgres_port}/files" in out
        assert f"endpoint=http://127.0.0.1:{s3_port}&" in out, out
        assert f"PostgreSQL on 127.0.0.1:{postgres_port} " in stack.stderr
        assert f"S3 on http://127.0.0.1:{s3_port}, bucket files " in stack.stderr
        url = re.search(r"^  replica 1: (\S+)$", out, re.M)[1]  # type: ignore[index]
        key = re.search(r"^export OPENAI_API_KEY=(\S+)$", out, re.M)[1]  # type: ignore[index]
        with openai.OpenAI(base_url=url, api_key=key, max_retries=0) as client:
            made = client.files.create(file=("a.jsonl", b"{}\n"), purpose="batch")
            assert client.files.content(made.id).content == b"{}\n"
        os.killpg(stack.proc.pid, signal.SIGINT)
        assert stack.proc.wait(60) == 0, stack.stderr
    finally:
        stack.end()
    assert _refused(postgres_port) and _refused(s3_port)


def test_bad_options_are_usage_errors() -> None:
    for args in (
        ["--replicas", "0"],
        ["--port", "70000"],
        ["--postgres-port", "70000"],
        ["--s3-port", "-1"],
    ):
        done = openai_files_cli("dev-stack", *args)
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr


def test_one_port_for_two_services_is_a_usage_error() -> None:
    port = free_port()
    done = openai_files_cli("dev-stack", "--postgres-port", str(port), "--port", str(port))
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"openai-files: error: port {port} is asked for by both --postgres-port and --port: "
        "give each service a port of its own"
    )


def test_a_replica_that_dies_stops_the_rest(tmp_path: Path) -> None:
    stack = DevStackProcess(tmp_path, "--port", "0", "--replicas", "1")
    try:
        stack.wait_for(r"^Press Ctrl-C")
        folder = re.search(r"temporary folder (\S+)", stack.stderr)[1]  # type: ignore[index]
        replica = int(re.search(r"replica 1 at \S+ \(pid (\d+)\)", stack.stderr)[1])  # type: ignore[index]
        pids = stack.pids()
        os.kill(replica, signal.SIGKILL)
        assert stack.proc.wait(60) == 1
    finally:
        stack.end()
    assert "replica 1 exited (code -9): stopping everything" in stack.stderr
    assert all(_gone(p) for p in pids)
    assert _processes_in(folder) == []
    assert not Path(folder).exists()
