"""`openai-files backup OUT` and `openai-files restore OUT`: a deployment copied while it
runs, and put back into an empty one of either kind (server/backup.py, server/restore.py).

Both take the stores as every server command does (`--data-dir`, or `--database` and
`--storage`, and their variables), and draw a bar of the blobs copied on a terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TextIO

from ._common import EXIT_FAILURE, EXIT_USAGE, CLIError, missing_extra
from ._server import SERVER_EXTRA_HINT, add_store_flags, settings_from_args
from ._start_check import check_storage

#: The exit code of a command stopped by Ctrl-C (128 + SIGINT), as `main` returns it.
EXIT_INTERRUPTED = 130


def add_backup_parsers(sub: Any) -> None:
    p = sub.add_parser(
        "backup",
        help="back up a deployment while it runs: its rows, the bytes they name, checksums",
        description=(
            "Copy a deployment while its servers run: every table as of one instant, the "
            "bytes of every file and part those rows name, and a manifest with each one's "
            "SHA-256, into the new folder OUT. The deployment is the one `serve` would use: "
            "--data-dir (the embedded default), or --database and --storage."
        ),
    )
    p.add_argument("out", metavar="OUT", help="a new folder for the backup (or an empty one)")
    add_store_flags(p)
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(handler=cmd_backup)

    p = sub.add_parser(
        "restore",
        help="restore a backup into an empty deployment, every byte checked",
        description=(
            "Put the backup OUT into an empty deployment of either kind: --data-dir (the "
            "embedded default), or --database and --storage. Every byte is checked against "
            "the backup's manifest; the rows are written last, in one transaction. Stopped "
            "midway (Ctrl-C, a crash), the same command run again goes on where it stopped. "
            "A deployment that holds rows or objects of its own is refused. A backup of an "
            "older openai-files is restored at this one's schema; a newer one is refused."
        ),
    )
    p.add_argument("backup", metavar="OUT", help="the backup's folder")
    add_store_flags(p)
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(handler=cmd_restore)


# --- the bar ---------------------------------------------------------------------------


class _Bar:
    """The blobs copied, of how many, and their bytes, drawn by rich."""

    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._task = progress.add_task("", total=0, size="0 bytes")
        self._bytes = 0

    def add(self, objects: int) -> None:
        total = self._progress.tasks[0].total or 0
        self._progress.update(self._task, total=total + objects)

    def advance(self, nbytes: int) -> None:
        from rich.filesize import decimal

        self._bytes += nbytes
        self._progress.update(self._task, advance=1, size=decimal(self._bytes))


@contextlib.contextmanager
def _bar(label: str, enabled: bool, stream: TextIO | None = None) -> Iterator[_Bar | None]:
    """A bar of the blobs copied on `stream` (stderr) when it is a terminal and `rich` (the
    `cli` extra) is installed; else None."""
    out = sys.stderr if stream is None else stream
    if not enabled or not out.isatty():
        yield None
        return
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
        yield None  # the bar is a nicety: without the extra, work without it
        return
    progress = Progress(
        TextColumn(label, markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files, {task.fields[size]}"),
        TimeElapsedColumn(),
        console=Console(file=out),
    )
    with progress:
        yield _Bar(progress)


# --- the stores --------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _stores(settings: Any, *, must_exist: bool, hold: bool) -> AsyncIterator[Any]:
    """The deployment's stores, opened: (meta, blobs). `must_exist`: refuse a SQLite file
    that does not exist; `hold`: take a local folder for this process alone (a server
    running on it is refused)."""
    try:
        from ..server.stores import (
            StoreConfigError,
            StoreUnavailable,
            open_blob_store,
            open_metadata_store,
        )
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    try:
        meta = open_metadata_store(settings.database_url, settings)
        blobs = open_blob_store(settings.storage_url, settings)
    except StoreConfigError as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    if must_exist:
        _require_database(settings, meta)
    release = None
    if hold:
        try:
            release = blobs.lock_exclusive()
        except BlockingIOError as exc:
            raise CLIError(f"{exc}: stop it first", EXIT_FAILURE) from None
    try:
        try:
            await meta.open()
        except (OSError, StoreUnavailable) as exc:
            raise CLIError(f"cannot open the database: {exc}") from None
        try:
            await blobs.open()
            yield meta, blobs
        finally:
            await blobs.close()
            await meta.close()
    finally:
        if release is not None:
            release()


def _require_database(settings: Any, meta: Any) -> None:
    """A CLIError when the SQLite file of `meta` does not exist: nothing to back up."""
    from ..server.stores.sqlite import SQLiteMetadataStore

    if isinstance(meta, SQLiteMetadataStore) and not meta.path.exists():
        flag = "--database" if settings.database else "--data-dir"
        raise CLIError(
            f"no database at {meta.path.resolve()}: point {flag} at the deployment to back up",
            EXIT_USAGE,
        )


def _run(settings: Any, coro: Any) -> Any:
    """Run the command's coroutine on the stores of `settings`; its errors as one line."""
    from ..server.backup import BackupError
    from ..server.stores import SchemaMismatch, StoreUnavailable

    try:
        check_storage(settings)  # S3 takes our credentials, or one line says why not
    except BaseException:
        coro.close()
        raise
    try:
        return asyncio.run(coro)
    except (BackupError, SchemaMismatch, StoreUnavailable) as exc:
        raise CLIError(str(exc)) from None
    except OSError as exc:
        raise CLIError(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": ")) from None


# --- the commands ------------------------------------------------------------------------


def cmd_backup(args: argparse.Namespace) -> int:
    from ..server.backup import take_backup
    from ..server.stores import redact_url

    settings = settings_from_args(args)
    out = Path(args.out)
    source = {
        "database": redact_url(settings.database_url),
        "storage": redact_url(settings.storage_url),
    }

    async def run(bar: Any) -> Any:
        async with _stores(settings, must_exist=True, hold=False) as (meta, blobs):
            return await take_backup(meta, blobs, out, source=source, progress=bar)

    try:
        with _bar("backup", not args.no_progress) as bar:
            manifest = _run(settings, run(bar))
    except KeyboardInterrupt:
        print(
            f"openai-files: backup stopped; {out} is not a backup (it has no manifest.json): "
            "delete it and take the backup again",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    rows = sum(manifest.rows.values())
    print(
        f"backed up {len(manifest.blobs)} blobs ({manifest.total_bytes} bytes) and {rows} rows "
        f"of {len(manifest.rows)} tables (schema version {manifest.schema_version}) to {out}"
    )
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from ..server.restore import restore_backup

    settings = settings_from_args(args)
    backup = Path(args.backup)

    async def run(bar: Any) -> Any:
        async with _stores(settings, must_exist=False, hold=True) as (meta, blobs):
            return await restore_backup(backup, meta, blobs, progress=bar)

    try:
        with _bar("restore", not args.no_progress) as bar:
            restored = _run(settings, run(bar))
    except KeyboardInterrupt:
        print(
            "openai-files: restore stopped: run the same command again to go on (its rows "
            "are written last, all at once: until then the deployment holds none)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    rows = sum(restored.rows.values())
    if restored.already:
        print(
            f"nothing to do: this deployment holds the backup already ({len(restored.rows)} "
            f"tables, {rows} rows, {restored.present} blobs: a restore of it had finished)"
        )
        return 0
    already = f", {restored.present} were there already" if restored.present else ""
    print(
        f"restored {restored.copied + restored.present} blobs ({restored.bytes} bytes; "
        f"{restored.copied} copied now{already}) and {rows} rows of {len(restored.rows)} "
        f"tables (schema version {restored.schema_version})"
    )
    return 0
