"""Large files through OpenAI's Uploads API: parallel parts, md5, cancel, resume.

`upload` decides between `POST /files` and the Uploads API: a path larger than the
client's `upload_threshold` (or any path with `use_uploads=True`, `resume=`, or a state
file beside it) is sent in parts:

1. `POST /uploads` declares the file (name, purpose, size, type);
2. its parts (`part_size` bytes each, the last one shorter) go to `POST /uploads/{id}/parts`,
   `upload_concurrency` at a time, each streamed from its range of the file (never held
   whole) and retried on its own by the client's retry rules; meanwhile one more worker
   reads the file once, in order, for its md5 (a second read of the file, which overlaps
   the sending instead of delaying it);
3. `POST /uploads/{id}/complete` with the part ids in file order and the md5.

The part ids the server accepted are kept in a state file beside the source
(`<name>.openai-upload.json`), rewritten atomically after each part and removed on success,
so that the same call after a failure (a dropped network, an interrupted program) sends only
the parts still missing. A fatal answer (a 4xx that no retry can fix) cancels the upload and
removes the state file; any other failure leaves both, for the resume. A state file of an
upload that is past its `expires_at`, or that the server says is cancelled, expired or
unknown, is removed and the file sent afresh in a new upload.

Progress is reported as bytes of the whole file (parts already accepted count as done).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Any

from . import _core
from ._config import Config, is_retryable_status
from ._core import Call, Gather, Op, RequestSpec, resource_path
from ._exceptions import APIError, APIStatusError, OpenAIFilesError, UploadResumeError
from ._models import FileObject, Upload, UploadList
from ._sources import MultipartStream, RangeSource, guess_type
from ._types import FileData, ProgressCallback, UploadArgs
from ._upload_state import UploadState, state_path

#: Bytes read at a time for the md5, and for a part (larger than a `POST /files` body's
#: 64 KiB chunks, for fewer rounds through httpx per part; 4 parts in flight hold 4 MiB).
HASH_CHUNK = PART_CHUNK = 1024 * 1024


def gone(exc: BaseException) -> bool:
    """An answer saying the upload can take no more parts and cannot be completed: it was
    cancelled, it expired, or the server has no such upload (swept after its hour)."""
    if not isinstance(exc, APIStatusError):
        return False
    if exc.status_code == 404:
        return True
    message = exc.message.lower()
    return exc.status_code == 400 and ("cancelled" in message or "expired" in message)


def _part_refused(exc: APIStatusError) -> bool:
    """A part of a resumed upload refused for good: most likely the upload is full, holding
    a part the server accepted but whose answer never came back (the connection dropped,
    the program was interrupted as it arrived), whose id no state file has. Sent afresh,
    a part refused for its own sake is refused again, and that error is raised."""
    return exc.status_code == 400 and exc.param == "data"


# --- requests ----------------------------------------------------------------------------


def _upload_path(upload_id: str, suffix: str = "") -> str:
    return resource_path("uploads", upload_id, suffix)


def send_part(
    config: Config,
    upload_id: str,
    path: Path,
    offset: int,
    length: int,
    progress: ProgressCallback | None = None,
) -> Op[str]:
    """One part, streamed from its range of the file; returns the part's id."""
    source = RangeSource(path, offset, length)
    body = MultipartStream(
        [], source, path.name, "application/octet-stream", progress, "data", PART_CHUNK
    )
    spec = RequestSpec("POST", _upload_path(upload_id, "/parts"), body=body)
    data = yield from _core.json_call(config, spec)
    return str(data["id"])


def complete(config: Config, upload_id: str, part_ids: list[str], md5: str | None) -> Op[Upload]:
    body: dict[str, Any] = {"part_ids": part_ids}
    if md5 is not None:
        body["md5"] = md5
    spec = RequestSpec("POST", _upload_path(upload_id, "/complete"), json=body)
    return Upload.from_dict((yield from _core.json_call(config, spec)))


def cancel(config: Config, upload_id: str) -> Op[Upload]:
    spec = RequestSpec("POST", _upload_path(upload_id, "/cancel"))
    return Upload.from_dict((yield from _core.json_call(config, spec)))


def list_uploads(
    config: Config, *, status: str | None = None, limit: int | None = None
) -> Op[UploadList]:
    params: dict[str, str] = {}
    if status is not None:
        params["status"] = status
    if limit is not None:
        params["limit"] = str(limit)
    spec = RequestSpec("GET", "/uploads", params=params)
    return UploadList.from_dict((yield from _core.json_call(config, spec)))


# --- the whole file ----------------------------------------------------------------------


def file_md5(path: Path, stop: threading.Event | None = None) -> str | None:
    """The file's md5 in hex; None when `stop` is set before the end (the parts failed)."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            if stop is not None and stop.is_set():
                return None
            digest.update(chunk)
    return digest.hexdigest()


class _Progress:
    """Adds up the parts' progress (from several threads) into the whole file's."""

    def __init__(self, callback: ProgressCallback, total: int, done: int) -> None:
        self._callback = callback
        self._total = total
        self._done = done
        self._parts: dict[int, int] = {}
        self._lock = threading.Lock()
        callback(done, total)

    def part(self, index: int) -> ProgressCallback:
        def update(sent: int, _size: int | None) -> None:
            with self._lock:
                # An attempt sent again starts from 0: its earlier bytes are taken back.
                self._done += sent - self._parts.get(index, 0)
                self._parts[index] = sent
                self._callback(self._done, self._total)

        return update


def _fatal(exc: BaseException) -> bool:
    """An answer no retry or resume can change (a 4xx other than 408, 409, 429)."""
    return isinstance(exc, APIStatusError) and not is_retryable_status(exc.status_code)


def _gather_parts(
    ops: list[Op[str]], limit: int, on_done: Any, stop: threading.Event
) -> Op[list[str]]:
    try:
        result: list[str] = yield Gather(ops, limit, on_done)
    except BaseException:
        stop.set()  # the md5 is not needed any more: its reading stops
        raise
    return result


def _md5_op(path: Path, stop: threading.Event) -> Op[str | None]:
    result: str | None = yield Call(lambda: file_md5(path, stop))
    return result


def _stat_regular(path: Path) -> os.stat_result:
    """The file's status; a missing file or a folder fails here, before any request."""
    if not path.is_file():
        if path.exists():
            raise IsADirectoryError(21, "not a regular file", str(path))
        raise FileNotFoundError(2, "No such file or directory", str(path))
    return path.stat()


def upload_in_parts(config: Config, path: Path, args: UploadArgs) -> Op[FileObject]:
    """Send `path` through the Uploads API (resuming from its state file if there is one).

    A state file naming an upload that has expired, or that the server says is cancelled,
    expired or unknown, is removed and the file is sent afresh in a new upload.
    """
    resume = args.resume
    stat: os.stat_result = yield Call(functools.partial(_stat_regular, path))
    state: UploadState | None = yield Call(functools.partial(UploadState.load, path))
    if state is not None and state.lapsed(time.time()):
        yield Call(state.remove)  # nothing left to resume: the server took no part after it
        state = None
    elif state is not None:
        state.check(stat, config.base_url, resume)
    elif resume is not None:
        raise UploadResumeError(
            f"cannot resume upload {resume}: there is no state file {state_path(path)} "
            "(the part ids are kept there); upload the file anew"
        )
    if state is None:
        state = yield from _begin(config, path, stat, args)
    else:
        try:
            return (yield from _send(config, path, stat, state, args.progress))
        except APIStatusError as exc:
            if not (gone(exc) or _part_refused(exc)):
                raise
        # Cancelled (`openai-files uploads cancel`), expired or swept, or it takes no more
        # parts: it was cancelled and its state removed (by `_send`, as for any answer no
        # retry can change); a new upload sends the whole file.
        yield Call(state.remove)
        state = yield from _begin(config, path, stat, args)
    return (yield from _send(config, path, stat, state, args.progress))


def _begin(config: Config, path: Path, stat: os.stat_result, args: UploadArgs) -> Op[UploadState]:
    """A new upload of `path`, and its state file."""
    name = args.filename or path.name
    body: dict[str, Any] = {
        "filename": name,
        "purpose": args.purpose,
        "bytes": stat.st_size,
        "mime_type": guess_type(name, args.mime_type),
    }
    if args.expires_after is not None:
        body["expires_after"] = {"anchor": "created_at", "seconds": int(args.expires_after)}
    upload = Upload.from_dict(
        (yield from _core.json_call(config, RequestSpec("POST", "/uploads", json=body)))
    )
    state = UploadState(
        path,
        upload.id,
        config.base_url,
        stat.st_size,
        stat.st_mtime_ns,
        config.part_size,
        expires_at=upload.expires_at or None,
    )
    yield Call(state.save)
    return state


def _send(
    config: Config,
    path: Path,
    stat: os.stat_result,
    state: UploadState,
    progress: ProgressCallback | None,
) -> Op[FileObject]:
    """The parts `state` lacks, then the completion; the state file goes on success."""
    size = stat.st_size
    part_size = state.part_size
    count = state.part_count
    missing = [i for i in range(count) if i not in state.parts]
    done = sum(min(part_size, size - i * part_size) for i in state.parts if i < count)
    tracker = _Progress(progress, size, done) if progress is not None else None
    ops = [
        send_part(
            config, state.upload_id, path, i * part_size, min(part_size, size - i * part_size),
            tracker.part(i) if tracker is not None else None,
        )
        for i in missing
    ]  # fmt: skip

    def accepted(index: int, part_id: str) -> None:
        # Blocking (it writes the state file): the drivers run it off the event loop.
        state.parts[missing[index]] = part_id
        state.save()

    try:
        # The md5 is read alongside the parts, in a worker of its own.
        stop = threading.Event()
        md5, _ = yield Gather(
            [_md5_op(path, stop), _gather_parts(ops, config.upload_concurrency, accepted, stop)],
            2,
        )
        now: os.stat_result = yield Call(path.stat)
        if now.st_size != size or now.st_mtime_ns != stat.st_mtime_ns:
            raise UploadResumeError(
                f"{path} changed while it was being uploaded: upload {state.upload_id} "
                "was cancelled; upload the file again once it no longer changes"
            )
        part_ids = [state.parts[i] for i in range(count)]
        upload = yield from complete(config, state.upload_id, part_ids, md5)
    except BaseException as exc:
        if _fatal(exc) or isinstance(exc, UploadResumeError):
            with contextlib.suppress(APIError):
                yield from cancel(config, state.upload_id)
            yield Call(state.remove)
        raise
    yield Call(state.remove)
    if upload.file is None:
        raise OpenAIFilesError(
            f"upload {upload.id} completed without a file object (status {upload.status!r})"
        )
    return upload.file


def _resumable_or_large(path: Path, threshold: int) -> bool:
    """A state file lies beside `path`, or `path` is larger than `threshold` bytes."""
    if state_path(path).exists():
        return True
    try:
        return path.stat().st_size > threshold
    except OSError:
        return False  # POST /files says what is wrong with the path


def wants_parts(config: Config, file: FileData, args: UploadArgs) -> Op[Path | None]:
    """The path to send through the Uploads API, or None for `POST /files`."""
    is_path = isinstance(file, str | os.PathLike)
    if args.use_uploads is False:
        if args.resume is not None:
            raise ValueError("resume= resumes an upload in parts: do not pass use_uploads=False")
        return None
    if not is_path:
        if args.use_uploads or args.resume is not None:
            raise TypeError("the Uploads API sends a file from its path: pass the path")
        return None
    path = Path(os.fspath(file))  # type: ignore[arg-type]
    if args.use_uploads or args.resume is not None:
        return path
    parts: bool = yield Call(functools.partial(_resumable_or_large, path, config.upload_threshold))
    return path if parts else None


def upload(config: Config, file: FileData, args: UploadArgs) -> Op[FileObject]:
    """`Client.upload`: `POST /files`, or the Uploads API for a large path."""
    path = yield from wants_parts(config, file, args)
    if path is None:
        return (yield from _core.upload(config, file, args))
    return (yield from upload_in_parts(config, path, args))
