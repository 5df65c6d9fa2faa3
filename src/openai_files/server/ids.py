"""Every id the server makes and the shape each must have: files (`file-`), uploads
(`upload_`), their parts (`part_`), quota reservations (`rsv_`), batches (`batch_`), the
requests of a batch's output (`batch_req_`), batch workers (`worker_`), projects
(`proj_`), service accounts (`svc_acct_`), keys (`key_`) and audit log events
(`audit_log-`).

An id is its prefix and base62 characters. A value of another shape names nothing, and is
answered so before any store sees it (a NUL byte is an error in PostgreSQL, not a miss).
"""

from __future__ import annotations

import re
import secrets
import string
import time

_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24  # 24 base62 characters carry 142 of the 144 random bits

FILE_PREFIX = "file-"
UPLOAD_PREFIX = "upload_"
PART_PREFIX = "part_"
RESERVATION_PREFIX = "rsv_"
BATCH_PREFIX = "batch_"
BATCH_REQUEST_PREFIX = "batch_req_"
WORKER_PREFIX = "worker_"
PROJECT_PREFIX = "proj_"
SERVICE_ACCOUNT_PREFIX = "svc_acct_"
KEY_PREFIX = "key_"
#: OpenAI's audit log ids begin so (`audit_log-xxx_yyyymmdd` in its examples).
AUDIT_LOG_PREFIX = "audit_log-"


def _shape(prefix: str) -> re.Pattern[str]:
    return re.compile(re.escape(prefix) + r"[A-Za-z0-9]{1,64}")


#: A file id, an upload id, a part id (a part's id is also its blob key), as made here.
FILE_ID = _shape(FILE_PREFIX)
UPLOAD_ID = _shape(UPLOAD_PREFIX)
PART_ID = _shape(PART_PREFIX)
#: A batch id (`batch_req_...` is not one: `_` is not base62).
BATCH_ID = _shape(BATCH_PREFIX)
#: A service account's id; a key's id (`key_` and base62; hex before this release).
SERVICE_ACCOUNT_ID = _shape(SERVICE_ACCOUNT_PREFIX)
KEY_ID = _shape(KEY_PREFIX)
#: An audit log event's id.
AUDIT_LOG_ID = _shape(AUDIT_LOG_PREFIX)
#: The longest project id looked up. Projects made here have `proj_` ids; those the
#: command line names (`keys create --project`) may be any printable text.
PROJECT_ID_MAX_CHARS = 256


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


#: Base62 digits in code point order: a fixed-width number written with them sorts as text.
_SORTED_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase


_last_ms = 0


def _next_ms() -> int:
    global _last_ms
    # Never the same or an earlier millisecond twice in a process (a burst of creates runs
    # ahead of the clock by a few): the ids it makes sort in the order it made them.
    _last_ms = max(int(time.time() * 1000), _last_ms + 1)
    return _last_ms


def new_sorted_id(prefix: str, ms: int | None = None) -> str:
    """`prefix`, the creation time in milliseconds (8 base62 digits, in an order that sorts
    as text; `ms`, else now), then 16 random base62 digits (95 bits). Rows listed by
    `(created_at, id)` then come in the order they were made, also within one second."""
    number = _next_ms() if ms is None else ms
    stamp = []
    for _ in range(8):
        number, digit = divmod(number, 62)
        stamp.append(_SORTED_ALPHABET[digit])
    return prefix + "".join(reversed(stamp)) + new_id("")[:16]


def new_batch_id() -> str:
    """A new batch id (Batch API), sorted by its time (`new_sorted_id`): batches created
    within one second list newest first by id, as they were created (OpenAI's listing is
    newest first)."""
    return new_sorted_id(BATCH_PREFIX)


def new_batch_request_id() -> str:
    """The id of one line of a batch's output or error file (`batch_req_...`)."""
    return new_id(BATCH_REQUEST_PREFIX)


def new_worker_id() -> str:
    """The id a batch worker holds its leases under (one per process start)."""
    return new_id(WORKER_PREFIX)


def is_batch_id(value: str) -> bool:
    """Whether `value` has the form of a batch id (`batch_` and base62)."""
    return BATCH_ID.fullmatch(value) is not None


def new_project_id() -> str:
    """A new project id (Administration API), sorted by its time (`new_sorted_id`)."""
    return new_sorted_id(PROJECT_PREFIX)


def new_service_account_id() -> str:
    """A new service account id (Administration API), sorted by its time."""
    return new_sorted_id(SERVICE_ACCOUNT_PREFIX)


def new_key_id() -> str:
    """A new key id, a project's or an admin key's (`key_`), sorted by its time: the keys
    made within one second list in the order they were made."""
    return new_sorted_id(KEY_PREFIX)


def is_project_id(value: str) -> bool:
    """Whether `value` may name a project: printable text (no control character, no lone
    surrogate) of 1 to PROJECT_ID_MAX_CHARS characters, as the command line accepts it."""
    return 0 < len(value) <= PROJECT_ID_MAX_CHARS and value.isprintable()


def is_service_account_id(value: str) -> bool:
    """Whether `value` has the form of a service account id (`svc_acct_` and base62)."""
    return SERVICE_ACCOUNT_ID.fullmatch(value) is not None


def is_key_id(value: str) -> bool:
    """Whether `value` has the form of a key id (`key_` and base62), either kind."""
    return KEY_ID.fullmatch(value) is not None


def new_audit_log_id() -> tuple[str, int]:
    """A new audit log event's id, sorted by its time (`new_sorted_id`), and that time in
    seconds (the event's `effective_at`): events listed by id are listed by time."""
    ms = _next_ms()
    return new_sorted_id(AUDIT_LOG_PREFIX, ms), ms // 1000


def is_audit_log_id(value: str) -> bool:
    """Whether `value` has the form of an audit log event's id (`audit_log-` and base62)."""
    return AUDIT_LOG_ID.fullmatch(value) is not None
