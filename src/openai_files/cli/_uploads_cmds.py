"""`openai-files uploads list | cancel`: the pending uploads of the Uploads API.

`upload` itself sends a large file through the Uploads API (see `_client_cmds`); these
commands find the uploads a failed run left pending and cancel them (their parts are
removed and their reserved bytes given back).
"""

from __future__ import annotations

import argparse
from typing import Any

from .._uploads import Upload
from ._common import EXIT_OK, print_table


def add_uploads_parser(sub: Any, parents: list[argparse.ArgumentParser], shown: Any) -> None:
    p = sub.add_parser("uploads", help="list or cancel pending uploads (of large files)")
    cmds = p.add_subparsers(dest="uploads_command", required=True, metavar="COMMAND")
    c = cmds.add_parser(
        "list",
        parents=parents,
        help="the pending uploads (a listing of this package's server; OpenAI has none)",
        **shown,
    )
    c.add_argument(
        "--status",
        choices=["pending", "completed", "cancelled", "expired", "all"],
        help="uploads of this status (default pending)",
    )
    c.add_argument("--limit", type=int, metavar="N", help="at most N uploads")
    c.set_defaults(handler=cmd_uploads_list)
    c = cmds.add_parser("cancel", parents=parents, help="cancel a pending upload", **shown)
    c.add_argument("upload_id")
    c.set_defaults(handler=cmd_uploads_cancel)


def cmd_uploads_list(args: argparse.Namespace) -> int:
    from ._client_cmds import _client, _print_json, _when

    with _client(args) as client:
        page = client.list_uploads(status=args.status, limit=args.limit)
    if args.json:
        _print_json(page.to_dict())
    elif page.data:
        # Of one status, the rows need no column saying it; of all, they do.
        mixed = args.status == "all"
        header = ("ID", "BYTES", "CREATED", "EXPIRES", "PURPOSE", "FILENAME")
        rows: list[tuple[str, ...]] = [("ID", "STATUS", *header[1:]) if mixed else header]
        rows += [_row(u, _when, mixed) for u in page.data]
        print_table(rows)
    else:
        print(f"no {args.status or 'pending'} uploads")
    return EXIT_OK


def _row(u: Upload, when: Any, with_status: bool) -> tuple[str, ...]:
    status = (u.status,) if with_status else ()
    return (
        u.id, *status, str(u.bytes), when(u.created_at), when(u.expires_at), u.purpose,
        u.filename,
    )  # fmt: skip


def cmd_uploads_cancel(args: argparse.Namespace) -> int:
    from ._client_cmds import _client, _print_json

    with _client(args) as client:
        upload = client.cancel_upload(args.upload_id)
    if args.json:
        _print_json(upload.to_dict())
    else:
        print(f"cancelled {upload.id} ({upload.filename})")
    return EXIT_OK
