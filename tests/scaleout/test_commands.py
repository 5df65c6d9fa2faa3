"""`migrate`, `serve` and `keys` on PostgreSQL and S3, and the errors that guide a user."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from openai_files.server.stores.postgres import SCHEMA_VERSION

from .._server import ServerProcess, openai_files_cli
from .._services import PostgresCluster, SeaweedS3


def test_serve_refuses_an_unmigrated_database_until_migrate(
    postgres: PostgresCluster, s3: SeaweedS3, tmp_path: Path
) -> None:
    database = postgres.create_database()
    env = {**os.environ, **s3.env}
    stores = [
        "--database",
        database,
        "--storage",
        s3.url("files", "cmd"),
        "--data-dir",
        str(tmp_path),
    ]
    refused = openai_files_cli("serve", "--port", "0", *stores, env=env)
    assert refused.returncode == 1
    assert "openai-files migrate" in refused.stderr
    assert "Traceback" not in refused.stderr
    keys = openai_files_cli("keys", "list", *stores, env=env)
    assert keys.returncode == 1 and "openai-files migrate" in keys.stderr

    first = openai_files_cli("migrate", *stores, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"schema migrated from version 0 to {SCHEMA_VERSION}"
    again = openai_files_cli("migrate", *stores, env=env)
    assert again.stdout.strip() == f"schema is up to date (version {SCHEMA_VERSION})"
    made = openai_files_cli("keys", "create", "--org", "org-c", "--project", "p", *stores, env=env)
    assert made.returncode == 0, made.stderr
    listed = openai_files_cli("keys", "list", *stores, env=env)
    assert "org-c" in listed.stdout


def test_unknown_scheme_and_unreachable_database(tmp_path: Path) -> None:
    done = openai_files_cli("migrate", "--database", "mysql://x/y")
    assert done.returncode == 2
    assert "unknown database URL scheme 'mysql'" in done.stderr
    done = openai_files_cli("migrate", "--database", "postgresql://nobody@127.0.0.1:1/none")
    assert done.returncode == 1
    assert "cannot open the database" in done.stderr and "Traceback" not in done.stderr


def test_a_missing_extra_names_what_to_install() -> None:
    code = (
        "import sys; sys.modules['asyncpg'] = None; sys.modules['obstore'] = None\n"
        "from openai_files.server.stores import open_metadata_store, open_blob_store\n"
        "for open_, url in ((open_metadata_store, 'postgresql://h/d'),"
        " (open_blob_store, 's3://b')):\n"
        "    try:\n"
        "        open_(url)\n"
        "    except ValueError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'openai-files[postgres]'" in done.stdout
    assert "pip install 'openai-files[s3]'" in done.stdout


def test_a_replica_names_its_database_and_storage_with_the_password_masked(
    postgres: PostgresCluster, s3: SeaweedS3, tmp_path: Path
) -> None:
    # The cluster trusts loopback, so a password in the URL is accepted and never checked.
    database = postgres.create_database().replace("@", ":hunter2secret@", 1)
    storage = s3.url("files", "banner")
    env = {**s3.env, "OPENAI_FILES_DATABASE": database, "OPENAI_FILES_STORAGE": storage}
    assert openai_files_cli("migrate", env={**os.environ, **env}).returncode == 0
    replica = ServerProcess(tmp_path / "data", env=env).start()
    replica.stop()
    log = replica.log_text()
    masked = database.replace(":hunter2secret@", ":****@")
    assert f"openai-files: database {masked}\n" in log
    assert f"openai-files: storage {storage}\n" in log
    assert "hunter2secret" not in log
    assert "data in" not in log
    assert replica.first_key is not None


def test_migrate_by_a_user_who_may_not_create_tables_is_one_line(
    postgres: PostgresCluster, tmp_path: Path
) -> None:
    # Since PostgreSQL 15 only a database's owner may create tables in its public schema.
    database = postgres.create_database()
    name = database.rsplit("/", 1)[1]
    role = "reader_" + name[2:]

    async def sql(statement: str) -> None:
        conn = await asyncpg.connect(postgres.url())
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(sql(f"CREATE ROLE {role} LOGIN"))
    url = database.replace(f"//{postgres.user}@", f"//{role}@")
    done = openai_files_cli("migrate", "--database", url, "--data-dir", str(tmp_path))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"openai-files: error: cannot migrate: PostgreSQL refused {role!r} the right to create "
        "tables (permission denied for schema public); run migrate as the database's owner, "
        f"or GRANT CREATE ON SCHEMA public TO {role}"
    ]
    owner = openai_files_cli("migrate", "--database", database, "--data-dir", str(tmp_path))
    assert owner.returncode == 0, owner.stderr
