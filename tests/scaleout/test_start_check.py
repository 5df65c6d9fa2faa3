"""`openai-files serve` refuses to start, at once and with one line, when its S3 bucket or its
PostgreSQL database cannot be used as configured; S3 asks an instance metadata service only
when the storage URL says `credentials=instance`."""

from __future__ import annotations

import asyncio
import datetime
import http.server
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import openai
import pytest

from openai_files.server.stores import StoreUnavailable
from openai_files.server.stores.s3 import S3BlobStore

from .._server import ServerProcess, openai_files_cli
from .._services import LOOPBACK, PostgresCluster, SeaweedS3, free_port

#: A start that fails must fail this fast (a check that retried for minutes would not).
QUICK_SECONDS = 10.0
SERVE = (sys.executable, "-m", "openai_files", "serve", "--host", LOOPBACK, "--port", "0")


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment without any AWS, PostgreSQL or openai-files setting, and with a
    HOME of its own (no ~/.aws, no ~/.pgpass): only `extra` says where credentials are."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OPENAI_FILES_", "PG"))}
    return {**env, "HOME": str(home), **extra}


def serve_refused(env: dict[str, str], data_dir: Path, *flags: str) -> tuple[int, str, float]:
    """Run `openai-files serve`, expecting it to exit by itself: (exit code, stderr, seconds).
    Fails the test when it listens (prints the banner) or outlives the timeout."""
    started = time.monotonic()
    try:
        done = subprocess.run(
            [*SERVE, "--data-dir", str(data_dir), *flags],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"serve did not refuse to start: {exc.stdout!r} {exc.stderr!r}")
    elapsed = time.monotonic() - started
    assert "serving the Files API" not in done.stdout, done.stdout
    return done.returncode, done.stderr, elapsed


def assert_one_line(stderr: str) -> str:
    """The error is one line, for a person, with no traceback; the line."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("openai-files: error: "), stderr
    return lines[0]


@pytest.fixture(scope="module")
def database(postgres: PostgresCluster) -> str:
    """A migrated database, so that only the storage can stop a start."""
    url = postgres.create_database()
    done = openai_files_cli("migrate", "--database", url)
    assert done.returncode == 0, done.stderr
    return url


class FakeInstanceMetadata:
    """The EC2 instance metadata service (IMDSv2) on loopback, handing out the SeaweedFS
    keys as the instance role's credentials; it records every request it gets."""

    def __init__(self, s3: SeaweedS3) -> None:
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, body: str) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                outer.requests.append(f"PUT {self.path}")
                self._answer("metadata-token")

            def do_GET(self) -> None:
                outer.requests.append(f"GET {self.path}")
                if self.path.endswith("/security-credentials/"):
                    self._answer("files-role")
                    return
                expires = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
                self._answer(
                    json.dumps(
                        {
                            "AccessKeyId": s3.access_key,
                            "SecretAccessKey": s3.secret_key,
                            "Token": "",
                            "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                        }
                    )
                )

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.endpoint = f"http://{LOOPBACK}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeInstanceMetadata:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


# -- S3 --


def test_no_credentials_refuse_the_start_without_asking_instance_metadata(
    s3: SeaweedS3, database: str, tmp_path: Path
) -> None:
    with FakeInstanceMetadata(s3) as imds:
        # The client would ask this address (not 169.254.169.254) if it fell back to it.
        env = clean_env(tmp_path / "home", AWS_METADATA_ENDPOINT=imds.endpoint)
        code, stderr, elapsed = serve_refused(
            env, tmp_path / "data", "--database", database, "--storage", s3.url("files", "sc")
        )
    line = assert_one_line(stderr)
    assert code == 2, stderr
    assert elapsed < QUICK_SECONDS
    assert "no S3 credentials" in line
    assert "AWS_ACCESS_KEY_ID" in line and "AWS_SECRET_ACCESS_KEY" in line
    assert "credentials=instance" in line
    assert imds.requests == []


def test_half_the_credentials_name_the_missing_variable(
    s3: SeaweedS3, database: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path / "home", AWS_ACCESS_KEY_ID=s3.access_key)
    code, stderr, elapsed = serve_refused(
        env, tmp_path / "data", "--database", database, "--storage", s3.url("files", "sc")
    )
    line = assert_one_line(stderr)
    assert code == 2 and elapsed < QUICK_SECONDS
    assert "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not" in line


def test_a_wrong_secret_is_named_as_refused_credentials(
    s3: SeaweedS3, database: str, tmp_path: Path
) -> None:
    wrong = "wrong-" + secrets.token_hex(8)
    env = clean_env(tmp_path / "home", AWS_ACCESS_KEY_ID=s3.access_key, AWS_SECRET_ACCESS_KEY=wrong)
    code, stderr, elapsed = serve_refused(
        env, tmp_path / "data", "--database", database, "--storage", s3.url("files", "sc")
    )
    line = assert_one_line(stderr)
    assert code == 1 and elapsed < QUICK_SECONDS
    assert f"the S3 endpoint {s3.endpoint} refused the credentials in" in line
    assert "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY" in line
    assert wrong not in stderr


def test_a_missing_bucket_is_named(s3: SeaweedS3, database: str, tmp_path: Path) -> None:
    bucket = "no-such-bucket-" + secrets.token_hex(4)
    env = clean_env(tmp_path / "home", **s3.env)
    code, stderr, elapsed = serve_refused(
        env, tmp_path / "data", "--database", database, "--storage", s3.url(bucket, "sc")
    )
    line = assert_one_line(stderr)
    assert code == 1 and elapsed < QUICK_SECONDS
    assert f"the S3 bucket {bucket!r} does not exist at {s3.endpoint}" in line


def test_an_endpoint_where_nothing_listens_is_named(
    s3: SeaweedS3, database: str, tmp_path: Path
) -> None:
    endpoint = f"http://{LOOPBACK}:{free_port()}"
    storage = f"s3://files/sc?endpoint={endpoint}&region=us-east-1"
    env = clean_env(tmp_path / "home", **s3.env)
    code, stderr, elapsed = serve_refused(
        env, tmp_path / "data", "--database", database, "--storage", storage
    )
    line = assert_one_line(stderr)
    assert code == 1 and elapsed < QUICK_SECONDS
    assert f"cannot reach the S3 endpoint {endpoint} (connection refused)" in line


def test_an_unknown_credentials_option_is_a_usage_error(
    s3: SeaweedS3, database: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path / "home", **s3.env)
    storage = s3.url("files", "sc") + "&credentials=profile"
    code, stderr, _ = serve_refused(
        env, tmp_path / "data", "--database", database, "--storage", storage
    )
    line = assert_one_line(stderr)
    assert code == 2
    assert "unknown credentials=profile in the storage URL" in line


def test_the_instance_role_is_used_when_the_storage_url_asks_for_it(
    s3: SeaweedS3, postgres: PostgresCluster, tmp_path: Path
) -> None:
    database = postgres.create_database()
    assert openai_files_cli("migrate", "--database", database).returncode == 0
    storage = s3.url("files", "instance-role") + "&credentials=instance"
    with FakeInstanceMetadata(s3) as imds:
        env = clean_env(tmp_path / "home", AWS_METADATA_ENDPOINT=imds.endpoint)
        server = ServerProcess(tmp_path / "data", "--database", database, "--storage", storage)
        server.env = env  # no AWS keys at all: the instance role is the only way in
        server.start()
        try:
            assert server.first_key is not None
            with openai.OpenAI(
                base_url=server.base_url, api_key=server.first_key, max_retries=0
            ) as client:
                made = client.files.create(file=("a.png", b"instance role"), purpose="vision")
                assert client.files.content(made.id).content == b"instance role"
        finally:
            server.stop()
        assert "PUT /latest/api/token" in imds.requests
        assert "GET /latest/meta-data/iam/security-credentials/files-role" in imds.requests
    assert "Debug source" not in server.log_text()


@pytest.mark.anyio
async def test_store_errors_are_one_line(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """A store that cannot be reached says so in one line (obstore's messages carry a ~30-line
    dump of Rust internals after the first)."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + secrets.token_hex(8))
    store = S3BlobStore(s3.url("files", "one-line"))
    with pytest.raises(StoreUnavailable) as raised:
        async for _key in store.list_object_keys(time.time()):
            pass
    message = str(raised.value)
    assert message.startswith("object storage is unreachable: "), message
    assert "\n" not in message and "403 Forbidden" in message


# -- PostgreSQL --


@pytest.fixture(scope="module")
def locked_role(postgres: PostgresCluster) -> Iterator[tuple[str, str]]:
    """A role that must give its password (scram-sha-256), on a cluster that otherwise trusts
    loopback, owning a database of its name: (name, password). Its pg_hba.conf line is
    removed afterwards."""
    name = "locked_" + secrets.token_hex(4)
    password = secrets.token_hex(12)
    hba = postgres.data / "pg_hba.conf"
    before = hba.read_text()

    async def run(*sql: str) -> None:
        conn = await asyncpg.connect(postgres.url())
        try:
            for statement in sql:
                await conn.execute(statement)
        finally:
            await conn.close()

    async def refused() -> bool:
        try:
            conn = await asyncpg.connect(
                f"postgresql://{name}:not-it@{LOOPBACK}:{postgres.port}/postgres"
            )
        except asyncpg.exceptions.InvalidPasswordError:
            return True
        await conn.close()
        return False

    asyncio.run(
        run(
            f"CREATE ROLE {name} LOGIN PASSWORD '{password}'",
            f"CREATE DATABASE {name} OWNER {name}",
        )
    )
    hba.write_text(f"host all {name} {LOOPBACK}/32 scram-sha-256\n{before}")
    asyncio.run(run("SELECT pg_reload_conf()"))
    deadline = time.monotonic() + 10
    while not asyncio.run(refused()):
        assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
        time.sleep(0.1)
    try:
        yield name, password
    finally:
        hba.write_text(before)
        asyncio.run(run("SELECT pg_reload_conf()", f"DROP DATABASE {name}", f"DROP ROLE {name}"))


def test_a_wrong_database_password_is_named_and_masked(
    postgres: PostgresCluster, locked_role: tuple[str, str], tmp_path: Path
) -> None:
    name, password = locked_role
    wrong = "wrong" + secrets.token_hex(6)
    database = f"postgresql://{name}:{wrong}@{LOOPBACK}:{postgres.port}/{name}"
    env = clean_env(tmp_path / "home")
    code, stderr, elapsed = serve_refused(env, tmp_path / "data", "--database", database)
    line = assert_one_line(stderr)
    assert code == 1 and elapsed < QUICK_SECONDS
    assert f"PostgreSQL at {LOOPBACK}:{postgres.port} refused the password of user {name!r}" in line
    assert f"postgresql://{name}:****@{LOOPBACK}:{postgres.port}/{name}" in line
    assert wrong not in stderr and password not in stderr
    # `migrate` (and `keys`) open the database the same way, and say the same.
    migrate = openai_files_cli("migrate", "--database", database, env=env)
    assert migrate.returncode == 1
    assert assert_one_line(migrate.stderr) == line
    assert wrong not in migrate.stdout + migrate.stderr
    # The right password opens it.
    right = database.replace(wrong, password)
    done = openai_files_cli("migrate", "--database", right, env=env)
    assert done.returncode == 0, done.stderr


def test_a_database_port_where_nothing_listens_is_named(tmp_path: Path) -> None:
    port = free_port()
    database = f"postgresql://postgres:hunter2secret@{LOOPBACK}:{port}/postgres"
    code, stderr, elapsed = serve_refused(
        clean_env(tmp_path / "home"), tmp_path / "data", "--database", database
    )
    line = assert_one_line(stderr)
    assert code == 1 and elapsed < QUICK_SECONDS
    assert f"cannot connect to PostgreSQL at {LOOPBACK}:{port} (connection refused)" in line
    assert "hunter2secret" not in stderr
