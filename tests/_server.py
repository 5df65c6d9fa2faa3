"""A real `openai-files serve` process on a free loopback port, for tests."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

import httpx

if TYPE_CHECKING:
    from ._inprocess import AppServer

T = TypeVar("T")

_URL_LINE = re.compile(r"serving the Files API at (http://\S+/v1)")
_WORKER_LINE = re.compile(r"openai-files batch-worker \S+ running")
_KEY_LINE = re.compile(r"^(?:export )?OPENAI_API_KEY=(\S+)$", re.M)


class ServerProcess:
    """One server process; its stdout and stderr go to `log_path`."""

    #: How the server is started; the flags below are added.
    command: tuple[str, ...] = (sys.executable, "-m", "openai_files", "serve")

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.first_key: str | None = None
        self.log_path = (
            self.data_dir.parent / f"{self.data_dir.name}-server-{uuid.uuid4().hex[:6]}.log"
        )

    def start(self, timeout: float = 30.0) -> Self:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                *self.command,
                "--data-dir",
                str(self.data_dir),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_path.read_text(errors="replace")
            match = _URL_LINE.search(text)
            if match:
                self.base_url = match.group(1)
                if self.healthy():  # the app has started (its lifespan ran)
                    # Read again: the banner is whole once the app answers, but `text` may
                    # have been read while its first lines only were written.
                    text = self.log_path.read_text(errors="replace")
                    key = _KEY_LINE.search(text)
                    self.first_key = key.group(1) if key else None
                    return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited ({self.proc.returncode}):\n{text}")
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        """The first log line matching the regular expression `pattern`, once it is written."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.log_text())
            if match:
                return match.group(0)
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line matches {pattern!r} in {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def create_key(self, org: str, project: str) -> str:
        return create_key(self.data_dir, org, project, self.env)

    def create_admin_key(self, org: str) -> str:
        return create_admin_key(self.data_dir, org, self.env)

    def healthy(self) -> bool:
        try:
            return httpx.get(self.root_url + "/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False


def openai_files_cli(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "openai_files", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def create_key(data_dir: Path, org: str, project: str, env: dict[str, str] | None = None) -> str:
    """A new key for `org`/`project`, made in this process as `openai-files keys create` makes
    it (the CLI's own tests run the command; this saves a Python start per key).

    The stores are those of `data_dir` and of the `OPENAI_FILES_*` variables in `env`. Safe
    to call from inside a running event loop: the work runs on a thread of its own.
    """
    from openai_files.server.settings import Settings

    settings = Settings.from_env(env if env is not None else os.environ, data_dir=Path(data_dir))
    return _run(_create_key(settings.database_url, org, project))


def create_admin_key(data_dir: Path, org: str, env: dict[str, str] | None = None) -> str:
    """A new admin key of `org`, made in this process as `openai-files keys create --admin`
    makes it (the stores as `create_key` finds them)."""
    from openai_files.server.settings import Settings

    settings = Settings.from_env(env if env is not None else os.environ, data_dir=Path(data_dir))
    return _run(_create_admin_key(settings.database_url, org))


async def _create_admin_key(database_url: str, org: str) -> str:
    from openai_files.server import auth
    from openai_files.server.stores import ensure_schema, open_metadata_store

    meta = open_metadata_store(database_url)
    await meta.open()
    try:
        await ensure_schema(meta)
        return (await auth.create_admin_key(meta, org, "test admin key")).secret
    finally:
        await meta.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to its end on a thread of its own (so also from inside an event loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def _create_key(database_url: str, org: str, project: str) -> str:
    from openai_files.server import auth
    from openai_files.server.stores import ensure_schema, open_metadata_store

    meta = open_metadata_store(database_url)
    await meta.open()
    try:
        await ensure_schema(meta)
        return (await auth.create_key(meta, org, project)).secret
    finally:
        await meta.close()


def _migrate(database_url: str) -> None:
    """Bring a new database to the schema, in this process (`openai-files migrate` has
    tests of its own)."""
    from openai_files.server.stores import open_metadata_store

    async def run() -> None:
        meta = open_metadata_store(database_url)
        await meta.open()
        try:
            await meta.migrate()
        finally:
            await meta.close()

    _run(run())


class Deployment:
    """Where servers keep their files: `embedded` (SQLite + a local folder) or `scaleout`
    (PostgreSQL + S3). Each server made here gets stores of its own."""

    def __init__(self, name: str, root: Path, postgres: Any = None, s3: Any = None) -> None:
        self.name = name
        self.root = Path(root)
        self.postgres = postgres
        self.s3 = s3

    def env(self, **settings: str) -> dict[str, str]:
        """Environment for a new server (and its `keys`/`migrate` commands)."""
        env = dict(settings)
        if self.name == "scaleout":
            assert self.postgres is not None and self.s3 is not None
            env["OPENAI_FILES_DATABASE"] = self.postgres.create_database()
            env["OPENAI_FILES_STORAGE"] = self.s3.url("files", prefix=uuid.uuid4().hex[:8])
            env.update(self.s3.env)
        return env

    def server(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        process: type[ServerProcess] = ServerProcess,
    ) -> ServerProcess:
        """A started server with fresh stores (and `settings` as environment variables),
        run as `process` runs it."""
        full_env = {**self.env(), **(env or {})}
        data_dir = self.root / f"{self.name}-{uuid.uuid4().hex[:8]}" / "data"
        if self.name == "scaleout":
            _migrate(full_env["OPENAI_FILES_DATABASE"])
        return process(data_dir, *args, env=full_env).start()

    def app(self, env: dict[str, str] | None = None) -> AppServer:
        """A started app in this process with fresh stores (and `env`'s settings); stop it
        with `.stop()`. The route, service and multipart tests use it: no socket."""
        from ._inprocess import AppServer

        full_env = {**os.environ, **self.env(), **(env or {})}
        data_dir = self.root / f"{self.name}-app-{uuid.uuid4().hex[:8]}" / "data"
        if self.name == "scaleout":
            _migrate(full_env["OPENAI_FILES_DATABASE"])
        return AppServer(data_dir, full_env).start()

    def replicas(
        self,
        count: int,
        *args: str,
        env: dict[str, str] | None = None,
        own: Sequence[dict[str, str]] = (),
    ) -> list[ServerProcess]:
        """`count` started servers sharing one set of fresh stores; `own[i]`, when given,
        adds settings of replica i's own."""
        assert self.name == "scaleout", "replicas share PostgreSQL and S3"
        shared = {**self.env(), **(env or {})}
        _migrate(shared["OPENAI_FILES_DATABASE"])
        return [
            ServerProcess(
                self.root / f"replica-{uuid.uuid4().hex[:8]}" / "data",
                *args,
                env={**shared, **(own[i] if i < len(own) else {})},
            ).start()
            for i in range(count)
        ]

    def expire(self, server: ServerProcess | AppServer, file_id: str, at: int) -> None:
        """Set a file's expiry in the database, as if time had passed."""
        sql(server, "UPDATE files SET expires_at = ? WHERE id = ?", at, file_id)


def sql(server: ServerProcess | AppServer, statement: str, *args: Any) -> Any:
    """Run one statement (`?` placeholders) on a server's database, PostgreSQL or SQLite,
    from outside the server; the first row's first value, if any."""
    database = server.env.get("OPENAI_FILES_DATABASE")
    if database:
        import asyncpg

        async def run() -> Any:
            conn = await asyncpg.connect(database)
            try:
                numbered = statement
                for n in range(1, len(args) + 1):
                    numbered = numbered.replace("?", f"${n}", 1)
                return await conn.fetchval(numbered, *args)
            finally:
                await conn.close()

        return _run(run())
    import sqlite3

    with sqlite3.connect(server.data_dir / "files.sqlite3", timeout=30) as db:
        row = db.execute(statement, args).fetchone()
        return None if row is None else row[0]


class WorkerProcess:
    """One `openai-files batch-worker` process on the stores of `env` (its output goes to
    `log_path`); `start` returns once it runs."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = (
            self.data_dir.parent / f"{self.data_dir.name}-worker-{uuid.uuid4().hex[:6]}.log"
        )

    def start(self, timeout: float = 30.0) -> Self:
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "openai_files", "batch-worker",
                "--data-dir", str(self.data_dir), *self.args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while not _WORKER_LINE.search(self.log_text()):
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.log_text()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"worker did not start in {timeout}s:\n{self.log_text()}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def interrupt(self, timeout: float = 15.0, sig: int = signal.SIGINT) -> int:
        """Ctrl-C (SIGINT), or `sig`; its exit status once it ended."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
