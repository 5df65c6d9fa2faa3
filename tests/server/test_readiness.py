"""`GET /readyz`: 200 while the database and the blob store answer, 503 naming the one that
does not; one check at a time, its answer standing for a second, each store's wait bounded.
The outages of PostgreSQL and S3 themselves: tests/scaleout/test_readiness.py."""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_files.server import settings as S
from openai_files.server.metrics import Metrics
from openai_files.server.readiness import Readiness, ReadyReport
from openai_files.server.stores.local import LocalBlobStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore

from .._inprocess import AppServer
from .._server import Deployment, ServerProcess

# -- the checks: one at a time, cached, bounded --


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """A store's ping that counts its calls, takes `delay` seconds, and raises `error`."""

    def __init__(self, delay: float = 0.0, error: Exception | None = None) -> None:
        self.calls = 0
        self.delay = delay
        self.error = error

    async def ping(self) -> None:
        self.calls += 1
        await anyio.sleep(self.delay)
        if self.error is not None:
            raise self.error


def _readiness(
    database: FakeStore, storage: FakeStore, *, timeout: float = 5.0, clock: FakeClock
) -> Readiness:
    return Readiness(
        {"database": database.ping, "storage": storage.ping}, timeout, Metrics(), clock=clock
    )


@pytest.mark.anyio
async def test_probes_that_arrive_together_share_one_check() -> None:
    clock = FakeClock()
    database, storage = FakeStore(delay=0.2), FakeStore()
    readiness = _readiness(database, storage, clock=clock)
    reports: list[ReadyReport] = []

    async def probe() -> None:
        reports.append(await readiness.report())

    async with anyio.create_task_group() as tg:
        for _ in range(50):
            tg.start_soon(probe)
    assert (database.calls, storage.calls) == (1, 1)
    assert len(reports) == 50 and all(r is reports[0] for r in reports)
    assert reports[0].body() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}


@pytest.mark.anyio
async def test_an_answer_stands_for_a_second_after_its_check() -> None:
    clock = FakeClock()
    database, storage = FakeStore(), FakeStore()
    readiness = _readiness(database, storage, clock=clock)
    await readiness.report()
    for step in (0.0, 0.5, S.READY_CACHE_SECONDS - 0.01):
        clock.now = 1000.0 + step
        for _ in range(10):
            await readiness.report()
    assert (database.calls, storage.calls) == (1, 1)
    clock.now = 1000.0 + S.READY_CACHE_SECONDS
    await readiness.report()
    assert (database.calls, storage.calls) == (2, 2)


@pytest.mark.anyio
async def test_a_store_that_fails_is_named_and_the_other_is_not() -> None:
    clock = FakeClock()
    database = FakeStore(error=OSError("connection refused: db.internal:5432"))
    storage = FakeStore()
    readiness = _readiness(database, storage, clock=clock)
    report = await readiness.report()
    assert not report.ready
    # Which store and how, never why (the endpoint asks no key): the log says why.
    assert report.body() == {
        "status": "unavailable",
        "checks": {"database": "error", "storage": "ok"},
    }


@pytest.mark.anyio
async def test_stores_that_hang_answer_timeout_in_bounded_time() -> None:
    clock = FakeClock()
    database, storage = FakeStore(delay=60), FakeStore(delay=60)
    readiness = _readiness(database, storage, timeout=1.0, clock=clock)
    started = time.monotonic()
    report = await readiness.report()
    elapsed = time.monotonic() - started
    assert report.body()["checks"] == {"database": "timeout", "storage": "timeout"}
    # The stores are waited for side by side: one timeout, not one each.
    assert 1.0 <= elapsed < 1.7, elapsed


@pytest.mark.anyio
async def test_a_probe_that_gives_up_leaves_the_check_to_the_others() -> None:
    clock = FakeClock()
    database, storage = FakeStore(delay=0.3), FakeStore()
    readiness = _readiness(database, storage, clock=clock)
    got: list[ReadyReport] = []

    async def patient() -> None:
        got.append(await readiness.report())

    async with anyio.create_task_group() as tg:
        with anyio.move_on_after(0.05):  # its client went away
            await readiness.report()
        tg.start_soon(patient)
    assert database.calls == 1 and got and got[0].ready


@pytest.mark.anyio
async def test_the_log_says_why_once_per_change(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    database, storage = FakeStore(error=OSError("refused\nINFO forged")), FakeStore()
    readiness = _readiness(database, storage, clock=clock)
    with caplog.at_level(logging.INFO, logger="openai_files.server"):
        for _ in range(3):
            await readiness.report()
            clock.now += S.READY_CACHE_SECONDS
        database.error = None
        for _ in range(3):
            await readiness.report()
            clock.now += S.READY_CACHE_SECONDS
    lines = [r.getMessage() for r in caplog.records if "readiness" in r.getMessage()]
    assert lines == [
        "readiness: the database does not answer (error): refused INFO forged",
        "readiness: the database answers again",
    ]
    assert database.calls == 6


# -- a check that hangs in a thread: one thread, however many probes --


class HangingCheck:
    """Stands for a store's check in its worker thread that hangs (a data folder on a hung
    disk or network mount) until `release` is set: counts the calls that entered it and
    those that returned."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.entered = 0
        self.returned = 0
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            self.entered += 1
        self.release.wait(30)
        with self._lock:
            self.returned += 1


@pytest.mark.parametrize("store", ["folder", "database"])
@pytest.mark.anyio
async def test_a_check_that_hangs_in_a_thread_holds_one_thread(
    tmp_path: Path, store: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Readiness stops waiting after its timeout, but a thread cannot be stopped: each
    check after the first waits for the same call (and answers "timeout") instead of
    starting another thread that would hang too."""
    opened: LocalBlobStore | SQLiteMetadataStore
    if store == "folder":
        opened = LocalBlobStore(tmp_path / "data")
        await opened.open()
        check = "_ping_folder"
    else:
        opened = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await opened.open()
        await opened.migrate()
        check = "_ping_file"
    hanging = HangingCheck()
    monkeypatch.setattr(opened, check, hanging)
    clock = FakeClock()
    readiness = Readiness({store: opened.ping}, 0.05, Metrics(), clock=clock)
    try:
        for _ in range(50):
            report = await readiness.report()
            assert report.body()["checks"] == {store: "timeout"}
            clock.now += S.READY_CACHE_SECONDS  # no answer stands: each probe checks
        assert (hanging.entered, hanging.returned) == (1, 0)
        if isinstance(opened, SQLiteMetadataStore):
            # The database's reads go on: the check holds one of its reading threads.
            with anyio.fail_after(5):
                assert await opened.schema_version() == opened.SCHEMA_VERSION
        hanging.release.set()  # the mount answers again
        with anyio.fail_after(5):
            while hanging.returned < 1:
                await anyio.sleep(0.01)
        report = await readiness.report()
        assert report.body()["checks"] == {store: "ok"}
        assert (hanging.entered, hanging.returned) == (2, 2)  # a new call, once it returned
    finally:
        hanging.release.set()
        await opened.close()


# -- the route, on both deployments --


def _get(server: AppServer, path: str) -> httpx.Response:
    with server.http() as http:
        return http.get(server.root_url + path)


@pytest.fixture
def app(deployment: Deployment) -> Iterator[AppServer]:
    server = deployment.app()
    try:
        yield server
    finally:
        server.stop()


def test_ready_without_a_key(app: AppServer) -> None:
    r = _get(app, "/readyz")
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "checks": {"database": "ok", "storage": "ok"}}
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-type"] == "application/json"
    health = _get(app, "/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # A key that is wrong changes nothing: the route asks none, and tells nothing more.
    with app.http("sk-wrong") as http:
        assert http.get(app.root_url + "/readyz").json() == r.json()
    with app.http() as http:
        assert http.head(app.root_url + "/readyz").status_code == 200


def _moved_away(app: AppServer, check: Callable[[], None]) -> None:
    """Run `check` while the data folder is moved away (as an unmounted volume leaves its
    mount point), then put it back."""
    away = app.data_dir.with_name("moved-away")
    os.rename(app.data_dir, away)
    try:
        check()
    finally:
        os.rename(away, app.data_dir)


@pytest.mark.parametrize("replaced", [False, True], ids=["removed", "replaced-by-an-empty-one"])
def test_an_unusable_data_folder_makes_the_embedded_server_unready(
    tmp_path: Path, replaced: bool
) -> None:
    app = Deployment("embedded", tmp_path).app()
    try:
        assert _get(app, "/readyz").status_code == 200

        def unready() -> None:
            if replaced:
                app.data_dir.mkdir()
                (app.data_dir / "tmp").mkdir()
                (app.data_dir / "blobs").mkdir()
            time.sleep(S.READY_CACHE_SECONDS)
            r = _get(app, "/readyz")
            assert r.status_code == 503, r.text
            assert r.json() == {
                "status": "unavailable",
                "checks": {"database": "error", "storage": "error"},
            }
            assert str(app.data_dir) not in r.text  # the path is in the log only
            assert _get(app, "/healthz").status_code == 200  # the process is alive
            if replaced:
                shutil.rmtree(app.data_dir)

        _moved_away(app, unready)
        time.sleep(S.READY_CACHE_SECONDS)
        r = _get(app, "/readyz")
        assert r.status_code == 200, r.text
        log = app.log_text()
        assert f"the database file {app.data_dir / 'files.sqlite3'}" in log
        assert "readiness: the storage answers again" in log
    finally:
        app.stop()


def test_a_data_folder_that_takes_no_file_makes_the_server_unready(tmp_path: Path) -> None:
    """Its temp folder is a file now: no file can be made in it (as on a read-only disk)."""
    app = Deployment("embedded", tmp_path).app()
    try:
        tmp = app.data_dir / "tmp"
        shutil.rmtree(tmp)
        tmp.write_bytes(b"")
        try:
            r = _get(app, "/readyz")
            assert r.status_code == 503
            assert r.json()["checks"] == {"database": "ok", "storage": "error"}
        finally:
            tmp.unlink()
            tmp.mkdir()
        time.sleep(S.READY_CACHE_SECONDS)
        assert _get(app, "/readyz").status_code == 200
    finally:
        app.stop()


# -- a real server: probes however many, one check a second --


def _checks(server: ServerProcess) -> dict[tuple[str, str], float]:
    text = httpx.get(server.root_url + "/metrics", timeout=10).text
    return {
        (s.labels["store"], s.labels["result"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "openai_files_readiness_checks"
        for s in family.samples
        if s.name.endswith("_total")
    }


def test_many_probes_check_the_stores_once_a_second(server: ServerProcess) -> None:
    time.sleep(S.READY_CACHE_SECONDS)  # no answer of an earlier test stands
    before = _checks(server)
    probes = 60

    def probe(_: int) -> int:
        return httpx.get(server.root_url + "/readyz", timeout=10).status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(probe, range(probes)))
    elapsed = time.monotonic() - started
    after = _checks(server)
    assert statuses == [200] * probes
    for store in ("database", "storage"):
        checks = after[(store, "ok")] - before[(store, "ok")]
        # One check, and one more for each second the probes took (a slow machine).
        assert 1 <= checks <= 1 + int(elapsed / S.READY_CACHE_SECONDS), (checks, elapsed)
        assert after[(store, "error")] == before[(store, "error")]
