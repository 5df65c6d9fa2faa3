"""The seed's five calls and `assert_response_http_ok`, as thin calls into `_core`.

Each takes the seed's positional arguments and options, and returns an `APIResponse`
whatever the status: only a missing key, a bad argument or the network raise.

Example:
    >>> response = files_upload(b"hello", "hello.txt", "text/plain", "assistants")  # doctest: +SKIP
    >>> assert_response_http_ok(response)                                         # doctest: +SKIP
    >>> response.data["id"]                                                       # doctest: +SKIP
    'file-...'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypedDict, Unpack

import httpx

from . import _core
from ._client import Client
from ._config import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from ._models import APIResponse
from ._types import FileData, UploadArgs


class Options(TypedDict, total=False):
    """The seed's options (`openai_api_key`, `debug`) and ours."""

    #: The key; default: the `OPENAI_API_KEY` environment variable.
    openai_api_key: str | None
    #: Print the request and the response (the key masked) to stderr.
    debug: bool
    #: The API root; default `OPENAI_BASE_URL`, else `https://api.openai.com/v1`.
    base_url: str | None
    #: `OpenAI-Organization` / `OpenAI-Project`; default `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID`.
    organization: str | None
    project: str | None
    timeout: float | None
    max_retries: int
    headers: Mapping[str, str]
    #: An `httpx.Client` to send with (it is not closed).
    http_client: httpx.Client


_OPTION_NAMES = frozenset(Options.__annotations__)


def _call(spec: _core.RequestSpec, options: Options, *, binary: bool = False) -> APIResponse:
    unknown = set(options) - _OPTION_NAMES
    if unknown:
        raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
    client = Client(
        options.get("openai_api_key"),
        base_url=options.get("base_url"),
        organization=options.get("organization"),
        project=options.get("project"),
        timeout=options.get("timeout", DEFAULT_TIMEOUT),
        max_retries=options.get("max_retries", DEFAULT_MAX_RETRIES),
        headers=options.get("headers"),
        debug=options.get("debug", False),
        http_client=options.get("http_client"),
    )
    with client:
        return client._run(_core.seed_call(client._config, spec, binary=binary))


def files_upload(
    file_data: FileData,
    file_name: str,
    file_mimetype: str,
    purpose: str,
    **options: Unpack[Options],
) -> APIResponse:
    """Upload a file (`POST /files`): `(files-upload file-data file-name file-mimetype purpose)`.

    Args:
        file_data: The bytes, a path, or a binary file object (paths and file objects are
            streamed, never read whole into memory).
        file_name: The name the file is stored under, e.g. "product-info.pdf".
        file_mimetype: Its mimetype, e.g. "application/pdf".
        purpose: "assistants", "vision", "batch", "fine-tune", "user_data" or "evals".
        **options: See `Options`.

    Returns:
        The response; on 200 its `data` is the file object.
    """
    spec = _core.upload_spec(file_data, UploadArgs(purpose, file_name, file_mimetype))
    return _call(spec, options)


def files_list(purpose: str | None = None, **options: Unpack[Options]) -> APIResponse:
    """List the files (`GET /files`), only those of `purpose` when one is given.

    A missing or blank purpose sends no `purpose` query. On 200, `data` is the list object.
    """
    return _call(_core.list_spec(purpose), options)


def files_retrieve(file_id: str, **options: Unpack[Options]) -> APIResponse:
    """A file's metadata (`GET /files/{file_id}`); on 200, `data` is the file object."""
    return _call(_core.retrieve_spec(file_id), options)


def files_delete(file_id: str, **options: Unpack[Options]) -> APIResponse:
    """Delete a file (`DELETE /files/{file_id}`); on 200, `data` says `"deleted": true`."""
    return _call(_core.delete_spec(file_id), options)


def files_retrieve_content(file_id: str, **options: Unpack[Options]) -> APIResponse:
    """A file's bytes (`GET /files/{file_id}/content`); on 200, `data` is the bytes."""
    return _call(_core.content_spec(file_id), options, binary=True)


def assert_response_http_ok(response: APIResponse) -> None:
    """Return on 200; otherwise raise `ResponseNotOKError` with the seed's message.

    The message shows the status, the mimetype and the body (JSON pretty-printed):

        HTTP response is not HTTP_OK!

        HTTP Status: 404
        Mimetype:    application/json

        Response:
        {
          "error": {
            "message": "No such File object: file-...",
            ...
    """
    error = _core.response_not_ok(response)
    if error is not None:
        raise error
