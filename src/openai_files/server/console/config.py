"""What the console is told before a key is entered (`GET /console/api/config`): every
limit it keeps to, from the server's settings, so that no limit is written twice (the
console's JavaScript holds none of its own)."""

from __future__ import annotations

from typing import Any

from .. import settings as S
from ..audit import EXTENSION_EVENT_TYPES, OPENAI_RECORDED
from ..auth import ADMIN_KEY_PREFIX
from ..ids import FILE_ID
from ..purposes import UPLOADABLE_PURPOSES, refused_download_purposes
from ..settings import Settings


def upload_streams(max_uploads_per_key: int) -> tuple[int, int]:
    """The files the console uploads at once, and the parts of one upload it sends at once:
    its own bounds, lowered so that together they stay within the uploads one key may
    stream at once (`--max-uploads-per-key`, 0 for no limit). Parts come first: they are
    what makes one large file go faster.

    Example:
        >>> upload_streams(16), upload_streams(3), upload_streams(0)
        ((2, 4), (1, 3), (2, 4))
    """
    files, parts = S.CONSOLE_PARALLEL_FILES, S.CONSOLE_PARALLEL_PARTS
    if max_uploads_per_key:
        parts = min(parts, max_uploads_per_key)
        files = max(1, min(files, max_uploads_per_key // parts))
    return files, parts


def console_config(settings: Settings, runs_batches: bool) -> dict[str, Any]:
    """The body of `GET /console/api/config` (docs/api.md, "Extensions for the console").
    `runs_batches`: whether the server has an engine to run batches on (the batches view
    says so when it has none: `POST /v1/batches` is then refused)."""
    files, parts = upload_streams(settings.max_uploads_per_key)
    return {
        "upload_threshold_bytes": settings.console_upload_threshold_bytes,
        "part_bytes": settings.max_part_bytes,
        "max_file_bytes": settings.max_file_bytes,
        "max_upload_bytes": settings.max_upload_bytes,
        "purposes": list(UPLOADABLE_PURPOSES),
        "no_download_purposes": list(refused_download_purposes(settings)),
        "file_id_pattern": FILE_ID.pattern,
        "list_limit_max": S.LIST_LIMIT_MAX,
        "page_files": S.CONSOLE_PAGE_FILES,
        "search_matches_max": S.CONSOLE_SEARCH_MATCHES_MAX,
        "preview_bytes": S.CONSOLE_PREVIEW_BYTES,
        "preview_lines": S.CONSOLE_PREVIEW_LINES,
        "preview_image_max_bytes": S.CONSOLE_PREVIEW_IMAGE_MAX_BYTES,
        "parallel_files": files,
        "parallel_parts": parts,
        "part_attempts": S.CONSOLE_PART_ATTEMPTS,
        "parallel_deletes": S.CONSOLE_PARALLEL_DELETES,
        "runs_batches": runs_batches,
        "page_batches": min(S.CONSOLE_PAGE_BATCHES, S.BATCH_LIST_LIMIT_MAX),
        "batch_poll_seconds": S.CONSOLE_BATCH_POLL_SECONDS,
        "admin_key_prefix": ADMIN_KEY_PREFIX,
        "page_admin": min(S.CONSOLE_PAGE_ADMIN, S.ADMIN_LIST_LIMIT_MAX),
        "admin_list_limit_max": S.ADMIN_LIST_LIMIT_MAX,
        "admin_name_max_chars": S.ADMIN_NAME_MAX_CHARS,
        "audit_event_types": [*OPENAI_RECORDED, *EXTENSION_EVENT_TYPES],
        "audit_projects_max": S.CONSOLE_AUDIT_PROJECTS_MAX,
    }
