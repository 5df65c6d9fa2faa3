"""`openai-files upload | list | get | download | delete`: the client's commands.

Tables for people, `--json` for scripts; a progress bar (from the optional `rich`) on
large transfers when stderr is a terminal. How errors end is `_session`'s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .._exceptions import UploadResumeError
from .._models import FileObject
from .._types import ProgressCallback
from .._upload_state import UploadState, state_path
from ._common import EXIT_OK, EXIT_USAGE, CLIError, print_table, shown
from ._session import answer, client_for, common_parser, help_layout, print_json, size, when

CLI_EXTRA_HINT = "pip install 'openai-files[cli]'"
#: Transfers smaller than this get no progress bar (they are over before it would help).
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


# --- parsers -----------------------------------------------------------------------------


def add_client_parsers(sub: Any) -> None:
    """Register the five client commands on the `openai-files` subparsers."""
    shown = help_layout()
    common = common_parser()
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
        "--resume",
        metavar="UPLOAD_ID",
        help="resume this upload (the same command resumes a failed one on its own)",
    )
    p.add_argument(
        "--use-uploads",
        action="store_true",
        help="send it in parts through the Uploads API whatever its size "
        "(files over 512 MB always are)",
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


def _print_table(files: list[FileObject]) -> None:
    rows = [("ID", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME")]
    rows += [
        (f.id, str(f.bytes), when(f.created_at), when(f.expires_at), f.purpose, f.filename)
        for f in files
    ]
    print_table(rows)


def _print_file(f: FileObject) -> None:
    for key, value in f.to_dict().items():
        if key in ("created_at", "expires_at") and value is not None:
            value = f"{value} ({when(value)} UTC)"
        print(f"{key + ':':<16}{'' if value is None else shown(str(value))}")


# --- commands ----------------------------------------------------------------------------


def check_path(path: Path) -> None:
    if path.is_dir():
        raise CLIError(f"is a directory: {path} (upload takes a file)", EXIT_USAGE)
    if not path.is_file():
        raise CLIError(f"no such file: {path}", EXIT_USAGE)


def check_target(target: Path, force: bool) -> None:
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
    check_path(path)
    try:
        with (
            client_for(args) as client,
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
    return answer(
        args,
        f.to_dict(),
        lambda: print(
            f"uploaded {f.id}: {shown(f.filename)}, {size(f.bytes)}, purpose {f.purpose}"
        ),
    )


def _say_how_to_resume(args: argparse.Namespace, path: Path) -> None:
    """After Ctrl-C in an upload in parts: what was kept, and the command that resumes."""
    try:
        state = UploadState.load(path)
    except UploadResumeError:
        state = None
    if state is None:
        print("openai-files: interrupted", file=sys.stderr)
        return
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
        f"{state.part_count} parts sent (state in {state_path(path)})\n"
        f"openai-files: resume it (within its hour) with: {shlex.join(again)}\n"
        f"openai-files: or cancel it with: {shlex.join(cancel)}",
        file=sys.stderr,
    )


def cmd_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
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
        print_json(data)
    elif files:
        _print_table(files)
        if data["has_more"]:
            print(f"(more after {data['last_id']}: use --after {data['last_id']} or --all)")
    else:
        print("no files")
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        f = client.retrieve(args.file_id)
    return answer(args, f.to_dict(), lambda: _print_file(f))


def cmd_download(args: argparse.Namespace) -> int:
    if args.output:
        check_target(Path(args.output), args.force)  # before the server sends anything
    with client_for(args) as client:
        if args.output:
            target = Path(args.output)
        else:
            # The server's name is a base name already; make sure, it becomes a local path.
            name = Path(client.retrieve(args.file_id).filename.replace("\\", "/")).name
            target = Path(name if name not in ("", ".", "..") else args.file_id)
            check_target(target, args.force)
        with progress_bar(f"download {target.name}", not args.no_progress) as progress:
            received = client.download(
                args.file_id, target, progress=progress, durable=args.durable
            )
    return answer(
        args,
        {"id": args.file_id, "path": os.fspath(target), "bytes": received},
        lambda: print(f"saved {args.file_id} to {shown(os.fspath(target))} ({size(received)})"),
    )


def cmd_delete(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        deleted = client.delete(args.file_id)
    return answer(args, deleted.to_dict(), lambda: print(f"deleted {deleted.id}"))


#: For tests and docs: every command this module adds.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "upload": cmd_upload,
    "list": cmd_list,
    "get": cmd_get,
    "download": cmd_download,
    "delete": cmd_delete,
}
