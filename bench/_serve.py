"""`openai-files serve`, exactly, plus `GET /bench/constant`: the reference route of row 6
(a constant JSON body through the same uvicorn, middleware and error handling)."""

from __future__ import annotations

import sys
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from openai_files.cli import build_parser
from openai_files.cli._server import serve, settings_from_args

CONSTANT = {"id": "file-constant", "object": "file", "bytes": 0, "status": "processed"}


async def constant(request: Request) -> Response:
    return JSONResponse(CONSTANT)


def add_constant_route(app: Any) -> Any:
    app.router.routes.insert(0, Route("/bench/constant", constant, methods=["GET"]))
    return app


def main() -> int:
    args = build_parser().parse_args(["serve", *sys.argv[1:]])
    return serve(settings_from_args(args), wrap_app=add_constant_route)


if __name__ == "__main__":
    sys.exit(main())
