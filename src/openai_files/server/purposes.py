"""What each purpose allows: to be uploaded, under which file name and size, how its
content is checked (`validator`), when its file expires unless asked otherwise, whether it
may be downloaded, and the shape of a purpose a listing filters on.

Shared by every way a file arrives (POST /v1/files, the Uploads API, the console), so that a
new purpose is added here once.
"""

from __future__ import annotations

import re

from . import settings as S
from .errors import FileTooLarge, InvalidRequest
from .settings import Settings
from .validation import (
    BatchValidator,
    FineTuneValidator,
    ImageValidator,
    JsonLinesValidator,
    Validator,
)

UPLOADABLE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
NO_DOWNLOAD_PURPOSES = ("assistants", "user_data")
JSONL_PURPOSES = {"fine-tune": "Fine-Tuning API", "batch": "Batch API"}
#: A purpose to filter a listing on: letters, digits, `-`, `_` (every purpose OpenAI has).
_LISTED_PURPOSE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_purpose(purpose: str | None) -> str:
    """The purpose, when given and one a file may be uploaded with."""
    if purpose is None or purpose == "":
        raise InvalidRequest("'purpose' is a required property", param="purpose")
    if purpose not in UPLOADABLE_PURPOSES:
        allowed = "[" + ", ".join(repr(p) for p in UPLOADABLE_PURPOSES) + "]"
        raise InvalidRequest(f"{purpose!r} is not one of {allowed} - 'purpose'", param="purpose")
    return purpose


def check_format(purpose: str, filename: str, param: str = "file") -> None:
    """A file for the Fine-Tuning or Batch API is named `.jsonl`."""
    api = JSONL_PURPOSES.get(purpose)
    if api and not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(f"Invalid file format for {api}. Must be .jsonl", param=param)


def check_size(settings: Settings, purpose: str | None, size: int) -> None:
    """A file is at most `max_file_bytes`, a batch file (once its purpose is known) also at
    most `max_batch_file_bytes`."""
    limit, what = settings.max_file_bytes, "File"
    if purpose == "batch":
        limit, what = min(settings.max_batch_file_bytes, limit), "Batch file"
    if size > limit:
        raise FileTooLarge(limit, what)


def check_upload_size(settings: Settings, purpose: str, size: int) -> None:
    """The declared size of an upload (Uploads API) is at most `max_upload_bytes`, a batch
    file's also at most `max_batch_file_bytes`."""
    limit, what = settings.max_upload_bytes, "an upload"
    if purpose == "batch":
        limit, what = min(settings.max_batch_file_bytes, limit), "a batch file"
    if size > limit:
        raise InvalidRequest(
            f"Invalid 'bytes': {size} is more than {what} may hold, {limit} bytes.",
            param="bytes",
        )


def refused_download_purposes(settings: Settings) -> tuple[str, ...]:
    """The purposes whose files' content is not served: `assistants` and `user_data`, as
    OpenAI does, or none when the server allows every purpose. The console reads it too,
    to offer no download that would be refused."""
    return () if settings.allow_download_all_purposes else NO_DOWNLOAD_PURPOSES


def check_download(settings: Settings, purpose: str) -> None:
    """A file's content may be downloaded unless its purpose is refused (above)."""
    if purpose in refused_download_purposes(settings):
        raise InvalidRequest(f"Not allowed to download files of purpose: {purpose}")


def default_expires_in(purpose: str, asked: int | None) -> int | None:
    """Seconds from its creation until a new file of `purpose` expires: those `asked`,
    else 30 days for a batch file, else never (None)."""
    if asked is None and purpose == "batch":
        return S.BATCH_DEFAULT_EXPIRES_SECONDS
    return asked


def validator_for(
    purpose: str, *, strict: bool, max_line_bytes: int = S.MAX_LINE_BYTES
) -> Validator | None:
    """A validator of a file of `purpose`, in default or strict mode; None when that
    purpose and mode check nothing."""
    if purpose == "batch":
        return BatchValidator(max_line_bytes) if strict else JsonLinesValidator(max_line_bytes)
    if purpose == "fine-tune":
        return FineTuneValidator(max_line_bytes) if strict else JsonLinesValidator(max_line_bytes)
    if purpose == "vision" and strict:
        return ImageValidator()
    return None


def validator(settings: Settings, purpose: str) -> Validator | None:
    """The validator of a new file of `purpose` in the server's mode (`strict_validation`),
    on every way a file arrives; None when nothing is checked."""
    return validator_for(purpose, strict=settings.strict_validation)


def check_listed_purpose(purpose: str) -> None:
    """A purpose a listing filters on: letters, digits, '-' and '_' (any purpose, even
    one no longer uploadable, finds its files)."""
    if not _LISTED_PURPOSE.fullmatch(purpose):
        raise InvalidRequest(
            f"Invalid value for 'purpose': {purpose!r}. A purpose is letters, digits, "
            "'-' and '_' (e.g. 'assistants').",
            param="purpose",
        )
