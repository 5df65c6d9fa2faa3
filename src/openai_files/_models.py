"""What the client returns: the seed's response, and typed file and upload objects for
`Client`."""

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
