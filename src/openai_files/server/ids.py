"""Every id the server makes and the shape each must have: files (`file-`), uploads
(`upload_`), their parts (`part_`) and quota reservations (`rsv_`).

An id is its prefix and base62 characters. A value of another shape names nothing, and is
answered so before any store sees it (a NUL byte is an error in PostgreSQL, not a miss).
"""

from __future__ import annotations

import re
import secrets
import string

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24  # 24 base62 characters carry 142 of the 144 random bits

FILE_PREFIX = "file-"
UPLOAD_PREFIX = "upload_"
PART_PREFIX = "part_"
RESERVATION_PREFIX = "rsv_"


def _shape(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9]{1,64}")


#: A file id, an upload id, a part id (a part's id is also its blob key), as made here.
FILE_ID = _shape(FILE_PREFIX)
UPLOAD_ID = _shape(UPLOAD_PREFIX)
PART_ID = _shape(PART_PREFIX)


def new_id(prefix: str) -> str:
    """`prefix` and 24 base62 characters from one read of 144 random bits."""
    number = int.from_bytes(secrets.token_bytes(18), "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ID_ALPHABET[digit])
    return prefix + "".join(chars)


def new_file_id() -> str:
    """A new file id, which is also the key of the file's bytes."""
    return new_id(FILE_PREFIX)


def new_upload_id() -> str:
    """A new upload id (Uploads API)."""
    return new_id(UPLOAD_PREFIX)


def new_part_id() -> str:
    """A new part id, which is also the key of the part's bytes."""
    return new_id(PART_PREFIX)


def new_reservation_id() -> str:
    """A new id of a quota reservation (`MetadataStore.reserve`)."""
    return new_id(RESERVATION_PREFIX)


def is_file_id(value: str) -> bool:
    """Whether `value` has the form of a file id (`file-` and base62)."""
    return FILE_ID.fullmatch(value) is not None


def is_upload_id(value: str) -> bool:
    """Whether `value` has the form of an upload id (`upload_` and base62)."""
    return UPLOAD_ID.fullmatch(value) is not None


def is_part_id(value: str) -> bool:
    """Whether `value` has the form of a part id (`part_` and base62)."""
    return PART_ID.fullmatch(value) is not None
