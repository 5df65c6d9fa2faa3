"""`HTTP(S)_PROXY` and `NO_PROXY` route the client's requests, as they do httpx's and the
official SDK's: through a forwarding proxy on loopback to the real server, or around it."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from openai_files import AsyncClient, Client

from .._server import ServerProcess
from ._helpers import both_drivers

#: Headers that concern one hop only, not passed on.
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "upgrade"}


class ForwardProxy(ThreadingHTTPServer):
    """A plain HTTP forward proxy: each request, sent to it in absolute form, is sent on to
    its URL and the answer passed back; `seen` keeps the request lines."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Forward)
        self.seen: list[str] = []
        self.url = f"http://127.0.0.1:{self.server_address[1]}"


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ForwardProxy

    def _forward(self) -> None:
        self.server.seen.append(f"{self.command} {self.path}")
        url = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        upstream = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
        try:
            target = url.path + (f"?{url.query}" if url.query else "")
            upstream.request(self.command, target, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in HOP | {"content-length"}:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_DELETE = _forward

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    made = ForwardProxy()
    thread = threading.Thread(target=made.serve_forever, daemon=True)
    thread.start()
    yield made
    made.shutdown()
    made.server_close()
    thread.join()


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch, proxy: ForwardProxy) -> ForwardProxy:
    """HTTP_PROXY names `proxy`; no other proxy variable is set."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    return proxy


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_http_proxy_carries_the_requests_and_no_proxy_bypasses_it(
    server: ServerProcess,
    api_key: str,
    proxy_env: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
) -> None:
    def drivers() -> Iterator[Any]:
        return both_drivers(
            lambda: Client(api_key, base_url=server.base_url, max_retries=0),
            lambda: AsyncClient(api_key, base_url=server.base_url, max_retries=0),
            kind,
        )

    for client in drivers():
        made = client.upload(b"x" * 10, purpose="vision", filename="a.png")
        assert client.retrieve(made.id).bytes == 10
    assert proxy_env.seen == [
        f"POST {server.base_url}/files",
        f"GET {server.base_url}/files/{made.id}",
    ]

    host = urllib.parse.urlsplit(server.base_url).hostname
    assert host == "127.0.0.1"
    monkeypatch.setenv("NO_PROXY", f"localhost,{host}")
    for client in drivers():
        assert client.retrieve(made.id).id == made.id
    assert len(proxy_env.seen) == 2  # not through the proxy


def test_cli_requests_go_through_http_proxy_unless_no_proxy(
    server: ServerProcess, api_key: str, proxy_env: ForwardProxy
) -> None:
    env = {**os.environ, "OPENAI_API_KEY": api_key, "OPENAI_BASE_URL": server.base_url}
    command = [sys.executable, "-m", "openai_files", "list", "--json"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"] == []
    assert proxy_env.seen == [f"GET {server.base_url}/files"]

    env["NO_PROXY"] = "127.0.0.1"
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert proxy_env.seen == [f"GET {server.base_url}/files"]
