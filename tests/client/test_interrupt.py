"""Ctrl-C in a large upload: it stops at once (the parts in flight abandoned), keeps the
state file, says how to resume, and the resume sends only the missing parts.

The server is the real one on both deployments, reached through a proxy on loopback that
passes the client's bytes slowly, so that parts are in flight when the interrupt comes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openai_files import Client
from openai_files._upload_state import STATE_SUFFIX

from .._server import ServerProcess

#: Parts of four of the client's 1 MiB chunks (a part in flight is cut at a chunk's end).
PART = 4 * 1024 * 1024
PARTS = 8
#: Bytes a second each connection may send through the proxy: a part takes about 4 s, and
#: the 4 parts sent at once advance together, so that right after the first four are
#: accepted the next four have barely begun.
SLOW = 1024 * 1024
ABORT = struct.pack("ii", 1, 0)  # SO_LINGER: close with a reset


class SlowProxy:
    """A TCP proxy to `port` on loopback; the client's bytes pass at `rate` a second per
    connection (None: at full speed), the server's at full speed.

    Like a slow link, it holds little of what the client sent (a small receive buffer)
    and, when the client resets the connection, drops it and resets its own to the server:
    a part cut short by the client never reaches the server whole.
    """

    def __init__(self, port: int, rate: int | None) -> None:
        self.port = port
        self.rate = rate
        self.delay = 0.0  # seconds each piece of the server's answers is held
        self.sockets: list[socket.socket] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)  # inherited
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return  # closed
            server = socket.create_connection(("127.0.0.1", self.port))
            self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        try:
            while data := src.recv(16 * 1024):
                if slow and self.rate:
                    time.sleep(len(data) / self.rate)
                    if src.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                        # The client reset the connection meanwhile: what it sent and the
                        # link still held is lost, as is the connection to the server.
                        dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
                        break
                elif not slow and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            with contextlib.suppress(OSError):
                dst.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, ABORT)
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            if slow:
                dst.close()  # (reset, when the client's was)

    def close(self) -> None:
        self.listener.close()
        for sock in self.sockets:
            sock.close()


@pytest.fixture
def proxy(server: ServerProcess) -> Iterator[SlowProxy]:
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    made = SlowProxy(port, SLOW)
    yield made
    made.close()


def _source(path: Path) -> Path:
    block = os.urandom(PART)
    with path.open("wb") as fh:
        for i in range(PARTS):
            fh.write(i.to_bytes(4, "big") + block[4:])
    return path


def _accepted(log: str, upload_id: str) -> int:
    return len(re.findall(rf"POST /v1/uploads/{upload_id}/parts 200 ", log))


def _wait_for_parts(state: Path, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(json.loads(state.read_text())["parts"]) >= count:
                return
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} parts accepted in {timeout}s")


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen[str]) -> Iterator[None]:
    """Kill `proc` on the way out if it is still running, whatever went wrong."""
    try:
        yield
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """Send Ctrl-C to `proc`: its output, once it has exited with 130 within 2 s."""
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert took < 2.0, f"exited {took:.1f}s after Ctrl-C"
    return out, err


def test_ctrl_c_stops_the_upload_at_once_and_the_same_command_resumes_it(
    server: ServerProcess, api_key: str, proxy: SlowProxy, tmp_path: Path
) -> None:
    src = _source(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    env = {
        **os.environ,
        "OPENAI_API_KEY": api_key,
        "OPENAI_BASE_URL": proxy.url,
        "OPENAI_FILES_UPLOAD_THRESHOLD": str(PART),
        "OPENAI_FILES_PART_SIZE": str(PART),
    }
    command = [sys.executable, "-m", "openai_files", "upload", "big.bin", "--purpose", "vision"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with _reaped(proc):
        _wait_for_parts(state, 4)
        assert proc.poll() is None  # 4 parts to go, 4 s each
        out, err = _interrupt(proc)
    assert out == ""
    saved = json.loads(state.read_text())  # kept, for the resume
    upload_id, kept = saved["upload_id"], len(saved["parts"])
    assert 4 <= kept < PARTS
    assert err == (
        f"openai-files: interrupted: upload {upload_id} is kept, {kept} of {PARTS} parts sent "
        f"(state in big.bin{STATE_SUFFIX})\n"
        "openai-files: resume it (within its hour) with: openai-files upload big.bin "
        "--purpose vision\n"
        "openai-files: or cancel it with: openai-files uploads cancel big.bin\n"
    )
    # The parts in flight were cut short: none reaches the server whole later on.
    time.sleep(2)
    assert _accepted(server.log_text(), upload_id) == kept

    before = server.log_text()
    proxy.rate = None
    done = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    f = json.loads(done.stdout)
    resumed = _accepted(server.log_text()[len(before) :], upload_id)
    assert resumed == PARTS - kept  # only the missing parts
    assert not state.exists()
    with Client(api_key, base_url=server.base_url) as client:
        assert client.content(f["id"]) == src.read_bytes()


def test_ctrl_c_keeps_the_parts_the_server_took_whose_answers_were_on_their_way(
    server: ServerProcess, api_key: str, proxy: SlowProxy, tmp_path: Path
) -> None:
    """A part whose body went whole is taken by the server: Ctrl-C waits (a little) for its
    answer and keeps its id, so that the resume sends only the others and cancels nothing."""
    src = _source(tmp_path / "big.bin")
    env = _one_part_at_a_time(api_key, proxy)
    command = [sys.executable, "-m", "openai_files", "upload", "big.bin", "--purpose", "vision"]
    upload_id = _interrupt_as_a_part_lands(server, proxy, command, env, tmp_path)
    kept = 1

    before = server.log_text()
    proxy.delay = 0
    done = subprocess.run(
        [*command, "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    log = server.log_text()[len(before) :]
    assert _accepted(log, upload_id) == PARTS - kept  # only the missing parts
    assert f"/v1/uploads/{upload_id}/cancel" not in log
    assert f"POST /v1/uploads/{upload_id}/complete 200" in log
    with Client(api_key, base_url=server.base_url) as client:
        assert client.content(json.loads(done.stdout)["id"]) == src.read_bytes()


def _one_part_at_a_time(api_key: str, proxy: SlowProxy) -> dict[str, str]:
    """The environment of an upload through `proxy` in parts of PART bytes, one at a time."""
    return {
        **os.environ,
        "OPENAI_API_KEY": api_key,
        "OPENAI_BASE_URL": proxy.url,
        "OPENAI_FILES_UPLOAD_THRESHOLD": str(PART),
        "OPENAI_FILES_PART_SIZE": str(PART),
        # One part at a time: the one the server took is the only one whose answer is
        # waited for (on a slow store, others would take longer than the wait allows).
        "OPENAI_FILES_UPLOAD_CONCURRENCY": "1",
    }


def _interrupt_as_a_part_lands(
    server: ServerProcess,
    proxy: SlowProxy,
    command: list[str],
    env: dict[str, str],
    tmp_path: Path,
) -> str:
    """Run `command` (uploading big.bin), bodies at full speed and answers late; Ctrl-C once
    the server took the first part, before its answer came back. Checks that the part's id
    was kept all the same, and returns the upload's id."""
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    proxy.rate, proxy.delay = None, 0.3
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    with _reaped(proc):
        deadline = time.monotonic() + 30
        upload_id = ""
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError, ValueError):
                upload_id = upload_id or json.loads(state.read_text())["upload_id"]
            if upload_id and _accepted(server.log_text(), upload_id):
                break  # a part taken, its answer on its way
            time.sleep(0.01)
        assert upload_id and proc.poll() is None
        assert json.loads(state.read_text())["parts"] == {}
        _interrupt(proc)
    kept = len(json.loads(state.read_text())["parts"])
    time.sleep(1)
    assert _accepted(server.log_text(), upload_id) == kept == 1  # the part taken is kept
    return upload_id


def test_client_upload_raises_keyboard_interrupt_at_once(
    server: ServerProcess, api_key: str, proxy: SlowProxy, tmp_path: Path
) -> None:
    src = _source(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    main = threading.main_thread().ident
    assert main == threading.get_ident()
    sent: list[float] = []

    def interrupt() -> None:
        _wait_for_parts(state, 4)
        sent.append(time.monotonic())
        assert main is not None
        signal.pthread_kill(main, signal.SIGINT)  # Ctrl-C, delivered to the main thread

    ctrl_c = threading.Thread(target=interrupt, daemon=True)
    ctrl_c.start()
    with (
        Client(api_key, base_url=proxy.url, upload_threshold=PART, part_size=PART) as client,
        pytest.raises(KeyboardInterrupt),
    ):
        client.upload(src, purpose="vision")
    took = time.monotonic() - sent[0]
    ctrl_c.join()
    assert took < 0.5, f"raised {took:.2f}s after Ctrl-C"
    kept = len(json.loads(state.read_text())["parts"])
    assert 4 <= kept < PARTS
    # The parts in flight end at their chunk's end, cut short: none reaches the server whole.
    time.sleep(2)
    upload_id = json.loads(state.read_text())["upload_id"]
    assert _accepted(server.log_text(), upload_id) == kept
    # The same call resumes: only the missing parts go.
    proxy.rate = None
    before = server.log_text()
    with Client(api_key, base_url=proxy.url, upload_threshold=PART, part_size=PART) as client:
        f = client.upload(src, purpose="vision")
        assert _accepted(server.log_text()[len(before) :], upload_id) == PARTS - kept
        assert client.content(f.id) == src.read_bytes()
    assert not state.exists()


ASYNC_UPLOAD = """
import asyncio, sys
from openai_files import AsyncClient

async def main() -> None:
    async with AsyncClient(upload_threshold={part}, part_size={part}) as client:
        await client.upload(sys.argv[1], purpose="vision")

try:
    asyncio.run(main())
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_async_client_upload_stops_at_once_too(
    server: ServerProcess, api_key: str, proxy: SlowProxy, tmp_path: Path
) -> None:
    _source(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    env = {**os.environ, "OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": proxy.url}
    proc = subprocess.Popen(
        [sys.executable, "-c", ASYNC_UPLOAD.format(part=PART), "big.bin"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    with _reaped(proc):
        _wait_for_parts(state, 4)
        _interrupt(proc)
    saved = json.loads(state.read_text())
    kept = len(saved["parts"])
    assert 4 <= kept < PARTS
    time.sleep(2)
    assert _accepted(server.log_text(), saved["upload_id"]) == kept


def test_async_client_keeps_the_parts_the_server_took_whose_answers_were_on_their_way(
    server: ServerProcess, api_key: str, proxy: SlowProxy, tmp_path: Path
) -> None:
    """As `Client` does on Ctrl-C, a cancelled `AsyncClient` waits (a little) for the answer
    to a part whose body went whole, and keeps its id."""
    _source(tmp_path / "big.bin")
    command = [sys.executable, "-c", ASYNC_UPLOAD.format(part=PART), "big.bin"]
    env = _one_part_at_a_time(api_key, proxy)
    _interrupt_as_a_part_lands(server, proxy, command, env, tmp_path)
