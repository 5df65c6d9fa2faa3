"""`/metrics`: Prometheus's text format, counters that follow what the server does, and
never behind a tenant's key: loopback only, a separate admin token, or off."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from openai_files.server.metrics import SWEPT_KINDS

from .._server import Deployment, ServerProcess, openai_files_cli
from .._services import PostgresCluster, SeaweedS3
from ._util import auth, download, multipart_headers, multipart_parts, upload

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
METRICS_TOKEN = "metrics-admin-token-0123456789abcdef"


def _read(server: ServerProcess, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.get(server.root_url + "/metrics", headers=headers, timeout=10)


def _samples(server: ServerProcess) -> Samples:
    response = _read(server)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _requests(samples: Samples, method: str, route: str, status: int) -> float:
    return _value(
        samples, "openai_files_http_requests_total", method=method, route=route, status=str(status)
    )


def _error_body(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    error: dict[str, object] = body["error"]
    return error


def test_counters_follow_an_upload_a_download_and_a_delete(
    server: ServerProcess, api_key: str
) -> None:
    before = _samples(server)
    content = os.urandom(300_000)
    with httpx.Client(base_url=server.base_url, timeout=60) as http:
        created = upload(http, api_key, content, "counted.bin")
        assert created.status_code == 200, created.text
        file_id = created.json()["id"]
        fetched = download(http, api_key, file_id)
        assert fetched.content == content
        assert http.delete(f"/files/{file_id}", headers=auth(api_key)).status_code == 200
        assert http.get(f"/files/{file_id}", headers=auth(api_key)).status_code == 404
        assert http.get("/no/such/route/" + file_id).status_code == 404
    after = _samples(server)

    def moved(method: str, route: str, status: int) -> float:
        return _requests(after, method, route, status) - _requests(before, method, route, status)

    assert moved("POST", "/v1/files", 200) == 1
    assert moved("GET", "/v1/files/{file_id}/content", 200) == 1
    assert moved("DELETE", "/v1/files/{file_id}", 200) == 1
    assert moved("GET", "/v1/files/{file_id}", 404) == 1
    # A path that matches no route is counted under one label, not under its own path.
    assert moved("GET", "none", 404) == 1
    assert not any(file_id in str(labels) for _, labels in after)

    def moved_bytes(name: str, route: str) -> float:
        return _value(after, name, route=route) - _value(before, name, route=route)

    received = moved_bytes("openai_files_http_received_bytes_total", "/v1/files")
    assert len(content) < received < len(content) + 1000  # the file and its framing
    assert moved_bytes("openai_files_http_sent_bytes_total", "/v1/files/{file_id}/content") == (
        len(content)
    )
    assert _value(after, "openai_files_uploads_in_flight") == 0
    assert _value(after, "openai_files_open_connections") >= 1
    assert _value(after, "process_resident_memory_bytes") > 0
    for kind in ("unavailable", "disk_full", "other"):
        assert ("openai_files_store_errors_total", frozenset({("kind", kind)})) in after


def test_an_upload_in_flight_is_counted_while_it_streams(
    server: ServerProcess, api_key: str
) -> None:
    head, tail, length = multipart_parts("slow.bin", 2)
    started, release = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield head + b"a"
        started.set()
        release.wait(30)
        yield b"b" + tail

    result: list[httpx.Response] = []

    def send() -> None:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            result.append(
                http.post("/files", content=body(), headers=multipart_headers(api_key, length))
            )

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert started.wait(30)
        deadline = time.monotonic() + 10
        while _value(_samples(server), "openai_files_uploads_in_flight") != 1:
            assert time.monotonic() < deadline, "the upload was never counted in flight"
            time.sleep(0.05)
    finally:
        release.set()
        sender.join(60)
    assert result[0].status_code == 200, result[0].text
    assert _value(_samples(server), "openai_files_uploads_in_flight") == 0


@pytest.fixture(scope="module")
def sweeping(deployment: Deployment) -> Iterator[ServerProcess]:
    proc = deployment.server("--sweep-interval-seconds", "0.2")
    try:
        yield proc
    finally:
        proc.stop()


def test_sweeper_runs_and_what_they_removed_are_counted(
    sweeping: ServerProcess, deployment: Deployment
) -> None:
    key = sweeping.create_key("org-metrics-sweep", "proj_metrics_sweep")
    with httpx.Client(base_url=sweeping.base_url, timeout=60) as http:
        file_ids = [upload(http, key, b"expiring", f"e{i}.txt").json()["id"] for i in range(3)]
    before = _samples(sweeping)
    for file_id in file_ids:
        deployment.expire(sweeping, file_id, int(time.time()) - 1)
    deadline = time.monotonic() + 20
    while True:
        after = _samples(sweeping)
        expired = _value(after, "openai_files_swept_total", kind="expired") - _value(
            before, "openai_files_swept_total", kind="expired"
        )
        if expired >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert expired == 3
    ok = "openai_files_sweeps_total"
    assert _value(after, ok, result="ok") > _value(before, ok, result="ok")
    assert _value(after, ok, result="failed") == 0


def test_every_swept_kind_is_shown_and_documented(server: ServerProcess) -> None:
    """Each kind the sweep counts (`uploads`, `expired_uploads`, `finished_uploads` and
    `audit_logs` too) is a sample from the start, and README's metrics table names it."""
    samples = _samples(server)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    row = next(line for line in readme.splitlines() if "`openai_files_swept_total{kind}`" in line)
    assert SWEPT_KINDS == (
        "expired",
        "temp",
        "orphans",
        "uploads",
        "expired_uploads",
        "finished_uploads",
        "audit_logs",
    )
    for kind in SWEPT_KINDS:
        assert ("openai_files_swept_total", frozenset({("kind", kind)})) in samples, kind
        assert f"`{kind}`" in row, kind


def test_store_errors_are_counted_by_kind(
    tmp_path: Path, s3: SeaweedS3, start: Callable[..., ServerProcess]
) -> None:
    """PostgreSQL down: the 503s and the failed sweeps count as `unavailable`. Bytes that
    cannot be read (a folder where the file was): the 500 counts as `other`."""
    pg = PostgresCluster().start()
    try:
        server = Deployment("scaleout", tmp_path, postgres=pg, s3=s3).server(
            "--sweep-interval-seconds", "0.2"
        )
        try:
            key = server.create_key("org-metrics-down", "proj_metrics_down")
            before = _samples(server)
            pg.halt()
            with httpx.Client(base_url=server.base_url, timeout=60) as http:
                for _ in range(2):
                    assert http.get("/files", headers=auth(key)).status_code == 503
            time.sleep(1)  # a few sweeps fail meanwhile
            during = _samples(server)
            pg.resume()
        finally:
            server.stop()
    finally:
        pg.stop()
    errors, sweeps = "openai_files_store_errors_total", "openai_files_sweeps_total"
    unavailable = _value(during, errors, kind="unavailable")
    failed = _value(during, sweeps, result="failed")
    assert _value(before, errors, kind="unavailable") == 0
    assert failed >= 1
    assert unavailable >= 2 + failed  # two requests, and every failed sweep
    assert _requests(during, "GET", "/v1/files", 503) == 2

    embedded = start()
    assert embedded.first_key is not None
    with httpx.Client(base_url=embedded.base_url, timeout=60) as http:
        file_id = upload(http, embedded.first_key, b"unreadable", "u.txt").json()["id"]
        (blob,) = Path(embedded.data_dir, "blobs").glob(f"*/{file_id}")
        blob.unlink()
        blob.mkdir()  # opening it fails, and not as a missing file
        assert download(http, embedded.first_key, file_id).status_code == 500
    assert _value(_samples(embedded), errors, kind="other") == 1


# Who may read them. These involve no store: one deployment is enough.


@pytest.fixture(scope="module")
def start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(**env: str) -> ServerProcess:
        data = tmp_path_factory.mktemp("metrics") / "data"
        proc = ServerProcess(data, env=env).start()
        started.append(proc)
        return proc

    yield make
    for proc in started:
        proc.stop()


def test_loopback_only_by_default(start: Callable[..., ServerProcess]) -> None:
    server = start()
    assert _read(server).status_code == 200
    # uvicorn trusts X-Forwarded-For from loopback (a proxy on this machine): a request a
    # local proxy forwards from elsewhere is refused.
    forwarded = _read(server, {"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403
    assert "--metrics token" in str(_error_body(forwarded)["message"])
    # A tenant's key opens nothing more.
    assert server.first_key is not None
    forwarded = _read(server, {"X-Forwarded-For": "203.0.113.9", **auth(server.first_key)})
    assert forwarded.status_code == 403


def test_a_separate_admin_token(start: Callable[..., ServerProcess]) -> None:
    server = start(OPENAI_FILES_METRICS="token", OPENAI_FILES_METRICS_TOKEN=METRICS_TOKEN)
    missing = _read(server)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="metrics"'
    assert "--metrics-token" in str(_error_body(missing)["message"])
    assert server.first_key is not None
    for wrong in (server.first_key, METRICS_TOKEN + "x", METRICS_TOKEN[:-1]):
        refused = _read(server, auth(wrong))
        assert refused.status_code == 401
        assert _error_body(refused)["message"] == (
            "Incorrect metrics token: send the server's --metrics-token as "
            "Authorization: Bearer TOKEN."
        )
    assert _read(server, auth(METRICS_TOKEN)).status_code == 200
    # Loopback alone is not enough, and the token works from anywhere.
    assert _read(server, {"X-Forwarded-For": "203.0.113.9"}).status_code == 401
    forwarded = _read(server, {"X-Forwarded-For": "203.0.113.9", **auth(METRICS_TOKEN)})
    assert forwarded.status_code == 200
    assert "openai_files_http_requests_total" in forwarded.text
    assert METRICS_TOKEN not in server.log_text()


def test_off(start: Callable[..., ServerProcess]) -> None:
    server = start(OPENAI_FILES_METRICS="off")
    response = _read(server)
    assert response.status_code == 404
    assert _error_body(response)["message"] == "Invalid URL (GET /metrics)"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--metrics", "token"],
            "openai-files: error: --metrics token needs a token: set "
            "OPENAI_FILES_METRICS_TOKEN (or --metrics-token), e.g. to the output of "
            "`openssl rand -hex 32`\n",
        ),
        (
            ["--metrics-token", "abc"],
            "openai-files: error: a metrics token is set but --metrics is loopback: pass "
            "--metrics token to require it, or unset OPENAI_FILES_METRICS_TOKEN "
            "(--metrics-token)\n",
        ),
        (
            ["--metrics", "public"],
            "openai-files: error: invalid value public for --metrics: it must be one of "
            "loopback, token, off\n",
        ),
    ],
)
def test_a_metrics_setting_that_cannot_work_is_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    done = openai_files_cli("serve", "--data-dir", str(tmp_path / "data"), "--port", "0", *args)
    assert done.returncode == 2
    assert done.stderr == message
    assert not (tmp_path / "data").exists()
