"""`openai-files dev-stack`: the scale-out deployment on one machine, to try it.

It starts a throwaway PostgreSQL and a SeaweedFS S3 server (the ones the test suite runs,
from `openai_files.testing.services`) on loopback in one temporary folder, runs the
migrations, makes an API key and starts N replicas of `openai-files serve` on them. Ctrl-C
(SIGINT) or SIGTERM stops every process it started, by PID, and removes the folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any

from ._common import EXIT_FAILURE, EXIT_USAGE, CLIError

if TYPE_CHECKING:
    from ..testing.services import PostgresCluster, SeaweedS3

#: The first replica's port: next to `make run`'s 8000, so both can run at once.
DEFAULT_BASE_PORT = 8001
DATABASE = "files"
BUCKET = "files"
INSTALL_HINT = "pip install 'openai-files[server,postgres,s3,devstack]' (or run `make scaleout`)"
_URL_LINE = re.compile(r"serving the Files API at (http://\S+/v1)")


def add_devstack_parser(sub: Any) -> None:
    p = sub.add_parser(
        "dev-stack",
        help="try scale-out on one machine: PostgreSQL, S3 and replicas, until Ctrl-C",
        description=(
            "Start a throwaway PostgreSQL and a SeaweedFS S3 server on 127.0.0.1 in a "
            "temporary folder, run the migrations, make an API key and start replicas of "
            "`openai-files serve` on them; print their URLs and the key. Ctrl-C stops all "
            "of it and removes the folder. Needs PostgreSQL's binaries (Debian: postgresql) "
            f"and {INSTALL_HINT}. Other OPENAI_FILES_* variables apply to the replicas."
        ),
    )
    p.add_argument(
        "--replicas",
        type=_positive_int,
        default=2,
        metavar="N",
        help="how many replicas to start (default 2)",
    )
    p.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_BASE_PORT,
        help=f"port of the first replica, the next ones follow (default {DEFAULT_BASE_PORT}; "
        "0: free ports)",
    )
    p.add_argument(
        "--postgres-port",
        type=_port,
        default=0,
        help="port of PostgreSQL (default 0: a free port)",
    )
    p.add_argument(
        "--s3-port",
        type=_port,
        default=0,
        help="port of the S3 endpoint (default 0: a free port)",
    )
    p.set_defaults(handler=cmd_devstack)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0..65535), got {text!r}")
    return value


class _Stop(BaseException):
    """SIGINT or SIGTERM arrived: stop everything."""


#: Set by SIGINT or SIGTERM. The handler only records it, and the command stops at its next
#: check: an exception raised by the handler could land between a service's fork and the
#: line that records its PID, and leave that service running.
_stop_requested = threading.Event()
#: Set once everything is up (a stop is then quick, and says so itself).
_started = threading.Event()


def _on_signal(signum: int, frame: FrameType | None) -> None:
    if not _stop_requested.is_set():
        _stop_requested.set()
        if not _started.is_set():
            # os.write, not print: a handler may run in the middle of another print.
            os.write(2, b"dev-stack: stopping once the current step is done ...\n")


def _check_stop() -> None:
    if _stop_requested.is_set():
        raise _Stop


def _say(line: str) -> None:
    print(f"dev-stack: {line}", file=sys.stderr, flush=True)


class _Replica:
    """One `openai-files serve` process. Its output is kept until it is up (and shown if it
    fails to start), then passed on to stderr with a `replica N:` prefix."""

    def __init__(self, number: int, port: int, args: list[str], env: dict[str, str]) -> None:
        self.number = number
        self.url = ""
        self.early: list[str] = []
        self.forward = False
        self.quiet = False
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openai_files", "serve", "--host", "127.0.0.1",
             "--port", str(port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            # Its own session: a Ctrl-C in the terminal reaches us only, and we stop it.
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        self._reader = threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode(errors="replace").rstrip()
            if not self.url:
                found = _URL_LINE.search(line)
                if found:
                    self.url = found.group(1)
            if self.quiet:
                continue
            if self.forward:
                print(f"replica {self.number}: {line}", file=sys.stderr, flush=True)
            else:
                self.early.append(line)

    def healthy(self) -> bool:
        import httpx

        if not self.url:
            return False
        try:
            r = httpx.get(self.url.removesuffix("/v1") + "/healthz", timeout=2)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def failure(self) -> str:
        """Why it did not start: its own last line (its one-line error)."""
        self._reader.join(5)
        lines = [line for line in self.early if line.strip()]
        return lines[-1] if lines else f"exit code {self.proc.returncode}"

    def stop(self) -> None:
        self.quiet = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class DevStack:
    """Everything `dev-stack` starts, and how to stop it all."""

    def __init__(
        self, replicas: int, base_port: int, postgres_port: int = 0, s3_port: int = 0
    ) -> None:
        self.count = replicas
        self.base_port = base_port
        self.postgres_port = postgres_port
        self.s3_port = s3_port
        self.root = Path(tempfile.mkdtemp(prefix="openai-files-dev-stack-"))
        self.postgres: PostgresCluster | None = None
        self.s3: SeaweedS3 | None = None
        self.replicas: list[_Replica] = []
        self.key = ""
        self.database = ""
        self.storage = ""

    def start(self) -> None:
        from ..testing.services import PostgresCluster, SeaweedS3

        if os.geteuid() == 0:
            # PostgreSQL runs as the `postgres` user, which must reach its folder in ours.
            self.root.chmod(0o711)
        _say(f"temporary folder {self.root}")
        _check_stop()
        _say("starting PostgreSQL ...")
        self.postgres = postgres = PostgresCluster(self.root / "postgres", self.postgres_port)
        _service(postgres.start, "PostgreSQL did not start")
        database = _service(
            lambda: postgres.create_database(DATABASE), "cannot create the database"
        )
        _say(f"PostgreSQL on 127.0.0.1:{postgres.port} (pid {postgres.pid})")
        _check_stop()
        _say("starting SeaweedFS (S3) ...")
        self.s3 = s3 = SeaweedS3(self.root / "s3", buckets=[BUCKET], port=self.s3_port)
        _service(s3.start, "SeaweedFS did not start")
        assert s3.proc is not None
        _say(f"S3 on {s3.endpoint}, bucket {BUCKET} (pid {s3.proc.pid})")
        storage = s3.url(BUCKET)
        self.database, self.storage = database, storage
        _check_stop()
        self._migrate_and_make_key()
        _check_stop()

        env = {**os.environ, **s3.env}
        _say(f"starting {self.count} replica(s) ...")
        for i in range(self.count):
            port = self.base_port + i if self.base_port else 0
            data_dir = self.root / f"replica-{i + 1}"
            args = ["--database", database, "--storage", storage, "--data-dir", str(data_dir)]
            self.replicas.append(_Replica(i + 1, port, args, env))
        self._wait_for_replicas()
        for r in self.replicas:
            _say(f"replica {r.number} at {r.url} (pid {r.proc.pid})")

    def _migrate_and_make_key(self) -> None:
        from ..server.auth import create_key
        from ..server.settings import DEFAULT_ORG_ID, DEFAULT_PROJECT_ID, Settings
        from ._server import _with_meta

        settings = Settings(data_dir=self.root, database=self.database, storage=self.storage)

        async def migrate(meta: Any) -> int:
            version: int = await meta.migrate()
            return version

        version = asyncio.run(_with_meta(settings, migrate, check_schema=False))
        _say(f"schema migrated to version {version}")
        key = asyncio.run(
            _with_meta(settings, lambda m: create_key(m, DEFAULT_ORG_ID, DEFAULT_PROJECT_ID))
        )
        self.key = key.secret
        _say(f"created API key {key.record.id} for {DEFAULT_ORG_ID} / {DEFAULT_PROJECT_ID}")

    def _wait_for_replicas(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(self.replicas)
        while waiting:
            _check_stop()
            for r in list(waiting):
                if r.proc.poll() is not None:
                    raise CLIError(f"replica {r.number} did not start: {r.failure()}")
                if r.healthy():
                    waiting.remove(r)
            if waiting and time.monotonic() > deadline:
                numbers = ", ".join(str(r.number) for r in waiting)
                raise CLIError(f"replica(s) {numbers} did not answer /healthz in {timeout:.0f}s")
            time.sleep(0.1)
        for r in self.replicas:
            r.forward = True

    def print_summary(self) -> None:
        assert self.s3 is not None
        lines = [
            f"openai-files dev-stack: {self.count} replica(s) on one PostgreSQL database "
            "and one S3 bucket",
            *(f"  replica {r.number}: {r.url}" for r in self.replicas),
            f"  database:  {self.database}",
            f"  storage:   {self.storage}",
            "For the OpenAI SDK and the openai-files CLI (any replica will do):",
            f"export OPENAI_BASE_URL={shlex.quote(self.replicas[0].url)}",
            f"export OPENAI_API_KEY={shlex.quote(self.key)}",
            "The S3 server's credentials (for more replicas, or `openai-files keys create`):",
            f"export AWS_ACCESS_KEY_ID={shlex.quote(self.s3.access_key)}",
            f"export AWS_SECRET_ACCESS_KEY={shlex.quote(self.s3.secret_key)}",
            f"Press Ctrl-C to stop everything and remove {self.root}",
        ]
        print("\n".join(lines), flush=True)

    def watch(self) -> str:
        """Wait until a replica or the S3 server ends by itself; what ended."""
        assert self.s3 is not None and self.s3.proc is not None
        weed = self.s3.proc
        while True:
            _check_stop()
            for r in self.replicas:
                if r.proc.poll() is not None:
                    return f"replica {r.number} exited (code {r.proc.returncode})"
            if weed.poll() is not None:
                return f"the S3 server exited (code {weed.returncode})"
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop what was started, newest first, and remove the folder."""
        for r in self.replicas:
            r.stop()
        if self.s3 is not None:
            # Its data goes with the folder: no need to wait long for a clean exit (weed
            # can take ten seconds or more after a session with uploads).
            self.s3.stop(grace=3)
        if self.postgres is not None:
            self.postgres.stop()
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


def _service(start: Any, what: str) -> Any:
    """Run a service's start; its failure as one line (the details before it, on stderr)."""
    try:
        return start()
    except RuntimeError as exc:
        # Ctrl-C in a terminal reaches PostgreSQL's tools too (they run in our process
        # group), which then fail: that is the stop asked for, not an error.
        _check_stop()
        first, _, rest = str(exc).partition("\n")
        if rest.strip():
            print(rest.rstrip(), file=sys.stderr)
        raise CLIError(first if first.startswith(what) else f"{what}: {first}") from None


def _check_prerequisites(
    replicas: int, base_port: int, postgres_port: int = 0, s3_port: int = 0
) -> None:
    """Fail before starting anything: a missing extra or binary, or a port that is taken."""
    for module in ("uvicorn", "asyncpg", "obstore"):
        if importlib.util.find_spec(module) is None:
            raise CLIError(f"missing dependency {module!r}: install it with {INSTALL_HINT}")
    from ..testing.services import pg_bin, weed_bin

    try:
        pg_bin("initdb")
        weed_bin()
    except RuntimeError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    if base_port and base_port + replicas - 1 > 65535:
        raise CLIError(f"--port {base_port} leaves no room for {replicas} replicas", EXIT_USAGE)
    # Each port asked for, with the flag that asked for it (the replicas' come from --port).
    wanted: dict[int, str] = {}
    for port, flag, hint in (
        (postgres_port, "--postgres-port", "another with --postgres-port (0: a free port)"),
        (s3_port, "--s3-port", "another with --s3-port (0: a free port)"),
        *(
            (port, "--port", "another first port with --port (0: free ports)")
            for port in (range(base_port, base_port + replicas) if base_port else ())
        ),
    ):
        if not port:
            continue
        if port in wanted:
            raise CLIError(
                f"port {port} is asked for by both {wanted[port]} and {flag}: give "
                "each service a port of its own",
                EXIT_USAGE,
            )
        wanted[port] = flag
        _check_free(port, hint)


def _check_free(port: int, hint: str) -> None:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            raise CLIError(f"port {port} on 127.0.0.1 is taken: give {hint}") from None


def cmd_devstack(args: argparse.Namespace) -> int:
    _stop_requested.clear()
    _started.clear()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in handlers:
        signal.signal(sig, _on_signal)
    stack: DevStack | None = None
    code = 0
    try:
        _check_prerequisites(args.replicas, args.port, args.postgres_port, args.s3_port)
        stack = DevStack(args.replicas, args.port, args.postgres_port, args.s3_port)
        stack.start()
        stack.print_summary()
        _started.set()
        ended = stack.watch()
        _say(f"{ended}: stopping everything")
        code = EXIT_FAILURE
    except _Stop:
        pass
    finally:
        # Another Ctrl-C here only sets the flag again: it cannot cut the cleanup short.
        try:
            if stack is not None:
                _say("stopping ...")
                stack.stop()
                _say(f"stopped; removed {stack.root}")
        finally:
            for sig, handler in handlers.items():
                with contextlib.suppress(TypeError):
                    signal.signal(sig, handler)
    return code
