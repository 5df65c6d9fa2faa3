"""The state file of an upload in parts: what a resume needs, kept beside the file sent.

`<name>.openai-upload.json` names the upload, the server, the file as it was (size and
modification time) and the ids of the parts the server accepted. It is rewritten
atomically (and fsynced) after each part and removed once the upload is complete.

These functions do the file's I/O; the operations of `_uploads` never call them directly
but yield them as `Call` effects, which the drivers run (in a worker thread under
`AsyncClient`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
from pathlib import Path

from ._exceptions import UploadResumeError

#: The state file of `path`: beside it, named after it.
STATE_SUFFIX = ".openai-upload.json"
STATE_VERSION = 1


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

    @property
    def part_count(self) -> int:
        """How many parts the file is sent in (one at least, for an empty file)."""
        return max(1, -(-self.size // self.part_size))

    def lapsed(self, now: float) -> bool:
        """Whether the upload is past its `expires_at`: the server takes no more parts."""
        return self.expires_at is not None and now >= self.expires_at

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            state_path(self.file).unlink()
