"""The client's errors, shaped like the official `openai` SDK's.

    OpenAIFilesError
    ├── MissingAPIKeyError             no key given and none in OPENAI_API_KEY (no request sent)
    ├── ResponseNotOKError             assert_response_http_ok: carries the seed's response
    ├── UploadResumeError              an upload in parts cannot be resumed (no request sent)
    └── APIError                       message, request, body, code, param, type
        ├── APIStatusError             status_code, response, request_id
        │   ├── BadRequestError            400
        │   ├── AuthenticationError        401
        │   ├── PermissionDeniedError      403
        │   ├── NotFoundError              404
        │   ├── ConflictError              409
        │   ├── RequestTooLargeError       413
        │   ├── UnprocessableEntityError   422
        │   ├── RateLimitError             429
        │   └── InternalServerError        5xx
        └── APIConnectionError         the server could not be reached or the transfer broke
            ├── APITimeoutError
            └── IncompleteDownloadError    fewer bytes arrived than the server announced

Foreign exceptions (httpx's) are translated in one place, `_core.py`, with `raise ... from`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import httpx

    from ._models import APIResponse


class OpenAIFilesError(Exception):
    """The base of every error this package raises."""


class MissingAPIKeyError(OpenAIFilesError):
    """No API key was given and `OPENAI_API_KEY` is unset; raised before any request."""


class ResponseNotOKError(OpenAIFilesError):
    """Raised by `assert_response_http_ok`; its message is the seed's, `response` the answer."""

    def __init__(self, message: str, response: APIResponse) -> None:
        super().__init__(message)
        self.response = response


class UploadResumeError(OpenAIFilesError):
    """An upload cannot be resumed (no state, another upload's state, a changed file)."""


class APIError(OpenAIFilesError):
    """An error about one request; `code`, `param` and `type` come from the error body."""

    def __init__(self, message: str, request: httpx.Request, *, body: object | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body
        error: Any = body.get("error") if isinstance(body, dict) else None
        if not isinstance(error, dict):
            error = {}
        self.code: str | None = _str_or_none(error.get("code"))
        self.param: str | None = _str_or_none(error.get("param"))
        self.type: str | None = _str_or_none(error.get("type"))


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)


class APIStatusError(APIError):
    """The server answered with a status other than 200."""

    #: The status this class stands for (None: any status without a class of its own).
    status: ClassVar[int | None] = None

    def __init__(self, message: str, *, response: httpx.Response, body: object | None) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code
        self.request_id: str | None = response.headers.get("x-request-id")


class BadRequestError(APIStatusError):
    status = 400


class AuthenticationError(APIStatusError):
    status = 401


class PermissionDeniedError(APIStatusError):
    status = 403


class NotFoundError(APIStatusError):
    status = 404


class ConflictError(APIStatusError):
    status = 409


class RequestTooLargeError(APIStatusError):
    status = 413


class UnprocessableEntityError(APIStatusError):
    status = 422


class RateLimitError(APIStatusError):
    status = 429


class InternalServerError(APIStatusError):
    """Any 5xx."""


class APIConnectionError(APIError):
    """The request did not get an answer: refused, reset, broken mid-transfer."""

    def __init__(self, request: httpx.Request, message: str = "Connection error.") -> None:
        super().__init__(message, request, body=None)


class APITimeoutError(APIConnectionError):
    def __init__(self, request: httpx.Request) -> None:
        super().__init__(request, "Request timed out.")


class IncompleteDownloadError(APIConnectionError):
    """The body ended before the length the server announced (nothing is left on disk)."""


_BY_STATUS: dict[int, type[APIStatusError]] = {
    cls.status: cls
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RequestTooLargeError,
        UnprocessableEntityError,
        RateLimitError,
    )
    if cls.status is not None
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The most specific error class for an HTTP status."""
    if status_code >= 500:
        return InternalServerError
    return _BY_STATUS.get(status_code, APIStatusError)
