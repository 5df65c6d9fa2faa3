"""The Kubernetes manifests (deploy/kubernetes), rendered as `kubectl apply -k` renders them and
validated against Kubernetes's schemas as `make deploy-check` does, then read: the probes,
the migration before the servers, the batch worker beside `serve --no-batch-runner`, the
secrets only referenced, the pods' security and resources. tests/scaleout/test_deploy_pods.py
runs the pods they describe as processes."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from deploy import check
from deploy.healthcheck import TIMEOUT_SECONDS

from openai_files.cli import build_parser
from openai_files.server.settings import env_name, setting_fields

from .test_container_files import (
    _dockerfile,
    _dockerfile_env,
    _documented_variables,
    healthcheck,
)

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_DOC = (ROOT / "docs" / "deploy.md").read_text()

#: The settings whose values are secrets: they come from a Secret, never from a manifest.
#: The database URL holds its password; the rest are the settings whose help says to prefer
#: the environment variable to the flag (which other users can see).
SECRET_SETTINGS = {
    env_name("database"),
    *(env_name(f.name) for f in setting_fields() if "prefer the environment" in f.metadata["help"]),
}
SECRET_VARIABLES = SECRET_SETTINGS | {
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
}

Obj = dict[str, Any]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Obj]]:
    """What each kustomize folder renders: {"base": [...], "overlays/example": [...]}."""
    return {str(t.relative_to(check.ROOT)): check.render(t) for t in check.targets()}


@pytest.fixture(scope="module")
def example(rendered: dict[str, list[Obj]]) -> list[Obj]:
    return rendered["overlays/example"]


def _one(objects: list[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _pods(objects: list[Obj]) -> Iterator[tuple[str, Obj]]:
    """(name, pod spec) of every workload."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield obj["metadata"]["name"], obj["spec"]["template"]["spec"]


def _containers(pod: Obj) -> list[Obj]:
    return [*pod.get("initContainers", []), *pod["containers"]]


def _settings(objects: list[Obj], container: Obj) -> dict[str, str]:
    """The plain (not secret) variables a container gets: its ConfigMaps', then its own."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        cm = _one(objects, "ConfigMap", source["configMapRef"]["name"])
        env.update(cm["data"])
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def _secret_refs(container: Obj) -> dict[str, tuple[str, str]]:
    """{variable: (Secret, key)} of a container."""
    return {
        e["name"]: (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in container.get("env", [])
        if "secretKeyRef" in e.get("valueFrom", {})
    }


def _by_name(pod: Obj, name: str) -> Obj:
    (found,) = [c for c in _containers(pod) if c["name"] == name]
    return found


def test_every_object_renders_and_is_valid_against_kubernetes_schemas() -> None:
    count, problems = check.check()
    assert not problems, "\n".join(map(str, problems))
    assert count >= 10
    checked = [str(t.relative_to(check.ROOT)) for t in check.targets()]
    assert checked[0] == "base" and "overlays/example" in checked


def test_the_check_finds_a_misspelt_field_and_an_unknown_kind(example: list[Obj]) -> None:
    deployment = copy.deepcopy(_one(example, "Deployment", "openai-files"))
    server = deployment["spec"]["template"]["spec"]["containers"][0]
    server["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    for version in check.VERSIONS:
        (problem,) = check.problems(deployment, version)
        assert "'paht' was unexpected" in problem
    custom = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert list(check.problems(custom, check.VERSIONS[-1]))


def test_the_replicas_serve_without_batches_and_the_worker_runs_them(
    rendered: dict[str, list[Obj]], example: list[Obj]
) -> None:
    parser = build_parser()
    server = _by_name(
        _one(example, "Deployment", "openai-files")["spec"]["template"]["spec"], "server"
    )
    worker = _by_name(
        _one(example, "Deployment", "openai-files-batch-worker")["spec"]["template"]["spec"],
        "batch-worker",
    )
    # The image's entry point is `openai-files`: these are its arguments.
    assert _dockerfile_env() and dict(_dockerfile())["ENTRYPOINT"] == '["openai-files"]'
    assert server["args"] == ["serve", "--no-batch-runner"]
    assert parser.parse_args(server["args"]).batch_runner is False
    assert worker["args"] == ["batch-worker"]
    parser.parse_args(worker["args"])
    # The same image, settings, database and bucket credentials.
    assert worker["image"] == server["image"] == "registry.example.com/openai-files:0.1.0"
    assert worker["envFrom"] == server["envFrom"]
    shared = {"OPENAI_FILES_DATABASE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert {k: v for k, v in _secret_refs(worker).items() if k in shared} == {
        k: v for k, v in _secret_refs(server).items() if k in shared
    }
    # Both know the engine (the replicas accept batches only when one is set).
    assert _settings(example, server)["OPENAI_FILES_BATCH_UPSTREAM_URL"].endswith("/v1")
    # Only the worker sends requests to the engine, and only it holds the engine's key.
    assert "OPENAI_FILES_BATCH_UPSTREAM_API_KEY" in _secret_refs(worker)
    assert "OPENAI_FILES_BATCH_UPSTREAM_API_KEY" not in _secret_refs(server)
    # The base alone has no worker (components/batch-worker adds it).
    assert [n for n, _ in _pods(rendered["base"])] == ["openai-files"]
    assert _one(example, "Deployment", "openai-files")["spec"]["replicas"] == 3


def test_the_probes_are_healthz_for_liveness_and_readyz_for_readiness(
    example: list[Obj],
) -> None:
    pod = _one(example, "Deployment", "openai-files")["spec"]["template"]["spec"]
    server = _by_name(pod, "server")
    assert server["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # /readyz caches its answer for a second: a probe every 5 s cannot load the stores.
    assert server["readinessProbe"]["periodSeconds"] >= 2
    # The port the probes and the Service name is the one the server listens on.
    (port,) = server["ports"]
    assert port["name"] == "http"
    assert port["containerPort"] == int(_settings(example, server)["OPENAI_FILES_PORT"])
    assert _settings(example, server)["OPENAI_FILES_HOST"] == "0.0.0.0"
    # Shutdown: the pause before SIGTERM and uvicorn's 10 s of draining fit in the grace.
    pause = int(server["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pause + 10 < pod["terminationGracePeriodSeconds"]


def test_the_batch_worker_is_probed_by_its_heartbeat(example: list[Obj]) -> None:
    """It serves no HTTP: its liveness probe is the image's health check, which reads the
    heartbeat file the worker keeps in a writable folder (its root is read-only).
    tests/test_container_runs.py runs that check against a worker."""
    pod = _one(example, "Deployment", "openai-files-batch-worker")["spec"]["template"]["spec"]
    worker = _by_name(pod, "batch-worker")
    _, command = healthcheck()
    probe = worker["livenessProbe"]
    assert probe["exec"]["command"] == command
    # A worker that stopped is found within a few periods; a live one's file is never stale.
    assert probe["periodSeconds"] * probe["failureThreshold"] <= 120
    assert probe["timeoutSeconds"] > TIMEOUT_SECONDS
    assert "readinessProbe" not in worker and "ports" not in worker
    heartbeat = _settings(example, worker).get(
        "OPENAI_FILES_HEARTBEAT_FILE", _dockerfile_env()["OPENAI_FILES_HEARTBEAT_FILE"]
    )
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True
    mounts = [m["mountPath"] for m in worker["volumeMounts"]]
    assert any(heartbeat.startswith(m.rstrip("/") + "/") for m in mounts), (heartbeat, mounts)


def test_the_migration_runs_before_the_servers_and_the_workers_start(
    rendered: dict[str, list[Obj]],
) -> None:
    parser = build_parser()
    seen = 0
    for objects in rendered.values():
        for name, pod in _pods(objects):
            # An init container runs to its end, successfully, before the pod's containers
            # start; a failed one is retried and the containers never start.
            (migrate,) = pod["initContainers"]
            (main,) = pod["containers"]
            assert migrate["name"] == "migrate", name
            assert migrate["args"] == ["migrate"], name
            assert parser.parse_args(migrate["args"]).handler.__name__ == "cmd_migrate"
            assert migrate["image"] == main["image"], name
            assert (
                _secret_refs(migrate)["OPENAI_FILES_DATABASE"]
                == _secret_refs(main)["OPENAI_FILES_DATABASE"]
            ), name
            seen += 1
    assert seen == 3  # the base's replicas; the example's replicas and worker


def test_no_secret_value_is_in_the_manifests(rendered: dict[str, list[Obj]]) -> None:
    for target, objects in rendered.items():
        assert not [o for o in objects if o["kind"] == "Secret"], target
        for cm in (o for o in objects if o["kind"] == "ConfigMap"):
            assert not set(cm["data"]) & SECRET_VARIABLES, (target, cm["metadata"]["name"])
        for name, pod in _pods(objects):
            for container in _containers(pod):
                plain = _settings(objects, container)
                assert not set(plain) & SECRET_VARIABLES, (target, name, container["name"])
                # Nor a password in a URL among the plain settings.
                for value in plain.values():
                    assert not re.search(r"://[^/@\s]*:[^/@\s]*@", value), value
                for variable in _secret_refs(container):
                    assert variable in SECRET_VARIABLES, variable
    # The server's secret settings all come from Secrets.
    server = _by_name(
        _one(rendered["base"], "Deployment", "openai-files")["spec"]["template"]["spec"], "server"
    )
    assert set(_secret_refs(server)) == SECRET_SETTINGS - {
        "OPENAI_FILES_BATCH_UPSTREAM_API_KEY"
    } | {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}


def test_docs_create_every_secret_the_manifests_read(rendered: dict[str, list[Obj]]) -> None:
    """docs/deploy.md's `kubectl create secret generic NAME --from-literal=KEY=...` lines
    make every Secret and key the pods read, and no other."""
    wanted: set[tuple[str, str]] = set()
    for objects in rendered.values():
        for _, pod in _pods(objects):
            for container in _containers(pod):
                wanted |= set(_secret_refs(container).values())
    created: set[tuple[str, str]] = set()
    text = DEPLOY_DOC.replace("\\\n", " ")
    for line in re.findall(r"kubectl -n \S+ create secret generic .*", text):
        name = re.search(r"create secret generic (\S+)", line)
        assert name is not None
        created |= {(name[1], key) for key in re.findall(r"--from-literal=([\w-]+)=", line)}
    assert created == wanted


def test_every_setting_the_manifests_give_is_documented(rendered: dict[str, list[Obj]]) -> None:
    documented = _documented_variables()
    for objects in rendered.values():
        for _, pod in _pods(objects):
            for container in _containers(pod):
                names = set(_settings(objects, container)) | set(_secret_refs(container))
                ours = {n for n in names if n.startswith("OPENAI_FILES_")}
                assert ours <= documented, ours - documented
                assert names - ours <= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    for path in check.ROOT.rglob("*"):
        if path.is_file():
            mentioned = set(re.findall(r"OPENAI_FILES_[A-Z_]+", path.read_text()))
            assert mentioned <= documented, (path, mentioned - documented)


def test_the_pods_meet_the_restricted_pod_security_standard(
    rendered: dict[str, list[Obj]],
) -> None:
    (uid,) = re.findall(r"--uid (\d+)", " ".join(rest for word, rest in _dockerfile()))
    for target, objects in rendered.items():
        for name, pod in _pods(objects):
            where = (target, name)
            ctx = pod["securityContext"]
            assert ctx["runAsNonRoot"] is True, where
            # Numeric, as the kubelet needs to tell that the image's user is not root.
            assert ctx["runAsUser"] == int(uid), where
            assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}, where
            assert pod["automountServiceAccountToken"] is False, where
            assert not any("hostPath" in v for v in pod.get("volumes", [])), where
            for container in _containers(pod):
                c = container["securityContext"]
                assert c["allowPrivilegeEscalation"] is False, (*where, container["name"])
                assert c["capabilities"] == {"drop": ["ALL"]}, (*where, container["name"])
                assert c["readOnlyRootFilesystem"] is True, (*where, container["name"])
                assert "privileged" not in c and "runAsUser" not in c


def test_every_container_has_its_memory_sized(rendered: dict[str, list[Obj]]) -> None:
    def mib(quantity: str) -> int:
        number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
        return int(number) * (1024 if unit == "Gi" else 1)

    for objects in rendered.values():
        for name, pod in _pods(objects):
            for container in _containers(pod):
                resources = container["resources"]
                request = mib(resources["requests"]["memory"])
                limit = mib(resources["limits"]["memory"])
                assert 0 < request <= limit, (name, container["name"])
                assert "cpu" in resources["requests"], (name, container["name"])


def test_the_service_budget_and_ingress_reach_the_replicas_only(example: list[Obj]) -> None:
    server_labels = _one(example, "Deployment", "openai-files")["spec"]["template"]["metadata"][
        "labels"
    ]
    worker_labels = _one(example, "Deployment", "openai-files-batch-worker")["spec"]["template"][
        "metadata"
    ]["labels"]

    def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
        return selector.items() <= labels.items()

    service = _one(example, "Service", "openai-files")
    budget = _one(example, "PodDisruptionBudget", "openai-files")
    for selector in (service["spec"]["selector"], budget["spec"]["selector"]["matchLabels"]):
        assert selects(selector, server_labels) and not selects(selector, worker_labels)
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http"}]
    # One replica at a time may be evicted, and a rollout adds one before it removes one.
    assert budget["spec"]["maxUnavailable"] == 1
    strategy = _one(example, "Deployment", "openai-files")["spec"]["strategy"]
    assert strategy["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    ingress = _one(example, "Ingress", "openai-files")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["backend"]["service"] == {"name": "openai-files", "port": {"name": "http"}}
    # The overlay named its host (the component's stands for one).
    assert rule["host"] == "files.example.com"
    assert ingress["spec"]["tls"][0]["hosts"] == [rule["host"]]
    assert all(o["metadata"].get("namespace") == "openai-files" for o in example)
