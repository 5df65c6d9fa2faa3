"""`openai-files uploads list | cancel`: the pending uploads of the Uploads API.

`upload` itself sends a large file through the Uploads API (see `_client_cmds`); these
commands find the uploads a failed run left pending and cancel them (their parts are
removed and their reserved bytes given back).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from .._exceptions import APIStatusError, UploadResumeError
from .._models import Upload
from .._upload_state import STATE_SUFFIX, UploadState, state_path
from .._uploads import gone
from ._common import EXIT_USAGE, CLIError, print_table, shown
from ._session import answer, client_for, common_parser, help_layout, when


def add_uploads_parser(sub: Any) -> None:
    """Register `uploads list | cancel` on the `openai-files` subparsers."""
    parents, layout = [common_parser()], help_layout()
    p = sub.add_parser("uploads", help="list or cancel pending uploads (of large files)")
    cmds = p.add_subparsers(dest="uploads_command", required=True, metavar="COMMAND")
    c = cmds.add_parser(
        "list",
        parents=parents,
        help="the pending uploads (a listing of this package's server; OpenAI has none)",
        **layout,
    )
    c.add_argument(
        "--status",
        choices=["pending", "completed", "cancelled", "expired", "all"],
        help="uploads of this status (default pending)",
    )
    c.add_argument("--limit", type=int, metavar="N", help="at most N uploads")
    c.set_defaults(handler=cmd_uploads_list)
    c = cmds.add_parser(
        "cancel",
        parents=parents,
        help="cancel a pending upload, and remove its state file",
        description=(
            "Cancel a pending upload (its parts are removed, its reserved bytes given\n"
            f"back) and remove the state file `<file>{STATE_SUFFIX}` that names it.\n"
            "Give the upload's id (the state file is looked for in this folder, under\n"
            "the upload's file name) or the file being uploaded (its state file says\n"
            "which upload)."
        ),
        **layout,
    )
    c.add_argument("upload", metavar="UPLOAD_ID|FILE", help="an upload id, or the file sent")
    c.set_defaults(handler=cmd_uploads_cancel)


def cmd_uploads_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.list_uploads(status=args.status, limit=args.limit)
    return answer(args, page.to_dict(), lambda: _print_uploads(page.data, args.status))


def _print_uploads(uploads: list[Upload], status: str | None) -> None:
    if uploads:
        # Of one status, the rows need no column saying it; of all, they do.
        mixed = status == "all"
        header = ("ID", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME")
        rows: list[tuple[str, ...]] = [("ID", "STATUS", *header[1:]) if mixed else header]
        rows += [_row(u, mixed) for u in uploads]
        print_table(rows)
    else:
        status = status or "pending"
        print("no uploads" if status == "all" else f"no {status} uploads")


def _row(u: Upload, with_status: bool) -> tuple[str, ...]:
    status = (u.status,) if with_status else ()
    return (
        u.id, *status, str(u.bytes), when(u.created_at), when(u.expires_at), u.purpose,
        u.filename,
    )  # fmt: skip


def cmd_uploads_cancel(args: argparse.Namespace) -> int:
    upload_id, state = _target(args.upload)
    with client_for(args) as client:
        try:
            upload = client.cancel_upload(upload_id)
        except APIStatusError as exc:
            if state is not None and gone(exc):
                state.remove()  # of no use any more: the next upload of the file starts afresh
            raise
        if state is None:
            # The upload's own name, in this folder: where `openai-files upload NAME` put it.
            state = _named_state(Path(upload.filename), upload.id)
        if state is not None:
            state.remove()

    def for_people() -> None:
        print(f"cancelled {upload.id} ({shown(upload.filename)})")
        if state is not None:
            print(f"removed {state_path(state.file)}")

    return answer(args, upload.to_dict(), for_people)


def _target(given: str) -> tuple[str, UploadState | None]:
    """The upload id to cancel, and the state file that names it, if `given` is a file."""
    path = Path(given)
    if not path.is_file():
        return given, None
    source = (
        path.with_name(path.name.removesuffix(STATE_SUFFIX))
        if given.endswith(STATE_SUFFIX)
        else path
    )
    state = _load(source)
    if state is None:
        raise CLIError(
            f"no upload of {source} to cancel: there is no state file {state_path(source)} "
            "(`openai-files uploads list` shows the pending uploads, with their ids)",
            EXIT_USAGE,
        )
    return state.upload_id, state


def _named_state(source: Path, upload_id: str) -> UploadState | None:
    """The state file of `source` if it names `upload_id` (and is readable)."""
    if source.name in ("", ".", "..") or source.name != str(source):
        return None  # only a plain name, in this folder
    state = _load(source)
    return state if state is not None and state.upload_id == upload_id else None


def _load(source: Path) -> UploadState | None:
    try:
        return UploadState.load(source)
    except UploadResumeError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
