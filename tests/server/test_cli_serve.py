"""`openai-files serve` and `keys` as a user meets them: the banner, the first key, the
errors of a busy port or of a folder without a database, and `serve --help`."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from openai_files.cli import main
from openai_files.server.settings import env_name, flag_name, setting_fields

from .._server import ServerProcess, openai_files_cli
from ._util import auth

README = Path(__file__).resolve().parents[2] / "README.md"


def _keys(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return openai_files_cli("keys", *args, "--data-dir", str(data_dir))


def _start(data_dir: Path, *args: str) -> ServerProcess:
    return ServerProcess(data_dir, *args).start()


def _lines(text: str, prefix: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(prefix)]


def test_the_banner_names_the_console_only_when_it_is_served(tmp_path: Path) -> None:
    server = _start(tmp_path / "data", "--no-console")
    try:
        assert "web console" not in server.log_text()
        assert httpx.get(server.root_url + "/").status_code == 404
    finally:
        server.stop()


def test_first_start_prints_shell_lines_that_set_url_and_key(tmp_path: Path) -> None:
    server = _start(tmp_path / "data")
    try:
        log = server.log_text()
        assert server.first_key is not None
        url_line = f"export OPENAI_BASE_URL={server.base_url}"
        key_line = f"export OPENAI_API_KEY={server.first_key}"
        assert _lines(log, "export ") == [url_line, key_line], log
        assert f"openai-files: serving the Files API at {server.base_url}" in log
        console = server.base_url.removesuffix("v1")
        assert f"openai-files: web console at {console} (paste an API key there)" in log
        assert f"openai-files: data in {(tmp_path / 'data').resolve()}" in log
        # The two lines, evaluated by a shell, hand both to the programs it starts.
        shown = subprocess.run(
            [
                shutil.which("sh") or "sh",
                "-c",
                'eval "$LINES"; exec "$PYTHON" -c "import os; '
                "print(os.environ['OPENAI_BASE_URL']); print(os.environ['OPENAI_API_KEY'])\"",
            ],
            env={"LINES": f"{url_line}\n{key_line}\n", "PYTHON": sys.executable, "PATH": ""},
            capture_output=True,
            text=True,
            check=True,
        )
        assert shown.stdout.split() == [server.base_url, server.first_key]
        assert httpx.get(server.base_url + "/files", headers=auth(server.first_key)).is_success
    finally:
        server.stop()

    again = _start(tmp_path / "data")
    try:
        log = again.log_text()
        assert again.first_key is None
        assert _lines(log, "export ") == [f"export OPENAI_BASE_URL={again.base_url}"], log
        assert "openai-files: 1 active API key; `openai-files keys create` makes another" in log
    finally:
        again.stop()


def test_a_start_counts_active_keys_and_makes_none_when_all_are_revoked(tmp_path: Path) -> None:
    data = tmp_path / "data"
    first = _start(data)
    first.stop()
    listed = _keys("list", "--json", data_dir=data)
    (key_id,) = re.findall(r'"id": "(key_\w+)"', listed.stdout)
    assert _keys("revoke", key_id, data_dir=data).returncode == 0

    revoked = _start(data)
    revoked.stop()
    assert revoked.first_key is None
    assert "0 active API keys; `openai-files keys create` makes one" in revoked.log_text()
    assert len(re.findall(r'"id"', _keys("list", "--json", data_dir=data).stdout)) == 1

    assert _keys("create", data_dir=data).returncode == 0
    assert _keys("create", data_dir=data).returncode == 0
    two = _start(data)
    two.stop()
    assert "openai-files: 2 active API keys;" in two.log_text()


def test_a_busy_port_fails_before_any_key_is_made(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = openai_files_cli("serve", "--port", str(port), "--data-dir", str(data))
    assert done.returncode == 1
    assert not data.exists()  # nothing made: no folder, no database, no key
    assert done.stderr.startswith(f"openai-files: error: cannot listen on 127.0.0.1:{port}: ")
    assert "--port" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "OPENAI_API_KEY" not in done.stdout

    server = _start(data)
    server.stop()
    assert server.first_key is not None
    assert "created API key" in server.log_text()


def test_a_bad_batch_routing_file_stops_serve_before_it_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    routes = tmp_path / "routes.json"
    routes.write_text('{"models": {"m": {"url": "http://engine:8000"}}}')
    done = openai_files_cli(
        "serve", "--port", "0", "--data-dir", str(data), "--batch-routes-file", str(routes)
    )
    assert done.returncode == 2, done.stderr
    assert not data.exists()
    assert str(routes) in done.stderr and "end in /v1" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    bad_url = openai_files_cli(
        "serve", "--port", "0", "--data-dir", str(data), "--batch-upstream-url", "http://e:1"
    )
    assert bad_url.returncode == 2 and "--batch-upstream-url" in bad_url.stderr


@pytest.mark.parametrize("command", [["list"], ["create"], ["revoke", "key_abc"]])
def test_keys_refuse_a_data_folder_without_a_database(
    command: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    elsewhere = tmp_path / "elsewhere" / "data"
    done = _keys(*command, data_dir=elsewhere)
    assert done.returncode == 2
    assert done.stderr == (
        f"openai-files: error: no database in {elsewhere.resolve()}: start the server there "
        "first (`openai-files serve`), point --data-dir (or OPENAI_FILES_DATA_DIR) at the "
        "server's data folder, or pass --init to `keys create` to make a new one\n"
    )
    assert not elsewhere.parent.exists()

    # The default ./data of the current folder, which holds other things but no database.
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(env_name("data_dir"), raising=False)
    monkeypatch.delenv(env_name("database"), raising=False)
    (tmp_path / "data").mkdir()
    assert main(["keys", *command]) == 2
    err = capsys.readouterr().err
    assert f"no database in {(tmp_path / 'data').resolve()}: " in err
    assert list((tmp_path / "data").iterdir()) == []

    # An explicit SQLite database that does not exist is named, with --database.
    missing = tmp_path / "meta" / "files.sqlite3"
    done = openai_files_cli("keys", *command, "--database", f"sqlite:///{missing}")
    assert done.returncode == 2
    assert f"no database at {missing}: " in done.stderr and "--database" in done.stderr
    assert not missing.parent.exists()


def test_keys_create_init_makes_a_database_the_server_then_uses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    made = _keys("create", "--init", "--org", "org-init", "--project", "proj_init", data_dir=data)
    assert made.returncode == 0, made.stderr
    key = made.stdout.split()[-1]
    assert (data / "files.sqlite3").exists()
    server = _start(data)
    try:
        assert server.first_key is None  # the database holds a key: none is made
        assert httpx.get(server.base_url + "/files", headers=auth(key)).is_success
    finally:
        server.stop()


def test_revoke_names_an_unknown_or_already_revoked_key(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert openai_files_cli("migrate", "--data-dir", str(data)).returncode == 0
    made = _keys("create", "--json", data_dir=data)
    (key_id,) = re.findall(r'"id": "(key_\w+)"', made.stdout)

    unknown = _keys("revoke", "key_nosuchkey", data_dir=data)
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("openai-files: error: no key with id key_nosuchkey")

    assert _keys("revoke", key_id, data_dir=data).stdout == f"revoked {key_id}\n"
    twice = _keys("revoke", key_id, data_dir=data)
    assert twice.returncode == 2
    assert twice.stderr == f"openai-files: error: {key_id} is already revoked\n"


def _readme_defaults() -> dict[str, str]:
    """flag -> the default column of README's configuration table, without backticks."""
    defaults = {}
    for line in README.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`--"):
            defaults[cells[0].strip("`")] = cells[2].replace("`", "")
    return defaults


def test_serve_help_writes_defaults_as_readme_does() -> None:
    readme = _readme_defaults()
    assert set(readme) == {flag_name(f.name) for f in setting_fields()}
    done = openai_files_cli("serve", "--help", env={**os.environ, "COLUMNS": "1000"})
    assert done.returncode == 0
    shown = re.findall(r"\[env (OPENAI_FILES_\w+); default ([^\]]*)\]", done.stdout)
    assert len(shown) == len(readme)
    for f in setting_fields():
        default = dict(shown)[env_name(f.name)]
        assert default == readme[flag_name(f.name)], f.name
    # A value is named by what it counts, not by the flag's last word.
    for flag, value in [
        ("--max-file-bytes", "BYTES"),
        ("--min-body-bytes-per-second", "BYTES"),
        ("--max-uploads-per-key", "UPLOADS"),
        ("--max-connections", "CONNECTIONS"),
    ]:
        assert f"  {flag} {value}\n" in done.stdout, flag

    keys_help = openai_files_cli("keys", "list", "--help", env={**os.environ, "COLUMNS": "1000"})
    assert "[env OPENAI_FILES_DATA_DIR; default ./data]" in keys_help.stdout
    assert "default sqlite:///<data-dir>/files.sqlite3]" in keys_help.stdout


def test_a_server_on_explicit_stores_names_them_not_the_data_folder(tmp_path: Path) -> None:
    database = tmp_path / "meta" / "files.sqlite3"
    storage = tmp_path / "blobs"
    server = _start(
        tmp_path / "data", "--database", f"sqlite:///{database}", "--storage", f"file:///{storage}"
    )
    server.stop()
    log = server.log_text()
    assert f"openai-files: database sqlite:///{database}\n" in log
    assert f"openai-files: storage file:///{storage}\n" in log
    assert "data in" not in log
    assert server.first_key is not None
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM api_keys").fetchone() == (1,)


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (
            ["--max-form-parts", "0"],
            "invalid value 0 for --max-form-parts: it must be at least 1",
        ),
        (
            ["--reservation-ttl-seconds", "5", "--body-idle-timeout-seconds", "10"],
            "invalid value 5 for --reservation-ttl-seconds: it must be at least "
            "--body-idle-timeout-seconds (10)",
        ),
    ],
)
def test_serve_refuses_settings_that_break_every_upload(
    flags: list[str], expected: str, tmp_path: Path
) -> None:
    """No form part would fit any upload; a reservation that expires before the body
    idle timeout could be taken from a live upload that merely paused."""
    done = openai_files_cli("serve", "--data-dir", str(tmp_path / "data"), *flags)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr


#: Each numeric setting out of its range, and the one line `serve` answers.
OUT_OF_RANGE = [
    ("--sweep-interval-seconds", "0", "it must be more than 0 (0 would never pause)"),
    ("--sweep-interval-seconds", "nan", "it must be a finite number of seconds"),
    ("--sweep-grace-seconds", "0", "it must be more than 0"),
    ("--reservation-ttl-seconds", "0", "it must be more than 0"),
    ("--header-timeout-seconds", "inf", "it must be a finite number of seconds"),
    ("--keep-alive-timeout-seconds", "0", "it must be more than 0"),
    ("--body-idle-timeout-seconds", "-1", "it must be 0 (never) or more"),
    ("--min-body-bytes-per-second", "-1", "it must be 0 (no minimum) or more"),
    ("--body-rate-window-seconds", "0", "it must be more than 0"),
    ("--max-uploads-per-key", "-1", "it must be 0 (no limit) or more"),
    *(
        (
            "--key-cache-seconds",
            value,
            "it must be from 0 (look up every request) to 60 (a key revoked on one server "
            "works on the others for up to that long)",
        )
        for value in ("-1", "60.5")
    ),
    ("--max-projects-per-org", "0", "it must be at least 1"),
    ("--max-service-accounts-per-project", "0", "it must be at least 1"),
    ("--max-admin-keys-per-org", "0", "it must be at least 1"),
    ("--port", "65536", "it must be from 0 (any free port) to 65535"),
    ("--max-file-bytes", "0", "it must be at least 1"),
    ("--max-batch-file-bytes", "0", "it must be at least 1"),
    ("--max-upload-bytes", "0", "it must be at least 1"),
    ("--max-part-bytes", "-1", "it must be at least 1"),
    ("--org-quota-bytes", "-1", "it must be 0 or more"),
    ("--max-pending-uploads", "0", "it must be at least 1"),
    ("--max-pending-upload-bytes", "-1", "it must be 0 or more"),
    ("--upload-retention-seconds", "0", "it must be more than 0"),
    ("--max-form-parts", "0", "it must be at least 1 (an upload has a file part)"),
    ("--max-header-bytes", "1023", "it must be at least 1024"),
    ("--max-connections", "0", "it must be at least 1"),
    ("--file-cache-rows", "-1", "it must be 0 (no cache) or more"),
    ("--database-pool-min-size", "-1", "it must be 0 or more"),
    ("--database-pool-max-size", "0", "it must be at least 1"),
    ("--database-connect-timeout-seconds", "0", "it must be more than 0"),
    (
        "--storage-part-bytes",
        "1048576",
        "it must be from 5242880 (5 MB) to 5368709120 (5 GB), S3's limits for a part",
    ),
    ("--storage-concurrent-parts", "0", "it must be at least 1"),
    ("--storage-check-timeout-seconds", "-5", "it must be more than 0"),
    ("--ready-timeout-seconds", "0", "it must be more than 0"),
    ("--console-upload-threshold-bytes", "0", "it must be at least 1"),
    ("--max-active-batches", "0", "it must be at least 1"),
    ("--audit-retention-days", "0", "it must be at least 1"),
    ("--batch-concurrency", "0", "it must be at least 1"),
    ("--batch-concurrency-per-batch", "0", "it must be at least 1"),
    ("--batch-request-timeout-seconds", "0", "it must be more than 0"),
    ("--batch-max-retries", "-1", "it must be 0 (no retries) or more"),
    ("--batch-retry-base-seconds", "0", "it must be more than 0"),
    ("--batch-lease-seconds", "2", "it must be at least 3 (leases end on whole seconds)"),
    ("--log-level", "verbose", "it must be one of debug, info, warning, error"),
]


@pytest.mark.parametrize(("flag", "value", "why"), OUT_OF_RANGE)
@pytest.mark.parametrize("source", ["flag", "env"])
def test_serve_refuses_a_number_out_of_range_with_one_line(
    flag: str,
    value: str,
    why: str,
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Before anything starts (no port, no folder): the line names the flag and the range,
    whether the value came from the flag or from its environment variable."""
    for name in list(os.environ):
        if name.startswith("OPENAI_FILES_"):
            monkeypatch.delenv(name)
    data_dir = tmp_path / "data"
    args = ["serve", "--data-dir", str(data_dir)]
    if source == "flag":
        args += [flag, value]
    else:
        monkeypatch.setenv(env_name(flag[2:].replace("-", "_")), value)
    assert main(args) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [f"openai-files: error: invalid value {value} for {flag}: {why}"]
    assert not data_dir.exists()


def test_every_numeric_setting_has_a_refusal_test() -> None:
    numeric = {flag_name(f.name) for f in setting_fields() if f.type in ("int", "float")}
    assert numeric <= {flag for flag, _, _ in OUT_OF_RANGE}


def test_serve_refuses_a_part_size_that_cuts_the_largest_file_into_too_many_parts(
    tmp_path: Path,
) -> None:
    """S3 allows 10,000 parts an upload: 8 MiB parts stop at about 78 GiB, so a larger
    --max-file-bytes on S3 needs larger parts (on a local folder it does not matter)."""
    big = str(100 * 1024**3)
    flags = ["--storage", "s3://files", "--max-file-bytes", big]
    done = openai_files_cli("serve", "--data-dir", str(tmp_path / "data"), *flags)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openai-files: error: invalid value 8388608 for --storage-part-bytes: it must be at "
        "least 10737419 (--max-file-bytes / 10000), so that the largest file fits in the "
        "10000 parts S3 allows an upload; raise it or lower --max-file-bytes"
    ]


class _Bound:
    """A socket's `getsockname()`, for the banner of a server bound to every address
    (tests listen on the loopback only)."""

    def __init__(self, *name: object) -> None:
        self.name = name

    def getsockname(self) -> tuple[object, ...]:
        return self.name


@pytest.mark.parametrize(
    ("host", "sockname", "url"),
    [
        pytest.param("0.0.0.0", ("0.0.0.0", 8123), "http://127.0.0.1:8123/v1", id="ipv4"),
        pytest.param("::", ("::", 8123, 0, 0), "http://[::1]:8123/v1", id="ipv6"),
    ],
)
def test_the_banner_of_all_addresses_gives_urls_a_client_can_use(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    host: str,
    sockname: tuple[object, ...],
    url: str,
) -> None:
    from openai_files.cli._server import _print_banner
    from openai_files.server.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path, host=host, console=True)
    _print_banner(settings, _Bound(*sockname), 1)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert _lines(out, "export ") == [f"export OPENAI_BASE_URL={shlex.quote(url)}"]
    assert f"openai-files: serving the Files API at {url}" in out
    assert f"openai-files: web console at {url.removesuffix('v1')} " in out
    assert f"OpenAI(base_url='{url}', api_key=...)" in out
    assert (
        f"openai-files: listening on all addresses ({host}, port 8123): other machines reach "
        f"it at http://{socket.gethostname()}:8123/v1"
    ) in out
    assert "0.0.0.0:" not in out and "[::]" not in out
