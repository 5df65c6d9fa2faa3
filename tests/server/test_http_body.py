"""The request body's buffer under uvicorn (server/_http.py): chunks kept, not copied."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.config import Config
from uvicorn.server import ServerState

from openai_files.server._http import SMALL_BODY_CHUNK, _BodyChunks, protocol_class
from openai_files.server.settings import Settings

from .._server import ServerProcess
from ._util import download, multipart_headers, multipart_parts, streamed_body

MiB = 1024 * 1024


def test_one_chunk_is_handed_over_as_is() -> None:
    chunk = os.urandom(SMALL_BODY_CHUNK)
    body = _BodyChunks()
    body += chunk
    assert len(body) == SMALL_BODY_CHUNK
    assert bytes(body) is chunk


def test_chunks_are_joined_in_order_and_small_ones_gathered() -> None:
    big = os.urandom(SMALL_BODY_CHUNK)
    body = _BodyChunks()
    for piece in (b"ab", b"", b"cde", big, b"f", b"gh", big):
        body += piece
    assert len(body) == 8 + 2 * SMALL_BODY_CHUNK
    assert bytes(body) == b"abcde" + big + b"fgh" + big
    assert type(bytes(body)) is bytes
    # Small chunks share one bytearray: a chunked body of 2-byte chunks holds no object
    # per chunk (uvicorn pauses the socket on bytes, not on chunks).
    assert len(body.chunks) == 4
    tiny = _BodyChunks()
    for _ in range(10_000):
        tiny += b"xy"
    assert len(tiny.chunks) == 1
    assert bytes(tiny) == b"xy" * 10_000
    assert bytes(_BodyChunks()) == b""


class _Transport:
    """What the protocol writes, and whether it paused reading."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.paused = False
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(
            name, default
        )

    def write(self, data: bytes) -> None:
        self.written += data

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def can_write_eof(self) -> bool:
        return False

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        return None


@pytest.mark.anyio
async def test_the_protocol_keeps_the_chunks_and_the_app_gets_bytes() -> None:
    """The protocol `openai-files serve` runs, fed by hand: the body goes to a _BodyChunks
    of its own (uvicorn's buffer stays empty), the app receives exact bytes in order, the
    socket pauses past 64 KiB until the app asks for more, `Expect: 100-continue` and a
    second request on the connection work."""
    bodies: list[list[bytes]] = []
    proceed = asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        got: list[bytes] = []
        bodies.append(got)
        while True:
            message = await receive()
            assert type(message["body"]) is bytes
            got.append(message["body"])
            if not message["more_body"]:
                break
            await proceed.wait()
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app=app, lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol = protocol_class(Settings())(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    big = os.urandom(100 * 1024)
    rest = [b"ab", b"cd", os.urandom(20 * 1024), b"ef"]
    length = len(big) + sum(map(len, rest))
    protocol.data_received(
        b"POST /v1/files HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\n"
        b"Content-Length: " + str(length).encode() + b"\r\n\r\n"
    )
    for _ in range(5):
        await asyncio.sleep(0)
    assert b"100 Continue" in transport.written  # the app asked for the body
    protocol.data_received(big)
    buffer = protocol.unanswered[0].body
    assert type(buffer) is _BodyChunks
    assert transport.paused  # 100 KiB buffered: past the high-water mark
    for _ in range(5):
        await asyncio.sleep(0)
    assert bodies == [[big]]
    assert transport.paused  # until the app asks for more
    for piece in rest:  # already on their way: several chunks in the buffer
        protocol.data_received(piece)
    assert len(buffer.chunks) == 3  # b"abcd", 20 KiB, b"ef"
    proceed.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert bodies[0][1:] == [b"".join(rest)]
    assert not transport.paused  # the app's read resumed the socket
    assert transport.written.endswith(b"ok")
    # The same connection, a second request: a buffer of its own.
    transport.written.clear()
    protocol.data_received(b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz")
    for _ in range(5):
        await asyncio.sleep(0)
    assert bodies[1] == [b"xyz"]
    assert transport.written.endswith(b"ok")
    protocol.connection_lost(None)


def test_a_body_in_uneven_pieces_arrives_whole(tmp_path: Path) -> None:
    """Pieces of 1 byte to 300 KiB with pauses: the server's buffer holds one chunk at some
    reads and several at others (while a 1 MiB write is on its thread); the stored bytes
    are the sent bytes."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        key = server.first_key
        assert key
        rng = random.Random(7)
        content = rng.randbytes(24 * MiB + 123)
        pieces: list[bytes] = []
        at = 0
        while at < len(content):
            size = rng.choice((1, 7, 4096, 65_537, 300 * 1024))
            pieces.append(content[at : at + size])
            at += size

        def paced() -> Iterator[bytes]:
            for i, piece in enumerate(pieces):
                if i % 97 == 0:
                    time.sleep(0.002)
                yield piece

        head, tail, length = multipart_parts("uneven.bin", len(content))
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            made = http.post(
                "/files",
                content=streamed_body(head, paced(), tail),
                headers=multipart_headers(key, length),
            )
            assert made.status_code == 200, made.text
            assert made.json()["bytes"] == len(content)
            got = download(http, key, made.json()["id"])
            assert got.status_code == 200
            assert hashlib.sha256(got.content).digest() == hashlib.sha256(content).digest()
    finally:
        server.stop()
