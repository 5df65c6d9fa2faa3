"""docs/client.md names every option, method, error and command (and the seed's message)."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import openai_files
from openai_files import Client, Options
from openai_files.cli._batches_cmds import COMMANDS as BATCH_COMMANDS
from openai_files.cli._client_cmds import COMMANDS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "client.md").read_text()


@pytest.mark.parametrize("name", sorted(Options.__annotations__))
def test_every_option(name: str) -> None:
    assert f"`{name}`" in DOC


@pytest.mark.parametrize(
    "name", [n for n, m in vars(Client).items() if callable(m) and not n.startswith("_")]
)
def test_every_method(name: str) -> None:
    assert name in ("close",) or f"| `{name}(" in DOC


@pytest.mark.parametrize(
    "name",
    [
        n
        for n in openai_files.__all__
        if inspect.isclass(getattr(openai_files, n))
        and issubclass(getattr(openai_files, n), Exception)
    ],
)
def test_every_error(name: str) -> None:
    assert name in DOC


@pytest.mark.parametrize("command", sorted([*COMMANDS, *BATCH_COMMANDS]))
def test_every_command(command: str) -> None:
    assert f"openai-files {command}" in DOC


def test_the_seeds_message() -> None:
    assert "HTTP response is not HTTP_OK!\n\nHTTP Status: 404\nMimetype:    application/json" in DOC
