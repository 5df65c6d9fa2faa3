"""What every command shares: errors that own their exit code."""

from __future__ import annotations

from collections.abc import Sequence

#: Exit codes: success, a server or network failure, a usage or input error.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2


class CLIError(Exception):
    """An error shown as one line on stderr, ending the command with `exit_code`."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def missing_extra(exc: ImportError, hint: str) -> CLIError:
    """The error for an optional dependency that is not installed (others re-raise)."""
    name = getattr(exc, "name", None) or ""
    if not name or name.split(".")[0] == "openai_files":
        raise exc
    return CLIError(f"missing dependency {name!r}: install it with {hint}", EXIT_USAGE)


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows (the first one the header) in columns two spaces apart."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
