"""`openai-files batch-worker`: run batches without serving HTTP.

For deployments that scale the two apart: any number of workers and `serve --no-batch-runner`
replicas share one PostgreSQL database and one object store; the workers claim the batches'
work there with leases. On the embedded default, `serve` runs batches itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ._common import CLIError, missing_extra
from ._server import SERVER_EXTRA_HINT, _settings_module, add_setting_flags, settings_from_args
from ._start_check import check_storage

log = logging.getLogger("openai_files.batches")


def add_batch_worker_parser(sub: Any) -> None:
    p = sub.add_parser(
        "batch-worker",
        help="run batches without serving HTTP (beside `serve --no-batch-runner` replicas)",
        description=(
            "Validate batches, send their requests to the engine (--batch-upstream-url or "
            "--batch-routes-file) and write their output and error files, until Ctrl-C; nothing "
            "is served. Takes the same settings as `serve`: point it at the same --database "
            "and --storage as the replicas. Ctrl-C (or SIGTERM) stores the answers that "
            "arrived and gives the other requests back, for another worker or the next start."
        ),
    )
    add_setting_flags(p, _settings_module())
    p.set_defaults(handler=cmd_batch_worker)


def cmd_batch_worker(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    check_storage(settings)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C: the runner has let go already
        asyncio.run(_work(settings))
    return 0


async def _work(settings: Any) -> None:
    try:
        from ..server.batch_engine import Engines
        from ..server.batch_runner import BatchRunner
        from ..server.stores import (
            SchemaMismatch,
            StoreUnavailable,
            ensure_schema,
            one_writer,
            open_blob_store,
            open_metadata_store,
        )
    except ImportError as exc:
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    engines = Engines(settings)
    if not engines.configured:
        raise CLIError(
            "no engine is set: give --batch-upstream-url (an OpenAI-compatible base URL "
            "ending in /v1) or --batch-routes-file",
            exit_code=2,
        )
    meta = open_metadata_store(settings.database_url, settings)
    blobs = open_blob_store(settings.storage_url, settings)
    async with contextlib.AsyncExitStack() as stack:
        if settings.heartbeat_file:
            await stack.enter_async_context(_heartbeat(Path(settings.heartbeat_file)))
        try:
            await meta.open()
            stack.push_async_callback(meta.close)
            await ensure_schema(meta)
        except (OSError, StoreUnavailable, SchemaMismatch) as exc:
            raise CLIError(f"cannot use the database: {exc}") from None
        await blobs.open()
        stack.push_async_callback(blobs.close)
        try:
            stack.callback(await asyncio.to_thread(blobs.lock_exclusive))
        except BlockingIOError as exc:
            raise CLIError(
                f"the data folder is held by a server ({exc}): on the embedded default, "
                "`serve` runs batches itself"
            ) from None
        await engines.open()
        stack.push_async_callback(engines.aclose)
        runner = BatchRunner(settings, meta, blobs, engines, alone=one_writer(meta, blobs))
        print(
            f"openai-files batch-worker {runner.worker} running; Ctrl-C stops it", file=sys.stderr
        )
        await _run_until_terminated(runner)


@contextlib.asynccontextmanager
async def _heartbeat(path: Path) -> AsyncIterator[None]:
    """Touch `path` now and every HEARTBEAT_SECONDS while the block runs, then remove it.

    The worker serves no `/healthz`: a container's health check (deploy/healthcheck.py)
    reads the file's age instead. It is touched from the event loop's schedule (the write
    itself in a thread), so a loop that no longer runs lets it age, as `/healthz` would stop
    answering. A file that cannot be written at start is a setting to fix; later, a failed
    touch is logged (once until one succeeds again) and the health check sees the age."""
    from ..server.settings import HEARTBEAT_SECONDS

    try:
        await asyncio.to_thread(path.touch)
    except OSError as exc:
        raise CLIError(
            f"cannot write the heartbeat file {path} (--heartbeat-file): {exc.strerror or exc}"
        ) from None

    async def beat() -> None:
        failing = False
        while True:
            await asyncio.sleep(HEARTBEAT_SECONDS)
            try:
                await asyncio.to_thread(path.touch)
            except OSError as exc:
                if not failing:
                    log.warning("cannot touch the heartbeat file %s: %s", path, exc)
                failing = True
            else:
                failing = False

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(OSError):
            path.unlink()


async def _run_until_terminated(runner: Any) -> None:
    """`runner.run()` until Ctrl-C or SIGTERM. SIGTERM (what Kubernetes, systemd and `docker
    stop` send) stops it as Ctrl-C does, so that a rollout gives the requests in flight back
    at once instead of leaving them until their leases lapse."""
    main = asyncio.current_task()
    assert main is not None
    loop = asyncio.get_running_loop()
    terminated = False

    def terminate() -> None:
        nonlocal terminated
        terminated = True
        main.cancel()

    try:
        loop.add_signal_handler(signal.SIGTERM, terminate)
    except NotImplementedError:  # pragma: no cover - Windows: no signal handlers on the loop
        await runner.run()
        return
    try:
        await runner.run()
    except asyncio.CancelledError:
        if not terminated:
            raise  # Ctrl-C: asyncio.run makes it a KeyboardInterrupt
        main.uncancel()
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
