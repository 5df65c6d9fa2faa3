"""The pods of deploy/kubernetes, run as processes on PostgreSQL + S3 (no cluster runs here).

Each container runs what the rendered manifests give it: the image's entry point with the
container's arguments, and the image's `ENV`, the ConfigMap's settings and the values of the
Secrets it names as its environment. Only what a cluster would give differently is
changed: the address (loopback, not every interface), the port (a free one), the bucket and
the engine (the test's). Each runs on a read-only root filesystem, as
`readOnlyRootFilesystem: true` gives it, in a mount namespace of its own where every mount
but one temporary folder is read-only; the migration's peak memory and the server's and the
worker's after a batch fit the memory the manifests request for them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy import check

from openai_files.testing.engine import FakeEngine

from .. import _batches as B
from .._services import PostgresCluster, SeaweedS3, free_port
from ..test_container_files import _dockerfile_env, healthcheck_script

Obj = dict[str, Any]

#: Secret values the test gives the pods, by (Secret, key).
ENGINE_KEY = "engine-key-" + uuid.uuid4().hex[:8]
METRICS_TOKEN = "metrics-" + uuid.uuid4().hex
LINK_SECRET = uuid.uuid4().hex


def _read_only_root(writable: Path, probes: list[Path]) -> list[str]:
    """The command prefix that runs a command in a mount namespace of its own, where every
    mount is read-only (those of /proc, /sys and /dev aside, as in a container) but
    `writable`; it checks that `probes` cannot be written before it runs the command."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        message = "a read-only root needs root and unshare (util-linux)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    w = shlex.quote(str(writable))
    checks = "\n".join(
        f"if touch {shlex.quote(str(p / '.write-probe'))} 2>/dev/null; then "
        f"echo '{p} is writable' >&2; exit 97; fi"
        for p in probes
    )
    script = f"""set -eu
mount --bind {w} {w}
for mp in $(awk '{{print $5}}' /proc/self/mountinfo); do
  case "$mp" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*|{w}) continue ;; esac
  mount -o remount,bind,ro "$mp"
done
{checks}
exec "$@"
"""
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]


#: Runs a command and prints its peak RSS. Read by the parent instead, the peak would be that
#: of the test process, which the child is a copy of until it runs the command.
_MEASURE = """import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)
_, status, usage = os.wait4(pid, 0)
print(f"peak-rss-kib={usage.ru_maxrss}", flush=True)
sys.exit(os.waitstatus_to_exitcode(status))
"""


class Pods:
    """The example overlay's pods, their environments resolved."""

    def __init__(self, tmp_path: Path, secrets: dict[tuple[str, str], str], overrides: Obj):
        self.objects = check.render(check.ROOT / "overlays" / "example")
        self.secrets = secrets
        self.overrides = overrides
        self.writable = tmp_path / "tmp"
        self.writable.mkdir()
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.prefix = _read_only_root(
            self.writable, [Path("/"), Path(sys.prefix), tmp_path, Path.cwd()]
        )
        self.procs: list[subprocess.Popen[bytes]] = []

    def pod(self, deployment: str) -> Obj:
        (found,) = [
            o
            for o in self.objects
            if o["kind"] == "Deployment" and o["metadata"]["name"] == deployment
        ]
        spec: Obj = found["spec"]["template"]["spec"]
        return spec

    def container(self, deployment: str, name: str) -> Obj:
        pod = self.pod(deployment)
        found: list[Obj] = [
            c for c in [*pod["initContainers"], *pod["containers"]] if c["name"] == name
        ]
        assert len(found) == 1, name
        return found[0]

    def env(self, container: Obj) -> dict[str, str]:
        """The container's environment, as the kubelet builds it, with the test's overrides."""
        env = {"PATH": os.environ["PATH"], "TMPDIR": str(self.writable)}
        env.update(_dockerfile_env())
        for source in container.get("envFrom", []):
            (cm,) = [
                o
                for o in self.objects
                if o["kind"] == "ConfigMap"
                and o["metadata"]["name"] == source["configMapRef"]["name"]
            ]
            env.update(cm["data"])
        for entry in container.get("env", []):
            if "value" in entry:
                env[entry["name"]] = entry["value"]
                continue
            ref = entry["valueFrom"]["secretKeyRef"]
            value = self.secrets.get((ref["name"], ref["key"]))
            if value is None:
                assert ref.get("optional"), f"no value for required {ref}"
                continue
            env[entry["name"]] = value
        env.update({k: v for k, v in self.overrides.items() if k in env or k.startswith("OPENAI")})
        return env

    def start(
        self, deployment: str, name: str, command: list[str] | None = None, measure: bool = False
    ) -> tuple[subprocess.Popen[bytes], Path]:
        """Run a container's command (the image's entry point is `openai-files`), or with
        `command` another one in its environment, as `kubectl exec` does. `measure`: through
        a small process that prints the command's peak RSS when it ends."""
        container = self.container(deployment, name)
        args = container["args"] if command is None else command
        log_path = self.logs / f"{deployment}-{name}-{len(self.procs)}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    *self.prefix,
                    *([sys.executable, "-c", _MEASURE] if measure else []),
                    sys.executable, "-m", "openai_files", *args,
                ],
                env=self.env(container),
                stdout=log,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.procs.append(proc)
        return proc, log_path

    def run_to_end(
        self, deployment: str, name: str, command: list[str] | None = None
    ) -> tuple[int, int, str]:
        """Run a container (or `command` in it) to its end: (exit code, peak RSS in MiB,
        output)."""
        proc, log_path = self.start(deployment, name, command, measure=True)
        code = proc.wait(120)
        out = log_path.read_text()
        peak = re.search(r"^peak-rss-kib=(\d+)$", out, re.M)
        assert peak, out
        return code, int(peak[1]) // 1024, out

    def probe(self, deployment: str, name: str, probe: Obj) -> int:
        """Run an exec probe's command in a container's environment (`python` is the Python
        in use, and the image's /app/healthcheck.py the repository's): its exit status."""
        command = probe["exec"]["command"]
        assert command[0] == "python"
        done = subprocess.run(
            [*self.prefix, sys.executable, str(healthcheck_script()), *command[2:]],
            env=self.env(self.container(deployment, name)),
            capture_output=True,
            text=True,
            timeout=probe["timeoutSeconds"],
            check=False,
        )
        return done.returncode

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _request_mib(container: Obj) -> int:
    quantity = container["resources"]["requests"]["memory"]
    match = re.fullmatch(r"(\d+)Mi", quantity)
    assert match, quantity
    return int(match[1])


def _peak_mib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
    assert match
    return int(match[1]) // 1024


def _wait_for(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    with FakeEngine(latency=0.01).start() as e:
        yield e


def test_the_pods_run_as_rendered_on_a_read_only_root(
    postgres: PostgresCluster, s3: SeaweedS3, engine: FakeEngine, tmp_path: Path
) -> None:
    port = free_port()
    secrets = {
        ("openai-files-database", "url"): postgres.create_database(),
        ("openai-files-s3", "access-key-id"): s3.access_key,
        ("openai-files-s3", "secret-access-key"): s3.secret_key,
        ("openai-files-console", "link-secret"): LINK_SECRET,
        ("openai-files-metrics", "token"): METRICS_TOKEN,
        ("openai-files-batch-engine", "api-key"): ENGINE_KEY,
    }
    pods = Pods(
        tmp_path,
        secrets,
        {
            "OPENAI_FILES_HOST": "127.0.0.1",
            "OPENAI_FILES_PORT": str(port),
            "OPENAI_FILES_STORAGE": s3.url("files", f"k8s-{uuid.uuid4().hex[:8]}"),
            "OPENAI_FILES_BATCH_UPSTREAM_URL": engine.url,
            # The pods' /tmp volume is the test's writable folder.
            "OPENAI_FILES_HEARTBEAT_FILE": str(tmp_path / "tmp" / "openai-files-heartbeat"),
        },
    )
    root = f"http://127.0.0.1:{port}"
    try:
        # The replicas' and the worker's init containers: the first migrates, the next finds
        # the schema up to date; each within the memory the manifests request for it.
        code, peak, out = pods.run_to_end("openai-files", "migrate")
        assert code == 0 and "schema migrated from version 0 to" in out, out
        assert peak <= _request_mib(pods.container("openai-files", "migrate")), peak
        code, peak, out = pods.run_to_end("openai-files-batch-worker", "migrate")
        assert code == 0 and "schema is up to date" in out, out
        assert peak <= _request_mib(pods.container("openai-files-batch-worker", "migrate"))

        server, server_log = pods.start("openai-files", "server")
        _wait_for(f"{root}/healthz", server, server_log)
        _wait_for(f"{root}/readyz", server, server_log, timeout=10)
        worker, worker_log = pods.start("openai-files-batch-worker", "batch-worker")
        deadline = time.monotonic() + 30
        while "batch-worker worker_" not in worker_log.read_text():
            assert worker.poll() is None, worker_log.read_text()
            assert time.monotonic() < deadline, worker_log.read_text()
            time.sleep(0.1)
        # The worker's liveness probe, run in its container: its heartbeat is fresh.
        probe = pods.container("openai-files-batch-worker", "batch-worker")["livenessProbe"]
        assert pods.probe("openai-files-batch-worker", "batch-worker", probe) == 0

        # A key, as docs/deploy.md makes one: `kubectl exec` in a replica's container.
        code, _, out = pods.run_to_end(
            "openai-files",
            "server",
            ["keys", "create", "--org", "org-k8s", "--project", "proj_k8s", "--json"],
        )
        assert code == 0, out
        key = json.loads(out.splitlines()[0])["key"]

        count = 30
        with httpx.Client(
            base_url=f"{root}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as http:
            # A file of two S3 parts and more, stored and read back.
            data = os.urandom(20 * 1024 * 1024)
            made = http.post(
                "/files", files={"file": ("data.bin", data)}, data={"purpose": "vision"}
            )
            assert made.status_code == 200, made.text
            answer = http.get(f"/files/{made.json()['id']}/content")
            assert answer.status_code == 200 and answer.content == data
            batch = B.create(http, B.input_file(count))
            final = B.wait(http, batch["id"])
            assert final["status"] == "completed", final
            out_lines, errors = B.results(http, final)
        B.exactly_once(out_lines, errors, count)
        assert not errors
        # The worker sent them all, with the engine's key from its Secret; the replica none.
        senders = {r.headers.get("authorization") for r in engine.received}
        assert senders == {f"Bearer {ENGINE_KEY}"}
        assert engine.requests == count
        # /metrics answers the scraper that has the token of Secret openai-files-metrics.
        assert httpx.get(f"{root}/metrics").status_code in (401, 403)
        metrics = httpx.get(f"{root}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert metrics.status_code == 200, metrics.text
        # The console is served (the example overlay turns it on for its Ingress).
        assert httpx.get(f"{root}/").status_code == 200

        # After the batch, the server and the worker are within their memory requests.
        server_peak, worker_peak = _peak_mib(server.pid), _peak_mib(worker.pid)
        assert server_peak <= _request_mib(pods.container("openai-files", "server")), server_peak
        assert worker_peak <= _request_mib(
            pods.container("openai-files-batch-worker", "batch-worker")
        ), worker_peak

        # SIGTERM, as the kubelet sends it after the preStop pause: both end within the grace.
        grace = pods.pod("openai-files")["terminationGracePeriodSeconds"]
        for proc in (worker, server):
            proc.send_signal(signal.SIGTERM)
        assert worker.wait(grace) == 0, worker_log.read_text()
        server.wait(grace)
        assert "Traceback" not in server_log.read_text() + worker_log.read_text()
    finally:
        pods.stop_all()
