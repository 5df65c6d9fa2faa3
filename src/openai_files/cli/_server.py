"""`openai-files serve` and `openai-files keys ...`: the commands that run on the server side."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import socket
import sys
import time
from collections.abc import Callable
from typing import Any

from ._common import CLIError, missing_extra

SERVER_EXTRA_HINT = "pip install 'openai-files[server]'"


def _settings_module() -> Any:
    try:
        from ..server import settings
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    return settings


def add_store_flags(parser: argparse.ArgumentParser) -> None:
    """The flags every command that touches the stores takes."""
    s = _settings_module()
    for name in ("data_dir", "database", "storage"):
        field = next(f for f in s.setting_fields() if f.name == name)
        parser.add_argument(
            s.flag_name(name),
            dest=name,
            default=None,
            metavar=name.split("_")[-1].upper(),
            help=f"{field.metadata['help']} [env {s.env_name(name)}]",
        )


def add_serve_parser(sub: Any) -> None:
    s = _settings_module()
    p = sub.add_parser(
        "serve",
        help="run the Files API server",
        description=(
            "Run the OpenAI-compatible Files API server. Every flag has an environment "
            "variable; flags win. The first start on an empty data folder creates an API "
            "key and prints it once."
        ),
    )
    for field in s.setting_fields():
        kind = field.type
        flag = s.flag_name(field.name)
        help_text = (
            f"{field.metadata['help']} [env {s.env_name(field.name)}; default {field.default}]"
        )
        if kind == "bool":
            p.add_argument(
                flag,
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text,
            )
        else:
            p.add_argument(
                flag,
                dest=field.name,
                default=None,
                metavar=field.name.split("_")[-1].upper(),
                help=help_text,
            )
    p.set_defaults(handler=cmd_serve)


def add_keys_parser(sub: Any) -> None:
    s = _settings_module()
    p = sub.add_parser("keys", help="create, list and revoke API keys")
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="{create,list,revoke}")
    create = ksub.add_parser("create", help="create a key (printed once)")
    create.add_argument("--org", default=s.DEFAULT_ORG_ID, help="organization id")
    create.add_argument("--project", default=s.DEFAULT_PROJECT_ID, help="project id")
    create.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(create)
    create.set_defaults(handler=cmd_keys_create)
    lst = ksub.add_parser("list", help="list keys (masked)")
    lst.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(lst)
    lst.set_defaults(handler=cmd_keys_list)
    revoke = ksub.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id")
    add_store_flags(revoke)
    revoke.set_defaults(handler=cmd_keys_revoke)


def settings_from_args(args: argparse.Namespace) -> Any:
    s = _settings_module()
    overrides = {}
    for field in s.setting_fields():
        value = getattr(args, field.name, None)
        if value is None:
            continue
        overrides[field.name] = (
            value if isinstance(value, bool) else s.parse_value(field.name, value)
        )
    try:
        return s.Settings.from_env(**overrides)
    except ValueError as exc:
        raise CLIError(str(exc), exit_code=2) from None


async def _with_meta(settings: Any, fn: Any, *, check_schema: bool = True) -> Any:
    from ..server.stores import (
        SchemaMismatch,
        StoreConfigError,
        StoreUnavailable,
        ensure_schema,
        open_metadata_store,
    )

    try:
        meta = open_metadata_store(settings.database_url)
    except StoreConfigError as exc:
        raise CLIError(str(exc), exit_code=2) from None
    except ImportError as exc:
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    try:
        await meta.open()
    except (OSError, StoreUnavailable) as exc:
        raise CLIError(f"cannot open the database: {exc}") from None
    try:
        if check_schema:
            await ensure_schema(meta)
        return await fn(meta)
    except SchemaMismatch as exc:
        raise CLIError(str(exc)) from None
    finally:
        await meta.close()


def add_migrate_parser(sub: Any) -> None:
    p = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Create or upgrade the metadata schema. Safe to run again, and from "
        "several machines at once. `serve` refuses a database that needs it.",
    )
    add_store_flags(p)
    p.set_defaults(handler=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def run(meta: Any) -> tuple[int, int]:
        before = await meta.schema_version()
        return before, await meta.migrate()

    before, after = asyncio.run(_with_meta(settings, run, check_schema=False))
    if before == after:
        print(f"schema is up to date (version {after})")
    else:
        print(f"schema migrated from version {before} to {after}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ..server.auth import create_key

    settings = settings_from_args(args)
    key = asyncio.run(_with_meta(settings, lambda m: create_key(m, args.org, args.project)))
    if args.json:
        import json

        print(json.dumps({**dataclasses.asdict(key.record), "key": key.secret}))
    else:
        print(f"created {key.record.id} for {args.org} / {args.project}; the key is shown once:")
        print(key.secret)
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    keys = asyncio.run(_with_meta(settings, lambda m: m.list_keys()))
    if args.json:
        import json

        out = [{k: v for k, v in dataclasses.asdict(r).items() if k != "key_hash"} for r in keys]
        print(json.dumps(out, indent=2))
        return 0
    rows = [("ID", "ORGANIZATION", "PROJECT", "KEY", "CREATED", "REVOKED")]
    for r in keys:
        rows.append(
            (
                r.id,
                r.org_id,
                r.project_id,
                r.hint,
                time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.created_at)),
                ""
                if r.revoked_at is None
                else time.strftime("%Y-%m-%d %H:%M", time.gmtime(r.revoked_at)),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    ok = asyncio.run(_with_meta(settings, lambda m: m.revoke_key(args.key_id, int(time.time()))))
    if not ok:
        raise CLIError(f"no active key with id {args.key_id}", exit_code=1)
    print(f"revoked {args.key_id}")
    return 0


async def _first_key(meta: Any) -> Any:
    from ..server.auth import create_key

    s = _settings_module()
    keys = await meta.list_keys()
    if keys:
        return len(keys)
    return await create_key(meta, s.DEFAULT_ORG_ID, s.DEFAULT_PROJECT_ID)


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(settings_from_args(args))


def serve(settings: Any, wrap_app: Callable[[Any], Any] | None = None) -> int:
    """Run the server as `openai-files serve` does (`wrap_app` may change the app first)."""
    try:
        import uvicorn

        from ..server import create_app
        from ..server.stores import open_blob_store
    except ImportError as exc:
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Take the folder now (the app takes it again, nested): a second server fails here
    # with one clear line, not with a trace from the app's startup.
    blobs = open_blob_store(settings.storage_url)
    lock = getattr(blobs, "lock_exclusive", None)
    if lock is not None:
        try:
            lock()
        except BlockingIOError as exc:
            raise CLIError(str(exc), exit_code=1) from None
    first = asyncio.run(_with_meta(settings, _first_key))

    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        raise CLIError(f"cannot listen on {settings.host}:{settings.port}: {exc}") from None
    host, port = sock.getsockname()[:2]
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}/v1"
    print(f"openai-files: serving the Files API at {base_url}", flush=True)
    print(f"openai-files: data in {settings.data_dir.resolve()}", flush=True)
    if isinstance(first, int):
        print(
            f"openai-files: {first} API key(s) on record; `openai-files keys create` makes another",
            flush=True,
        )
    else:
        print(
            f"openai-files: created API key {first.record.id} for "
            f"{first.record.org_id} / {first.record.project_id} (shown only once):",
            flush=True,
        )
        print(f"OPENAI_API_KEY={first.secret}", flush=True)
    print(f"openai-files: connect with OpenAI(base_url={base_url!r}, api_key=...)", flush=True)

    app = create_app(settings)
    config = uvicorn.Config(
        wrap_app(app) if wrap_app else app,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else 1
