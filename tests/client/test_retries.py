"""Retries and their limits, against faults injected with httpx's MockTransport."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import httpx
import pytest

from openai_files import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    BadRequestError,
    Client,
    ConflictError,
    IncompleteDownloadError,
    InternalServerError,
    RateLimitError,
    _core,
)

from ._helpers import (
    BASE_URL,
    KEY,
    Recorder,
    both_drivers,
    error_json,
    file_json,
    json_response,
)

OK_LIST = json_response(200, {"object": "list", "data": [], "has_more": False})


def test_429_honours_retry_after(drive: Any, sleeps: list[float]) -> None:
    rec = Recorder(
        json_response(429, error_json("slow down"), {"retry-after": "3"}),
        json_response(429, error_json("slow down"), {"retry-after-ms": "250"}),
        OK_LIST,
    )
    assert drive(rec).list().data == []
    assert sleeps == [3.0, 0.25]
    assert [r.headers.get("x-stainless-retry-count") for r in rec.requests] == [None, "1", "2"]


def test_500_then_success(drive: Any, sleeps: list[float]) -> None:
    rec = Recorder(json_response(500, error_json("oops")), json_response(200, file_json()))
    assert drive(rec).retrieve("file-abc").id == "file-abc"
    assert len(rec.requests) == 2 and len(sleeps) == 1
    assert 0.375 <= sleeps[0] <= 0.5  # INITIAL_RETRY_DELAY minus up to 25% of jitter


def test_connection_reset_then_success(drive: Any) -> None:
    rec = Recorder(httpx.ReadError("connection reset by peer"), OK_LIST)
    assert drive(rec).list().data == []
    assert len(rec.requests) == 2


def test_retries_are_limited(drive: Any, sleeps: list[float]) -> None:
    rec = Recorder(json_response(503, error_json("busy")))
    with pytest.raises(InternalServerError) as info:
        drive(rec, max_retries=3).list()
    assert info.value.status_code == 503 and len(rec.requests) == 4
    assert len(sleeps) == 3 and sleeps[0] < sleeps[1] < sleeps[2]


def test_network_errors_become_connection_errors(drive: Any) -> None:
    rec = Recorder(httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError, match="refused") as info:
        drive(rec, max_retries=1).list()
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(rec.requests) == 2
    with pytest.raises(APITimeoutError):
        drive(Recorder(httpx.ReadTimeout("slow")), max_retries=0).list()


@pytest.mark.parametrize(
    ("status", "error", "retried"),
    [
        pytest.param(400, BadRequestError, False, id="400"),
        pytest.param(409, ConflictError, True, id="409"),
        pytest.param(429, RateLimitError, True, id="429"),
    ],
)
def test_which_statuses_are_retried(
    drive: Any, status: int, error: type[Exception], retried: bool
) -> None:
    rec = Recorder(json_response(status, error_json("no")))
    with pytest.raises(error):
        drive(rec, max_retries=1).list()
    assert len(rec.requests) == (2 if retried else 1)


def test_the_server_may_say_whether_to_retry(drive: Any) -> None:
    rec = Recorder(json_response(500, error_json("final"), {"x-should-retry": "false"}))
    with pytest.raises(InternalServerError):
        drive(rec).list()
    assert len(rec.requests) == 1


def test_a_file_object_is_rewound_and_sent_again(drive: Any) -> None:
    rec = Recorder(json_response(500, error_json("oops")), json_response(200, file_json()))
    drive(rec).upload(io.BytesIO(b"abcdef" * 50_000), purpose="vision", filename="a.bin")
    assert len(rec.requests) == 2
    assert rec.bodies[0] == rec.bodies[1] and b"abcdef" * 50_000 in rec.bodies[0]


def test_a_path_is_reopened_and_sent_again(drive: Any, tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"0123456789" * 10_000)
    rec = Recorder(httpx.RemoteProtocolError("server went away"), json_response(200, file_json()))
    drive(rec).upload(path, purpose="vision")
    assert len(rec.requests) == 2 and rec.bodies[0] == rec.bodies[1]
    assert int(rec.requests[1].headers["content-length"]) == len(rec.bodies[1])


def test_a_one_shot_stream_is_not_retried(drive: Any) -> None:
    rec = Recorder(json_response(500, error_json("oops")), json_response(200, file_json()))
    with pytest.raises(InternalServerError):
        drive(rec).upload(iter([b"a", b"b"]), purpose="vision", filename="a.bin")
    assert len(rec.requests) == 1
    assert rec.requests[0].headers["transfer-encoding"] == "chunked"


class RefuseFirst(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Refuses the first connection before reading anything, then answers as `recorder`."""

    def __init__(self, recorder: Recorder) -> None:
        self.calls = 0
        self.then = httpx.MockTransport(recorder)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            raise httpx.ConnectError("refused")
        return self.then.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.calls == 1:
            raise httpx.ConnectError("refused")
        return await self.then.handle_async_request(request)


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_one_shot_stream_is_retried_when_nothing_was_read(kind: str, sleeps: list[float]) -> None:
    rec = Recorder(json_response(200, file_json()))
    transport = RefuseFirst(rec)
    options: dict[str, Any] = {"base_url": BASE_URL}
    for client in both_drivers(
        lambda: Client(KEY, http_client=httpx.Client(transport=transport), **options),
        lambda: AsyncClient(KEY, http_client=httpx.AsyncClient(transport=transport), **options),
        kind,
    ):
        client.upload(iter([b"ab", b"cd"]), purpose="vision", filename="a.bin")
    assert transport.calls == 2 and b"\r\n\r\nabcd\r\n" in rec.bodies[0]


def test_a_truncated_download_leaves_nothing(drive: Any, tmp_path: Path) -> None:
    short = httpx.Response(200, content=b"12345", headers={"content-length": "10"})
    with pytest.raises(IncompleteDownloadError, match="received 5 of 10 bytes"):
        drive(Recorder(short)).download("file-abc", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"retry-after-ms": "1500"}, 1.5, id="ms"),
        pytest.param({"retry-after": "2"}, 2.0, id="seconds"),
        pytest.param({"retry-after": "Wed, 21 Oct 2015 07:28:10 GMT"}, 5.0, id="http-date"),
        pytest.param({"retry-after": "3600"}, None, id="too-long"),
        pytest.param({"retry-after": "soon"}, None, id="garbage"),
        pytest.param({}, None, id="none"),
    ],
)
def test_retry_after_parsing(headers: dict[str, str], expected: float | None) -> None:
    now = 1445412485.0  # five seconds before the date above
    assert _core.retry_after(headers, now=now) == expected


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    assert [_core.retry_delay(n, rand=0.0) for n in range(6)] == [0.5, 1, 2, 4, 8, 8]
    assert _core.retry_delay(0, rand=1.0) == 0.375
    assert _core.retry_delay(0, {"retry-after": "0.1"}) == 0.1


@pytest.mark.parametrize("cls", [Client, AsyncClient])
def test_negative_retries_are_refused(cls: type[Any]) -> None:
    with pytest.raises(ValueError, match="max_retries"):
        cls("sk-x", base_url="http://x/v1", max_retries=-1)
