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
import dataclasses
import functools
import hashlib
import json
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
from ._types import FileData, ProgressCallback

#: The state file of `path`: beside it, named after it.
STATE_SUFFIX = ".openai-upload.json"
STATE_VERSION = 1
#: Bytes read at a time for the md5, and for a part (larger than a `POST /files` body's
#: 64 KiB chunks, for fewer rounds through httpx per part; 4 parts in flight hold 4 MiB).
HASH_CHUNK = PART_CHUNK = 1024 * 1024


# --- the state file ----------------------------------------------------------------------


def state_path(path: Path) -> Path:
    """Where the state of an upload of `path` is kept."""
    return path.with_name(path.name + STATE_SUFFIX)


@dataclasses.dataclass
class UploadState:
    """What a resume needs: the upload, the file as it was, the parts accepted."""

    file: Path
    upload_id: str
    base_url: str
    size: int
    mtime_ns: int
    part_size: int
    parts: dict[int, str] = dataclasses.field(default_factory=dict)
    #: When the server stops taking parts (its `expires_at`; None in older state files).
    expires_at: int | None = None

    @classmethod
    def load(cls, file: Path) -> UploadState | None:
        where = state_path(file)
        try:
            raw = json.loads(where.read_text("utf-8"))
            expires_at = raw.get("expires_at")
            return cls(
                file=file,
                upload_id=str(raw["upload_id"]),
                base_url=str(raw["base_url"]),
                size=int(raw["size"]),
                mtime_ns=int(raw["mtime_ns"]),
                part_size=int(raw["part_size"]),
                parts={int(k): str(v) for k, v in raw["parts"].items()},
                expires_at=None if expires_at is None else int(expires_at),
            )
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise UploadResumeError(
                f"the upload state file {where} is not readable ({exc}): delete it to "
                "upload the file anew"
            ) from None

    def check(self, stat: os.stat_result, base_url: str, resume: str | None) -> None:
        """Refuse to resume another upload, on another server, or of a changed file."""
        where = state_path(self.file)
        if resume is not None and resume != self.upload_id:
            raise UploadResumeError(
                f"{where} belongs to upload {self.upload_id}, not {resume}: resume "
                f"{self.upload_id}, or delete the state file to start anew"
            )
        if base_url != self.base_url:
            raise UploadResumeError(
                f"{where} belongs to upload {self.upload_id} on {self.base_url}, not on "
                f"{base_url}: delete the state file to upload the file anew"
            )
        if stat.st_size != self.size or stat.st_mtime_ns != self.mtime_ns:
            raise UploadResumeError(
                f"{self.file} changed since upload {self.upload_id} began (size or time): "
                f"it cannot be resumed; delete {where} to upload the file anew"
            )

    def save(self) -> None:
        """Write the state atomically (a temporary file renamed over the old one)."""
        where = state_path(self.file)
        tmp = where.with_name(f".{where.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        data = {
            "version": STATE_VERSION,
            "upload_id": self.upload_id,
            "base_url": self.base_url,
            "size": self.size,
            "mtime_ns": self.mtime_ns,
            "part_size": self.part_size,
            "expires_at": self.expires_at,
            "parts": {str(k): v for k, v in sorted(self.parts.items())},
        }
        with tmp.open("w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, where)

    def lapsed(self, now: float) -> bool:
        """Whether the upload is past its `expires_at`: the server takes no more parts."""
        return self.expires_at is not None and now >= self.expires_at

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            state_path(self.file).unlink()


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


def create(
    config: Config,
    *,
    filename: str,
    purpose: str,
    nbytes: int,
    mime_type: str,
    expires_after: int | None = None,
) -> Op[Upload]:
    body: dict[str, Any] = {
        "filename": filename,
        "purpose": purpose,
        "bytes": nbytes,
        "mime_type": mime_type,
    }
    if expires_after is not None:
        body["expires_after"] = {"anchor": "created_at", "seconds": int(expires_after)}
    return Upload.from_dict(
        (yield from _core.json_call(config, RequestSpec("POST", "/uploads", json=body)))
    )


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


def upload_in_parts(
    config: Config,
    path: Path,
    *,
    purpose: str,
    filename: str | None = None,
    mime_type: str | None = None,
    expires_after: int | None = None,
    progress: ProgressCallback | None = None,
    resume: str | None = None,
) -> Op[FileObject]:
    """Send `path` through the Uploads API (resuming from its state file if there is one).

    A state file naming an upload that has expired, or that the server says is cancelled,
    expired or unknown, is removed and the file is sent afresh in a new upload.
    """
    if not path.is_file():
        if path.exists():
            raise IsADirectoryError(21, "not a regular file", str(path))
        raise FileNotFoundError(2, "No such file or directory", str(path))
    stat = path.stat()
    state = UploadState.load(path)
    if state is not None and state.lapsed(time.time()):
        state.remove()  # nothing left to resume: the server took no part after expires_at
        state = None
    elif state is not None:
        state.check(stat, config.base_url, resume)
    elif resume is not None:
        raise UploadResumeError(
            f"cannot resume upload {resume}: there is no state file {state_path(path)} "
            "(the part ids are kept there); upload the file anew"
        )
    name = filename or path.name
    begin = functools.partial(
        _begin, config, path, stat, name, purpose, guess_type(name, mime_type), expires_after
    )
    if state is None:
        state = yield from begin()
    else:
        try:
            return (yield from _send(config, path, stat, state, progress))
        except APIStatusError as exc:
            if not (gone(exc) or _part_refused(exc)):
                raise
        # Cancelled (`openai-files uploads cancel`), expired or swept, or it takes no more
        # parts: it was cancelled and its state removed (by `_send`, as for any answer no
        # retry can change); a new upload sends the whole file.
        state.remove()
        state = yield from begin()
    return (yield from _send(config, path, stat, state, progress))


def _begin(
    config: Config,
    path: Path,
    stat: os.stat_result,
    name: str,
    purpose: str,
    mime_type: str,
    expires_after: int | None,
) -> Op[UploadState]:
    """A new upload of `path`, and its state file."""
    upload = yield from create(
        config,
        filename=name,
        purpose=purpose,
        nbytes=stat.st_size,
        mime_type=mime_type,
        expires_after=expires_after,
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
    state.save()
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
    count = max(1, -(-size // part_size))
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
        state.parts[missing[index]] = part_id
        state.save()

    try:
        # The md5 is read alongside the parts, in a worker of its own.
        stop = threading.Event()
        md5, _ = yield Gather(
            [_md5_op(path, stop), _gather_parts(ops, config.upload_concurrency, accepted, stop)],
            2,
        )
        now = path.stat()
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
            state.remove()
        raise
    state.remove()
    if upload.file is None:
        raise OpenAIFilesError(
            f"upload {upload.id} completed without a file object (status {upload.status!r})"
        )
    return upload.file


def wants_parts(
    config: Config, file: FileData, use_uploads: bool | None, resume: str | None
) -> Path | None:
    """The path to send through the Uploads API, or None for `POST /files`."""
    is_path = isinstance(file, str | os.PathLike)
    if use_uploads is False:
        if resume is not None:
            raise ValueError("resume= resumes an upload in parts: do not pass use_uploads=False")
        return None
    if not is_path:
        if use_uploads or resume is not None:
            raise TypeError("the Uploads API sends a file from its path: pass the path")
        return None
    path = Path(os.fspath(file))  # type: ignore[arg-type]
    if use_uploads or resume is not None or state_path(path).exists():
        return path
    try:
        return path if path.stat().st_size > config.upload_threshold else None
    except OSError:
        return None  # POST /files says what is wrong with the path


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
    """`Client.upload`: `POST /files`, or the Uploads API for a large path."""
    path = wants_parts(config, file, use_uploads, resume)
    if path is None:
        return (
            yield from _core.upload(
                config, file, purpose=purpose, filename=filename, mime_type=mime_type,
                expires_after=expires_after, progress=progress,
            )
        )  # fmt: skip
    return (
        yield from upload_in_parts(
            config, path, purpose=purpose, filename=filename, mime_type=mime_type,
            expires_after=expires_after, progress=progress, resume=resume,
        )
    )  # fmt: skip
