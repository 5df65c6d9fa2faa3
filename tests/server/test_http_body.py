"""The request body's buffer under uvicorn (server/_http.py): chunks kept, not copied."""

from __future__ import annotations

import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from openai_files.server._http import _BodyChunks

from .._server import ServerProcess
from ._util import download, multipart_headers, multipart_parts, streamed_body

MiB = 1024 * 1024


def test_one_chunk_is_handed_over_as_is() -> None:
    chunk = os.urandom(1000)
    body = _BodyChunks()
    body += chunk
    assert len(body) == 1000
    assert bytes(body) is chunk


def test_chunks_are_joined_in_order() -> None:
    body = _BodyChunks()
    for piece in (b"ab", b"", b"cde", b"f"):
        body += piece
    assert len(body) == 6
    assert bytes(body) == b"abcdef"
    assert bytes(_BodyChunks()) == b""


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
