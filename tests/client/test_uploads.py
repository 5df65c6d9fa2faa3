"""Large files through the Uploads API: parallel parts, retries, cancel, resume (real server).

The server is the real one on both deployments; a transport wrapper only watches the
requests (and, where a test says so, makes a fault the real server cannot make on demand:
a 503 for one part, or a program interrupted after some parts).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_files import AsyncClient, BadRequestError, Client, UploadResumeError
from openai_files._upload_state import STATE_SUFFIX, UploadState

from .._server import ServerProcess
from ._helpers import both_drivers

PART = 256 * 1024
SIZE = 9 * PART + 123  # ten parts, the last one of 123 bytes


class Interrupted(Exception):
    """The program stopped (as by a crash) while parts were in flight."""


class Watch(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Forwards to the real server; counts the requests and parts in flight at once."""

    def __init__(
        self,
        fail_part: int | None = None,
        stop_after: int | None = None,
        delay: float = 0.05,
        fail_status: int = 503,
        lose_answer: int | None = None,
        drop_answer: int | None = None,
    ) -> None:
        self.sync = httpx.HTTPTransport()
        self.aio = httpx.AsyncHTTPTransport()
        self.lock = threading.Lock()
        self.paths: list[str] = []
        self.in_flight = 0
        self.peak = 0
        self.parts_sent = 0
        self.parts_ok = 0
        self.fail_part = fail_part  # the n-th part request gets a 503, once
        self.fail_status = fail_status
        self.stop_after = stop_after  # parts after this many accepted ones raise Interrupted
        self.delay = delay  # a part takes at least this long, so that parts overlap
        self.upload_ids: list[str] = []
        self.lose_answer = lose_answer  # the n-th part arrives, its answer is lost: Interrupted
        self.drop_answer = drop_answer  # the n-th part arrives, its answer is lost once: a
        # network error, which the client retries

    def _dropped(self, request: httpx.Request, response: httpx.Response) -> None:
        with self.lock:
            part = request.url.path.endswith("/parts") and response.status_code == 200
            if part and self.parts_ok + 1 == self.drop_answer:
                self.drop_answer = None
                raise httpx.ReadError("the connection was lost", request=request)

    def _lost(self, request: httpx.Request, response: httpx.Response) -> None:
        with self.lock:
            if not request.url.path.endswith("/parts") or response.status_code != 200:
                return
            if self.lose_answer is not None and self.parts_ok + 1 >= self.lose_answer:
                self.parts_ok += 1
                raise Interrupted("the answer was lost")

    def _enter(self, request: httpx.Request) -> httpx.Response | None:
        with self.lock:
            self.paths.append(f"{request.method} {request.url.path}")
            if not request.url.path.endswith("/parts"):
                return None
            if self.stop_after is not None and self.parts_ok >= self.stop_after:
                raise Interrupted("stopped")
            self.parts_sent += 1
            if self.parts_sent == self.fail_part:
                return httpx.Response(
                    self.fail_status,
                    json={"error": {"message": "refused", "type": "invalid_request_error"}},
                    request=request,
                )
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            return None

    def _leave(self, request: httpx.Request, response: httpx.Response | None) -> None:
        with self.lock:
            if request.url.path.endswith("/parts"):
                self.in_flight -= 1
                if response is not None and response.status_code == 200:
                    self.parts_ok += 1

    def _seen(self, request: httpx.Request, response: httpx.Response) -> None:
        if request.url.path.endswith("/uploads") and response.status_code == 200:
            self.upload_ids.append(json.loads(response.content)["id"])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        early = self._enter(request)
        if early is not None:
            return early
        response = None
        try:
            if request.url.path.endswith("/parts"):
                time.sleep(self.delay)
            response = self.sync.handle_request(request)
            if self.lose_answer is not None or self.drop_answer is not None:
                response.read()
                self._lost(request, response)
                self._dropped(request, response)
            if request.url.path.endswith("/uploads"):
                response.read()
                self._seen(request, response)
            return response
        finally:
            self._leave(request, response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        early = self._enter(request)
        if early is not None:
            return early
        response = None
        try:
            if request.url.path.endswith("/parts"):
                await asyncio.sleep(self.delay)
            response = await self.aio.handle_async_request(request)
            if self.lose_answer is not None or self.drop_answer is not None:
                await response.aread()
                self._lost(request, response)
                self._dropped(request, response)
            if request.url.path.endswith("/uploads"):
                await response.aread()
                self._seen(request, response)
            return response
        finally:
            self._leave(request, response)

    def close(self) -> None:
        self.sync.close()

    async def aclose(self) -> None:
        await self.aio.aclose()
        self.sync.close()

    def count(self, suffix: str) -> int:
        return sum(1 for p in self.paths if p.endswith(suffix))


@pytest.fixture(params=["sync", "async"])
def make(request: pytest.FixtureRequest, server: ServerProcess, api_key: str) -> Iterator[Any]:
    """Make a client of either driver, on the real server through a `Watch`."""
    made: list[tuple[Iterator[Any], Any, Any]] = []

    def build(watch: Watch, **options: Any) -> Any:
        options = {
            "base_url": server.base_url, "max_retries": 0, "upload_threshold": 1024 * 1024,
            "part_size": PART, **options,
        }  # fmt: skip
        sync_http = httpx.Client(transport=watch)
        async_http = httpx.AsyncClient(transport=watch)
        gen = both_drivers(
            lambda: Client(api_key, http_client=sync_http, **options),
            lambda: AsyncClient(api_key, http_client=async_http, **options),
            request.param,
        )
        files = next(gen)
        made.append((gen, files, async_http if request.param == "async" else sync_http))
        return files

    yield build
    for gen, files, http in made:
        if isinstance(http, httpx.AsyncClient):
            files._runner.run(http.aclose())  # the connections belong to that loop
        else:
            http.close()
        next(gen, None)


def big_file(path: Path, size: int = SIZE) -> Path:
    block = hashlib.sha256(path.name.encode()).digest() * (PART // 32)
    with path.open("wb") as fh:
        for i in range(-(-size // PART)):
            fh.write((i.to_bytes(4, "big") + block[4:])[: size - i * PART])
    return path


def test_a_file_over_the_threshold_goes_in_four_parallel_parts(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    small = tmp_path / "small.bin"
    small.write_bytes(b"x" * 1000)
    watch = Watch()
    files = make(watch)
    seen: list[tuple[int, int | None]] = []
    f = files.upload(src, purpose="vision", progress=lambda d, t: seen.append((d, t)))
    assert f.bytes == SIZE and f.filename == "big.bin" and f.id.startswith("file-")
    assert watch.count("/uploads") == 1 and watch.count("/parts") == 10
    assert watch.count("/complete") == 1 and watch.count("/files") == 0
    assert watch.peak == 4  # the client's default concurrency, never more
    assert files.content(f.id) == src.read_bytes()
    assert seen[0] == (0, SIZE) and seen[-1] == (SIZE, SIZE)
    assert all(b[0] >= 0 and b[1] == SIZE for b in seen)
    assert not (tmp_path / ("big.bin" + STATE_SUFFIX)).exists()  # removed on success
    # Under the threshold, POST /files as ever; use_uploads=True forces the Uploads API.
    files.upload(small, purpose="vision")
    assert watch.count("/files") == 1 and watch.count("/uploads") == 1
    g = files.upload(small, purpose="vision", use_uploads=True)
    assert watch.count("/uploads") == 2 and files.content(g.id) == b"x" * 1000


def test_a_part_refused_with_a_retryable_status_is_sent_again_alone(
    make: Any, tmp_path: Path, sleeps: list[float]
) -> None:
    src = big_file(tmp_path / "big.bin")
    watch = Watch(fail_part=3)
    files = make(watch, max_retries=2, upload_concurrency=2)
    f = files.upload(src, purpose="vision")
    assert watch.parts_sent == 11 and watch.parts_ok == 10  # one part twice, none else
    assert len(sleeps) == 1  # one retry's wait
    assert files.content(f.id) == src.read_bytes()


def test_a_fatal_error_cancels_the_upload(make: Any, tmp_path: Path) -> None:
    # Completion refuses a batch file that is not JSON Lines (a 400): the upload is cancelled.
    src = tmp_path / "bad.jsonl"
    src.write_bytes(b"not json\n" * (SIZE // 9))
    watch = Watch()
    files = make(watch)
    with pytest.raises(BadRequestError, match="JSONL"):
        files.upload(src, purpose="batch")
    assert watch.count("/cancel") == 1
    assert not (tmp_path / ("bad.jsonl" + STATE_SUFFIX)).exists()
    with pytest.raises(BadRequestError, match="already cancelled"):
        files.cancel_upload(watch.upload_ids[0])


def test_a_part_refused_for_good_cancels_the_upload(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    watch = Watch(fail_part=2, fail_status=400)
    files = make(watch, max_retries=2)
    with pytest.raises(BadRequestError, match="refused"):
        files.upload(src, purpose="vision")
    assert watch.count("/cancel") == 1 and watch.count("/complete") == 0
    assert watch.parts_sent < 10  # the parts not started never were
    assert not (tmp_path / ("big.bin" + STATE_SUFFIX)).exists()
    with pytest.raises(BadRequestError, match="already cancelled"):
        files.cancel_upload(watch.upload_ids[0])


def test_an_interrupted_upload_resumes_with_only_the_missing_parts(
    make: Any, tmp_path: Path
) -> None:
    src = big_file(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    first = Watch(stop_after=3)
    with pytest.raises(Interrupted):
        make(first).upload(src, purpose="vision")
    saved = json.loads(state.read_text())
    upload_id = first.upload_ids[0]
    assert saved["upload_id"] == upload_id and first.count("/cancel") == 0
    accepted = len(saved["parts"])
    assert accepted == first.parts_ok and 3 <= accepted < 10

    second = Watch()
    f = make(second).upload(src, purpose="vision", resume=upload_id)
    assert second.count("/uploads") == 0 and second.parts_sent == 10 - accepted
    assert not state.exists()
    assert make(Watch()).content(f.id) == src.read_bytes()


def test_resume_refuses_a_changed_file_or_another_upload(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    first = Watch(stop_after=2)
    with pytest.raises(Interrupted):
        make(first).upload(src, purpose="vision")
    files = make(Watch())
    with pytest.raises(UploadResumeError, match="belongs to upload upload_"):
        files.upload(src, purpose="vision", resume="upload_other")
    with src.open("ab") as fh:
        fh.write(b"more")
    with pytest.raises(UploadResumeError, match="changed since upload"):
        files.upload(src, purpose="vision")  # the state file is found on its own
    fresh = tmp_path / "fresh.bin"
    fresh.write_bytes(b"abc")
    with pytest.raises(UploadResumeError, match="no state file"):
        files.upload(fresh, purpose="vision", resume="upload_x")


def test_expires_after_goes_with_the_upload(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    watch = Watch(delay=0)
    files = make(watch)
    f = files.upload(src, purpose="vision", expires_after=7200)
    assert watch.count("/uploads") == 1 and watch.count("/files") == 0
    assert f.expires_at == f.created_at + 7200
    assert files.retrieve(f.id).expires_at == f.created_at + 7200
    # Out of OpenAI's range: the server's message, and no upload left pending.
    with pytest.raises(BadRequestError, match=r"expires_after\.seconds"):
        files.upload(src, purpose="vision", expires_after=60)
    assert watch.count("/uploads") == 2 and watch.count("/parts") == 10


def test_a_state_file_of_a_cancelled_upload_starts_afresh(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    first = Watch(stop_after=3)
    with pytest.raises(Interrupted):
        make(first).upload(src, purpose="vision")
    old = first.upload_ids[0]
    files = make(Watch())
    files.cancel_upload(old)  # as `openai-files uploads cancel` does, leaving the state file
    assert json.loads(state.read_text())["upload_id"] == old

    again = Watch()
    f = make(again).upload(src, purpose="vision")
    assert len(again.upload_ids) == 1 and again.upload_ids[0] != old
    assert again.parts_ok == 10  # every part, to the new upload
    assert not state.exists()
    assert files.content(f.id) == src.read_bytes()


def test_a_state_file_of_an_expired_upload_starts_afresh(make: Any, tmp_path: Path) -> None:
    src = big_file(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    first = Watch(stop_after=3)
    with pytest.raises(Interrupted):
        make(first).upload(src, purpose="vision")
    saved = json.loads(state.read_text())
    assert saved["expires_at"] > time.time() + 3000  # the upload's hour, from the server
    # An hour later, say: no part is sent to the upload the server takes none for.
    state.write_text(json.dumps({**saved, "expires_at": int(time.time()) - 1}))
    again = Watch()
    f = make(again).upload(src, purpose="vision")
    assert len(again.upload_ids) == 1 and again.upload_ids[0] != saved["upload_id"]
    assert not any(saved["upload_id"] in p for p in again.paths)
    assert again.parts_ok == 10 and not state.exists()
    assert make(Watch()).content(f.id) == src.read_bytes()


def test_a_resume_of_an_upload_filled_by_a_part_whose_answer_was_lost_starts_afresh(
    make: Any, tmp_path: Path
) -> None:
    src = big_file(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    # The 4th part arrives whole, and its answer is lost (its id with it).
    first = Watch(lose_answer=4, delay=0)
    with pytest.raises(Interrupted):
        make(first, upload_concurrency=1).upload(src, purpose="vision")
    old = first.upload_ids[0]
    assert len(json.loads(state.read_text())["parts"]) == 3
    # The resume sends the parts it lacks: the last one no longer fits, and is refused.
    again = Watch()
    f = make(again).upload(src, purpose="vision")
    assert again.count(f"{old}/cancel") == 1
    assert len(again.upload_ids) == 1 and again.upload_ids[0] != old
    assert not state.exists()
    assert make(Watch()).content(f.id) == src.read_bytes()


def test_a_part_sent_again_after_its_answer_was_lost_overfills_the_upload_which_is_cancelled(
    make: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server took the 2nd part, its answer was lost, the part was sent again and taken
    again (there was room): a later part no longer fits and is refused; a fresh call cancels
    the upload and raises that refusal, and the same call again starts a new upload."""
    monkeypatch.setattr("openai_files._client._sleep", lambda seconds: None)
    src = big_file(tmp_path / "big.bin")
    state = tmp_path / ("big.bin" + STATE_SUFFIX)
    first = Watch(drop_answer=2, delay=0)
    with pytest.raises(BadRequestError, match="would hold more than"):
        make(first, upload_concurrency=1, max_retries=2).upload(src, purpose="vision")
    old = first.upload_ids[0]
    # Parts 1, 2, 2 again and 3 to 8 leave room for 123 bytes: the 9th does not fit.
    assert first.parts_ok >= 9 and first.count("/parts") >= 10
    assert first.count(f"{old}/cancel") == 1 and first.count(f"{old}/complete") == 0
    assert not state.exists()
    again = Watch()
    f = make(again).upload(src, purpose="vision")
    assert again.upload_ids != [old] and again.parts_ok == 10
    assert make(Watch()).content(f.id) == src.read_bytes()


def test_the_async_client_keeps_the_state_file_off_the_event_loop(
    server: ServerProcess, api_key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The state file is read, written (fsynced) and removed by the driver as effects: under
    `AsyncClient` in worker threads, never on the event loop (each part's save too)."""
    src = big_file(tmp_path / "big.bin")
    loop: list[threading.Thread] = []
    touched: list[tuple[str, bool]] = []

    def watched(name: str, real: Any) -> Any:
        def run(*args: Any) -> Any:
            touched.append((name, threading.current_thread() in loop))
            return real(*args)

        return run

    monkeypatch.setattr(UploadState, "save", watched("save", UploadState.save))
    monkeypatch.setattr(UploadState, "remove", watched("remove", UploadState.remove))
    monkeypatch.setattr(UploadState, "load", staticmethod(watched("load", UploadState.load)))

    async def upload() -> None:
        loop.append(threading.current_thread())
        base_url = server.base_url
        async with AsyncClient(
            api_key, base_url=base_url, upload_threshold=PART, part_size=PART
        ) as client:
            await client.upload(src, purpose="vision")

    asyncio.run(upload())
    assert [name for name, _ in touched].count("save") == 1 + 10  # the upload, each part
    assert {name for name, _ in touched} == {"load", "save", "remove"}
    assert not [name for name, on_loop in touched if on_loop]
