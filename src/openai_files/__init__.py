"""openai-files: work with OpenAI-style file storage from Python.

The seed's calls return the raw response; `Client` and `AsyncClient` return typed objects
and raise typed errors. Importing this package needs httpx alone.

Example:
    >>> from openai_files import Client, files_list, assert_response_http_ok
    >>> response = files_list("batch")                           # doctest: +SKIP
    >>> assert_response_http_ok(response)                        # doctest: +SKIP
    >>> with Client() as client:                                 # doctest: +SKIP
    ...     for f in client.iter_files(purpose="batch"):
    ...         print(f.id, f.filename)
"""

from ._client import AsyncClient, Client
from ._config import DEFAULT_BASE_URL, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    IncompleteDownloadError,
    InternalServerError,
    MissingAPIKeyError,
    NotFoundError,
    OpenAIFilesError,
    PermissionDeniedError,
    RateLimitError,
    RequestTooLargeError,
    ResponseNotOKError,
    UnprocessableEntityError,
    UploadResumeError,
)
from ._functions import (
    Options,
    assert_response_http_ok,
    files_delete,
    files_list,
    files_retrieve,
    files_retrieve_content,
    files_upload,
)
from ._models import (
    APIResponse,
    Batch,
    BatchError,
    BatchList,
    BatchRequestCounts,
    BatchUsage,
    FileDeleted,
    FileList,
    FileObject,
    Upload,
    UploadList,
)
from ._types import FileData, ProgressCallback
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIError",
    "APIResponse",
    "APIStatusError",
    "APITimeoutError",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "Batch",
    "BatchError",
    "BatchList",
    "BatchRequestCounts",
    "BatchUsage",
    "Client",
    "ConflictError",
    "FileData",
    "FileDeleted",
    "FileList",
    "FileObject",
    "IncompleteDownloadError",
    "InternalServerError",
    "MissingAPIKeyError",
    "NotFoundError",
    "OpenAIFilesError",
    "Options",
    "PermissionDeniedError",
    "ProgressCallback",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseNotOKError",
    "UnprocessableEntityError",
    "Upload",
    "UploadList",
    "UploadResumeError",
    "__version__",
    "assert_response_http_ok",
    "files_delete",
    "files_list",
    "files_retrieve",
    "files_retrieve_content",
    "files_upload",
]
