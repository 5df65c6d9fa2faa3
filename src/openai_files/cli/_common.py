"""What every command shares: errors that own their exit code, and how text is shown."""

from __future__ import annotations

import unicodedata
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


#: Characters that do not show, or change how what follows shows: controls, format
#: characters (the bidirectional overrides and isolates among them, which make
#: "evil\u202etxt.exe" read "evilexe.txt"), line and paragraph separators, and lone
#: surrogates. The joiners U+200C and U+200D stay: scripts and emoji need them.
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_JOINERS = frozenset("\u200c\u200d")


def shown(text: str) -> str:
    """`text` with each character that would not show, or would reorder what follows,
    written as its escape (`\\u202e`): for names shown to people, never for names stored."""
    return "".join(
        (f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        if unicodedata.category(ch) in _HIDDEN and ch not in _JOINERS
        else ch
        for ch in text
    )


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Print rows (the first one the header) in columns two spaces apart, each cell `shown`."""
    rows = [[shown(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
