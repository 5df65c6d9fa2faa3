"""`openai-files upload | list | get | download | delete | uploads`: the client's commands.

Tables for people, `--json` for scripts; a progress bar (from the optional `rich`) on
large transfers when stderr is a terminal. Errors end as one line and an exit code:
2 for what the user can fix (no key, a missing local file, a 4xx), 1 for the server or
the network (5xx, 408, 409, 429, unreachable).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

import httpx

from .._client import Client
from .._config import (
    DEFAULT_BASE_URL,
    ENV_API_KEY,
    ENV_BASE_URL,
    LOCAL_BASE_URL,
    is_retryable_status,
)
from .._exceptions import APIConnectionError, APIStatusError, MissingAPIKeyError
from .._models import FileObject
from .._streams import ProgressCallback
from .._uploads import UploadResumeError, UploadState, state_path
from ._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CLIError, print_table, shown

CLI_EXTRA_HINT = "pip install 'openai-files[cli]'"
#: Transfers smaller than this get no progress bar (they are over before it would help).
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


# --- parsers -----------------------------------------------------------------------------


def base_url_note() -> str:
    """Which server the commands talk to, for their `--help`: people's first mistake is
    to talk to OpenAI's service when they meant their own server."""
    configured = os.environ.get(ENV_BASE_URL, "").strip()
    if configured:
        return f"base URL: {configured.rstrip('/')} (from {ENV_BASE_URL}; --base-url overrides it)"
    return (
        f"base URL: {DEFAULT_BASE_URL} (the default: OpenAI's own service)\n"
        f"  for a local server (`openai-files serve`), set {ENV_BASE_URL}={LOCAL_BASE_URL}\n"
        "  or pass --base-url"
    )


def add_client_parsers(sub: Any) -> None:
    """Register the five client commands on the `openai-files` subparsers."""
    # Keeps the note's lines (and a long URL whole).
    shown = {"epilog": base_url_note(), "formatter_class": argparse.RawDescriptionHelpFormatter}
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--base-url",
        help=f"API root [env {ENV_BASE_URL}; default {DEFAULT_BASE_URL}]",
    )
    common.add_argument("--api-key", help=f"API key [env {ENV_API_KEY}]")
    common.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="never show a progress bar")

    p = sub.add_parser("upload", parents=[common, progress], help="upload a file", **shown)
    p.add_argument("path", help="the file to upload")
    p.add_argument("--purpose", required=True, help="assistants, batch, fine-tune, vision, ...")
    p.add_argument(
        "--expires-after", type=int, metavar="SECONDS", help="expire this long after upload"
    )
    p.add_argument("--name", help="the name to store (default: the file's)")
    p.add_argument("--mime-type", help="the content type (default: guessed from the name)")
    p.add_argument(
        "--use-uploads",
        action="store_true",
        help="send it in parts through the Uploads API whatever its size "
        "(files over 512 MB always are)",
    )
    p.add_argument(
        "--resume",
        metavar="UPLOAD_ID",
        help="resume this upload (the same command resumes a failed one on its own)",
    )
    p.set_defaults(handler=cmd_upload)

    p = sub.add_parser("list", parents=[common], help="list files", **shown)
    p.add_argument("--purpose", help="only files of this purpose")
    p.add_argument("--limit", type=int, metavar="N", help="at most N files (one page)")
    p.add_argument("--order", choices=["asc", "desc"], help="by creation time (default desc)")
    p.add_argument("--after", metavar="FILE_ID", help="start after this file")
    p.add_argument("--all", action="store_true", help="every file, following the pages")
    p.set_defaults(handler=cmd_list)

    p = sub.add_parser("get", parents=[common], help="show a file's metadata", **shown)
    p.add_argument("file_id")
    p.set_defaults(handler=cmd_get)

    p = sub.add_parser(
        "download", parents=[common, progress], help="download a file's content", **shown
    )
    p.add_argument("file_id")
    p.add_argument("-o", "--output", help="where to save it (default: its name, here)")
    p.add_argument("--force", action="store_true", help="replace an existing file")
    p.add_argument(
        "--durable",
        action="store_true",
        help="fsync the file (and its folder) before returning, so it survives a power loss",
    )
    p.set_defaults(handler=cmd_download)

    p = sub.add_parser("delete", parents=[common], help="delete a file", **shown)
    p.add_argument("file_id")
    p.set_defaults(handler=cmd_delete)

    from ._uploads_cmds import add_uploads_parser

    add_uploads_parser(sub, [common], shown)


# --- errors ------------------------------------------------------------------------------


@contextlib.contextmanager
def _client(args: argparse.Namespace) -> Iterator[Client]:
    """A client for the command, with every error turned into one line and an exit code."""
    try:
        with Client(args.api_key, base_url=args.base_url) as client:
            try:
                yield client
            except APIStatusError as exc:
                code = EXIT_FAILURE if is_retryable_status(exc.status_code) else EXIT_USAGE
                message = exc.message.removeprefix(f"Error code: {exc.status_code} - ")
                message += _missing_v1_hint(exc, client.base_url)
                rid = f" [request {exc.request_id}]" if exc.request_id else ""
                raise CLIError(f"{exc.status_code}: {message}{rid}", code) from None
            except APIConnectionError as exc:
                raise CLIError(_connection_message(exc, client.base_url), EXIT_FAILURE) from None
    except (MissingAPIKeyError, UploadResumeError) as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError, FileExistsError) as exc:
        raise CLIError(
            f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), EXIT_USAGE
        ) from None


def _missing_v1_hint(exc: APIStatusError, base_url: str) -> str:
    """A 404 for a path the server does not have, on a base URL without `/v1`: the
    usual slip (a "no such file" 404 names its `param` and gets no hint)."""
    if exc.status_code != 404 or exc.param is not None:
        return ""
    if urlsplit(base_url).path.rstrip("/").endswith("/v1"):
        return ""
    return f" (did you mean {base_url}/v1?)"


def _connection_message(exc: APIConnectionError, base_url: str) -> str:
    """One line naming the server that could not be reached and how to pick another."""
    detail = exc.message.removeprefix("Connection error: ").rstrip(".")
    fix = f"set {ENV_BASE_URL} or --base-url"
    if isinstance(exc.__cause__, httpx.ConnectError):
        return f"cannot connect to {base_url}: {detail} (is the server running? {fix})"
    if isinstance(exc.__cause__, httpx.UnsupportedProtocol):
        return f"bad base URL {base_url}: {detail} ({fix}, e.g. to {LOCAL_BASE_URL})"
    return f"{exc.message} ({base_url})"


# --- progress ----------------------------------------------------------------------------


@contextlib.contextmanager
def progress_bar(
    label: str, enabled: bool = True, stream: TextIO | None = None
) -> Iterator[ProgressCallback | None]:
    """A `progress(done, total)` callback drawing a bar with rate and time left, or None.

    None (no bar) when disabled, when `stream` (stderr) is not a terminal, or when `rich`
    (the `cli` extra) is not installed. The bar appears only for transfers of at least
    PROGRESS_MIN_BYTES.
    """
    out = sys.stderr if stream is None else stream
    if not enabled or not out.isatty():
        yield None
        return
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )
    except ImportError:
        yield None  # the bar is a nicety: without the extra, work without it
        return
    bar = Progress(
        TextColumn("{task.description}", markup=False),  # a name's brackets are not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=out),
    )
    task: list[Any] = []

    def update(done: int, total: int | None) -> None:
        if not task:
            if total is None or total < PROGRESS_MIN_BYTES:
                task.append(None)
                return
            bar.start()
            task.append(bar.add_task(shown(label), total=total))
        if task[0] is not None:
            bar.update(task[0], completed=done)

    try:
        yield update
    finally:
        if task and task[0] is not None:
            bar.stop()


# --- output ------------------------------------------------------------------------------


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _when(ts: int | None) -> str:
    return "" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def _print_table(files: list[FileObject]) -> None:
    rows = [("ID", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME")]
    rows += [
        (f.id, str(f.bytes), _when(f.created_at), _when(f.expires_at), f.purpose, f.filename)
        for f in files
    ]
    print_table(rows)


def _print_file(f: FileObject) -> None:
    for key, value in f.to_dict().items():
        if key in ("created_at", "expires_at") and value is not None:
            value = f"{value} ({_when(value)} UTC)"
        print(f"{key + ':':<16}{'' if value is None else shown(str(value))}")


# --- commands ----------------------------------------------------------------------------


def _check_path(path: Path) -> None:
    if path.is_dir():
        raise CLIError(f"is a directory: {path} (upload takes a file)", EXIT_USAGE)
    if not path.is_file():
        raise CLIError(f"no such file: {path}", EXIT_USAGE)


def _check_target(target: Path, force: bool) -> None:
    """Refuse a download's destination that cannot take the file, before any request."""
    if target.is_dir():
        raise CLIError(f"is a directory: {target} (give a file name with -o)", EXIT_USAGE)
    folder = target.parent
    if not folder.exists():
        raise CLIError(f"no such directory: {folder} (create it, or give another -o)", EXIT_USAGE)
    if not folder.is_dir():
        raise CLIError(f"not a directory: {folder} (give another -o)", EXIT_USAGE)
    if target.exists() and not force:
        raise CLIError(f"{target} exists: use --force to replace it", EXIT_USAGE)


def cmd_upload(args: argparse.Namespace) -> int:
    path = Path(args.path)
    _check_path(path)
    try:
        with (
            _client(args) as client,
            progress_bar(f"upload {path.name}", not args.no_progress) as progress,
        ):
            f = client.upload(
                path,
                purpose=args.purpose,
                filename=args.name,
                mime_type=args.mime_type,
                expires_after=args.expires_after,
                progress=progress,
                use_uploads=True if args.use_uploads else None,
                resume=args.resume,
            )
    except KeyboardInterrupt:
        _say_how_to_resume(args, path)
        raise
    if args.json:
        _print_json(f.to_dict())
    else:
        print(f"uploaded {f.id}: {shown(f.filename)}, {_size(f.bytes)}, purpose {f.purpose}")
    return EXIT_OK


def _say_how_to_resume(args: argparse.Namespace, path: Path) -> None:
    """After Ctrl-C in an upload in parts: what was kept, and the command that resumes."""
    try:
        state = UploadState.load(path)
    except UploadResumeError:
        state = None
    if state is None:
        print("openai-files: interrupted", file=sys.stderr)
        return
    count = max(1, -(-state.size // state.part_size))
    again = ["openai-files", "upload", os.fspath(path), "--purpose", args.purpose]
    for flag, value in (
        ("--base-url", args.base_url),
        ("--name", args.name),
        ("--mime-type", args.mime_type),
        ("--expires-after", args.expires_after),
    ):
        if value is not None:
            again += [flag, str(value)]
    cancel = ["openai-files", "uploads", "cancel", os.fspath(path)]
    if args.base_url is not None:
        cancel += ["--base-url", args.base_url]
    print(
        f"openai-files: interrupted: upload {state.upload_id} is kept, {len(state.parts)} of "
        f"{count} parts sent (state in {state_path(path)})\n"
        f"openai-files: resume it (within its hour) with: {shlex.join(again)}\n"
        f"openai-files: or cancel it with: {shlex.join(cancel)}",
        file=sys.stderr,
    )


def cmd_list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        if args.all:
            files = list(client.iter_files(args.purpose, order=args.order))
            data: dict[str, Any] = {
                "object": "list",
                "data": [f.to_dict() for f in files],
                "first_id": files[0].id if files else None,
                "last_id": files[-1].id if files else None,
                "has_more": False,
            }
        else:
            page = client.list(args.purpose, limit=args.limit, order=args.order, after=args.after)
            files, data = page.data, page.to_dict()
    if args.json:
        _print_json(data)
    elif files:
        _print_table(files)
        if data["has_more"]:
            print(f"(more after {data['last_id']}: use --after {data['last_id']} or --all)")
    else:
        print("no files")
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    with _client(args) as client:
        f = client.retrieve(args.file_id)
    if args.json:
        _print_json(f.to_dict())
    else:
        _print_file(f)
    return EXIT_OK


def cmd_download(args: argparse.Namespace) -> int:
    if args.output:
        _check_target(Path(args.output), args.force)  # before the server sends anything
    with _client(args) as client:
        if args.output:
            target = Path(args.output)
        else:
            # The server's name is a base name already; make sure, it becomes a local path.
            name = Path(client.retrieve(args.file_id).filename.replace("\\", "/")).name
            target = Path(name if name not in ("", ".", "..") else args.file_id)
            _check_target(target, args.force)
        with progress_bar(f"download {target.name}", not args.no_progress) as progress:
            size = client.download(args.file_id, target, progress=progress, durable=args.durable)
    if args.json:
        _print_json({"id": args.file_id, "path": os.fspath(target), "bytes": size})
    else:
        print(f"saved {args.file_id} to {shown(os.fspath(target))} ({_size(size)})")
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with _client(args) as client:
        deleted = client.delete(args.file_id)
    if args.json:
        _print_json(deleted.to_dict())
    else:
        print(f"deleted {deleted.id}")
    return EXIT_OK


#: For tests and docs: every command this module adds.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "upload": cmd_upload,
    "list": cmd_list,
    "get": cmd_get,
    "download": cmd_download,
    "delete": cmd_delete,
}
