"""The sweeper never removes the bytes of a live upload: an upload that pauses, or trickles
in under the flush size, for longer than the grace period still ends in its file, byte
for byte, on both deployments (the local temp file; S3's open multipart upload)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from openai_files.server.stores import local

from .._server import Deployment, ServerProcess
from ._util import download, multipart_headers, multipart_parts, temp_names

MiB = 1024 * 1024
GRACE = 1.0
#: Long past the grace, and many sweeps (one every 0.2 s).
PAUSE = 4 * GRACE
#: Over the local store's flush size (1 MiB): the temp file exists before the pause; and
#: over S3's part (8 MiB): a multipart upload is open during the pause, which the
#: reconciler must not abort.
HEAD_BYTES = 9 * MiB
TAIL_BYTES = MiB + 123


@pytest.fixture(scope="module")
def sweeping(deployment: Deployment) -> Iterator[ServerProcess]:
    """A server that sweeps five times a second with a one-second grace."""
    proc = deployment.server(
        "--sweep-grace-seconds",
        str(GRACE),
        "--sweep-interval-seconds",
        "0.2",
        # Pauses past the grace: only with the body idle timeout (shorter) turned off.
        "--body-idle-timeout-seconds",
        "0",
    )
    try:
        yield proc
    finally:
        proc.stop()


def _content(size: int) -> bytes:
    seed = hashlib.sha256(b"sweeper-vs-live-upload").digest()
    return (seed * (size // len(seed) + 1))[:size]


def _upload_with(
    server: ServerProcess, key: str, content: bytes, middle: Callable[[], Iterator[bytes]]
) -> httpx.Response:
    """Send the first HEAD_BYTES, then what `middle` yields (a pause or a trickle, taken
    from the content after the head), then the rest."""
    head, tail, length = multipart_parts("live.bin", len(content))
    sent_in_middle: list[int] = []

    def body() -> Iterator[bytes]:
        yield head
        yield content[:HEAD_BYTES]
        offset = HEAD_BYTES
        for piece in middle():
            yield piece
            offset += len(piece)
        sent_in_middle.append(offset)
        yield content[offset:]
        yield tail

    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        return http.post("/files", content=body(), headers=multipart_headers(key, length))


def _check_stored(
    server: ServerProcess, key: str, response: httpx.Response, content: bytes
) -> None:
    assert response.status_code == 200, response.text
    file_id = response.json()["id"]
    assert response.json()["bytes"] == len(content)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        got = download(http, key, file_id)
    assert got.status_code == 200
    assert got.content == content
    if server.data_dir.exists() and (server.data_dir / "tmp").exists():
        assert temp_names(server.data_dir) == []


def test_upload_paused_longer_than_grace_survives(sweeping: ServerProcess) -> None:
    key = sweeping.create_key("org-sweep-pause", "proj_sweep")
    content = _content(HEAD_BYTES + TAIL_BYTES)

    def pause() -> Iterator[bytes]:
        time.sleep(PAUSE)
        return iter(())

    response = _upload_with(sweeping, key, content, pause)
    _check_stored(sweeping, key, response, content)


def test_upload_trickling_under_flush_size_survives(sweeping: ServerProcess) -> None:
    key = sweeping.create_key("org-sweep-trickle", "proj_sweep")
    content = _content(HEAD_BYTES + TAIL_BYTES)

    def trickle() -> Iterator[bytes]:
        # 16 small pieces over PAUSE seconds: far under the flush size in all.
        step = 1000
        for i in range(16):
            time.sleep(PAUSE / 16)
            start = HEAD_BYTES + i * step
            yield content[start : start + step]

    response = _upload_with(sweeping, key, content, trickle)
    _check_stored(sweeping, key, response, content)


def test_leftover_temp_file_is_still_swept(tmp_path: Path) -> None:
    """What no live upload writes (a dead server's leftover) is still removed once older
    than the grace, while the server runs (the local folder alone keeps temp files)."""
    proc = ServerProcess(
        tmp_path / "data",
        "--sweep-grace-seconds",
        str(GRACE),
        "--sweep-interval-seconds",
        "0.2",
        "--body-idle-timeout-seconds",
        "0",
    ).start()
    try:
        leftover = proc.data_dir / "tmp" / "file-leftover.0123456789abcdef.part"
        leftover.write_bytes(b"x" * 10)
        deadline = time.monotonic() + 10 * GRACE
        while leftover.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not leftover.exists()
    finally:
        proc.stop()


@pytest.mark.anyio
async def test_trickling_writer_keeps_its_temp_file_fresh(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bytes that trickle in under the flush size still reach the temp file every
    TOUCH_SECONDS, so its mtime says when the upload last sent something."""
    monkeypatch.setattr(local, "TOUCH_SECONDS", 0.2)
    store = local.LocalBlobStore(tmp_path / "data")
    await store.open()
    writer = store.writer("file-trickle")
    await writer.write(b"x" * (2 * MiB))  # over the flush size: the temp file exists
    first = writer.temp_path.stat()
    await anyio.sleep(0.5)
    await writer.write(b"y" * 100)  # far under the flush size
    later = writer.temp_path.stat()
    assert later.st_size == first.st_size + 100
    assert later.st_mtime > first.st_mtime
    # And the sweeper leaves a live writer's file alone, however old it looks.
    assert await store.remove_stale_temp(time.time() + 3600) == 0
    await writer.commit()
    assert store.path_of("file-trickle").stat().st_size == 2 * MiB + 100
