"""What the client returns: the seed's response, and typed file, upload and batch objects
for `Client`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar


def _stored(data: Mapping[str, Any]) -> dict[str, Any]:
    """The fields a file and an upload share, read from their JSON object."""
    return {
        "id": str(data["id"]),
        "bytes": int(data.get("bytes") or 0),
        "created_at": int(data.get("created_at") or 0),
        "filename": str(data.get("filename") or ""),
        "purpose": str(data.get("purpose") or ""),
    }


def _as_dict(obj: object, keys: Sequence[str]) -> dict[str, Any]:
    return {key: getattr(obj, key) for key in keys}


@dataclasses.dataclass(frozen=True)
class APIResponse:
    """The answer of one of the seed's calls, as the seed describes it.

    Attributes:
        status: The HTTP status.
        mimetype: The content type's mimetype, without parameters (None when not sent).
        headers: Header name (lower case) -> the list of its values.
        data: On 200, the parsed JSON (the bytes for `files_retrieve_content`); on any
            other status, the error body as text.
        error: On an error status with a JSON body, that body parsed (a convenience).
    """

    status: int
    mimetype: str | None
    headers: Mapping[str, list[str]]
    data: Any
    error: Any = None

    @property
    def ok(self) -> bool:
        """True when the status is 200 (HTTP_OK)."""
        return self.status == 200

    @property
    def request_id(self) -> str | None:
        """The server's `x-request-id`, for support requests."""
        values = self.headers.get("x-request-id")
        return values[0] if values else None


@dataclasses.dataclass(frozen=True)
class FileObject:
    """A stored file, as `retrieve` and `upload` return it.

    Example:
        >>> FileObject.from_dict({"id": "file-abc", "bytes": 3, "filename": "a.txt"}).bytes
        3
    """

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    object: str = "file"
    expires_at: int | None = None
    status: str = "processed"
    status_details: str | None = None

    #: The JSON object's keys, in the order the API sends them.
    _KEYS: ClassVar = (
        "id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
        "status_details",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileObject:
        """Build from the JSON object; unknown keys are ignored, missing ones defaulted."""
        return cls(
            **_stored(data),
            object=str(data.get("object") or "file"),
            expires_at=data.get("expires_at"),
            status=str(data.get("status") or "processed"),
            status_details=data.get("status_details"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order the API sends them."""
        return _as_dict(self, self._KEYS)


@dataclasses.dataclass(frozen=True)
class FileList:
    """One page of a listing; `Client.iter_files` follows the pages for you."""

    data: list[FileObject]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
    object: str = "list"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileList:
        files = [FileObject.from_dict(item) for item in data.get("data") or []]
        return cls(
            data=files,
            has_more=bool(data.get("has_more")),
            first_id=data.get("first_id") or (files[0].id if files else None),
            last_id=data.get("last_id") or (files[-1].id if files else None),
            object=str(data.get("object") or "list"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "data": [f.to_dict() for f in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }


@dataclasses.dataclass(frozen=True)
class FileDeleted:
    """The answer to a delete."""

    id: str
    deleted: bool
    object: str = "file"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileDeleted:
        return cls(
            id=str(data["id"]),
            deleted=bool(data.get("deleted")),
            object=str(data.get("object") or "file"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "object": self.object, "deleted": self.deleted}


@dataclasses.dataclass(frozen=True)
class Upload:
    """An upload of the Uploads API, as `POST /uploads` and its calls return it."""

    id: str
    bytes: int
    created_at: int
    expires_at: int
    filename: str
    purpose: str
    status: str
    file: FileObject | None = None
    object: str = "upload"

    _KEYS: ClassVar = (
        "id", "object", "bytes", "created_at", "expires_at", "filename", "purpose", "status",
    )  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Upload:
        file = data.get("file")
        return cls(
            **_stored(data),
            expires_at=int(data.get("expires_at") or 0),
            status=str(data.get("status") or ""),
            file=FileObject.from_dict(file) if isinstance(file, Mapping) else None,
            object=str(data.get("object") or "upload"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            **_as_dict(self, self._KEYS),
            "file": None if self.file is None else self.file.to_dict(),
        }


@dataclasses.dataclass(frozen=True)
class UploadList:
    """A page of pending uploads (`GET /uploads`, an extension of this package's server)."""

    data: list[Upload]
    has_more: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UploadList:
        items = data.get("data") or []
        return cls([Upload.from_dict(item) for item in items], bool(data.get("has_more")))

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [u.to_dict() for u in self.data],
            "has_more": self.has_more,
        }


def _int(value: Any) -> int:
    return int(value or 0)


@dataclasses.dataclass(frozen=True)
class BatchRequestCounts:
    """A batch's requests: how many it holds (known once its input is validated), and how
    many have completed and failed so far."""

    total: int = 0
    completed: int = 0
    failed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BatchRequestCounts:
        data = data or {}
        return cls(_int(data.get("total")), _int(data.get("completed")), _int(data.get("failed")))

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "completed": self.completed, "failed": self.failed}


@dataclasses.dataclass(frozen=True)
class BatchUsage:
    """The tokens a batch's requests used, added up; `cached_tokens` and `reasoning_tokens`
    are the API's `input_tokens_details.cached_tokens` and
    `output_tokens_details.reasoning_tokens` (`to_dict` nests them again)."""

    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> BatchUsage:
        data = data or {}
        inputs = data.get("input_tokens_details") or {}
        outputs = data.get("output_tokens_details") or {}
        return cls(
            input_tokens=_int(data.get("input_tokens")),
            output_tokens=_int(data.get("output_tokens")),
            total_tokens=_int(data.get("total_tokens")),
            cached_tokens=_int(inputs.get("cached_tokens")),
            reasoning_tokens=_int(outputs.get("reasoning_tokens")),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.total_tokens,
        }


@dataclasses.dataclass(frozen=True)
class BatchError:
    """Why a batch failed (one of its `errors`): `line` is the input file's line at fault,
    `param` the parameter, when known."""

    code: str | None = None
    message: str = ""
    param: str | None = None
    line: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchError:
        line = data.get("line")
        return cls(
            code=data.get("code"),
            message=str(data.get("message") or ""),
            param=data.get("param"),
            line=int(line) if isinstance(line, int) else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


#: The states a batch ends in (it changes no more).
BATCH_ENDED = frozenset({"completed", "failed", "expired", "cancelled"})


@dataclasses.dataclass(frozen=True)
class Batch:
    """A batch of the Batch API, as its calls return it: every field of OpenAI's object.

    `status` goes `validating` -> `in_progress` -> `finalizing` -> `completed`, or ends
    `failed` (its input was refused: see `errors`), `expired` (its window passed) or
    `cancelled` (`cancelling` until then); `ended` says it changes no more. The results are
    the file `output_file_id`, the requests that failed the file `error_file_id` (each
    None until there is one).

    Example:
        >>> b = Batch.from_dict({"id": "batch_1", "status": "in_progress",
        ...                      "request_counts": {"total": 3, "completed": 1}})
        >>> (b.request_counts.completed, b.ended)
        (1, False)
    """

    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    status: str
    created_at: int
    object: str = "batch"
    model: str | None = None
    errors: list[BatchError] | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: BatchRequestCounts = dataclasses.field(default_factory=BatchRequestCounts)
    usage: BatchUsage = dataclasses.field(default_factory=BatchUsage)
    metadata: dict[str, str] | None = None

    #: The time stamps, in the order the API sends them.
    _TIMES: ClassVar = (
        "created_at", "in_progress_at", "expires_at", "finalizing_at", "completed_at",
        "failed_at", "expired_at", "cancelling_at", "cancelled_at",
    )  # fmt: skip

    @property
    def ended(self) -> bool:
        """True once the batch is completed, failed, expired or cancelled."""
        return self.status in BATCH_ENDED

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Batch:
        """Build from the JSON object; unknown keys are ignored, missing ones defaulted."""
        errors = data.get("errors")
        items = errors.get("data") if isinstance(errors, Mapping) else None
        metadata = data.get("metadata")
        times = {key: data.get(key) for key in cls._TIMES[1:]}
        return cls(
            id=str(data["id"]),
            endpoint=str(data.get("endpoint") or ""),
            input_file_id=str(data.get("input_file_id") or ""),
            completion_window=str(data.get("completion_window") or ""),
            status=str(data.get("status") or ""),
            created_at=_int(data.get("created_at")),
            object=str(data.get("object") or "batch"),
            model=data.get("model"),
            errors=None if items is None else [BatchError.from_dict(e) for e in items],
            output_file_id=data.get("output_file_id"),
            error_file_id=data.get("error_file_id"),
            request_counts=BatchRequestCounts.from_dict(data.get("request_counts")),
            usage=BatchUsage.from_dict(data.get("usage")),
            metadata=dict(metadata) if isinstance(metadata, Mapping) else None,
            **times,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order the API sends them."""
        errors = None
        if self.errors is not None:
            errors = {"object": "list", "data": [e.to_dict() for e in self.errors]}
        return {
            **_as_dict(self, ("id", "object", "endpoint", "model")),
            "errors": errors,
            **_as_dict(self, ("input_file_id", "completion_window", "status")),
            **_as_dict(self, ("output_file_id", "error_file_id")),
            **_as_dict(self, self._TIMES),
            "request_counts": self.request_counts.to_dict(),
            "usage": self.usage.to_dict(),
            "metadata": self.metadata,
        }


@dataclasses.dataclass(frozen=True)
class BatchList:
    """One page of batches, newest first; the next page starts `after` its `last_id`."""

    data: list[Batch]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
    object: str = "list"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchList:
        batches = [Batch.from_dict(item) for item in data.get("data") or []]
        return cls(
            data=batches,
            has_more=bool(data.get("has_more")),
            first_id=data.get("first_id") or (batches[0].id if batches else None),
            last_id=data.get("last_id") or (batches[-1].id if batches else None),
            object=str(data.get("object") or "list"),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "data": [b.to_dict() for b in self.data],
            "first_id": self.first_id,
            "last_id": self.last_id,
            "has_more": self.has_more,
        }
