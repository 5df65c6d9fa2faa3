import os
import subprocess
import sys
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


def test_the_lock_keeps_the_folder_for_one_process(tmp_path: Path) -> None:
    """While this process holds the folder it is not shared, and another process cannot
    take it (it is told who holds it); once let go, it is shared again and can be taken."""
    store = LocalBlobStore(tmp_path / "data")
    take = (
        "import sys\n"
        "from openai_files.server.stores.local import LocalBlobStore\n"
        "try:\n"
        "    LocalBlobStore(sys.argv[1]).lock_exclusive()\n"
        "except BlockingIOError as exc:\n"
        "    sys.exit(str(exc))\n"
    )

    def other_process_takes_it() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", take, str(store.root)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    assert store.shared
    release = store.lock_exclusive()
    try:
        assert not store.shared
        assert not LocalBlobStore(tmp_path / "data").shared  # any store of the folder
        refused = other_process_takes_it()
        assert refused.returncode == 1
        assert f"in use by another openai-files server (pid {os.getpid()})" in refused.stderr
    finally:
        release()
    assert store.shared
    assert other_process_takes_it().returncode == 0
