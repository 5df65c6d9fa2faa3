"""`openai-files env`: `eval "$(openai-files env)"` points the client commands at the local
server (a new key each time), and `keys create --json` shows what a user needs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys

from .._server import Deployment, openai_files_cli


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_eval_of_env_points_the_client_commands_at_the_server(deployment: Deployment) -> None:
    port = _free_port()
    server = deployment.server("--port", str(port))
    try:
        # The server's own settings, as `make run` or `serve` had them: its data folder
        # (or database) and its port, here from the environment.
        env = {
            **server.env,
            "OPENAI_FILES_DATA_DIR": str(server.data_dir),
            "OPENAI_FILES_PORT": str(port),
            "PYTHON": sys.executable,
        }
        for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
            env.pop(name, None)
        script = (
            'set -e; eval "$("$PYTHON" -m openai_files env)"; '
            'echo "url=$OPENAI_BASE_URL"; "$PYTHON" -m openai_files list --json'
        )
        done = subprocess.run(
            [shutil.which("bash") or "bash", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        first, rest = done.stdout.split("\n", 1)
        assert first == f"url={server.base_url}" == f"url=http://127.0.0.1:{port}/v1"
        assert json.loads(rest)["data"] == []
        assert "openai-files: created API key key_" in done.stderr
        assert "for org-default / proj_default" in done.stderr

        # The two lines themselves, and a new key each run (keys are stored hashed).
        lines = [openai_files_cli("env", env={**env, "OPENAI_FILES_PORT": str(port)}).stdout]
        lines.append(openai_files_cli("env", "--base-url", server.base_url, env=env).stdout)
        keys = []
        for out in lines:
            url_line, key_line = out.splitlines()
            assert url_line == f"export OPENAI_BASE_URL={server.base_url}"
            assert key_line.startswith("export OPENAI_API_KEY=sk-")
            keys.append(key_line)
        assert keys[0] != keys[1]
    finally:
        server.stop()


def test_env_refuses_a_folder_without_a_database_and_port_0(tmp_path: object) -> None:
    env = {**os.environ, "OPENAI_FILES_DATA_DIR": f"{tmp_path}/none"}
    env.pop("OPENAI_FILES_DATABASE", None)
    done = openai_files_cli("env", env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert "no database in" in done.stderr and "Traceback" not in done.stderr
    done = openai_files_cli("env", "--port", "0", env=env)
    assert done.returncode == 2 and "pass --base-url" in done.stderr


def test_keys_create_json_has_the_key_and_not_its_hash(tmp_path: object) -> None:
    made = openai_files_cli(
        "keys", "create", "--init", "--json", "--data-dir", f"{tmp_path}/data",
        env=dict(os.environ),
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    shown = json.loads(made.stdout)
    assert shown["key"].startswith("sk-") and shown["id"].startswith("key_")
    assert "key_hash" not in shown
    assert sorted(shown) == sorted(
        [
            "id", "org_id", "project_id", "hint", "created_at", "revoked_at", "name",
            "service_account_id", "key",
        ]
    )  # fmt: skip
    assert (shown["name"], shown["service_account_id"]) == ("Secret key", None)
