"""The ids the server makes (`file-`, `rsv_`) and the form a file id must have."""

from __future__ import annotations

import re
import secrets
import string

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24  # 24 base62 characters carry 142 of the 144 random bits
#: What the server makes: `file-` and base62. Anything else names no file, and is answered
#: so before any store sees it (a NUL byte is an error in PostgreSQL, not a miss).
FILE_ID = re.compile(r"file-[A-Za-z0-9]{1,64}")


def new_id(prefix: str) -> str:
    """`prefix` and 24 base62 characters from one read of 144 random bits."""
    number = int.from_bytes(secrets.token_bytes(18), "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ID_ALPHABET[digit])
    return prefix + "".join(chars)


def is_file_id(value: str) -> bool:
    """Whether `value` has the form of a file id (`file-` and base62)."""
    return FILE_ID.fullmatch(value) is not None
