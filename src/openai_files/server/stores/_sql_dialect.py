"""What differs between SQLite and PostgreSQL (a `Dialect`), and how a plan runs on each.

The statements are written once with `?` placeholders. A dialect says how a placeholder is
written, the integer and ordered-text column types, row locks (`FOR UPDATE`, `SKIP LOCKED`),
`RETURNING`, how a list of values is matched, how a table is found. The logic of each store
method is a *plan*: a generator that yields `Stmt`s and receives each one's result, so that
one plan runs on sqlite3 in a worker thread (`drive`) and on asyncpg on the event loop
(`drive_async`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import sqlite3
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, Literal, NamedTuple, TypeAlias, TypeVar

from ._sql_schema import MIGRATIONS

T = TypeVar("T")

# -- dialects --


def marks(n: int) -> str:
    return ", ".join("?" * n)


@functools.lru_cache(maxsize=512)
def _numbered(sql: str) -> str:
    """`?, ?` as `$1, $2` (no statement here has a `?` inside a string literal)."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


@dataclasses.dataclass(frozen=True)
class Dialect:
    """What differs between the databases, and nothing else."""

    name: str
    #: Placeholders are `$1, $2, ...` (else `?`).
    numbered: bool
    #: A 64-bit integer column.
    integer: str
    #: A text column that orders by code point on every machine (file ids page by it).
    sorted_text: str
    #: Appended to a SELECT that reads a row it will update in the same transaction.
    for_update: str
    #: Appended to a SELECT whose rows another transaction may take first: skip them.
    skip_locked: str
    #: `DELETE ... RETURNING` is available (else: SELECT, then DELETE by id).
    returning: bool
    #: A query of one parameter, a table name: truthy when that table exists.
    has_table: str
    #: The first statement of a migration: serializes migrations of several processes.
    migration_lock: str | None
    #: The first statement of the transaction that stores a first key (`add_first_key`):
    #: serializes it across processes.
    first_key_lock: str | None
    #: `column = ANY(?)` with the whole list as one parameter (else `IN (?, ?, ...)`).
    any_array: bool
    #: Most values matched in one statement (a statement's parameters are limited).
    in_batch: int
    #: `UPDATE ... FROM (VALUES ...)`: many rows, each its own values, in one statement.
    update_from: bool

    def render(self, sql: str) -> str:
        """The statement as this database's driver wants it."""
        return _numbered(sql) if self.numbered else sql

    def ddl(self, statement: str) -> str:
        """A migration statement with this database's types."""
        return statement.format(integer=self.integer, sorted_text=self.sorted_text)

    def migration(self, version: int) -> list[str]:
        """The statements that make `version` from the version before it."""
        return [self.ddl(s) for s in MIGRATIONS[version - 1]]

    def one_of(self, column: str, values: Sequence[str]) -> tuple[str, tuple[Any, ...]]:
        """`column` equals one of the text `values`: the condition and its parameters."""
        if self.any_array:
            return f"{column} = ANY(?::text[])", (list(values),)
        return f"{column} IN ({marks(len(values))})", tuple(values)


SQLITE = Dialect(
    name="sqlite",
    numbered=False,
    integer="INTEGER",
    # SQLite's default (BINARY) collation compares UTF-8 bytes: code point order.
    sorted_text="TEXT",
    # Each write is one BEGIN IMMEDIATE transaction: it holds the database's write lock.
    for_update="",
    skip_locked="",
    # RETURNING needs SQLite 3.35, newer than some systems' Python has.
    returning=False,
    has_table="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
    # BEGIN IMMEDIATE serializes migrations too.
    migration_lock=None,
    first_key_lock=None,
    any_array=False,
    # Host parameters per statement stay well under SQLite's limit.
    in_batch=500,
    # SQLite 3.33 and later.
    update_from=sqlite3.sqlite_version_info >= (3, 33, 0),
)

#: Keys of the advisory locks that serialize, across machines, migrations and the check
#: for a first key with its insert.
_MIGRATION_LOCK = 0x0F11E5
_FIRST_KEY_LOCK = 0x0F11E6

POSTGRES = Dialect(
    name="postgresql",
    numbered=True,
    integer="BIGINT",
    # "C" collation: ids order by code point, the same on every replica and locale.
    sorted_text='TEXT COLLATE "C"',
    for_update=" FOR UPDATE",
    skip_locked=" FOR UPDATE SKIP LOCKED",
    returning=True,
    has_table="SELECT to_regclass(?) IS NOT NULL",
    migration_lock=f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})",
    first_key_lock=f"SELECT pg_advisory_xact_lock({_FIRST_KEY_LOCK})",
    any_array=True,
    in_batch=1_000_000,
    update_from=True,
)


# -- plans --

Fetch = Literal["none", "one", "all", "value", "count"]


class Stmt(NamedTuple):
    """One statement for a driver to run: `?` placeholders, its parameters, and what to
    send back: nothing, the first row or None, all rows, the first column of the first row
    (None without a row), or the number of rows changed."""

    sql: str
    args: tuple[Any, ...]
    fetch: Fetch


#: The logic of one store call: yields statements, receives their results, returns T.
Plan: TypeAlias = Generator[Stmt, Any, T]


def _step(plan: Plan[T], sent: Any) -> tuple[bool, Any]:
    """Send the plan the last statement's result: (False, its next statement), or (True,
    what it returned)."""
    try:
        return False, plan.send(sent)
    except StopIteration as done:
        return True, done.value


def drive(plan: Plan[T], execute: Callable[[Stmt], Any]) -> T:
    """Run a plan with a blocking driver."""
    done, out = _step(plan, None)
    while not done:
        done, out = _step(plan, execute(out))
    result: T = out
    return result


async def drive_async(plan: Plan[T], execute: Callable[[Stmt], Awaitable[Any]]) -> T:
    """Run a plan with an asyncio driver."""
    done, out = _step(plan, None)
    while not done:
        done, out = _step(plan, await execute(out))
    result: T = out
    return result
