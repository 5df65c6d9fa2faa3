"""Copies of a metadata store's tables as one SQLite file: what a backup holds of the rows.

Both stores snapshot into such a file (`MetadataStore.snapshot`) and load one
(`MetadataStore.load`); this module is the file's side of both, written once: a new copy
made by the schema's own steps, its rows read and written in chunks, the tables and counts
it holds, the blobs its rows need. Tables come from the schema's steps (`tables_at`), so a
table a later step adds travels without a change here. Every function blocks: the stores
call them in worker threads.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import _sql_plans as _plans
from ._errors import RowsRefused, SchemaMismatch
from ._sql_dialect import SQLITE, Stmt, drive, marks
from ._sql_schema import SCHEMA_VERSION, blobs_needed_query, tables_at

#: Rows read or written per call: a chunk of a table, never the whole.
CHUNK_ROWS = 1000


def _execute(conn: sqlite3.Connection, stmt: Stmt) -> Any:
    cur = conn.execute(stmt.sql, stmt.args)
    if stmt.fetch == "value":
        row = cur.fetchone()
        return None if row is None else row[0]
    if stmt.fetch == "all":
        return cur.fetchall()
    if stmt.fetch == "one":
        return cur.fetchone()
    return cur.rowcount if stmt.fetch == "count" else None


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """A connection to the copy at `path` (autocommit: transactions are explicit), usable
    from any thread (one at a time). `read_only` also refuses a file that does not exist."""
    if read_only:
        if not path.is_file():
            raise FileNotFoundError(str(path))
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False,
        )  # fmt: skip
    else:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    # A backup's file may have been crafted: its views and triggers call no function that
    # has side effects (SQLite's trusted_schema, off).
    conn.execute("PRAGMA trusted_schema = OFF")
    conn.row_factory = sqlite3.Row
    return conn


def quoted(name: str) -> str:
    """An SQL identifier, quoted."""
    return '"' + name.replace('"', '""') + '"'


@functools.cache
def schema_columns(version: int = SCHEMA_VERSION) -> dict[str, tuple[str, ...]]:
    """The columns of every table of schema `version`, in their order, as this code's own
    steps make them (in a database in memory): what a copy's rows are read by, never the
    names a copy's file holds."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    try:
        migrate(conn, version)
        return {table: tuple(columns_of(conn, table)) for table in tables_at(version)}
    finally:
        conn.close()


def require_tables(conn: sqlite3.Connection, tables: Iterable[str], schema: str = "main") -> None:
    """RowsRefused unless each of `tables` is a table of the copy (not a view, nor missing)."""
    for table in tables:
        kind = conn.execute(
            f"SELECT type FROM {schema}.sqlite_master WHERE name = ?", (table,)
        ).fetchone()
        if kind is None or kind[0] != "table":
            raise RowsRefused(
                f"the copy's {table} is {'missing' if kind is None else 'a ' + str(kind[0])}, "
                "not a table"
            )


def new_copy(path: Path, version: int) -> sqlite3.Connection:
    """A new copy at `path` (which must not exist) with the tables of schema `version`,
    made by the same steps as a database's (`migrate`), holding no row yet."""
    if path.exists():
        raise FileExistsError(str(path))
    conn = connect(path)
    conn.execute("PRAGMA journal_mode = DELETE")  # one file: nothing beside it to lose
    migrate(conn, version)
    return conn


def migrate(conn: sqlite3.Connection, version: int = SCHEMA_VERSION) -> int:
    """Bring the copy's schema to `version` (this code's by default) by the schema's steps,
    in one transaction, as a database's `migrate` does: a backup of an older version is
    restored at this code's. The version now in place."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        done = drive(_plans.migrate(SQLITE, version), lambda stmt: _execute(conn, stmt))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return done


def version_of(conn: sqlite3.Connection) -> int:
    """The schema version of a copy (0: none)."""
    return drive(_plans.schema_version(SQLITE), lambda stmt: _execute(conn, stmt))


def check_version(version: int, what: str) -> None:
    """SchemaMismatch for a schema this code does not know."""
    if version == 0:
        raise SchemaMismatch(f"{what} has no schema")
    if version > SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{what} has schema version {version}, newer than this openai-files "
            f"({SCHEMA_VERSION}); upgrade openai-files"
        )


def require_current(version: int, what: str) -> None:
    """SchemaMismatch unless `version` is this code's (rows are loaded at it alone)."""
    if version != SCHEMA_VERSION:
        raise SchemaMismatch(
            f"{what} has schema version {version}, not {SCHEMA_VERSION}: migrate it first"
        )


def columns_of(conn: sqlite3.Connection, table: str, schema: str = "main") -> list[str]:
    """The columns of `table`, in their order."""
    return [row[1] for row in conn.execute(f"PRAGMA {schema}.table_info({quoted(table)})")]


def insert_rows(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """Insert `rows` (values in the order of `columns`) into the copy's `table`."""
    conn.executemany(
        f"INSERT INTO {quoted(table)} ({', '.join(map(quoted, columns))}) "
        f"VALUES ({marks(len(columns))})",
        rows,
    )


def read_chunks(
    conn: sqlite3.Connection, table: str, columns: Sequence[str]
) -> Iterator[list[tuple[Any, ...]]]:
    """The rows of the copy's `table` (values in the order of `columns`), CHUNK_ROWS at a
    time."""
    require_tables(conn, [table])
    cur = conn.execute(f"SELECT {', '.join(map(quoted, columns))} FROM {quoted(table)}")
    while rows := cur.fetchmany(CHUNK_ROWS):
        yield [tuple(row) for row in rows]


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    """How many rows each table of the copy's schema holds."""
    tables = tables_at(version_of(conn))
    require_tables(conn, tables)
    return {
        table: int(conn.execute(f"SELECT COUNT(*) FROM {quoted(table)}").fetchone()[0])
        for table in tables
    }


def blobs_needed(conn: sqlite3.Connection) -> Iterator[str]:
    """The keys of the blobs whose bytes the copy's rows need (`BLOBS_NEEDED`), each once."""
    cur = conn.execute(blobs_needed_query(version_of(conn)))
    while rows := cur.fetchmany(CHUNK_ROWS):
        for row in rows:
            yield str(row[0])


#: The rows that record their blob's size: (table, its blob's column, its size's column).
#: A batch's input is a file's blob, sized by that file's row.
BLOB_SIZES: tuple[tuple[str, str, str], ...] = (
    ("files", "blob_key", "bytes"),
    ("upload_parts", "blob_key", "bytes"),
)


def blob_sizes(conn: sqlite3.Connection) -> dict[str, tuple[int, str]]:
    """The size each blob has by the copy's rows, and the row that says so (`files file-…`),
    for the blobs whose row records one (BLOB_SIZES)."""
    present = set(tables_at(version_of(conn)))
    sizes: dict[str, tuple[int, str]] = {}
    for table, key, size in BLOB_SIZES:
        if table not in present:
            continue
        cur = conn.execute(f"SELECT {key}, {size}, id FROM {quoted(table)}")
        while rows := cur.fetchmany(CHUNK_ROWS):
            for row in rows:
                sizes[str(row[0])] = (int(row[1]), f"{table} row {row[2]}")
    return sizes
