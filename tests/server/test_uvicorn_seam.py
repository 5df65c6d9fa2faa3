"""The seam between the connection layer (server/_http.py, _http_wire.py) and uvicorn: what
the layer relies on, checked on the uvicorn installed, so that an upgrade that moves it
fails here by name rather than as a connection rule quietly lost.

`make test-uvicorn-newest` runs these and the connection tests on the newest uvicorn too
(UVICORN_NEWEST in the Makefile, put first on PYTHONPATH for the tests and the servers they
start); `UVICORN_EXPECTED` then names the version that must be the one imported.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from openai_files.server import _http, _http_wire
from openai_files.server._http import LimitedHttpToolsProtocol, protocol_class
from openai_files.server.settings import Settings

from .test_http_body import _Transport

ROOT = Path(__file__).resolve().parents[2]


def _uvicorn_requirement() -> SpecifierSet:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["optional-dependencies"]["server"]:
        match = re.fullmatch(r"uvicorn([<>=!~,.\d ]+)", requirement)
        if match:
            return SpecifierSet(match.group(1))
    raise AssertionError("pyproject.toml's [server] extra names no uvicorn version range")


def test_the_uvicorn_range_is_what_is_tested() -> None:
    """pyproject.toml allows the uvicorn imported, and spans two minor versions up to the
    newest that `make test-uvicorn-newest` runs, no further."""
    requirement = _uvicorn_requirement()
    assert Version(uvicorn.__version__) in requirement
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^UVICORN_NEWEST\s*\?=\s*(\S+)$", makefile, re.MULTILINE)
    assert match, "the Makefile names no UVICORN_NEWEST"
    newest = Version(match.group(1))
    assert newest in requirement
    assert Version(f"{newest.major}.{newest.minor - 1}.0") in requirement
    assert Version(f"{newest.major}.{newest.minor + 1}.0") not in requirement


def test_servers_started_by_the_tests_import_the_same_uvicorn() -> None:
    """Under `make test-uvicorn-newest`, the uvicorn named there, in this process and in a
    server process the tests start (which inherits PYTHONPATH)."""
    expected = os.environ.get("UVICORN_EXPECTED", uvicorn.__version__)
    assert uvicorn.__version__ == expected
    child = subprocess.run(
        [sys.executable, "-c", "import uvicorn; print(uvicorn.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert child.stdout.strip() == expected


#: uvicorn's methods the protocol overrides: each calls uvicorn's own, but send_400_response,
#: which it replaces (uvicorn's writes plain text: ours the envelope, with the reason).
EXTENDED = {
    "__init__": ["self", "config", "server_state", "app_state", "_loop"],
    "connection_made": ["self", "transport"],
    "connection_lost": ["self", "exc"],
    "data_received": ["self", "data"],
    "on_message_begin": ["self"],
    "on_url": ["self", "url"],
    "on_header": ["self", "name", "value"],
    "on_headers_complete": ["self"],
    "on_body": ["self", "body"],
    "on_message_complete": ["self"],
    "on_response_complete": ["self"],
}
REPLACED = {"send_400_response": ["self", "msg"]}


def test_the_protocol_overrides_only_uvicorn_s_public_callbacks() -> None:
    overridden = {
        name
        for name, value in vars(LimitedHttpToolsProtocol).items()
        if callable(value) and hasattr(HttpToolsProtocol, name)
    }
    assert overridden == set(EXTENDED) | set(REPLACED)
    for name, parameters in {**EXTENDED, **REPLACED}.items():
        signature = inspect.signature(getattr(HttpToolsProtocol, name))
        assert list(signature.parameters) == parameters, name
    source = inspect.getsource(LimitedHttpToolsProtocol)
    for name in EXTENDED:
        if name != "__init__":
            assert f"super().{name}(" in source, f"{name} no longer calls uvicorn's"
    assert "super().send_400_response(" not in source


def _underscored_attributes(module: Any) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
    }


def test_the_connection_layer_touches_no_private_name_of_uvicorn() -> None:
    # `_tail` is _BodyChunks' own.
    assert _underscored_attributes(_http) | _underscored_attributes(_http_wire) == {"_tail"}


async def _fed(request: bytes) -> tuple[_Transport, list[bytes]]:
    """The protocol `openai-files serve` runs, fed `request` by hand; what it wrote, and
    the bodies its app got."""
    bodies: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        message = await receive()
        bodies.append(message["body"])
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    config = Config(app=app, lifespan="off", log_config=None, access_log=False)
    config.load()
    protocol = protocol_class(Settings())(
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = _Transport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(request)
    for _ in range(5):
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport, bodies


@pytest.mark.anyio
async def test_uvicorn_runs_the_app_wrapped_for_the_connection() -> None:
    """uvicorn starts each request with the protocol's `app` (wrapped in __init__ for the
    connection): the body comes from the layer's buffer, the head goes out canonical."""
    transport, bodies = await _fed(
        b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nxyz"
    )
    assert bodies == [b"xyz"]
    assert b"\r\nContent-Length: 2\r\n" in transport.written


@pytest.mark.anyio
async def test_uvicorn_answers_a_parser_error_through_send_400_response() -> None:
    """uvicorn's data_received calls send_400_response while it handles the parser's
    error: the answer is in the envelope, with the parser's reason."""
    transport, bodies = await _fed(
        b"POST /v1/files HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n"
    )
    assert bodies == []
    head, _, body = bytes(transport.written).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    error = json.loads(body)["error"]
    assert error["code"] == "invalid_http_request"
    assert "Content-Length" in error["message"]
