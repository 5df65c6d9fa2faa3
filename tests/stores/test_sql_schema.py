"""The schema of the two SQL stores: every migration step on both databases, upgrades of
databases that earlier versions made, and the same tables, columns and indexes at the end.

The schema is read back by introspection (sqlite_master and PRAGMA on SQLite; the catalogs
and information_schema on PostgreSQL), not from the statements that made it.
"""

from __future__ import annotations

import dataclasses
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import asyncpg
import pytest

from openai_files.server.stores import (
    FileRecord,
    Owner,
    PartRecord,
    SchemaMismatch,
    UploadFull,
    UploadRecord,
)
from openai_files.server.stores._sql import SQLMetadataStore
from openai_files.server.stores._sql_schema import (
    BLOBS_NEEDED,
    BLOBS_NOT_NEEDED,
    MIGRATIONS,
    SCHEMA_VERSION,
    UPLOAD_FIELDS,
    tables_at,
)
from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing._records import admin_key_row, key_row

from .._services import PostgresCluster

pytestmark = pytest.mark.anyio

# -- test data: the schemas as the stores made them before their SQL had one source --

#: SQLite, versions 1 and 2 (scripts, as that store ran them).
OLD_SQLITE = {
    1: """
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        key_hash TEXT NOT NULL UNIQUE,
        hint TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE files (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        project_id TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        filename TEXT NOT NULL,
        purpose TEXT NOT NULL,
        mime_type TEXT NOT NULL,
        blob_key TEXT NOT NULL UNIQUE
    );
    CREATE INDEX files_owner_page ON files (org_id, project_id, created_at, id);
    CREATE INDEX files_owner_purpose_page ON files (org_id, project_id, purpose, created_at, id);
    CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE org_usage (
        org_id TEXT PRIMARY KEY,
        used_bytes INTEGER NOT NULL
    );
    CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        blob_key TEXT NOT NULL
    );
    CREATE INDEX reservations_org ON reservations (org_id);
    """,
    2: """
    CREATE INDEX files_org_expiry ON files (org_id, expires_at) WHERE expires_at IS NOT NULL;
    """,
}

#: PostgreSQL, versions 1 and 2 (its version 1 already had reservations_blob_key).
OLD_POSTGRES = {
    1: [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            project_id TEXT NOT NULL,
            key_hash TEXT NOT NULL UNIQUE,
            hint TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            revoked_at BIGINT
        )""",
        """CREATE TABLE files (
            id TEXT COLLATE "C" PRIMARY KEY,
            org_id TEXT NOT NULL,
            project_id TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            created_at BIGINT NOT NULL,
            expires_at BIGINT,
            filename TEXT NOT NULL,
            purpose TEXT NOT NULL,
            mime_type TEXT NOT NULL,
            blob_key TEXT NOT NULL UNIQUE
        )""",
        "CREATE INDEX files_owner_page ON files (org_id, project_id, created_at, id)",
        "CREATE INDEX files_owner_purpose_page ON files "
        "(org_id, project_id, purpose, created_at, id)",
        "CREATE INDEX files_expiry ON files (expires_at) WHERE expires_at IS NOT NULL",
        """CREATE TABLE org_usage (
            org_id TEXT PRIMARY KEY,
            used_bytes BIGINT NOT NULL
        )""",
        """CREATE TABLE reservations (
            id TEXT PRIMARY KEY,
            org_id TEXT NOT NULL,
            bytes BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            blob_key TEXT NOT NULL
        )""",
        "CREATE INDEX reservations_org ON reservations (org_id)",
        "CREATE INDEX reservations_blob_key ON reservations (blob_key)",
    ],
    2: [
        "CREATE INDEX files_org_expiry ON files (org_id, expires_at) WHERE expires_at IS NOT NULL",
    ],
}

#: The tables each version adds (`schema_version` is made by the first migration).
NEW_TABLES = {
    1: {"schema_version", "api_keys", "files", "org_usage", "reservations"},
    2: set(),
    3: set(),
    4: {"uploads", "upload_parts"},
    5: set(),
    6: {"server_secrets"},
    7: set(),
    8: {"batches", "batch_requests"},
    9: {"projects", "service_accounts", "admin_api_keys"},
    10: {"audit_logs"},
}
#: The indexes (beyond keys and UNIQUE columns) each version adds.
NEW_INDEXES = {
    1: {"files_owner_page", "files_owner_purpose_page", "files_expiry", "reservations_org"},
    2: {"files_org_expiry"},
    3: {"reservations_blob_key"},
    4: {"uploads_owner_status_page", "uploads_expiry", "upload_parts_order"},
    5: set(),
    6: set(),
    7: set(),
    8: {
        "batches_owner_page",
        "batches_status",
        "batches_input_key",
        "batch_requests_todo",
        "batch_requests_leases",
    },
    9: {
        "projects_page",
        "service_accounts_page",
        "api_keys_project_page",
        "api_keys_service_account",
        "admin_api_keys_page",
    },
    10: {"audit_logs_page", "audit_logs_resource", "audit_logs_age"},
}

# -- introspection --


@dataclasses.dataclass(frozen=True)
class Shape:
    """A schema as both databases can say it."""

    #: table -> column -> (normalized type, not null)
    columns: dict[str, dict[str, tuple[str, bool]]]
    #: index name -> (table, columns in order, normalized WHERE of a partial index)
    indexes: dict[str, tuple[str, tuple[str, ...], str]]
    #: table -> the column lists that are unique (its primary key, its UNIQUE columns)
    unique: dict[str, set[tuple[str, ...]]]


def _type(declared: str) -> str:
    t = declared.lower()
    return {"bigint": "integer", "int8": "integer", "int4": "integer"}.get(t, t)


def _predicate(text: str | None) -> str:
    # PostgreSQL writes a text literal with its type: `'running'::text`.
    text = (text or "").replace("::text", "")
    return " ".join(text.replace("(", " ").replace(")", " ").lower().split())


class Database(Protocol):
    name: str

    def store(self) -> SQLMetadataStore: ...

    async def run(self, version: int) -> None:
        """Make the schema of `version` with the DDL the store had before, step by step."""
        ...

    async def shape(self) -> Shape: ...

    def fresh(self) -> Database:
        """Another, empty database of the same kind."""
        ...


class SQLiteDatabase:
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    def store(self) -> SQLMetadataStore:
        return SQLiteMetadataStore(self.path)

    def fresh(self) -> SQLiteDatabase:
        return SQLiteDatabase(self.path.with_name("fresh-" + self.path.name))

    async def run(self, version: int) -> None:
        with sqlite3.connect(self.path) as db:
            db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for step in range(1, version + 1):
                db.executescript(OLD_SQLITE[step])
                db.execute("INSERT INTO schema_version (version) VALUES (?)", (step,))

    async def shape(self) -> Shape:
        db = sqlite3.connect(self.path)
        db.row_factory = sqlite3.Row
        try:
            tables = [
                r["name"]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%'"
                )
            ]
            columns: dict[str, dict[str, tuple[str, bool]]] = {}
            indexes: dict[str, tuple[str, tuple[str, ...], str]] = {}
            unique: dict[str, set[tuple[str, ...]]] = {}
            for table in tables:
                # A primary key is NOT NULL in PostgreSQL; SQLite lets a TEXT one hold NULL
                # (a documented legacy quirk) that the store never writes: count it not null.
                columns[table] = {
                    c["name"]: (_type(c["type"]), bool(c["notnull"] or c["pk"]))
                    for c in db.execute(f"PRAGMA table_info({table})")
                }
                unique[table] = set()
                for ix in db.execute(f"PRAGMA index_list({table})"):
                    cols = tuple(
                        r["name"]
                        for r in sorted(
                            db.execute(f"PRAGMA index_info({ix['name']})"),
                            key=lambda r: r["seqno"],
                        )
                    )
                    if ix["origin"] == "c":
                        sql = db.execute(
                            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?",
                            (ix["name"],),
                        ).fetchone()["sql"]
                        where = re.search(r"\bWHERE\b(.*)$", sql, re.IGNORECASE | re.DOTALL)
                        indexes[ix["name"]] = (table, cols, _predicate(where and where[1]))
                    else:
                        unique[table].add(cols)
        finally:
            db.close()
        return Shape(columns, indexes, unique)


class PostgresDatabase:
    name = "postgresql"

    def __init__(self, cluster: PostgresCluster) -> None:
        self.cluster = cluster
        self.url = cluster.create_database()

    def store(self) -> SQLMetadataStore:
        return PostgresMetadataStore(self.url)

    def fresh(self) -> PostgresDatabase:
        return PostgresDatabase(self.cluster)

    async def run(self, version: int) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
            for step in range(1, version + 1):
                for statement in OLD_POSTGRES[step]:
                    await conn.execute(statement)
                await conn.execute("INSERT INTO schema_version (version) VALUES ($1)", step)
        finally:
            await conn.close()

    async def shape(self) -> Shape:
        conn = await asyncpg.connect(self.url)
        try:
            columns: dict[str, dict[str, tuple[str, bool]]] = {}
            for c in await conn.fetch(
                "SELECT table_name, column_name, data_type, is_nullable "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            ):
                columns.setdefault(c["table_name"], {})[c["column_name"]] = (
                    _type(c["data_type"]),
                    c["is_nullable"] == "NO",
                )
            indexes: dict[str, tuple[str, tuple[str, ...], str]] = {}
            unique: dict[str, set[tuple[str, ...]]] = {t: set() for t in columns}
            for ix in await conn.fetch(
                """SELECT t.relname AS tbl, i.relname AS name,
                       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
                           AS is_constraint,
                       pg_get_expr(x.indpred, x.indrelid) AS predicate,
                       ARRAY(SELECT a.attname
                             FROM unnest(x.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                             JOIN pg_attribute a
                               ON a.attrelid = x.indrelid AND a.attnum = k.attnum
                             ORDER BY k.n) AS cols
                FROM pg_index x
                JOIN pg_class i ON i.oid = x.indexrelid
                JOIN pg_class t ON t.oid = x.indrelid
                JOIN pg_namespace s ON s.oid = t.relnamespace
                WHERE s.nspname = 'public'"""
            ):
                cols = tuple(ix["cols"])
                if ix["is_constraint"]:
                    unique[ix["tbl"]].add(cols)
                else:
                    indexes[ix["name"]] = (ix["tbl"], cols, _predicate(ix["predicate"]))
        finally:
            await conn.close()
        return Shape(columns, indexes, unique)


@pytest.fixture
def sqlite_db(tmp_path: Path) -> SQLiteDatabase:
    return SQLiteDatabase(tmp_path / "files.sqlite3")


@pytest.fixture
def postgres_db(postgres: PostgresCluster) -> PostgresDatabase:
    return PostgresDatabase(postgres)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    fixture = "sqlite_db" if request.param == "sqlite" else "postgres_db"
    database: Database = request.getfixturevalue(fixture)
    return database


@pytest.fixture
async def opened(db: Database) -> AsyncIterator[SQLMetadataStore]:
    store = db.store()
    await store.open()
    try:
        yield store
    finally:
        await store.close()


# -- tests --


def test_one_schema_version_for_both() -> None:
    assert SQLiteMetadataStore.SCHEMA_VERSION == PostgresMetadataStore.SCHEMA_VERSION
    assert SCHEMA_VERSION == 10


async def test_each_step_migrates_to_its_version(db: Database, opened: SQLMetadataStore) -> None:
    assert await opened.schema_version() == 0
    indexes: set[str] = set()
    tables: set[str] = set()
    for version in range(1, SCHEMA_VERSION + 1):
        assert await opened.migrate(to=version) == version
        assert await opened.schema_version() == version
        # Running a step already in place changes nothing.
        assert await opened.migrate(to=version) == version
        assert await opened.schema_version() == version
        indexes |= NEW_INDEXES[version]
        tables |= NEW_TABLES[version]
        shape = await db.shape()
        assert set(shape.columns) == tables, f"version {version}"
        assert set(shape.indexes) == indexes, f"version {version}"
    assert await opened.migrate() == SCHEMA_VERSION
    with pytest.raises(ValueError, match="no schema version"):
        await opened.migrate(to=SCHEMA_VERSION + 1)


async def test_the_tables_of_each_version_are_those_its_steps_make(
    db: Database, opened: SQLMetadataStore
) -> None:
    # A backup copies, and a restore fills, the tables `tables_at` reads from the steps.
    for version in range(1, SCHEMA_VERSION + 1):
        await opened.migrate(to=version)
        made = set((await db.shape()).columns) - {"schema_version"}
        assert set(tables_at(version)) == made, f"version {version}"
        assert set(await opened.row_counts()) == made


#: The statements a step may hold: `tables_at` reads CREATE TABLE and DROP TABLE, so a step
#: that changed the tables another way (a RENAME) would have to teach it first. (INSERT and
#: UPDATE write rows: step 9 makes projects of the keys before it.)
_STATEMENT_FORMS = re.compile(
    r"\s*(CREATE TABLE \w+ \(|CREATE (UNIQUE )?INDEX (IF NOT EXISTS )?\w+ ON \w+ |"
    r"ALTER TABLE \w+ ADD COLUMN |UPDATE \w+ SET |INSERT INTO \w+ \(|"
    r"DROP TABLE (IF EXISTS )?\w+$|DROP INDEX (IF EXISTS )?\w+$)"
)


def test_every_step_changes_tables_as_tables_at_reads_them() -> None:
    for version, step in enumerate(MIGRATIONS, start=1):
        for statement in step:
            assert _STATEMENT_FORMS.match(statement), f"step {version}: {statement[:60]}"


async def test_every_column_that_names_a_blob_says_whether_rows_need_its_bytes(
    db: Database, opened: SQLMetadataStore
) -> None:
    # A backup copies the bytes of BLOBS_NEEDED: a new column naming a blob must be in it,
    # or in BLOBS_NOT_NEEDED with the reason its bytes need not travel.
    await opened.migrate()
    columns = {(t, c) for t, cs in (await db.shape()).columns.items() for c in cs}
    needed = {(table, column) for table, column, _ in BLOBS_NEEDED}
    assert not needed & set(BLOBS_NOT_NEEDED)
    assert needed | set(BLOBS_NOT_NEEDED) <= columns
    named = {(t, c) for t, c in columns if c.endswith("_key")}
    unsaid = sorted(named - needed - set(BLOBS_NOT_NEEDED))
    assert not unsaid, f"add {unsaid} to BLOBS_NEEDED or BLOBS_NOT_NEEDED in _sql_schema.py"


async def test_step_3_indexes_reservations_by_blob_key(
    db: Database, opened: SQLMetadataStore
) -> None:
    await opened.migrate()
    shape = await db.shape()
    assert shape.indexes["reservations_blob_key"] == ("reservations", ("blob_key",), "")


async def test_step_4_makes_the_upload_tables(db: Database, opened: SQLMetadataStore) -> None:
    await opened.migrate(to=4)
    shape = await db.shape()
    assert shape.columns["uploads"] == {
        "id": ("text", True),
        "org_id": ("text", True),
        "project_id": ("text", True),
        "filename": ("text", True),
        "purpose": ("text", True),
        "bytes": ("integer", True),
        "mime_type": ("text", True),
        "created_at": ("integer", True),
        "expires_at": ("integer", True),
        "status": ("text", True),
        "file_id": ("text", False),
        "file_key": ("text", True),
    }
    assert shape.columns["upload_parts"] == {
        "id": ("text", True),
        "upload_id": ("text", True),
        "seq": ("integer", True),
        "bytes": ("integer", True),
        "created_at": ("integer", True),
        "blob_key": ("text", True),
    }
    assert shape.indexes["uploads_owner_status_page"] == (
        "uploads",
        ("org_id", "project_id", "status", "created_at", "id"),
        "",
    )
    assert shape.indexes["uploads_expiry"] == ("uploads", ("status", "expires_at"), "")
    assert shape.indexes["upload_parts_order"] == ("upload_parts", ("upload_id", "seq"), "")
    assert shape.unique["uploads"] == {("id",)}
    assert shape.unique["upload_parts"] == {("id",), ("blob_key",)}


async def test_step_5_adds_the_file_expiry_and_completion_start(
    db: Database, opened: SQLMetadataStore
) -> None:
    await opened.migrate(to=4)
    before = (await db.shape()).columns["uploads"]
    await opened.migrate(to=5)
    after = (await db.shape()).columns["uploads"]
    assert after == {
        **before,
        "file_expires_after": ("integer", False),
        "completing_since": ("integer", False),
    }


async def test_step_6_makes_the_server_secrets_table(
    db: Database, opened: SQLMetadataStore
) -> None:
    await opened.migrate(to=6)
    shape = await db.shape()
    assert shape.columns["server_secrets"] == {
        "name": ("text", True),
        "value": ("text", True),
        "created_at": ("integer", True),
    }
    assert shape.unique["server_secrets"] == {("name",)}


async def test_step_7_counts_the_parts_of_each_upload(
    db: Database, opened: SQLMetadataStore
) -> None:
    """Step 7 adds each upload's part count and bytes, counted from the parts it has."""
    await opened.migrate(to=6)
    before = (await db.shape()).columns["uploads"]
    owner = Owner("org-1", "proj-1")
    for n in (1, 2):
        await opened.insert_upload(
            UploadRecord(
                f"upload_{n}", owner.org_id, owner.project_id, "a.bin", "vision", 9,
                "image/png", 100, 3700, "pending", None, f"file-{n}",
            )
        )  # fmt: skip
    # The part rows as version 6's code wrote them (it numbered them, and counted nothing).
    sql = "INSERT INTO upload_parts (id, upload_id, seq, bytes, created_at, blob_key) VALUES "
    sql += ", ".join(f"('part_{i}', 'upload_1', {i + 1}, {i + 2}, 200, 'part_{i}')" for i in (0, 1))
    if isinstance(db, SQLiteDatabase):
        with sqlite3.connect(db.path) as c:
            c.execute(sql)
    else:
        assert isinstance(db, PostgresDatabase)
        conn = await asyncpg.connect(db.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()
    await opened.migrate(to=7)
    after = (await db.shape()).columns["uploads"]
    assert after == {
        **before,
        "part_count": ("integer", True),
        "part_bytes": ("integer", True),
    }
    assert await opened.parts_total("upload_1") == (2, 5)
    assert await opened.parts_total("upload_2") == (0, 0)
    # The next part is numbered after those counted.
    await opened.add_part(owner, PartRecord("part_9", "upload_1", 4, 300, "part_9"), now=300)
    assert [p.id for p in await opened.list_parts("upload_1")] == ["part_0", "part_1", "part_9"]
    assert await opened.parts_total("upload_1") == (3, 9)


async def test_parts_added_by_version_6_code_after_step_7(
    db: Database, opened: SQLMetadataStore
) -> None:
    """During a rolling upgrade, servers of version 6 keep serving once `migrate` has run
    step 7 (a server checks the schema at start only): they number a part after the last
    one and count nothing on the upload's row. Parts added then by version 7 take the next
    numbers, and the upload's bytes still bound them all."""
    await opened.migrate()
    owner = Owner("org-1", "proj-1")
    await opened.insert_upload(
        UploadRecord(
            "upload_1", owner.org_id, owner.project_id, "a.bin", "vision", 9,
            "image/png", 100, 3700, "pending", None, "file-1",
        )
    )  # fmt: skip
    await opened.add_part(owner, PartRecord("part_a", "upload_1", 2, 200, "part_a"), now=200)

    async def add_as_version_6(part_id: str, size: int) -> None:
        sql = (
            "INSERT INTO upload_parts (id, upload_id, seq, bytes, created_at, blob_key) "
            f"SELECT '{part_id}', 'upload_1', COALESCE(MAX(seq), 0) + 1, {size}, 200, "
            f"'{part_id}' FROM upload_parts WHERE upload_id = 'upload_1'"
        )
        if isinstance(db, SQLiteDatabase):
            with sqlite3.connect(db.path) as c:
                c.execute(sql)
        else:
            assert isinstance(db, PostgresDatabase)
            conn = await asyncpg.connect(db.url)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

    await add_as_version_6("part_b", 3)
    assert await opened.parts_total("upload_1") == (2, 5)
    await opened.add_part(owner, PartRecord("part_c", "upload_1", 1, 200, "part_c"), now=200)
    assert await opened.parts_total("upload_1") == (3, 6)
    await add_as_version_6("part_d", 2)
    # 8 bytes held of 9: a part of 2 would pass the upload's bytes.
    with pytest.raises(UploadFull):
        await opened.add_part(owner, PartRecord("part_e", "upload_1", 2, 200, "part_e"), now=200)
    await opened.add_part(owner, PartRecord("part_f", "upload_1", 1, 200, "part_f"), now=200)
    parts = await opened.list_parts("upload_1")
    assert [p.id for p in parts] == ["part_a", "part_b", "part_c", "part_d", "part_f"]
    assert sum(p.bytes for p in parts) == 9
    assert await opened.parts_total("upload_1") == (5, 9)


async def _execute(db: Database, sql: str, *args: Any) -> list[Any]:
    """Run one statement on the database as another program would (`?` placeholders); its
    rows."""
    if isinstance(db, SQLiteDatabase):
        with sqlite3.connect(db.path) as c:
            return c.execute(sql, args).fetchall()
    assert isinstance(db, PostgresDatabase)
    count = iter(range(1, sql.count("?") + 1))
    conn = await asyncpg.connect(db.url)
    try:
        return list(await conn.fetch(re.sub(r"\?", lambda _: f"${next(count)}", sql), *args))
    finally:
        await conn.close()


#: `api_keys` as version 8's code wrote and read it.
V8_KEY_COLUMNS = "id, org_id, project_id, key_hash, hint, created_at, revoked_at"


async def test_step_9_makes_a_project_of_each_keys_project(
    db: Database, opened: SQLMetadataStore
) -> None:
    """Step 9 adds the Administration API's tables, and a project for each (organization,
    project) that keys named before it, made when its first key was."""
    await opened.migrate(to=8)
    rows = [
        ("key_a1", "org-1", "proj_a", "h1", "sk-a****0001", 100, None),
        ("key_a2", "org-1", "proj_a", "h2", "sk-a****0002", 50, 60),
        ("key_b1", "org-1", "proj_b", "h3", "sk-b****0003", 70, None),
        ("key_c1", "org-2", "proj_a", "h4", "sk-c****0004", 60, None),
    ]
    for row in rows:
        await _execute(
            db, f"INSERT INTO api_keys ({V8_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", *row
        )
    before = (await db.shape()).columns["api_keys"]
    await opened.migrate(to=9)
    shape = await db.shape()
    assert shape.columns["api_keys"] == {
        **before,
        "name": ("text", False),
        "service_account_id": ("text", False),
    }
    assert shape.columns["projects"] == {
        "org_id": ("text", True),
        "id": ("text", True),
        "name": ("text", True),
        "created_at": ("integer", True),
        "archived_at": ("integer", False),
    }
    assert shape.unique["projects"] == {("org_id", "id")}
    assert shape.unique["admin_api_keys"] == {("id",), ("key_hash",)}
    assert shape.unique["service_accounts"] == {("id",)}
    projects = {
        (p.org_id, p.id): (p.name, p.created_at, p.archived_at)
        for org in ("org-1", "org-2")
        for p in (await opened.list_projects(org, after=None, limit=10, include_archived=True))[0]
    }
    assert projects == {
        ("org-1", "proj_a"): ("proj_a", 50, None),
        ("org-1", "proj_b"): ("proj_b", 70, None),
        ("org-2", "proj_a"): ("proj_a", 60, None),
    }
    key = await opened.get_api_key("key_a1")
    assert key is not None and (key.name, key.service_account_id) == (None, None)


async def test_servers_of_version_8_keep_their_keys_after_step_9(
    db: Database, opened: SQLMetadataStore
) -> None:
    """During a rolling upgrade, servers of version 8 keep serving once `migrate` has run
    step 9: they add, find and revoke keys by version 8's columns, never see an admin key
    (those have a table of their own), and see the keys revoked by the Administration
    API as revoked."""
    await opened.migrate()
    await _execute(
        db,
        f"INSERT INTO api_keys ({V8_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
        "key_old", "org-1", "proj_a", "hash-old", "sk-o****0001", 100, None,
    )  # fmt: skip
    found = await opened.find_api_key("hash-old")
    assert found is not None and found.name is None
    assert await opened.list_project_keys(Owner("org-1", "proj_a"), after=None, limit=5) == (
        [(found, None)],
        False,
    )
    admin = admin_key_row("org-1")
    await opened.add_admin_key(admin)
    new = key_row(200, Owner("org-1", "proj_a"), name="Secret key")
    await opened.add_api_key(new)
    for key_hash in ("hash-old", new.key_hash, admin.key_hash):
        rows = await _execute(
            db, f"SELECT {V8_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", key_hash
        )
        assert len(rows) == (0 if key_hash == admin.key_hash else 1)
    await _execute(
        db, "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", 300, new.id
    )
    revoked = await opened.get_api_key(new.id)
    assert revoked is not None and revoked.revoked_at == 300
    # A key the Administration API revokes (an archive) is revoked for them too.
    result = await opened.archive_project("org-1", "proj_a", 400)
    assert result is not None
    rows = await _execute(
        db, f"SELECT {V8_KEY_COLUMNS} FROM api_keys WHERE key_hash = ?", "hash-old"
    )
    assert rows[0][6] == 400


async def test_upgrade_from_4_keeps_uploads(db: Database) -> None:
    """An upload stored at version 4 reads back at version 5 with no file expiry and no
    completion begun, and still takes parts and completes."""
    earlier = db.store()
    await earlier.open()
    try:
        assert await earlier.migrate(to=4) == 4
        owner = Owner("org-1", "proj-1")
        # The row as version 4's code wrote it: its columns only.
        v4_columns = [
            f for f in UPLOAD_FIELDS if f not in ("file_expires_after", "completing_since")
        ]
        values: dict[str, Any] = {
            "id": "upload_1", "org_id": owner.org_id, "project_id": owner.project_id,
            "filename": "a.bin", "purpose": "vision", "bytes": 3, "mime_type": "image/png",
            "created_at": 100, "expires_at": 3700, "status": "pending", "file_id": None,
            "file_key": "file-1",
        }  # fmt: skip
        marks = ", ".join(
            f"${n}" if isinstance(db, PostgresDatabase) else "?"
            for n in range(1, len(v4_columns) + 1)
        )
        sql = f"INSERT INTO uploads ({', '.join(v4_columns)}) VALUES ({marks})"
        args = tuple(values[c] for c in v4_columns)
        if isinstance(db, SQLiteDatabase):
            with sqlite3.connect(db.path) as c:
                c.execute(sql, args)
        else:
            assert isinstance(db, PostgresDatabase)
            conn = await asyncpg.connect(db.url)
            try:
                await conn.execute(sql, *args)
            finally:
                await conn.close()
    finally:
        await earlier.close()
    store = db.store()
    await store.open()
    try:
        assert await store.migrate() == SCHEMA_VERSION
        record = await store.get_upload(owner, "upload_1")
        assert record == UploadRecord(**values)
        assert (record.file_expires_after, record.completing_since) == (None, None)
        await store.add_part(owner, PartRecord("part_1", "upload_1", 3, 200, "part_1"), now=200)
        assert (await store.begin_completion(owner, "upload_1", now=300)).status == "completing"
    finally:
        await store.close()


@pytest.mark.parametrize("version", [1, 2, 3, 4, 5, 8])
async def test_upgrades_a_database_an_earlier_version_made(db: Database, version: int) -> None:
    if version in OLD_SQLITE:
        await db.run(version)
    else:  # this code's own earlier steps
        earlier = db.store()
        await earlier.open()
        try:
            assert await earlier.migrate(to=version) == version
        finally:
            await earlier.close()
    owner = Owner("org-1", "proj-1")
    record = FileRecord(
        "file-1", owner.org_id, owner.project_id, 5, 100, None, "a.txt", "assistants",
        "text/plain", "blob-1",
    )  # fmt: skip
    store = db.store()
    await store.open()
    try:
        assert await store.schema_version() == version
        await store.insert_file(record, None, quota=1000)
        assert await store.migrate() == SCHEMA_VERSION
        assert await store.schema_version() == SCHEMA_VERSION
        # The rows are still there, and still counted.
        assert await store.get_file(owner, "file-1", now=200) == record
        assert await store.usage(owner.org_id) == 5
    finally:
        await store.close()
    # The same schema as a database made at this version from nothing.
    fresh = db.fresh()
    made = fresh.store()
    await made.open()
    try:
        await made.migrate()
    finally:
        await made.close()
    assert await db.shape() == await fresh.shape()


async def test_refuses_a_database_of_a_newer_version(
    db: Database, opened: SQLMetadataStore
) -> None:
    await opened.migrate()
    if isinstance(db, SQLiteDatabase):
        with sqlite3.connect(db.path) as c:
            c.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    else:
        assert isinstance(db, PostgresDatabase)
        conn = await asyncpg.connect(db.url)
        try:
            await conn.execute(
                "INSERT INTO schema_version (version) VALUES ($1)", SCHEMA_VERSION + 1
            )
        finally:
            await conn.close()
    with pytest.raises(SchemaMismatch, match="newer than this server"):
        await opened.migrate()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION + 1))
async def test_both_databases_have_the_same_schema(
    sqlite_db: SQLiteDatabase, postgres_db: PostgresDatabase, version: int
) -> None:
    shapes: list[Shape] = []
    for database in (sqlite_db, postgres_db):
        store = database.store()
        await store.open()
        try:
            await store.migrate(to=version)
        finally:
            await store.close()
        shapes.append(await database.shape())
    sqlite_shape, postgres_shape = shapes
    assert sqlite_shape.columns == postgres_shape.columns
    assert sqlite_shape.indexes == postgres_shape.indexes
    assert sqlite_shape.unique == postgres_shape.unique
