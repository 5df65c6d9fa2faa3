"""The `openai-files` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from ._common import CLIError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openai-files",
        description=(
            "Work with OpenAI-style file storage: upload, list, get, download and delete "
            "files; run the server, manage its keys."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from ._client_cmds import add_client_parsers
    from ._server import add_keys_parser, add_migrate_parser, add_serve_parser

    add_client_parsers(sub)
    add_serve_parser(sub)
    add_keys_parser(sub)
    add_migrate_parser(sub)
    from ._devstack import add_devstack_parser

    add_devstack_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        code: int = args.handler(args)
        return code
    except CLIError as exc:
        print(f"openai-files: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
