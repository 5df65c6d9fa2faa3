"""`openai-files batches create | list | get | cancel`: the Batch API from the command line.

`create` uploads a file of requests (purpose `batch`; or takes the id of one uploaded
already), starts a batch over it and prints its id. With `--wait` it follows the batch to
its end (polling it every POLL_SECONDS: a bar of its requests on a terminal, a line per
change of status otherwise), saves its output and error files, and exits non-zero unless
it completed. Ctrl-C while waiting leaves the batch running and says how to follow it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from .._batches import DEFAULT_COMPLETION_WINDOW
from .._client import Client
from .._config import is_retryable_status
from .._exceptions import APIConnectionError, APIStatusError
from .._models import Batch, BatchError
from ._client_cmds import check_path, check_target, progress_bar
from ._common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, CLIError, print_table, shown
from ._session import answer, client_for, common_parser, help_layout, print_json, size, when

#: Seconds between two looks at a batch being waited for.
POLL_SECONDS = 1.0
#: How long `--wait` keeps trying while the server cannot be reached (or answers 5xx, 429):
#: a server restarting is not the batch's end.
WAIT_PATIENCE_SECONDS = 300.0
#: A seam for tests: what the wait sleeps with.
_sleep = time.sleep
#: What the output file and the error file are named after: FILE's name without its suffix.
OUTPUT_SUFFIX = ".output.jsonl"
ERRORS_SUFFIX = ".errors.jsonl"
#: The batch errors a failed batch's message shows (`batches get` shows them all).
ERRORS_SHOWN = 1

_ENDPOINTS = "/v1/chat/completions, /v1/responses, /v1/embeddings, /v1/completions, /v1/moderations"

_CREATE_DESCRIPTION = f"""\
Upload FILE (purpose batch; a .jsonl file, one request a line:
{{"custom_id": ..., "method": "POST", "url": ENDPOINT, "body": {{...}}}}), or take
the id of a file uploaded already (file-...), and start a batch over it: the
server sends each request to its engine. Prints the batch's id.

With --wait, follows the batch to its end (a bar of its requests on a terminal),
then saves its output file to OUTPUT and its error file (the requests that
failed), if any, to ERRORS_PATH. OUTPUT defaults to FILE's name with
{OUTPUT_SUFFIX} for its suffix, beside it (requests.jsonl -> requests{OUTPUT_SUFFIX};
file-abc -> file-abc{OUTPUT_SUFFIX}, here); ERRORS_PATH to OUTPUT's with
{ERRORS_SUFFIX}. Exits 1 unless the batch completed (failed, expired,
cancelled). Ctrl-C leaves the batch running: `openai-files batches get ID`
follows it, `openai-files batches cancel ID` cancels it.

Example:
  openai-files batches create requests.jsonl --endpoint /v1/chat/completions --wait"""


# --- parsers -----------------------------------------------------------------------------


def add_batches_parser(sub: Any) -> None:
    """Register `batches create | list | get | cancel` on the `openai-files` subparsers."""
    parents, layout = [common_parser()], help_layout()
    p = sub.add_parser(
        "batches",
        help="run a file of requests as a batch (OpenAI's Batch API); list, get, cancel",
        description="The Batch API: run a file of requests on the server's engine.",
    )
    cmds = p.add_subparsers(dest="batches_command", required=True, metavar="COMMAND")

    c = cmds.add_parser(
        "create",
        parents=parents,
        help="upload a file of requests and start a batch over it",
        description=_CREATE_DESCRIPTION,
        **layout,
    )
    c.add_argument("file", metavar="FILE", help="a .jsonl file of requests, or a file id")
    c.add_argument("--endpoint", required=True, help=f"where the requests go: {_ENDPOINTS}")
    c.add_argument(
        "--completion-window",
        default=DEFAULT_COMPLETION_WINDOW,
        metavar="WINDOW",
        help=f"the time the batch has to run (default {DEFAULT_COMPLETION_WINDOW})",
    )
    c.add_argument(
        "--metadata",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a pair kept with the batch (repeat for more, at most 16)",
    )
    c.add_argument(
        "--output-expires-after",
        type=int,
        metavar="SECONDS",
        help="the output and error files expire this long after they are made",
    )
    c.add_argument("--wait", action="store_true", help="follow it to its end, save its files")
    c.add_argument("-o", "--output", metavar="OUTPUT", help="with --wait: the output file's path")
    c.add_argument("--errors", metavar="ERRORS_PATH", help="with --wait: the error file's path")
    c.add_argument("--force", action="store_true", help="replace existing OUTPUT, ERRORS_PATH")
    c.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    c.set_defaults(handler=cmd_batches_create)

    c = cmds.add_parser("list", parents=parents, help="the batches, newest first", **layout)
    c.add_argument("--limit", type=int, metavar="N", help="at most N batches (default 20)")
    c.add_argument("--after", metavar="BATCH_ID", help="start after this batch")
    c.set_defaults(handler=cmd_batches_list)

    c = cmds.add_parser("get", parents=parents, help="a batch's status and counts", **layout)
    c.add_argument("batch_id", metavar="BATCH_ID")
    c.set_defaults(handler=cmd_batches_get)

    c = cmds.add_parser(
        "cancel",
        parents=parents,
        help="cancel a batch (it keeps the results it has)",
        description=(
            "Cancel a batch: it is `cancelling` while its requests in flight end, then\n"
            "`cancelled`; its output file holds the results it had."
        ),
        **layout,
    )
    c.add_argument("batch_id", metavar="BATCH_ID")
    c.set_defaults(handler=cmd_batches_cancel)


# --- create ------------------------------------------------------------------------------


def parse_metadata(pairs: list[str]) -> dict[str, str] | None:
    """`--metadata KEY=VALUE ...` as a dict (None when none is given)."""
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CLIError(f"--metadata takes KEY=VALUE, got {pair!r}", EXIT_USAGE)
        if key in metadata:
            raise CLIError(f"--metadata: {key!r} is given twice", EXIT_USAGE)
        metadata[key] = value
    return metadata or None


def result_paths(file: str, output: str | None, errors: str | None) -> tuple[Path, Path]:
    """Where `--wait` saves the output and error files (see `_CREATE_DESCRIPTION`)."""
    if output is not None:
        out = Path(output)
    else:
        given = Path(file)
        out = given.with_name(given.name.removesuffix(given.suffix) + OUTPUT_SUFFIX)
    if errors is not None:
        return out, Path(errors)
    stem = out.name.removesuffix(OUTPUT_SUFFIX) if out.name.endswith(OUTPUT_SUFFIX) else out.stem
    return out, out.with_name(stem + ERRORS_SUFFIX)


def _input_file(client: Client, args: argparse.Namespace) -> str:
    """The input file's id: FILE uploaded (purpose batch), or FILE itself when it is an id."""
    path = Path(args.file)
    if not path.exists() and args.file.startswith("file-"):
        return str(args.file)
    with progress_bar(f"upload {path.name}", not args.no_progress) as progress:
        f = client.upload(path, purpose="batch", progress=progress)
    # Its id, should the batch be refused: another may start from it (on stderr with --json).
    print(
        f"uploaded {f.id}: {shown(f.filename)}, {size(f.bytes)}",
        file=sys.stderr if args.json else sys.stdout,
    )
    return f.id


def cmd_batches_create(args: argparse.Namespace) -> int:
    metadata = parse_metadata(args.metadata)
    if not args.wait and (args.output is not None or args.errors is not None):
        raise CLIError("-o/--output and --errors save a batch's files: add --wait", EXIT_USAGE)
    if not (Path(args.file).exists() or args.file.startswith("file-")):
        raise CLIError(f"no such file: {args.file} (give a .jsonl file or a file id)", EXIT_USAGE)
    if Path(args.file).exists():
        check_path(Path(args.file))
    paths = None
    if args.wait:
        paths = result_paths(args.file, args.output, args.errors)
        if paths[0] == paths[1]:
            raise CLIError(f"-o and --errors name the same file: {paths[0]}", EXIT_USAGE)
        for target in paths:  # before the batch is made: its results must have somewhere to go
            check_target(target, args.force)
    with client_for(args) as client:
        file_id = _input_file(client, args)
        try:
            batch = client.create_batch(
                file_id,
                args.endpoint,
                completion_window=args.completion_window,
                metadata=metadata,
                output_expires_after=args.output_expires_after,
            )
        except KeyboardInterrupt:
            _say(f"interrupted: the batch may have been made: {_cmd(args, 'batches', 'list')}")
            raise
        if paths is None:
            return answer(
                args,
                batch.to_dict(),
                lambda: print(f"created {batch.id} ({batch.status}): {_about(batch)}"),
            )
        if not args.json:
            print(f"created {batch.id} ({batch.status}): {_about(batch)}", flush=True)
        try:
            with batch_view(not args.no_progress) as view:
                batch = follow(client, batch, view)
        except KeyboardInterrupt:
            _say(
                f"interrupted: batch {batch.id} keeps running\n"
                f"follow it with: {_cmd(args, 'batches', 'get', batch.id)}\n"
                f"cancel it with: {_cmd(args, 'batches', 'cancel', batch.id)}",
            )
            raise
        _save_results(client, args, batch, paths)
    return _ended(args, batch)


def _about(batch: Batch) -> str:
    return f"{batch.endpoint} over {batch.input_file_id}, window {batch.completion_window}"


def _cmd(args: argparse.Namespace, *words: str) -> str:
    """The `openai-files ...` command that does this, for the same server."""
    argv = ["openai-files", *words]
    if args.base_url is not None:
        argv += ["--base-url", args.base_url]
    return shlex.join(argv)


def _say(text: str) -> None:
    for line in text.splitlines():
        print(f"openai-files: {line}", file=sys.stderr, flush=True)


def follow(client: Client, batch: Batch, view: Callable[[Batch], None]) -> Batch:
    """Poll `batch` every POLL_SECONDS until it ends, showing each look with `view`.

    The server out of reach, or answering 5xx, 408, 409 or 429 (after the client's own
    retries), is waited out for WAIT_PATIENCE_SECONDS before its error ends the wait."""
    view(batch)
    failing_since: float | None = None
    while not batch.ended:
        _sleep(POLL_SECONDS)
        try:
            batch = client.retrieve_batch(batch.id)
        except (APIConnectionError, APIStatusError) as exc:
            transient = not isinstance(exc, APIStatusError) or is_retryable_status(exc.status_code)
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if not transient or now - failing_since > WAIT_PATIENCE_SECONDS:
                raise
            continue
        failing_since = None
        view(batch)
    return batch


def _save_results(
    client: Client, args: argparse.Namespace, batch: Batch, paths: tuple[Path, Path]
) -> None:
    """Download the ended batch's output and error files (those it has) to `paths`."""
    for kind, file_id, target in (
        ("output", batch.output_file_id, paths[0]),
        ("errors", batch.error_file_id, paths[1]),
    ):
        if file_id is None:
            continue
        try:
            with progress_bar(f"download {target.name}", not args.no_progress) as progress:
                received = client.download(file_id, target, progress=progress)
        except KeyboardInterrupt:
            again = _cmd(args, "download", file_id, "-o", os.fspath(target))
            _say(f"interrupted: download it with: {again}")
            raise
        if not args.json:
            print(f"saved {kind} {file_id} to {shown(os.fspath(target))} ({size(received)})")


def _ended(args: argparse.Namespace, batch: Batch) -> int:
    """Print the ended batch (the object with `--json`); an error unless it completed."""
    counts = batch.request_counts
    summary = f"{counts.completed} of {counts.total} requests completed, {counts.failed} failed"
    if args.json:
        print_json(batch.to_dict())
    elif batch.status == "completed":
        print(f"{batch.id} completed: {summary}")
    if batch.status == "completed":
        return EXIT_OK
    detail = summary
    if batch.status == "failed" and batch.errors:
        first = batch.errors[:ERRORS_SHOWN]
        detail = "; ".join(_batch_error(e) for e in first)
        if len(batch.errors) > len(first):
            more = len(batch.errors) - len(first)
            detail += f" (and {more} more: {_cmd(args, 'batches', 'get', batch.id)})"
    raise CLIError(f"batch {batch.id} {batch.status}: {detail}", EXIT_FAILURE)


def _batch_error(e: BatchError) -> str:
    where = f"line {e.line}: " if e.line is not None else ""
    return f"{where}{shown(e.message)}" + (f" [{e.code}]" if e.code else "")


# --- the view of a batch being waited for -------------------------------------------------


@contextmanager
def batch_view(
    enabled: bool = True, stream: TextIO | None = None
) -> Iterator[Callable[[Batch], None]]:
    """A `view(batch)` callback showing a batch being waited for on `stream` (stderr).

    On a terminal, with `rich`: a bar of its requests (done of total, once its input is
    validated and the total known; failed ones counted apart) with its status and the time
    it has taken. Else (or when not `enabled`): one line per change of status."""
    out = sys.stderr if stream is None else stream
    bar = _rich_bar(out) if enabled and out.isatty() else None
    if bar is None:
        yield _status_lines(out)
        return
    task = bar.add_task("", total=None, failed=0)

    def update(batch: Batch) -> None:
        counts = batch.request_counts
        bar.update(
            task,
            description=f"{batch.id} {batch.status}",
            total=counts.total or None,
            completed=counts.completed + counts.failed,
            failed=counts.failed,
        )

    bar.start()
    try:
        yield update
    finally:
        bar.stop()


def _rich_bar(out: TextIO) -> Any:
    try:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )
    except ImportError:
        return None  # the bar is a nicety: without the extra, lines
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=Console(file=out),
    )


def _status_lines(out: TextIO) -> Callable[[Batch], None]:
    last: list[str] = []

    def update(batch: Batch) -> None:
        if last and last[0] == batch.status:
            return
        last[:] = [batch.status]
        counts = batch.request_counts
        done = counts.completed + counts.failed
        of = f" ({done} of {counts.total} requests done)" if counts.total else ""
        print(f"{batch.id}: {batch.status}{of}", file=out, flush=True)

    return update


# --- list, get, cancel -------------------------------------------------------------------


def cmd_batches_list(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        page = client.list_batches(after=args.after, limit=args.limit)

    def for_people() -> None:
        if not page.data:
            print("no batches")
            return
        rows = [("ID", "STATUS", "CREATED", "ENDPOINT", "DONE", "FAILED", "INPUT")]
        for b in page.data:
            counts = b.request_counts
            done = f"{counts.completed + counts.failed}/{counts.total}"
            rows.append(
                (b.id, b.status, when(b.created_at), b.endpoint, done, str(counts.failed),
                 b.input_file_id)
            )  # fmt: skip
        print_table(rows)
        if page.has_more:
            print(f"(more after {page.last_id}: use --after {page.last_id})")

    return answer(args, page.to_dict(), for_people)


def cmd_batches_get(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        batch = client.retrieve_batch(args.batch_id)
    return answer(args, batch.to_dict(), lambda: print_batch(batch))


def print_batch(b: Batch) -> None:
    """A batch as `key: value` lines, its time stamps also as UTC dates."""
    counts, usage = b.request_counts, b.usage
    rows: list[tuple[str, Any]] = [
        ("id", b.id),
        ("status", b.status),
        ("endpoint", b.endpoint),
        ("model", b.model),
        ("input_file_id", b.input_file_id),
        ("output_file_id", b.output_file_id),
        ("error_file_id", b.error_file_id),
        ("completion_window", b.completion_window),
        ("request_counts", f"{counts.completed} completed, {counts.failed} failed, "
                           f"{counts.total} in all"),
        ("usage", f"{usage.input_tokens} input tokens ({usage.cached_tokens} cached), "
                  f"{usage.output_tokens} output ({usage.reasoning_tokens} reasoning), "
                  f"{usage.total_tokens} in all"),
    ]  # fmt: skip
    for key in Batch._TIMES:
        value = getattr(b, key)
        if value is not None:
            rows.append((key, f"{value} ({when(value)} UTC)"))
    for key, value in (b.metadata or {}).items():
        rows.append((f"metadata.{key}", value))
    for error in b.errors or []:
        rows.append(("error", _batch_error(error)))
    for key, value in rows:
        print(f"{key + ':':<19}{'' if value is None else shown(str(value))}")


def cmd_batches_cancel(args: argparse.Namespace) -> int:
    with client_for(args) as client:
        batch = client.cancel_batch(args.batch_id)
    return answer(args, batch.to_dict(), lambda: print(f"{batch.id}: {batch.status}"))


#: For tests and docs: every command this module adds.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "batches create": cmd_batches_create,
    "batches list": cmd_batches_list,
    "batches get": cmd_batches_get,
    "batches cancel": cmd_batches_cancel,
}
