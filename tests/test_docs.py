"""The docs list every setting and command (and say nothing of ones that do not exist)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from openai_files import _config
from openai_files.server.settings import env_name, flag_name, setting_fields

from ._server import openai_files_cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("name", [f.name for f in setting_fields()])
def test_readme_lists_every_setting(name: str) -> None:
    rows = [line for line in README.splitlines() if line.startswith(f"| `{flag_name(name)}`")]
    row = rows[0] if rows else None
    assert row is not None, f"README has no row for {flag_name(name)}"
    assert f"`{env_name(name)}`" in row


def test_readme_lists_no_unknown_setting() -> None:
    """Every `OPENAI_FILES_*` variable README names is a server setting or the client's."""
    client = {value for name, value in vars(_config).items() if name.startswith("ENV_")}
    known = {env_name(f.name) for f in setting_fields()} | client
    mentioned = set(re.findall(r"OPENAI_FILES_[A-Z_]+", README))
    assert mentioned <= known, mentioned - known


def test_serve_help_lists_every_setting() -> None:
    done = openai_files_cli("serve", "--help")
    assert done.returncode == 0
    for f in setting_fields():
        assert flag_name(f.name) in done.stdout
        assert env_name(f.name) in done.stdout


def test_readme_shows_the_two_commands() -> None:
    assert "make run" in README and "make test" in README
