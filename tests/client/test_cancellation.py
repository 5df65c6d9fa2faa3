"""Cancellation runs cleanup: a download cancelled by its caller (`anyio.move_on_after`, a
cancelled scope) leaves no `.part` file behind and returns its connection, and a blob read
cancelled mid-file (the server's side of a client that went away) closes its file."""

from __future__ import annotations

import gc
import os
import time
import warnings
from pathlib import Path

import anyio
import anyio.from_thread
import pytest

from openai_files import AsyncClient
from openai_files.server.stores.local import LocalBlobStore

from .._server import ServerProcess

MiB = 1024 * 1024
SIZE = 8 * MiB

pytestmark = pytest.mark.anyio


async def _uploaded(client: AsyncClient, content: bytes) -> str:
    uploaded = await client.upload(content, purpose="evals", filename="big.bin")
    return uploaded.id


async def test_cancelled_scope_leaves_no_part_file(
    server: ServerProcess, api_key: str, tmp_path: Path
) -> None:
    content = os.urandom(SIZE)
    folder = tmp_path / "out"
    folder.mkdir()
    async with AsyncClient(api_key, base_url=server.base_url, max_retries=0) as client:
        file_id = await _uploaded(client, content)
        with anyio.CancelScope() as scope:

            def progress(received: int, expected: int | None) -> None:
                if received > 0:  # mid-file: a .part file exists
                    anyio.from_thread.run_sync(scope.cancel)

            await client.download(file_id, folder / "big.bin", progress=progress)
        assert scope.cancelled_caught
        assert sorted(p.name for p in folder.iterdir()) == []
        # The connection went back: the same client downloads in full afterwards.
        assert await client.download(file_id, folder / "big.bin") == SIZE
        assert (folder / "big.bin").read_bytes() == content
        assert sorted(p.name for p in folder.iterdir()) == ["big.bin"]


async def test_move_on_after_leaves_no_part_file(
    server: ServerProcess, api_key: str, tmp_path: Path
) -> None:
    content = os.urandom(SIZE)
    folder = tmp_path / "out"
    folder.mkdir()
    async with AsyncClient(api_key, base_url=server.base_url, max_retries=0) as client:
        file_id = await _uploaded(client, content)
        seen: list[int] = []

        def slow_progress(received: int, expected: int | None) -> None:
            seen.append(received)
            if received > 0:
                time.sleep(0.4)  # in the worker thread; writes of about 1 MiB: over 3 s

        with anyio.move_on_after(1.0) as scope:
            await client.download(file_id, folder / "big.bin", progress=slow_progress)
        assert scope.cancelled_caught
        assert 0 < max(seen) < SIZE
        assert sorted(p.name for p in folder.iterdir()) == []


async def test_cancelled_blob_read_closes_its_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "data")
    await store.open()
    writer = store.writer("file-cancelread")
    await writer.write(os.urandom(4 * MiB))
    await writer.commit()
    path = str(store.path_of("file-cancelread"))

    def open_fds() -> list[str]:
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        return [p for p in fds if p == path]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        for _ in range(5):
            with anyio.CancelScope() as scope:
                async for _chunk in store.read("file-cancelread"):
                    scope.cancel()  # the read of the next chunk is cancelled
            assert scope.cancelled_caught
            # Closed by the read itself, not later by the garbage collector.
            assert open_fds() == []
        gc.collect()
    leaks = [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert leaks == [], [str(w.message) for w in leaks]
