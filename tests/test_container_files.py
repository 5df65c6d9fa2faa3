"""The Dockerfile and compose.yaml, read (no Docker engine runs them here): they configure the
server only through settings README documents, and wire the stores and the start order as
docs/deploy.md says."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from openai_files.server.settings import Settings, env_name, setting_fields
from openai_files.server.stores import open_blob_store, open_metadata_store

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]

#: Values for the variables compose.yaml requires (`${NAME:?message}`).
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "S3_ACCESS_KEY": "s3-access",
    "S3_SECRET_KEY": "s3-secret",
}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in _dockerfile():
        if word == "ENV":
            env.update(dict(re.findall(r"(\w+)=(\S+)", rest)))
    return env


def _interpolate(value: str) -> str:
    """Compose's `${NAME:?message}` / `${NAME:-default}` / `${NAME}`, with COMPOSE_ENV."""

    def one(m: re.Match[str]) -> str:
        name, op, word = m.group(1), m.group(2), m.group(3)
        if name in COMPOSE_ENV:
            return COMPOSE_ENV[name]
        assert op == ":-", f"compose.yaml requires ${name}, which the test does not give"
        return word

    return re.sub(r"\$\{(\w+)(?:(:[?-])([^}]*))?\}", one, value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment", {})
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: _interpolate(str(v)) for k, v in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    """What an openai-files container runs: the image's ENTRYPOINT and the service's command
    (or the image's CMD)."""
    steps = dict(_dockerfile())
    entrypoint: list[str] = json.loads(steps["ENTRYPOINT"])
    command: str | list[str] = service.get("command", json.loads(steps["CMD"]))
    return entrypoint + (command.split() if isinstance(command, str) else command)


def _openai_files_services() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in SERVICES.items() if s.get("build") == "."}


def _replicas() -> dict[str, dict[str, Any]]:
    return {
        name: s
        for name, s in _openai_files_services().items()
        if _command(s)[:2] == ["openai-files", "serve"]
    }


def _documented_variables() -> set[str]:
    """The OPENAI_FILES_* names of README's configuration table."""
    return set(re.findall(r"^\| `--[a-z-]+` \| `(OPENAI_FILES_[A-Z_]+)` \|", README, re.M))


def test_readme_table_is_what_this_test_reads() -> None:
    assert _documented_variables() == {env_name(f.name) for f in setting_fields()}


def test_every_openai_files_variable_is_a_documented_setting() -> None:
    documented = _documented_variables()
    used = set(_dockerfile_env())
    for service in SERVICES.values():
        used |= set(service.get("environment") or {})
    used = {name for name in used if name.startswith("OPENAI_FILES_")}
    assert used, "no OPENAI_FILES_ variable found"
    assert used <= documented, used - documented
    # And the texts name none besides (a typo in a comment or a command).
    for name in ("Dockerfile", "compose.yaml"):
        mentioned = set(re.findall(r"OPENAI_FILES_[A-Z_]+", (ROOT / name).read_text()))
        assert mentioned <= documented, (name, mentioned - documented)


def test_the_image_serves_on_the_port_it_exposes() -> None:
    steps = _dockerfile()
    env = _dockerfile_env()
    assert _command({}) == ["openai-files", "serve"]
    exposed = [rest for word, rest in steps if word == "EXPOSE"]
    assert exposed == [env["OPENAI_FILES_PORT"]]
    # All of the container's interfaces (its loopback is not reachable from outside it).
    assert env["OPENAI_FILES_HOST"] == "0.0.0.0"
    settings = Settings.from_env(env)
    assert (settings.host, settings.port, str(settings.data_dir)) == ("0.0.0.0", 8000, "/data")
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert re.fullmatch(r"python:3\.(1[1-9])-slim", dict(steps)["FROM"])


def test_the_image_installs_the_extras_the_stores_need() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    runs = " ".join(rest for word, rest in _dockerfile() if word == "RUN")
    installed = re.search(r"pip install [^'\"]*['\"]\.\[([a-z0-9,]+)\]['\"]", runs)
    assert installed is not None
    assert {"server", "postgres", "s3"} <= set(installed[1].split(",")) <= set(extras)


def test_the_build_context_keeps_what_the_dockerfile_copies() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*"  # an allow-list: only what is named goes into the build
    kept = {p[1:] for p in patterns if p.startswith("!")}
    for word, rest in _dockerfile():
        if word == "COPY":
            for source in rest.split()[:-1]:
                assert source in kept, f"COPY {source} is left out by .dockerignore"
                assert (ROOT / source).exists()


@pytest.mark.parametrize("name", sorted(_openai_files_services()))
def test_every_openai_files_container_is_on_the_same_stores(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = SERVICES[name]
    env = _env(service)
    settings = Settings.from_env({**_dockerfile_env(), **env})
    # The database is the postgres service's, with its user, password and database.
    pg = _env(SERVICES["postgres"])
    db = urlsplit(settings.database)
    assert db.scheme == "postgresql"
    assert (db.hostname, db.username, db.password, db.path) == (
        "postgres",
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        "/" + pg["POSTGRES_DB"],
    )
    assert db.port == 5432
    # The storage is a bucket the s3 service makes, on its endpoint, with its credentials.
    s3 = SERVICES["s3"]
    storage = urlsplit(settings.storage)
    assert storage.scheme == "s3"
    buckets = re.search(r"-bucket=(\S+)", s3["command"])
    assert buckets is not None and storage.netloc in buckets[1].split(",")
    # It is healthy (the replicas start) once that bucket exists.
    assert f"/buckets/{storage.netloc}/" in " ".join(s3["healthcheck"]["test"])
    endpoint = urlsplit(parse_qs(storage.query)["endpoint"][0])
    assert endpoint.hostname == "s3" and endpoint.port == 8333
    s3_env = _env(s3)
    for key, secret in (
        ("AWS_ACCESS_KEY_ID", "S3_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "S3_SECRET_KEY"),
    ):
        assert env[key] == s3_env[key] == COMPOSE_ENV[secret]
    # Both URLs are ones the stores accept.
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, env[key])
    open_metadata_store(settings.database_url)
    open_blob_store(settings.storage_url)


def test_migrate_runs_first_and_the_replicas_wait_for_it() -> None:
    migrate = SERVICES["migrate"]
    assert _command(migrate) == ["openai-files", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in SERVICES["postgres"] and "healthcheck" in SERVICES["s3"]
    replicas = _replicas()
    assert len(replicas) >= 2
    for name, replica in replicas.items():
        needs = replica["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully", name
        assert needs["postgres"]["condition"] == "service_healthy", name
        assert needs["s3"]["condition"] == "service_healthy", name


def test_each_replica_publishes_the_served_port_on_its_own_loopback_port() -> None:
    served = _dockerfile_env()["OPENAI_FILES_PORT"]
    host_ports = []
    for name, replica in _replicas().items():
        assert "OPENAI_FILES_PORT" not in _env(replica), name
        [published] = replica["ports"]
        host, port, target = published.split(":")
        assert (host, target) == ("127.0.0.1", served), name
        host_ports.append(port)
    assert len(set(host_ports)) == len(host_ports)
