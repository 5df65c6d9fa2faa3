"""Start llama-stack's server on CONFIG, bound to 127.0.0.1:PORT, with its Files API's upload
limit raised to MAX_BYTES; run with the peer's own Python (bench/peers.py does).

python llama_stack_serve.py CONFIG PORT MAX_BYTES

llama-stack 0.7.3 refuses uploads over 100 MiB (`DEFAULT_MAX_UPLOAD_SIZE_BYTES` in
llama_stack_api/common/upload_safety.py), and neither its config nor an environment variable
changes it: its files router is built by `create_router(impl, max_upload_size_bytes=...)`
with that default. This launcher registers the same router factory with a larger
`max_upload_size_bytes`, then serves the app as `llama stack run` does (uvicorn, one
process, the `create_app` factory); no installed file is changed.
"""

from __future__ import annotations

import functools
import os
import sys


def main() -> None:
    config, port, max_bytes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.environ["LLAMA_STACK_CONFIG"] = config
    os.environ.setdefault("LLAMA_STACK_DISABLE_VERSION_CHECK", "1")

    import uvicorn
    from llama_stack.core.server import fastapi_router_registry as registry
    from llama_stack_api.files import fastapi_routes

    registry._ROUTER_FACTORIES["files"] = functools.partial(
        fastapi_routes.create_router, max_upload_size_bytes=max_bytes
    )
    uvicorn.run(
        "llama_stack.core.server.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
    )


if __name__ == "__main__":
    main()
