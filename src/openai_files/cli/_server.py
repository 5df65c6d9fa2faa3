"""`openai-files serve` and `openai-files keys ...`: the commands that run on the server side."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import shlex
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from ._common import CLIError, missing_extra, print_table
from ._start_check import check_storage

SERVER_EXTRA_HINT = "pip install 'openai-files[server]'"


def _settings_module() -> Any:
    try:
        from ..server import settings
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    return settings


def add_store_flags(
    parser: argparse.ArgumentParser, names: tuple[str, ...] = ("data_dir", "database", "storage")
) -> None:
    """The flags every command that touches the stores takes (or the settings `names`)."""
    s = _settings_module()
    for name in names:
        field = next(f for f in s.setting_fields() if f.name == name)
        parser.add_argument(
            s.flag_name(name),
            dest=name,
            default=None,
            metavar=s.metavar(field),
            help=_help_text(field),
        )


def _help_text(field: Any) -> str:
    """`help [env OPENAI_FILES_X; default D]`, D written as README's table writes it."""
    s = _settings_module()
    return (
        f"{field.metadata['help']} "
        f"[env {s.env_name(field.name)}; default {s.shown_default(field.name)}]"
    )


def add_serve_parser(sub: Any) -> None:
    s = _settings_module()
    p = sub.add_parser(
        "serve",
        help="run the Files API server",
        description=(
            "Run the OpenAI-compatible Files API server. Every flag has an environment "
            "variable; flags win. It prints `export OPENAI_BASE_URL=...`, ready to paste "
            "into a shell. The first start on a database that holds no key creates one and "
            "prints it once, as `export OPENAI_API_KEY=...`. Later starts print how many "
            "keys are active and make none, even when all are revoked: `openai-files keys "
            "create` makes one."
        ),
    )
    add_setting_flags(p, s)
    p.set_defaults(handler=cmd_serve)


def add_setting_flags(p: argparse.ArgumentParser, s: Any) -> None:
    """A flag for every server setting (each has its environment variable too)."""
    for field in s.setting_fields():
        kind = field.type
        flag = s.flag_name(field.name)
        help_text = _help_text(field)
        if kind in ("bool", "bool | None"):
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
                metavar=s.metavar(field),
                help=help_text,
            )


def add_keys_parser(sub: Any) -> None:
    s = _settings_module()
    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys (a project's, or an organization's admin keys)",
        description=(
            "Create, list and revoke API keys on the server's database. A project's key "
            "(sk-...) reaches the files, uploads and batches of its project; an admin key "
            "(sk-admin-..., `keys create --admin --org ORG`) reaches OpenAI's "
            "Administration API (/v1/organization/...) of its organization and nothing "
            "else: with it, projects, service accounts and their keys are made over HTTP."
        ),
    )
    ksub = p.add_subparsers(dest="keys_command", required=True, metavar="{create,list,revoke}")
    create = ksub.add_parser(
        "create",
        help="create a key (printed once)",
        description="Create a key and print it once (it is stored hashed). A project's key "
        "makes its project when the organization has none of that id; an archived project "
        "takes no key.",
    )
    create.add_argument("--org", default=s.DEFAULT_ORG_ID, help="organization id")
    create.add_argument(
        "--project", default=None, help=f"project id (default {s.DEFAULT_PROJECT_ID})"
    )
    create.add_argument(
        "--admin",
        action="store_true",
        help="an admin key of the organization (sk-admin-...), for the Administration API "
        "(/v1/organization/...); it reaches no project's files",
    )
    create.add_argument(
        "--name", default=None, help=f"the key's name (default {s.DEFAULT_KEY_NAME!r})"
    )
    create.add_argument(
        "--expires-in-seconds",
        type=int,
        default=None,
        metavar="SECONDS",
        help="with --admin: the key stops working this long after it is made (1 to "
        f"{s.ADMIN_KEY_EXPIRES_MAX_SECONDS}; default: never)",
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.add_argument(
        "--init",
        action="store_true",
        help="create the database if the data folder has none (otherwise: an error, "
        "since a key in a database no server reads is of no use)",
    )
    add_store_flags(create)
    create.set_defaults(handler=cmd_keys_create)
    lst = ksub.add_parser("list", help="list keys (masked), admin keys too")
    lst.add_argument("--json", action="store_true", help="print JSON")
    add_store_flags(lst)
    lst.set_defaults(handler=cmd_keys_list)
    revoke = ksub.add_parser(
        "revoke", help="revoke a key by its id (key_...), a project's or an admin key"
    )
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


async def _with_meta(
    settings: Any, fn: Any, *, check_schema: bool = True, must_exist: bool = False
) -> Any:
    """Run `fn(meta)` on the opened metadata store. `must_exist`: refuse a SQLite database
    file that does not exist (rather than create an empty one)."""
    from ..server.stores import (
        SchemaMismatch,
        StoreConfigError,
        StoreUnavailable,
        ensure_schema,
        open_metadata_store,
    )

    try:
        meta = open_metadata_store(settings.database_url, settings)
    except StoreConfigError as exc:
        raise CLIError(str(exc), exit_code=2) from None
    except ImportError as exc:
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    if must_exist:
        _require_database(settings, meta)
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


def _require_database(settings: Any, meta: Any) -> None:
    """A CLIError when the SQLite file of `meta` does not exist (PostgreSQL: no check here;
    its schema check says what to run). Touches nothing on disk."""
    from ..server.stores.sqlite import SQLiteMetadataStore

    if not isinstance(meta, SQLiteMetadataStore) or meta.path.exists():
        return
    if settings.database:
        where = f"no database at {meta.path.resolve()}"
        point = "point --database (or OPENAI_FILES_DATABASE) at the server's database"
    else:
        where = f"no database in {settings.data_dir.resolve()}"
        point = "point --data-dir (or OPENAI_FILES_DATA_DIR) at the server's data folder"
    raise CLIError(
        f"{where}: start the server there first (`openai-files serve`), {point}, "
        "or pass --init to `keys create` to make a new one",
        exit_code=2,
    )


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


def _key_json(record: Any, **more: Any) -> dict[str, Any]:
    """A key's record as the `--json` outputs show it: never its hash."""
    return {**{k: v for k, v in dataclasses.asdict(record).items() if k != "key_hash"}, **more}


def _new_project_key(settings: Any, org: str, project: str, name: str, *, must_exist: bool) -> Any:
    """A new key of `org`'s project `project` (made if the organization lacks it), for
    `keys create` and `env`: a project id of the wrong shape or an archived project is a
    CLIError (exit 2), not a traceback."""
    from ..server.auth import create_key
    from ..server.ids import PROJECT_ID_MAX_CHARS, is_project_id
    from ..server.stores import ProjectArchived

    if not is_project_id(project):
        raise CLIError(
            f"--project {project!r}: a project id is printable text of 1 to "
            f"{PROJECT_ID_MAX_CHARS} characters",
            2,
        )
    try:
        return asyncio.run(
            _with_meta(settings, lambda m: create_key(m, org, project, name), must_exist=must_exist)
        )
    except ProjectArchived:
        raise CLIError(f"project {project} of {org} is archived: it takes no new key", 2) from None


def cmd_keys_create(args: argparse.Namespace) -> int:
    from ..server.auth import create_admin_key

    s = _settings_module()
    settings = settings_from_args(args)
    name = args.name if args.name is not None else s.DEFAULT_KEY_NAME
    if args.admin:
        if args.project is not None:
            raise CLIError("--admin makes an organization's key: leave --project out", 2)
        expires = args.expires_in_seconds
        if expires is not None and not 1 <= expires <= s.ADMIN_KEY_EXPIRES_MAX_SECONDS:
            raise CLIError(
                f"--expires-in-seconds must be 1 to {s.ADMIN_KEY_EXPIRES_MAX_SECONDS}", 2
            )
        key: Any = asyncio.run(
            _with_meta(
                settings,
                lambda m: create_admin_key(m, args.org, name, expires),
                must_exist=not args.init,
            )
        )
        whom = f"{args.org} (an admin key: the Administration API only)"
    else:
        if args.expires_in_seconds is not None:
            raise CLIError("--expires-in-seconds is for admin keys (--admin)", 2)
        project = args.project if args.project is not None else s.DEFAULT_PROJECT_ID
        key = _new_project_key(settings, args.org, project, name, must_exist=not args.init)
        whom = f"{args.org} / {project}"
    if args.json:
        import json

        print(json.dumps(_key_json(key.record, key=key.secret)))
    else:
        print(f"created {key.record.id} for {whom}; the key is shown once:")
        print(key.secret)
    return 0


def add_env_parser(sub: Any) -> None:
    s = _settings_module()
    p = sub.add_parser(
        "env",
        help="print the two `export` lines (with a new key) that point the client at a "
        "local server",
        description=(
            "Create a new API key on the server's database (as `openai-files keys create`\n"
            "does) and print two lines for a shell, `export OPENAI_BASE_URL=...` and\n"
            "`export OPENAI_API_KEY=...`. In another shell on the server's machine,\n"
            "\n"
            '  eval "$(openai-files env)"\n'
            "\n"
            "points the client commands (and the official SDK) at the server that\n"
            "`make run` or `openai-files serve` started. Give it the same --data-dir (or\n"
            "--database), --host and --port as `serve` (or their variables). Keys are\n"
            "stored hashed, so each run makes a new one: `openai-files keys list` shows\n"
            "them, `openai-files keys revoke KEY_ID` ends one."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--org", default=s.DEFAULT_ORG_ID, help="organization id of the key")
    p.add_argument("--project", default=s.DEFAULT_PROJECT_ID, help="project id of the key")
    p.add_argument(
        "--base-url",
        help="the API root as clients reach it (default: http://HOST:PORT/v1 from --host "
        "and --port)",
    )
    add_store_flags(p, ("data_dir", "database", "host", "port"))
    p.set_defaults(handler=cmd_env)


def local_base_url(host: str, port: int) -> str:
    """The API root of a server listening on `host`:`port`, as a client on this machine
    reaches it (a wildcard address through loopback)."""
    if port == 0:
        raise CLIError(
            "--port 0 gives the server a new port at each start: pass --base-url (the URL "
            "`serve` printed)",
            exit_code=2,
        )
    host = _LOOPBACK_OF_ANY.get(host or "0.0.0.0", host)
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/v1"


def cmd_env(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    base_url = args.base_url or local_base_url(settings.host, settings.port)
    name = _settings_module().DEFAULT_KEY_NAME
    key = _new_project_key(settings, args.org, args.project, name, must_exist=True)
    print(
        f"openai-files: created API key {key.record.id} for {args.org} / {args.project} "
        f"(`openai-files keys revoke {key.record.id}` ends it)",
        file=sys.stderr,
    )
    print(f"export OPENAI_BASE_URL={shlex.quote(base_url.rstrip('/'))}")
    print(f"export OPENAI_API_KEY={shlex.quote(key.secret)}")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def every_key(meta: Any) -> tuple[list[Any], list[Any]]:
        return await meta.list_api_keys(), await meta.list_all_admin_keys()

    keys, admin_keys = asyncio.run(_with_meta(settings, every_key, must_exist=True))
    if args.json:
        import json

        out = [_key_json(r, kind="project") for r in keys]
        out += [_key_json(r, kind="admin") for r in admin_keys]
        print(json.dumps(out, indent=2))
        return 0

    def when(t: int | None) -> str:
        return "" if t is None else time.strftime("%Y-%m-%d %H:%M", time.gmtime(t))

    rows = [("ID", "ORGANIZATION", "PROJECT", "KEY", "CREATED", "REVOKED")]
    for r in keys:
        rows.append((r.id, r.org_id, r.project_id, r.hint, when(r.created_at), when(r.revoked_at)))
    for a in admin_keys:
        rows.append((a.id, a.org_id, "(admin)", a.hint, when(a.created_at), when(a.revoked_at)))
    print_table(rows)
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)

    async def revoke(meta: Any) -> str | None:
        """None when revoked, else why not."""
        from ..server.auth import revoke_key

        revoked = await revoke_key(meta, args.key_id, int(time.time()))
        if revoked:
            return None
        if revoked is False:
            return f"{args.key_id} is already revoked"
        return f"no key with id {args.key_id} (`openai-files keys list` shows the keys)"

    refused = asyncio.run(_with_meta(settings, revoke, must_exist=True))
    if refused is not None:
        raise CLIError(refused, exit_code=2)
    print(f"revoked {args.key_id}")
    return 0


async def _first_key(meta: Any) -> Any:
    """A new key (NewKey) when the database holds no key at all, else how many project keys
    are active.

    A database whose keys are all revoked gets no new key: someone revoked them; nor does
    one that holds only admin keys (their holder makes projects and keys over HTTP).
    Replicas starting together on a new database make one key between them, which one of
    them prints.
    """
    from ..server.auth import create_first_key

    s = _settings_module()
    first = await create_first_key(meta, s.DEFAULT_ORG_ID, s.DEFAULT_PROJECT_ID)
    if first is not None:
        return first
    return sum(1 for k in await meta.list_api_keys() if k.revoked_at is None)


def cmd_serve(args: argparse.Namespace) -> int:
    return serve(settings_from_args(args))


def _listen(settings: Any) -> socket.socket:
    """The bound listening socket, or one line saying why the port cannot be had."""
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        reason = exc.strerror or str(exc)
        raise CLIError(
            f"cannot listen on {settings.host}:{settings.port}: {reason} "
            "(another server there? pick another --port)"
        ) from None
    return sock


def _lock_data_folder(settings: Any) -> None:
    """Take the data folder now (the app takes it again, nested): a second server fails
    here with one clear line, not with a trace from the app's startup."""
    from ..server.stores import open_blob_store

    try:
        open_blob_store(settings.storage_url).lock_exclusive()  # S3: holds nothing
    except BlockingIOError as exc:
        raise CLIError(str(exc), exit_code=1) from None


#: The addresses that bind every interface, and the loopback a client here connects to.
_LOOPBACK_OF_ANY = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def _print_banner(settings: Any, sock: socket.socket, first: Any) -> None:
    """Where the server listens and keeps its data, and the key of a first start, with
    `export OPENAI_BASE_URL=...` / `export OPENAI_API_KEY=...` lines for a shell."""
    from ..server.stores import redact_url

    bound, port = sock.getsockname()[:2]
    # A client cannot connect to "every address": the URLs name the loopback of the same
    # family (a shell on this machine pastes them), and a line names the machine for others.
    host = _LOOPBACK_OF_ANY.get(bound, bound)
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}/v1"

    def say(line: str) -> None:
        print(line, flush=True)

    say(f"openai-files: serving the Files API at {base_url}")
    if bound in _LOOPBACK_OF_ANY:
        say(
            f"openai-files: listening on all addresses ({settings.host or bound}, port {port}): "
            f"other machines reach it at http://{socket.gethostname()}:{port}/v1"
        )
    if settings.console_enabled:
        say(f"openai-files: web console at http://{shown_host}:{port}/ (paste an API key there)")
    if settings.database or settings.storage:
        say(f"openai-files: database {redact_url(settings.database_url)}")
        say(f"openai-files: storage {redact_url(settings.storage_url)}")
    else:
        say(f"openai-files: data in {settings.data_dir.resolve()}")
    if isinstance(first, int):
        active = "1 active API key" if first == 1 else f"{first} active API keys"
        more = "another" if first else "one"
        say(f"openai-files: {active}; `openai-files keys create` makes {more}")
    else:
        say(
            f"openai-files: created API key {first.record.id} for "
            f"{first.record.org_id} / {first.record.project_id} (shown only once):"
        )
    say(f"export OPENAI_BASE_URL={shlex.quote(base_url)}")
    if not isinstance(first, int):
        say(f"export OPENAI_API_KEY={shlex.quote(first.secret)}")
    say(f"openai-files: connect with OpenAI(base_url={base_url!r}, api_key=...)")


def serve(settings: Any, wrap_app: Callable[[Any], Any] | None = None) -> int:
    """Run the server as `openai-files serve` does (`wrap_app` may change the app first).

    The port is bound first and the first key made last, so that a start that fails
    makes no key that nobody sees.
    """
    try:
        import uvicorn

        from ..server import create_app
        from ..server._http import protocol_class, raise_fd_limit
        from ..server._malloc import keep_freed_heap
    except ImportError as exc:
        raise missing_extra(exc, SERVER_EXTRA_HINT) from None
    if settings.http_server == "granian":
        try:
            import granian  # noqa: F401  (checked before the port is taken)
        except ImportError as exc:
            raise missing_extra(exc, "pip install 'openai-files[granian]'") from None
    from ..server.batch_engine import Engines

    try:
        Engines(settings)  # the batch routing file is read and checked before anything starts
    except ValueError as exc:
        raise CLIError(str(exc), exit_code=2) from None

    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # httpx logs each request it sends at INFO: the S3 store's own calls would stand beside
    # the one line per request that the server promises. They show at debug.
    debug = settings.log_level.lower() == "debug"
    logging.getLogger("httpx").setLevel(logging.DEBUG if debug else logging.WARNING)
    sock = _listen(settings)
    try:
        check_storage(settings)  # the blob store takes our credentials (the database: below)
        _lock_data_folder(settings)
        first = asyncio.run(_with_meta(settings, _first_key))
    except BaseException:
        sock.close()
        raise
    _print_banner(settings, sock, first)

    raise_fd_limit(settings)
    keep_freed_heap()  # streamed bodies reuse freed memory, not fresh pages (server/_malloc.py)
    app = create_app(settings)
    if settings.http_server == "granian":
        from ..server import _granian

        return 0 if _granian.run(wrap_app(app) if wrap_app else app, settings, sock) else 1
    http = protocol_class(settings)
    config = uvicorn.Config(
        wrap_app(app) if wrap_app else app,
        loop="auto",
        # httptools, with bounds on heads, timeouts and a connection cap (server/_http.py).
        http=http,
        ws="none",  # the API has no WebSocket route: an upgrade is a plain request
        # uvicorn types it an int, but only hands it to call_later: fractions work.
        timeout_keep_alive=cast(int, settings.keep_alive_timeout_seconds),
        lifespan="on",
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    app.state.metrics.count_connections(lambda: len(http.open))
    server.run(sockets=[sock])
    return 0 if server.started else 1
