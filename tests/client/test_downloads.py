"""Downloads: the direct read path of large bodies, and durable or not.

The real server serves the bytes; a scripted server on a real loopback socket sends what a
server should not (a body cut short, a stall), so that the path reading the socket itself
meets them as it would in use.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_files import APITimeoutError, Client, IncompleteDownloadError, _sink

from ._helpers import KEY

MiB = 1024 * 1024
#: Above the size from which the direct read path is used.
BIG = _sink.DIRECT_MIN_BYTES + 3 * MiB + 12345


def _pattern(size: int) -> bytes:
    block = hashlib.sha256(b"download").digest() * (MiB // 32)
    return (block * (size // len(block) + 1))[:size]


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of the writes into downloads' files (the real writes, recorded)."""
    sizes: list[int] = []
    write = _sink.DownloadSink.write

    def recorded(self: _sink.DownloadSink, chunk: Any) -> None:
        sizes.append(len(chunk))
        write(self, chunk)

    monkeypatch.setattr(_sink.DownloadSink, "write", recorded)
    return sizes


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `os.fsync` was called on (a file or a folder), each call made for real."""
    seen: list[str] = []
    fsync = os.fsync

    def recorded(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recorded)
    return seen


def test_a_large_download_is_read_from_the_socket_and_the_connection_serves_on(
    files: Any, tmp_path: Path, writes: list[int]
) -> None:
    data = _pattern(BIG)
    f = files.upload(data, purpose="vision", filename="big.bin")
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "big.bin"
    assert files.download(f.id, dest, progress=lambda d, t: seen.append((d, t))) == BIG
    assert dest.read_bytes() == data
    assert seen[0] == (0, BIG) and seen[-1] == (BIG, BIG)
    # Writes of a megabyte or more, where httpx hands out at most 64 KiB at a time.
    assert max(writes) >= _sink.RECEIVE_BUFFER
    assert sum(writes) == BIG
    # The connection the body was read from is closed, and the next request gets another.
    assert files.retrieve(f.id).bytes == BIG
    assert files.download(f.id, tmp_path / "again.bin") == BIG
    assert (tmp_path / "again.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again.bin", "big.bin"]


def test_a_small_download_keeps_the_connection(files: Any, tmp_path: Path) -> None:
    f = files.upload(b"small" * 1000, purpose="vision", filename="s.bin")
    for name in ("a.bin", "b.bin"):
        assert files.download(f.id, tmp_path / name) == 5000
        assert (tmp_path / name).read_bytes() == b"small" * 1000


def test_a_download_is_fsynced_only_when_asked(
    files: Any, tmp_path: Path, fsyncs: list[str]
) -> None:
    f = files.upload(b"durable", purpose="vision", filename="d.bin")
    files.download(f.id, tmp_path / "plain.bin")
    assert fsyncs == []
    assert (tmp_path / "plain.bin").read_bytes() == b"durable"
    files.download(f.id, tmp_path / "durable.bin", durable=True)
    # The file's bytes under its temporary name, then the folder that holds its new name.
    assert len(fsyncs) == 2
    assert Path(fsyncs[0]).parent == tmp_path and Path(fsyncs[0]).name.endswith(".part")
    assert fsyncs[1] == str(tmp_path)
    assert (tmp_path / "durable.bin").read_bytes() == b"durable"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["durable.bin", "plain.bin"]


class ScriptedServer:
    """One HTTP/1.1 answer per connection on a loopback socket: headers announcing
    `length` bytes, then `body`, then `then` ("close" the connection or "stall")."""

    def __init__(
        self, length: int, body: bytes, then: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self.length, self.body, self.then, self.tls = length, body, then, tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http{'s' if self.tls else ''}://127.0.0.1:{self.port}/v1"

    def serve(self) -> None:
        conn, _ = self.listener.accept()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\n"
                + f"content-length: {self.length}\r\n\r\n".encode()
                + self.body
            )
            if self.then == "stall":
                self.done.wait(30)

    def close(self) -> None:
        self.done.set()
        self.thread.join(30)
        self.listener.close()


@pytest.fixture
def scripted() -> Iterator[Any]:
    made: list[ScriptedServer] = []

    def make(
        length: int, body: bytes, then: str = "close", tls: ssl.SSLContext | None = None
    ) -> ScriptedServer:
        made.append(ScriptedServer(length, body, then, tls))
        return made[-1]

    yield make
    for server in made:
        server.close()


def test_a_large_body_cut_short_leaves_nothing(
    scripted: Any, tmp_path: Path, writes: list[int]
) -> None:
    server = scripted(BIG, _pattern(BIG - MiB - 7))
    with (
        Client(KEY, base_url=server.base_url, max_retries=0) as client,
        pytest.raises(IncompleteDownloadError, match=f"received {BIG - MiB - 7} of {BIG} bytes"),
    ):
        client.download("file-abc", tmp_path / "out.bin")
    assert max(writes) == _sink.RECEIVE_BUFFER  # the direct path met the end
    assert list(tmp_path.iterdir()) == []


def test_a_large_body_that_stalls_times_out_and_leaves_nothing(
    scripted: Any, tmp_path: Path, writes: list[int]
) -> None:
    server = scripted(BIG, _pattern(3 * MiB), then="stall")
    with (
        Client(KEY, base_url=server.base_url, max_retries=0, timeout=0.5) as client,
        pytest.raises(APITimeoutError),
    ):
        client.download("file-abc", tmp_path / "out.bin")
    # httpx's first chunk, then two full megabytes; the third, partly read, is not written.
    assert writes[1:] == [_sink.RECEIVE_BUFFER] * 2
    assert list(tmp_path.iterdir()) == []


def test_the_cli_downloads_durably_only_with_durable(
    env: dict[str, str], tmp_path: Path, fsyncs: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from openai_files.cli import main

    with Client() as client:
        file_id = client.upload(b"cli bytes", purpose="vision", filename="c.bin").id
    plain, durable = tmp_path / "plain.bin", tmp_path / "durable.bin"
    assert main(["download", file_id, "-o", str(plain), "--no-progress"]) == 0
    assert fsyncs == [] and plain.read_bytes() == b"cli bytes"
    assert main(["download", file_id, "-o", str(durable), "--no-progress", "--durable"]) == 0
    assert len(fsyncs) == 2 and fsyncs[1] == str(tmp_path)
    assert durable.read_bytes() == b"cli bytes"
    assert capsys.readouterr().out.count(f"saved {file_id} to ") == 2


def test_a_large_body_over_tls_is_read_from_the_tls_socket(
    scripted: Any, tmp_path: Path, writes: list[int]
) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    data = _pattern(BIG)
    server = scripted(BIG, data, tls=server_tls)
    client_tls = ssl.create_default_context(cafile=str(cert))
    out = tmp_path / "out" / "big.bin"
    out.parent.mkdir()
    with (
        httpx.Client(verify=client_tls, timeout=30) as http,
        Client(KEY, base_url=server.base_url, max_retries=0, http_client=http) as client,
    ):
        assert client.download("file-abc", out) == BIG
    assert out.read_bytes() == data
    # Reads of one TLS record each, gathered into writes of a megabyte.
    assert max(writes) == _sink.RECEIVE_BUFFER and sum(writes) == BIG
    assert list(out.parent.iterdir()) == [out]
