"""The client's calls, each written once: the caller's arguments in, an operation out.

Every public method of `Client` and `AsyncClient` (but `iter_files`, which pages) is made
from one function below by `blocking` or `awaitable`: the function's signature and
docstring are the method's, its first argument the client's `Config`, and the operation it
returns is run by the client's driver (blocking calls, or `await`). So the two clients
offer the same calls by construction, not as two hand-kept copies.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from . import _batches, _core, _uploads
from ._config import Config
from ._core import Op, Order
from ._models import Batch, BatchList, FileDeleted, FileList, FileObject, Upload, UploadList
from ._types import FileData, ProgressCallback, UploadArgs

P = ParamSpec("P")
T = TypeVar("T")
M = TypeVar("M", bound=Callable[..., Any])


def upload(
    config: Config,
    file: FileData,
    *,
    purpose: str,
    filename: str | None = None,
    mime_type: str | None = None,
    expires_after: int | None = None,
    progress: ProgressCallback | None = None,
    use_uploads: bool | None = None,
    resume: str | None = None,
) -> Op[FileObject]:
    """Upload a path, bytes or a binary file object (streamed, never read whole).

    `filename` defaults to the path's name, `mime_type` to a guess from it, and
    `expires_after` (seconds after creation) to the server's rule for the purpose.

    A path larger than `upload_threshold` (or any path with `use_uploads=True`) goes
    through the Uploads API in parallel parts; after a failure, the same call resumes
    it (from the state file `<path>.openai-upload.json`), sending only the missing
    parts; `resume=` names the upload expected there. `use_uploads=False` never does.
    """
    args = UploadArgs(purpose, filename, mime_type, expires_after, progress, use_uploads, resume)
    return _uploads.upload(config, file, args)


def cancel_upload(config: Config, upload_id: str) -> Op[Upload]:
    """Cancel a pending upload of the Uploads API (its parts are removed)."""
    return _uploads.cancel(config, upload_id)


def list_uploads(
    config: Config, *, status: str | None = None, limit: int | None = None
) -> Op[UploadList]:
    """Uploads, newest first: the pending ones unless `status` says (`completed`,
    `cancelled`, `expired`, `all`). `GET /uploads` is this package's server's, not
    OpenAI's."""
    return _uploads.list_uploads(config, status=status, limit=limit)


def list_files(
    config: Config,
    purpose: str | None = None,
    *,
    limit: int | None = None,
    order: Order | None = None,
    after: str | None = None,
) -> Op[FileList]:
    """One page of files (newest first unless `order="asc"`)."""
    return _core.list_page(config, purpose, limit=limit, order=order, after=after)


def retrieve(config: Config, file_id: str) -> Op[FileObject]:
    """A file's metadata."""
    return _core.retrieve(config, file_id)


def delete(config: Config, file_id: str) -> Op[FileDeleted]:
    """Delete a file."""
    return _core.delete(config, file_id)


def content(config: Config, file_id: str) -> Op[bytes]:
    """A file's bytes, in memory (use `download` for large files)."""
    return _core.content(config, file_id)


def download(
    config: Config,
    file_id: str,
    path: str | os.PathLike[str],
    *,
    progress: ProgressCallback | None = None,
    durable: bool = False,
) -> Op[int]:
    """Stream a file's bytes to `path`, which appears only once complete; returns the size.

    With `durable=True` the file is fsynced (and its folder) before this returns, so it
    survives a power loss; by default it is left to the system's write-back, as
    `curl -o` does: a download can be repeated, and the fsync doubles its time.
    """
    return _core.download(config, file_id, path, progress, durable)


def create_batch(
    config: Config,
    input_file_id: str,
    endpoint: str,
    *,
    completion_window: str = _batches.DEFAULT_COMPLETION_WINDOW,
    metadata: Mapping[str, str] | None = None,
    output_expires_after: int | None = None,
) -> Op[Batch]:
    """Start a batch: the requests of the file `input_file_id` (uploaded with purpose
    `batch`, one JSON line per request) sent to `endpoint` (`/v1/chat/completions`, ...).

    `metadata`: at most 16 string pairs, kept with the batch. `output_expires_after`: the
    output and error files expire this many seconds after they are made (default: never).
    The batch starts `validating`; follow it with `retrieve_batch`.
    """
    return _batches.create(
        config, input_file_id, endpoint, completion_window, metadata, output_expires_after
    )


def retrieve_batch(config: Config, batch_id: str) -> Op[Batch]:
    """A batch, as it stands: its `status`, `request_counts`, and once it has ended its
    `output_file_id` and `error_file_id`."""
    return _batches.retrieve(config, batch_id)


def list_batches(
    config: Config, *, after: str | None = None, limit: int | None = None
) -> Op[BatchList]:
    """One page of batches, newest first (`limit` of them, 20 unless said; at most 100),
    starting after the batch `after`."""
    return _batches.list_page(config, after, limit)


def cancel_batch(config: Config, batch_id: str) -> Op[Batch]:
    """Cancel a batch: it is `cancelling` until its requests in flight end, then
    `cancelled`, with the results it has in its output file."""
    return _batches.cancel(config, batch_id)


# --- the methods -------------------------------------------------------------------------


class _Blocking(Protocol):
    """What `blocking` needs of `Client`."""

    _config: Config

    def _run(self, op: Op[T]) -> T: ...


class _Awaiting(Protocol):
    """What `awaitable` needs of `AsyncClient`."""

    _config: Config

    async def _run(self, op: Op[T]) -> T: ...


def blocking(
    call: Callable[Concatenate[Config, P], Op[T]], name: str | None = None
) -> Callable[Concatenate[_Blocking, P], T]:
    """`call` as a method of `Client`: runs its operation, returns its result."""

    def method(self: _Blocking, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(call(self._config, *args, **kwargs))

    return _named(method, call, name)


def awaitable(
    call: Callable[Concatenate[Config, P], Op[T]], name: str | None = None
) -> Callable[Concatenate[_Awaiting, P], Awaitable[T]]:
    """`call` as a method of `AsyncClient`: a coroutine that runs its operation."""

    async def method(self: _Awaiting, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(call(self._config, *args, **kwargs))

    return _named(method, call, name)


def _named(method: M, call: Callable[..., Any], name: str | None) -> M:
    """`method` with `call`'s name, docstring and signature (`self` for the config, the
    operation's result for its return)."""
    made: Any = method
    made.__name__ = made.__qualname__ = name or call.__name__
    made.__doc__ = call.__doc__
    signature = inspect.signature(call)
    params = list(signature.parameters.values())
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    returns = str(signature.return_annotation).removeprefix("Op[").removesuffix("]")
    made.__signature__ = signature.replace(
        parameters=[self, *params[1:]], return_annotation=returns
    )
    return method
