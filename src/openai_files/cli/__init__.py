"""The `openai-files` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .. import __version__
from ._common import CLIError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="openai-files",
        description=(
            "Work with OpenAI-style file storage: upload, list, get, download and delete "
            "files; run batches of requests over them; run the server, manage its keys."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from ._batches_cmds import add_batches_parser
    from ._client_cmds import add_client_parsers
    from ._server import add_env_parser, add_keys_parser, add_migrate_parser, add_serve_parser
    from ._uploads_cmds import add_uploads_parser

    add_client_parsers(sub)
    add_uploads_parser(sub)
    add_batches_parser(sub)
    add_serve_parser(sub)
    add_keys_parser(sub)
    add_env_parser(sub)
    add_migrate_parser(sub)
    from ._backup_cmds import add_backup_parsers

    add_backup_parsers(sub)
    from ._batch_worker import add_batch_worker_parser

    add_batch_worker_parser(sub)
    from ._devstack import add_devstack_parser

    add_devstack_parser(sub)
    return parser


#: The exit code when the reader of our output went away (`openai-files list | head`):
#: the 128 + SIGPIPE (13) that shells report for git or coreutils, which die of SIGPIPE.
EXIT_BROKEN_PIPE = 141


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        return _run(argv)
    except BrokenPipeError:
        # The reader went away (`openai-files list --json | head -n 2`): stop quietly, as
        # git and coreutils do, and with their status rather than 0, so that scripts with
        # `set -o pipefail` still see the output was cut. They die of SIGPIPE; Python
        # ignores that signal (and `serve` must not die of it), so we return its status.
        _drop_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv: Sequence[str] | None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)  # (argparse writes --help quietly to a closed pipe)
        code: int = args.handler(args)
        sys.stdout.flush()  # a closed pipe fails here, not in a traceback at exit
        return code
    except CLIError as exc:
        print(f"openai-files: error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _drop_stdout() -> None:
    """Point stdout at /dev/null: what is still buffered goes there at exit, not to
    a closed pipe (which would print "Exception ignored ... BrokenPipeError")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file (a test's capture): nothing will be flushed to a pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
