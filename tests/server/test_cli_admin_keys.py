"""`openai-files keys` and admin keys, on both deployments, against a running server: an
admin key made on the command line reaches the Administration API, is listed and revoked
there; a project's key names its project; an archived project takes no key, from `keys
create` or `env`."""

from __future__ import annotations

import json
import subprocess
import uuid

import httpx

from .._server import ServerProcess, openai_files_cli


def _keys(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return openai_files_cli("keys", *args, "--data-dir", str(server.data_dir), env=server.env)


def _admin(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=server.base_url + "/organization",
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )


def test_an_admin_key_made_on_the_command_line(server: ServerProcess) -> None:
    org = "org-" + uuid.uuid4().hex[:10]
    made = _keys(server, "create", "--admin", "--org", org, "--name", "ops", "--json")
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    key = shown.pop("key")
    assert key.startswith("sk-admin-")
    assert shown == {
        "id": shown["id"],
        "org_id": org,
        "hint": key[:13] + "****" + key[-4:],
        "name": "ops",
        "created_at": shown["created_at"],
        "expires_at": None,
        "revoked_at": None,
    }
    with _admin(server, key) as admin:
        (listed,) = admin.get("/admin_api_keys").json()["data"]
        assert (listed["id"], listed["name"], listed["redacted_value"]) == (
            shown["id"],
            "ops",
            shown["hint"],
        )
        project = admin.post("/projects", json={"name": "From the CLI's key"}).json()
        assert project["status"] == "active"

        # Listed with the project keys, as an admin key.
        table = _keys(server, "list")
        row = next(line for line in table.stdout.splitlines() if line.startswith(shown["id"]))
        assert row.split()[1:4] == [org, "(admin)", shown["hint"]]
        every = json.loads(_keys(server, "list", "--json").stdout)
        (entry,) = [e for e in every if e["id"] == shown["id"]]
        assert entry["kind"] == "admin" and "key_hash" not in entry

        # Revoked on the command line: it stops at once (admin keys are never cached).
        revoked = _keys(server, "revoke", shown["id"])
        assert revoked.returncode == 0 and revoked.stdout == f"revoked {shown['id']}\n"
        answer = admin.get("/projects")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "invalid_api_key"
    again = _keys(server, "revoke", shown["id"])
    assert again.returncode == 2 and f"{shown['id']} is already revoked" in again.stderr


def test_a_project_key_names_its_project_and_an_archived_one_takes_none(
    server: ServerProcess,
) -> None:
    org = "org-" + uuid.uuid4().hex[:10]
    made = _keys(server, "create", "--admin", "--org", org, "--expires-in-seconds", "600")
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert made.stdout.startswith("created key_")
    assert f"for {org} (an admin key: the Administration API only)" in made.stdout
    cli = _keys(server, "create", "--org", org, "--project", "proj_team", "--name", "laptop")
    assert cli.returncode == 0, cli.stderr
    with _admin(server, key) as admin:
        expires = admin.get("/admin_api_keys").json()["data"][0]
        assert expires["expires_at"] == expires["created_at"] + 600
        project = admin.get("/projects/proj_team").json()
        assert (project["id"], project["name"], project["status"]) == (
            "proj_team",
            "proj_team",
            "active",
        )
        (listed,) = admin.get("/projects/proj_team/api_keys").json()["data"]
        assert listed["name"] == "laptop" and listed["owner"] == {"type": "user"}
        assert admin.post("/projects/proj_team/archive").json()["status"] == "archived"
    refused = _keys(server, "create", "--org", org, "--project", "proj_team")
    assert refused.returncode == 2
    assert f"project proj_team of {org} is archived: it takes no new key" in refused.stderr
    assert refused.stdout == ""
    # `env` makes a key too: the same refusal, not a traceback.
    env = _env(server, "--org", org, "--project", "proj_team")
    assert (env.returncode, env.stdout) == (2, "")
    assert f"project proj_team of {org} is archived: it takes no new key" in env.stderr
    assert "Traceback" not in env.stderr


def _env(server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return openai_files_cli(
        "env",
        *args,
        "--data-dir",
        str(server.data_dir),
        "--base-url",
        server.base_url,
        env=server.env,
    )


def test_env_refuses_a_project_id_the_admin_api_cannot_reach(server: ServerProcess) -> None:
    """`env --project` takes what `keys create --project` takes: a control character would
    make a project that no admin route can name."""
    for project in ("a\x07b", "bad\tid", "p" * 257, ""):
        done = _env(server, "--project", project)
        assert (done.returncode, done.stdout) == (2, ""), (project, done.stderr)
        assert "a project id is printable text of 1 to 256 characters" in done.stderr
        assert "Traceback" not in done.stderr


def test_keys_create_refuses_mixed_flags(server: ServerProcess) -> None:
    for args, message in [
        (("--admin", "--project", "p"), "--admin makes an organization's key"),
        (("--expires-in-seconds", "60"), "--expires-in-seconds is for admin keys"),
        (("--admin", "--expires-in-seconds", "0"), "--expires-in-seconds must be 1 to 31536000"),
        (("--project", "bad\tid"), "a project id is printable text"),
        (("--project", "p" * 257), "a project id is printable text"),
    ]:
        done = _keys(server, "create", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr and "Traceback" not in done.stderr
