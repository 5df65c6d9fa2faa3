import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server.settings import IO_CHUNK_BYTES
from openai_files.server.stores.local import RESERVE_BYTES, LocalBlobStore
from openai_files.testing import BlobStoreConformance


class TestLocalBlobs(BlobStoreConformance):
    @pytest.fixture
    async def blobs(self, tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
        store = LocalBlobStore(tmp_path / "data")
        await store.open()
        yield store
        await store.close()


@pytest.mark.anyio
async def test_reserve_without_posix_fallocate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """macOS has no os.posix_fallocate: the store still opens and writes its reserve."""
    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    store = LocalBlobStore(tmp_path / "data")
    await store.open()
    try:
        assert store.reserve_path.stat().st_size == RESERVE_BYTES
        assert store.reserve_path.stat().st_blocks * 512 >= RESERVE_BYTES  # not sparse
    finally:
        await store.close()


@pytest.mark.anyio
async def test_commit_of_a_fully_written_upload_needs_no_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the reserve released, an upload whose bytes are all on disk still commits:
    a commit that has nothing left to write does not ask for room."""
    store = LocalBlobStore(tmp_path / "data")
    await store.open()
    try:
        writer = store.writer("file-full")
        await writer.write(b"x" * IO_CHUNK_BYTES)  # a whole chunk: written now
        assert store.release_reserve()
        monkeypatch.setattr(store, "_free_bytes", lambda: 0)  # the disk is now full
        await writer.commit()
        assert store.path_of("file-full").stat().st_size == IO_CHUNK_BYTES
    finally:
        await store.close()
