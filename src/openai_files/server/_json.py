"""JSON as the server reads it: JSON only, and text only.

Python's `json` reads more than JSON: `NaN`, `Infinity` and `-Infinity` (JavaScript's, not
JSON's), and a `\\ud800` escape that pairs with no other surrogate, which makes a string
that is not Unicode text (no UTF-8 encodes it: a database refuses it, an answer that
echoes it cannot be written). `loads` refuses the first; `lone_surrogate` finds the second
in what was read, so that the request is refused where it arrives (`repr` writes one as
`\\ud800`, so the refusal can show it).
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A string holds a lone surrogate when its UTF-8 encoding fails: this finds the first one.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes | bytearray) -> Any:
    """`json.loads`, but `NaN`, `Infinity` and `-Infinity` are a ValueError, as in any JSON
    parser but Python's."""
    return json.loads(text, parse_constant=_not_json)


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
