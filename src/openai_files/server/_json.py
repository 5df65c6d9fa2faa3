"""JSON as the server reads it: JSON only, and text only.

Python's `json` reads more than JSON: `NaN`, `Infinity` and `-Infinity` (JavaScript's, not
JSON's), and a `\\ud800` escape that pairs with no other surrogate, which makes a string
that is not Unicode text (no UTF-8 encodes it: a database refuses it, an answer that
echoes it cannot be written). `loads` refuses the first; `lone_surrogate` finds the second
in what was read, so that the request is refused where it arrives (`repr` writes one as
`\\ud800`, so the refusal can show it). `DECODER` is `loads`'s decoder, for a walk that reads
one value at a time (`raw_decode`). `more_values_than` counts the values of a JSON text
before it is parsed, the bound of a line that content validation and the batch input check
hold to (settings.MAX_LINE_VALUES).
"""

from __future__ import annotations

import json
import re
from typing import Any

from . import settings as S

#: A string holds a lone surrogate when its UTF-8 encoding fails: this finds the first one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes | bytearray) -> Any:
    """`json.loads`, but `NaN`, `Infinity` and `-Infinity` are a ValueError, as in any JSON
    parser but Python's."""
    return json.loads(text, parse_constant=_not_json)


#: The decoder of `loads`: `DECODER.raw_decode(text, index)` reads the one value that starts
#: at `index` (no whitespace before it) and returns it with the index where it ends.
DECODER = json.JSONDecoder(parse_constant=_not_json)


#: Why a string with a lone surrogate is refused, after what it is.
_LONE = (
    "holds a lone surrogate (a \\ud800-\\udfff escape that pairs with no other), which is "
    "not a Unicode character; send text as UTF-8."
)


def lone_surrogate(value: Any) -> tuple[str, str | None] | None:
    """Where the first string in `value` (a parsed JSON value; its keys too) holds a lone
    surrogate, as a refusal's (message, param), the param a path like `expires_after.anchor`
    or `part_ids[2]`; None when every string is text. Walks with a stack, not recursion: a
    value as deep as `json` reads is fine."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return f"Invalid value for '{where}': {item[:100]!r} {_LONE}", where
        elif isinstance(item, dict):
            for key in item:
                if _SURROGATE.search(key):
                    inside = f" in '{where}'" if where else ""
                    return f"Invalid parameter name {key[:100]!r}{inside}: it {_LONE}", (
                        where or None
                    )
            paths = [(f"{where}.{key}" if where else key, inner) for key, inner in item.items()]
            stack.extend(reversed(paths))
        elif isinstance(item, list):
            stack.extend(reversed([(f"{where}[{i}]", inner) for i, inner in enumerate(item)]))
    return None


#: Each value or key of a JSON text but the first comes right after one of these.
_STRUCTURAL = (b"[", b"{", b",", b":")
#: The rest of a JSON string after its opening quote, up to (not including) its closing one.
_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*', re.DOTALL)
#: A token outside strings: a whole string (b"" in `findall`), one of _STRUCTURAL, or a
#: string cut by the end of the text searched.
_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|([\[{,:]|"[^"\\]*(?:\\.[^"\\]*)*\\?\Z)', re.DOTALL)


def _string_end(raw: bytes | bytearray, at: int) -> int:
    """Where the JSON string whose text starts at `at` (after its opening quote) ends (after
    its closing quote), a window at a time; -1 when it does not."""
    size = len(raw)
    while True:
        stop = min(size, at + S.VALIDATION_WINDOW_BYTES)
        rest = _STRING_REST.match(raw, at, stop)
        assert rest is not None  # it matches the empty string
        end = rest.end()
        if end < stop and raw[end] == ord('"'):
            return end + 1
        if end == at:  # a backslash that ends the line
            return -1
        at = end  # the window's end, or a backslash whose escaped byte is past it


def more_values_than(raw: bytes | bytearray, limit: int) -> bool:
    """Whether the JSON text `raw` holds more than `limit` values and keys, without parsing
    it: one more than the `[`, `{`, `,` and `:` outside its strings. They are counted
    everywhere first, the quick answer for almost every line; only a line over the limit by
    that count is walked token by token (a string at once), and that walk stops at the
    limit. Text that is not JSON may be miscounted: the parse that follows refuses it."""
    size = len(raw)
    if size <= limit:  # a value or a key takes a byte at least
        return False
    count = 1
    for at in range(0, size, S.VALIDATION_WINDOW_BYTES):
        stop = min(size, at + S.VALIDATION_WINDOW_BYTES)
        count += sum(raw.count(mark, at, stop) for mark in _STRUCTURAL)
        if count > limit:
            break
    else:
        return False
    count, at = 1, 0
    while at < size:
        stop = min(size, at + S.VALIDATION_WINDOW_BYTES)
        # b"" for each whole string, the mark for each of _STRUCTURAL, and last, perhaps, a
        # string that goes on past the window
        tokens = _TOKENS.findall(raw, at, stop)
        at = stop
        if tokens and tokens[-1][:1] == b'"':
            at = _string_end(raw, stop - len(tokens.pop()) + 1)
            if at < 0:
                return False
        count += len(tokens) - tokens.count(b"")
        if count > limit:
            return True
    return False
