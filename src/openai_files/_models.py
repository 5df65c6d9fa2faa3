"""What the client returns: the seed's response, and typed file objects for `Client`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileObject:
        """Build from the JSON object; unknown keys are ignored, missing ones defaulted."""
        return cls(
            id=str(data["id"]),
            bytes=int(data.get("bytes") or 0),
            created_at=int(data.get("created_at") or 0),
            filename=str(data.get("filename") or ""),
            purpose=str(data.get("purpose") or ""),
            object=str(data.get("object") or "file"),
            expires_at=data.get("expires_at"),
            status=str(data.get("status") or "processed"),
            status_details=data.get("status_details"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON object, keys in the order the API sends them."""
        return {
            "id": self.id,
            "object": self.object,
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": self.status,
            "status_details": self.status_details,
        }


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
