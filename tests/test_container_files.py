"""The Dockerfile, compose.yaml and the Caddyfile, read (no Docker engine runs them here):
they configure the server only through settings README documents, wire the stores, the start
order and the load balancer as docs/deploy.md says. tests/test_container_runs.py runs the
image's health check and the Caddyfile's Caddy in front of real servers."""

from __future__ import annotations

import json
import posixpath
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from deploy import healthcheck as healthcheck_module

from openai_files.server import settings as S
from openai_files.server.settings import Settings, env_name, setting_fields
from openai_files.server.stores import open_blob_store, open_metadata_store

from ._caddy import adapted_caddyfile, caddy_version, only_server, proxy_of

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]

#: Values for the variables compose.yaml requires (`${NAME:?message}`).
COMPOSE_ENV = {
    "POSTGRES_PASSWORD": "pg-secret",
    "S3_ACCESS_KEY": "s3-access",
    "S3_SECRET_KEY": "s3-secret",
    "CONSOLE_LINK_SECRET": "link-secret",
    "METRICS_TOKEN": "metrics-token",
}


def _dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined (Docker drops
    comment lines, those inside an instruction too)."""
    lines = (ROOT / "Dockerfile").read_text().splitlines(keepends=True)
    text = "".join(line for line in lines if not line.lstrip().startswith("#"))
    text = re.sub(r"\\\n", " ", text)
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


def healthcheck() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's HEALTHCHECK: its options, and its command (exec form)."""
    [rest] = [rest for word, rest in _dockerfile() if word == "HEALTHCHECK"]
    options, _, command = rest.partition(" CMD ")
    return dict(re.findall(r"--([a-z-]+)=(\S+)", options)), json.loads(command)


def _seconds(value: str) -> float:
    assert value.endswith("s"), value
    return float(value[:-1])


def healthcheck_script() -> Path:
    """The repository's file that the HEALTHCHECK command runs: the one the Dockerfile
    copies to that path."""
    _, command = healthcheck()
    steps = _dockerfile()
    [workdir] = [rest for word, rest in steps if word == "WORKDIR"]
    found = []
    for word, rest in steps:
        if word == "COPY":
            *sources, dest = rest.split()
            if posixpath.normpath(posixpath.join(workdir, dest)) == command[-1]:
                found += sources
    assert len(found) == 1, (command, found)
    return ROOT / found[0]


def test_the_image_health_check_asks_liveness_with_python() -> None:
    """/healthz, not /readyz: a replica whose PostgreSQL or S3 is down is not restarted
    (docs/deploy.md says why); Python's urllib, since the slim image has no curl, and none
    of the package (it runs every few seconds). tests/test_container_runs.py runs it."""
    options, command = healthcheck()
    assert command[0] == "python" and len(command) == 2
    code = healthcheck_script().read_text()
    assert "/healthz" in code and "/readyz" not in code
    assert "OPENAI_FILES_PORT" in code and "curl" not in code
    assert not re.search(r"^\s*(from|import) openai_files", code, re.M)
    # Docker's wait for the command outlasts urllib's own, so that the command fails by
    # itself (exit status 1) rather than being killed.
    assert _seconds(options["timeout"]) > healthcheck_module.TIMEOUT_SECONDS
    assert {"interval", "start-period", "retries"} <= set(options)
    # The batch worker's heartbeat: a file the image names, which it touches often enough
    # that a live worker's is never found stale.
    heartbeat = _dockerfile_env()["OPENAI_FILES_HEARTBEAT_FILE"]
    assert heartbeat.startswith("/tmp/")
    assert Settings.from_env(_dockerfile_env()).heartbeat_file == heartbeat
    assert healthcheck_module.STALE_SECONDS >= 3 * S.HEARTBEAT_SECONDS


def test_the_one_shot_migrate_has_no_health_check() -> None:
    assert SERVICES["migrate"]["healthcheck"] == {"disable": True}


def test_the_load_balancer_is_caddy_at_the_version_the_tests_run() -> None:
    lb = SERVICES["lb"]
    image, _, tag = lb["image"].partition(":")
    assert image == "caddy"  # the official image
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), "pinned to a release"
    assert tag == caddy_version()
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in lb["volumes"]
    assert (ROOT / "Caddyfile").exists()


def test_the_load_balancer_routes_to_every_replica_by_readiness() -> None:
    config = adapted_caddyfile()
    lb = SERVICES["lb"]
    # Published on the host's loopback, to the port Caddy listens on.
    [published] = lb["ports"]
    host, _, target = published.split(":")
    assert host == "127.0.0.1"
    assert only_server(config)["listen"] == [f":{target}"]
    # Every replica, by its service name and the port it serves, and nothing else.
    served = _dockerfile_env()["OPENAI_FILES_PORT"]
    proxy = proxy_of(config)
    assert sorted(u["dial"] for u in proxy["upstreams"]) == sorted(
        f"{name}:{served}" for name in _replicas()
    )
    assert set(lb["depends_on"]) == set(_replicas())
    # Readiness: each replica's /readyz, waited for longer than a replica waits for its
    # stores, so that a hung store is a 503 from the replica, not a health check's timeout.
    active = proxy["health_checks"]["active"]
    assert active["uri"] == "/readyz"
    assert active["timeout"] / 1e9 > S.DEFAULT_READY_TIMEOUT_SECONDS
    assert 0 < active["interval"] / 1e9 <= 10
    assert active.get("fails", 1) == 1 and active.get("passes", 1) == 1
    # A request waits at most a second for a replica to take it (none ready: the answer
    # below comes after it).
    assert proxy["load_balancing"]["try_duration"] / 1e9 <= 1
    # Nothing but the proxy: no admin API, no certificate requests from a listener here.
    assert config["admin"]["disabled"] is True
    assert only_server(config)["automatic_https"]["disable"] is True


def test_the_load_balancer_answers_for_no_replica_in_openai_error_shape() -> None:
    """Caddy's own answers when no replica takes a request (tests/test_container_runs.py
    gets them from the real Caddy): OpenAI's error envelope, JSON, with a Retry-After."""
    routes = only_server(adapted_caddyfile())["errors"]["routes"]
    covered: set[int] = set()
    for route in routes:
        [match] = route["match"]
        codes = json.loads(match["expression"].partition(" in ")[2])
        covered |= set(codes)
        [sub] = route["handle"]
        [handled] = sub["routes"]
        headers: dict[str, list[str]] = {}
        for h in handled["handle"]:
            if h["handler"] == "headers":
                headers.update(h["response"]["set"])
        assert headers["Content-Type"] == ["application/json"]
        assert int(headers["Retry-After"][0]) >= 1
        assert headers["X-Request-Id"][0].startswith("req_")
        [respond] = [h for h in handled["handle"] if h["handler"] == "static_response"]
        body = json.loads(respond["body"])
        assert list(body) == ["error"]
        assert set(body["error"]) == {"message", "type", "param", "code"}
        assert body["error"]["type"] == "server_error"
    assert covered == {502, 503, 504}


def test_the_replicas_give_metrics_to_a_scraper_with_the_token() -> None:
    """A request reaches a replica's container from another address than its loopback
    (the load balancer's container, the Docker network's gateway behind a published port),
    so /metrics asks for the token of .env's METRICS_TOKEN, the same on every replica."""
    tokens = set()
    for name, replica in _replicas().items():
        settings = Settings.from_env({**_dockerfile_env(), **_env(replica)})
        assert settings.metrics == "token", name
        tokens.add(settings.metrics_token)
    assert tokens == {COMPOSE_ENV["METRICS_TOKEN"]}


def test_the_console_is_served_through_the_load_balancer() -> None:
    """The replicas listen on all the container's addresses, where the console is off
    unless asked for; every replica signs its links with the same secret."""
    secrets = set()
    for name, replica in _replicas().items():
        settings = Settings.from_env({**_dockerfile_env(), **_env(replica)})
        assert settings.host == "0.0.0.0" and settings.console_enabled, name
        secrets.add(settings.console_link_secret)
    assert len(secrets) == 1 and secrets != {""}
