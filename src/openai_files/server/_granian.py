"""`--http-server granian`: the app under granian's embedded server, in this process.

granian (a Rust HTTP server) offers ASGI's `http.response.pathsend` extension, with which a
whole file on the local folder is sent by the server without passing through Python
(`responses.py`). It is a choice, not the default: uvicorn with server/_http.py bounds
every connection the way docs/deploy.md lists, and granian bounds them its own way:

- `--max-header-bytes` becomes granian's HTTP/1 buffer size, but never under granian's
  default (408 KiB, which also sizes its reads of a body): a longer head is refused by
  granian, not answered 414/431 in OpenAI's envelope;
- `--header-timeout-seconds` becomes its header read timeout (at most 60 s);
- `--max-connections` becomes its backpressure: requests beyond it wait rather than being
  answered 503;
- `--keep-alive-timeout-seconds` has no HTTP/1 equivalent (granian keeps idle
  connections open until the client closes them).

The body idle timeout, the upload limits and everything else live in the app and hold
under both. granian's embedded server runs in the process that made the app (as uvicorn
does), so a memory reading of the server's PID means the same thing under both.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from typing import Any

from .settings import Settings

log = logging.getLogger("openai_files.server")

#: granian's default HTTP/1 buffer, and its bound on the header read timeout.
DEFAULT_BUFFER_BYTES = 8192 + 4096 * 100
MAX_HEADER_TIMEOUT_MS = 60_000


def run(app: Any, settings: Settings, sock: socket.socket) -> bool:
    """Serve `app` on the address `sock` holds until SIGINT or SIGTERM; whether it started.

    `sock` was bound to take the port early (and to learn it, for port 0); granian binds
    the address itself, so `sock` is closed first.
    """
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings
    from granian.server.embed import Server

    host, port = sock.getsockname()[:2]
    sock.close()
    server = Server(
        app,
        address=host,
        port=port,
        interface=Interfaces.ASGI,  # with the lifespan, as uvicorn's `lifespan="on"`
        http=HTTPModes.http1,  # as uvicorn: no HTTP/2 on the plain-text port
        websockets=False,
        backlog=max(128, min(settings.max_connections, 65535)),
        backpressure=settings.max_connections,
        http1_settings=HTTP1Settings(
            header_read_timeout=max(
                1, min(MAX_HEADER_TIMEOUT_MS, int(settings.header_timeout_seconds * 1000))
            ),
            # It also sizes the reads of a body: granian's default at least (smaller made
            # a 512 MiB upload 1.7 times slower).
            max_buffer_size=max(DEFAULT_BUFFER_BYTES, settings.max_header_bytes),
        ),
        log_enabled=settings.log_level.lower() == "debug",
    )
    started = False

    async def main() -> None:
        nonlocal started
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, server.signal_handler_interrupt)
        log.info("granian serving on %s:%d", host, port)
        started = True
        await server.serve()

    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # uvloop is part of the server extra, but not on Windows
        runner = asyncio.run
    runner(main())
    return started
