"""Errors the API answers, each rendered in OpenAI's envelope.

APIError                       (status on the class, message/param/code on the instance)
├── InvalidRequest             400 invalid_request_error
│   └── StorageLimitExceeded   400 code storage_limit_exceeded
├── Unauthorized               401
│   └── MissingScope           401 a key without the route's scope (an admin key on data)
├── PermissionDenied           403
│   └── MissingAdminScope      403 a project's key on the Administration API
├── NotFound                   404
├── FileTooLarge               413 code file_too_large
├── RangeNotSatisfiable        416 (with content-range)
├── TooManyUploads             429 code rate_limit_exceeded (with retry-after)
├── ServiceUnavailable         503 (with retry-after)
├── InsufficientStorage        507 code insufficient_storage (with retry-after)
└── InternalError              500, a generic sentence, never a trace or a path
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from starlette.responses import JSONResponse

#: Where OpenAI's 401s point to its own site, ours say how to make a key on this server.
CREATE_KEY_HINT = (
    "Create a key on this server with `openai-files keys create` (see `openai-files keys --help`)."
)
NO_API_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password "
    "field (with blank username) if you're accessing the API from your browser and are "
    f"prompted for a username. {CREATE_KEY_HINT}"
)
INTERNAL_MESSAGE = (
    "The server had an error while processing your request. Sorry about that! "
    "You can retry your request, or contact us if the error persists."
)


def _text(value: str) -> str:
    """`value` with any lone surrogate written as its escape (`\\ud800`)."""
    return value.encode("utf-8", "backslashreplace").decode("utf-8")


class APIError(Exception):
    """An error with an HTTP status, rendered as `{"error": {...}}`."""

    status_code: ClassVar[int] = 400
    error_type: ClassVar[str] = "invalid_request_error"

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        # A message or param that echoes a lone surrogate could not be written as UTF-8:
        # such characters go as their escapes (requests that hold one are refused where
        # they arrive; this is the last guard).
        return {
            "error": {
                "message": _text(self.message),
                "type": self.error_type,
                "param": None if self.param is None else _text(self.param),
                "code": self.code,
            }
        }

    def response(self) -> JSONResponse:
        # Imported here: the rules raise these errors, and stay free of the HTTP framework.
        from starlette.responses import JSONResponse

        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class InvalidRequest(APIError):
    status_code = 400


class StorageLimitExceeded(InvalidRequest):
    def __init__(self, used: int, requested: int, quota: int, param: str = "file") -> None:
        super().__init__(
            f"Organization storage limit exceeded: {used} bytes used or reserved, "
            f"{requested} more requested, {quota} bytes allowed.",
            param=param,
            code="storage_limit_exceeded",
        )


class Unauthorized(APIError):
    status_code = 401


#: OpenAI's sentence for a key without a scope the call needs, on its data routes and (a
#: shorter form) on its Administration API.
MISSING_SCOPE_MESSAGE = (
    "You have insufficient permissions for this operation. Missing scopes: {scope}. Check "
    "that you have the correct role in your organization (Reader, Writer, Owner) and "
    "project (Member, Owner), and if you're using a restricted API key, that it has the "
    "necessary scopes."
)
MISSING_ADMIN_SCOPE_MESSAGE = (
    "You have insufficient permissions for this operation. Missing scopes: {scope}. Check "
    "that you have the correct role in your organization, and if you're using a "
    "restricted API key, that it has the necessary scopes."
)


class MissingScope(Unauthorized):
    """A known key without the scope the call needs (`api.files.write`, ...): an admin key
    on a data route."""

    def __init__(self, scope: str) -> None:
        super().__init__(MISSING_SCOPE_MESSAGE.format(scope=scope))


class PermissionDenied(APIError):
    status_code = 403


class MissingAdminScope(PermissionDenied):
    """A project's key on the Administration API (`api.management.read` / `.write`)."""

    def __init__(self, scope: str) -> None:
        super().__init__(MISSING_ADMIN_SCOPE_MESSAGE.format(scope=scope))


class NotFound(APIError):
    status_code = 404


class FileTooLarge(APIError):
    status_code = 413

    def __init__(self, limit: int, what: str = "File", param: str = "file") -> None:
        super().__init__(
            f"{what} is too large. The maximum size is {limit} bytes.",
            param=param,
            code="file_too_large",
        )


class RangeNotSatisfiable(APIError):
    status_code = 416

    def __init__(self, size: int) -> None:
        super().__init__(
            "Requested range not satisfiable.", headers={"content-range": f"bytes */{size}"}
        )


class TooManyUploads(APIError):
    """The key streams as many uploads as `--max-uploads-per-key` allows already."""

    status_code = 429
    error_type = "requests"  # as OpenAI's rate limits

    def __init__(self, limit: int, retry_after: int = 1) -> None:
        super().__init__(
            f"Too many uploads at once for this API key: at most {limit} may stream at the "
            "same time on this server (its --max-uploads-per-key setting). Retry once one "
            "of them has finished.",
            code="rate_limit_exceeded",
            headers={"retry-after": str(retry_after)},
        )


class ServiceUnavailable(APIError):
    status_code = 503
    error_type = "server_error"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"retry-after": str(retry_after)})


class InsufficientStorage(APIError):
    status_code = 507
    error_type = "server_error"

    def __init__(self, retry_after: int = 2) -> None:
        super().__init__(
            "The server's storage is full. Delete files you no longer need, or retry later.",
            code="insufficient_storage",
            headers={"retry-after": str(retry_after)},
        )


_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error says the disk (or a quota of it) is full: an OSError from a file
    write, SQLite's `database or disk is full`, PostgreSQL's disk_full (53100)."""
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL_ERRNOS
    if type(exc).__name__ in ("OperationalError", "DiskFullError"):
        return "disk is full" in str(exc) or getattr(exc, "sqlstate", None) == "53100"
    return False


class InternalError(APIError):
    status_code = 500
    error_type = "server_error"

    def __init__(self) -> None:
        super().__init__(INTERNAL_MESSAGE)


def no_such_file(file_id: str, param: str = "id") -> APIError:
    """The 404 for a file that does not exist *or* belongs to someone else (same answer)."""
    cls = NotFound if param == "id" else InvalidRequest
    return cls(f"No such File object: {file_id}", param=param)
