"""Group commit on the embedded default: concurrent writes share one SQLite transaction and
one fsync, each is answered only once that transaction has committed, a write that fails
is undone alone, and a server killed with SIGKILL while many small uploads finish together
keeps every upload it acknowledged and every file anyone saw listed."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest

from openai_files.server.stores import FileRecord, QuotaExceeded
from openai_files.server.stores.local import FolderSync, LocalBlobStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore

from .._server import ServerProcess
from ._util import blob_names, download, list_files, temp_names, upload
from .test_crash import content_for

ORG = "org-group"
QUOTA = 1_000_000


@pytest.fixture
async def meta(tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    await store.migrate()
    yield store
    await store.close()


def record(file_id: str, nbytes: int) -> FileRecord:
    return FileRecord(
        id=file_id,
        org_id=ORG,
        project_id="proj",
        bytes=nbytes,
        created_at=int(time.time()),
        expires_at=None,
        filename=f"{file_id}.bin",
        purpose="evals",
        mime_type="application/octet-stream",
        blob_key=file_id,
    )


@pytest.mark.anyio
async def test_concurrent_writes_share_transactions(meta: SQLiteMetadataStore) -> None:
    transactions, writes = meta.transactions, meta.writes
    expires = int(time.time()) + 3600

    async def one(i: int) -> None:
        await meta.reserve(f"rsv_{i}", ORG, 10, QUOTA, expires, f"file-{i}")
        await meta.insert_file(record(f"file-{i}", 10), f"rsv_{i}", QUOTA)

    await asyncio.gather(*(one(i) for i in range(200)))
    assert meta.writes - writes == 400
    # Each write waited for the transaction before it at most: 400 writes, a handful of
    # commits (one by one they would be 400).
    assert meta.transactions - transactions <= 40, meta.transactions - transactions
    # Every answered write is committed: a reader sees all of them, and the usage adds up.
    assert await meta.committed_bytes(ORG, int(time.time())) == 2000
    assert await meta.usage(ORG) == 2000


@pytest.mark.anyio
async def test_a_failed_write_is_undone_alone(meta: SQLiteMetadataStore) -> None:
    """Uploads racing for the last free bytes in one transaction: the quota holds exactly,
    and an insert refused by the quota keeps the reservation it had started to drop."""
    expires = int(time.time()) + 3600
    await meta.reserve("rsv_held", ORG, 400, 1000, expires, "file-held")
    transactions = meta.transactions
    results = await asyncio.gather(
        *(meta.reserve(f"rsv_{i}", ORG, 100, 1000, expires, f"file-{i}") for i in range(12)),
        meta.insert_file(record("file-big", 900), "rsv_held", 1000),
        return_exceptions=True,
    )
    assert meta.transactions - transactions <= 3
    refused = [r for r in results if isinstance(r, QuotaExceeded)]
    assert len(refused) == 12 - 6 + 1, results  # 6 reservations fit; the insert does not
    assert all(r is None or isinstance(r, QuotaExceeded) for r in results), results
    # The refused insert's DELETE of its reservation was rolled back with its savepoint.
    assert await meta.committed_bytes(ORG, int(time.time())) == 1000
    owner_files = await meta.named_blob_keys(["file-big", "file-held"])
    assert owner_files == {"file-held"}  # the reservation still names its key


@pytest.mark.anyio
async def test_a_write_after_close_is_refused(tmp_path: Path) -> None:
    store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await store.open()
    await store.migrate()
    await store.close()
    with pytest.raises(RuntimeError, match="store is not open"):
        await store.reserve("rsv_late", ORG, 1, QUOTA, int(time.time()) + 60, "file-late")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    # The 32 uploaders share one key.
    proc = ServerProcess(tmp_path / "data", "--max-uploads-per-key", "32").start()
    try:
        yield proc
    finally:
        proc.kill()


def test_sigkill_during_group_commits(server: ServerProcess) -> None:
    """32 clients upload small files as fast as they can while another lists the files;
    the server is killed mid-stream. After a restart on the same data: every acknowledged
    upload is there with its bytes, every file the lister saw is there (nothing was
    visible before it was durable), and nothing is there that was not acknowledged or
    cut by the kill."""
    key = server.create_key(ORG, "proj_group")
    lock = threading.Lock()
    acknowledged: dict[str, bytes] = {}  # id -> bytes
    in_flight: dict[str, bytes] = {}  # filename -> bytes, sent and not yet answered
    cut: dict[str, bytes] = {}  # filename -> bytes of uploads the kill cut
    seen: set[str] = set()
    stop = threading.Event()

    def uploader(worker: int) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            n = 0
            while not stop.is_set():
                name = f"w{worker}-{n}.bin"
                content = content_for(name, 4096)
                with lock:
                    in_flight[name] = content
                try:
                    r = upload(http, key, content, name)
                except httpx.TransportError:
                    with lock:
                        cut[name] = in_flight.pop(name)
                    return
                assert r.status_code == 200, r.text
                with lock:
                    acknowledged[r.json()["id"]] = in_flight.pop(name)
                n += 1

    def lister() -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            while not stop.is_set():
                try:
                    listed = list_files(http, key)
                except httpx.TransportError:
                    return
                with lock:
                    seen.update(f["id"] for f in listed)

    with ThreadPoolExecutor(33) as pool:
        workers = [pool.submit(uploader, i) for i in range(32)]
        workers.append(pool.submit(lister))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with lock:
                if len(acknowledged) >= 300 and len(seen) >= 100:
                    break
            time.sleep(0.01)
        server.kill()
        stop.set()
        for w in workers:
            w.result()
    assert len(acknowledged) >= 300, "the uploads did not get going"
    assert cut, "the kill came between uploads: nothing was cut"

    restarted = ServerProcess(server.data_dir).start()
    try:
        with httpx.Client(base_url=restarted.base_url, timeout=30) as http:
            listed = list_files(http, key)
            ids = {f["id"] for f in listed}
            lost = set(acknowledged) - ids
            assert not lost, f"{len(lost)} acknowledged uploads were lost"
            unseen = seen - ids
            assert not unseen, f"{len(unseen)} files were listed before they were durable"
            extra = {f["filename"] for f in listed if f["id"] not in acknowledged}
            assert extra <= set(cut), f"files nobody was sending are listed: {extra - set(cut)}"
            for f in listed:
                expected = acknowledged.get(f["id"], cut.get(f["filename"]))
                assert expected is not None
                response = download(http, key, f["id"])
                assert response.status_code == 200, response.text
                assert response.content == expected, f"the bytes of {f['id']} differ"
        assert blob_names(restarted.data_dir) == ids, "orphan or missing bytes in blobs/"
        assert temp_names(restarted.data_dir) == [], "temp files survived the restart"
    finally:
        restarted.stop()


@pytest.mark.anyio
async def test_concurrent_commits_share_folder_fsyncs(tmp_path: Path) -> None:
    """Writers committing together: each object is whole once its commit returns, and
    the folder fsyncs are fewer than the commits (one per folder per group)."""
    store = LocalBlobStore(tmp_path / "data")
    await store.open()
    sync = store.folder_sync
    # Keys ending alike share a shard folder: 4 folders for 200 objects.
    keys = [f"file-{i:04d}x{'abcd'[i % 4]}" for i in range(200)]

    async def put(key: str) -> None:
        writer = store.writer(key)
        await writer.write(key.encode() * 100)
        await writer.commit()
        assert store.path_of(key).read_bytes() == key.encode() * 100

    async with anyio.create_task_group() as tg:
        for key in keys:
            tg.start_soon(put, key)
    assert sync.syncs == 200
    assert sync.fsyncs < 200, (sync.fsyncs, sync.syncs)
    assert {p.name for p in (tmp_path / "data" / "blobs").glob("*/*")} == set(keys)


def test_a_failed_folder_fsync_fails_its_writers(tmp_path: Path) -> None:
    """A folder whose fsync fails (here: one that vanished) raises in the writers that
    asked for it, and not in those of another folder of the same group."""
    sync = FolderSync()
    good = tmp_path / "good"
    good.mkdir()
    errors: dict[str, BaseException | None] = {}

    def ask(name: str, folder: Path) -> None:
        try:
            sync.sync(folder)
            errors[name] = None
        except OSError as exc:
            errors[name] = exc

    threads = [
        threading.Thread(
            target=ask, args=(f"{kind}{i}", good if kind == "good" else tmp_path / "gone")
        )
        for i in range(8)
        for kind in ("good", "gone")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(errors[f"good{i}"] is None for i in range(8)), errors
    assert all(isinstance(errors[f"gone{i}"], FileNotFoundError) for i in range(8)), errors


@pytest.mark.anyio
async def test_a_full_database_fails_exactly_the_writes_it_did_not_keep(tmp_path: Path) -> None:
    """Writes that fill the database in one group: each caller is told the truth, and
    the database, opened again, holds exactly the rows whose writes were answered."""
    path = tmp_path / "files.sqlite3"
    store = SQLiteMetadataStore(path)
    await store.open()
    await store.migrate()
    assert store._writer is not None  # room for a few rows only (SQLITE_FULL past it)
    pages = store._writer.execute("PRAGMA page_count").fetchone()[0]
    store._writer.execute(f"PRAGMA max_page_count = {pages + 6}")

    def fat(i: int) -> FileRecord:
        return dataclasses.replace(record(f"file-{i:03d}", 1), filename=f"{i:03d}" + "x" * 3000)

    results = await asyncio.gather(
        *(store.insert_file(fat(i), None, QUOTA) for i in range(60)), return_exceptions=True
    )
    await store.close()
    kept = {f"file-{i:03d}" for i, r in enumerate(results) if r is None}
    refused = [r for r in results if r is not None]
    assert kept, "no write fitted"
    assert refused, "every write fitted: the database was not full"
    assert all("full" in str(r) for r in refused), refused

    again = SQLiteMetadataStore(path)
    await again.open()
    try:
        found = await again.named_blob_keys([f"file-{i:03d}" for i in range(60)])
        assert found == kept
    finally:
        await again.close()
