"""The types a caller hands to uploads and downloads, and what an upload was asked for."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import IO

#: `progress(done, total)`: bytes sent or received so far, and the total when known.
ProgressCallback = Callable[[int, "int | None"], None]

#: What an upload accepts: bytes, a path, a binary file object or an iterable of bytes.
FileData = bytes | bytearray | memoryview | str | os.PathLike[str] | IO[bytes] | Iterable[bytes]


@dataclasses.dataclass(frozen=True)
class UploadArgs:
    """What an upload was asked for besides its bytes (see `Client.upload`)."""

    purpose: str
    filename: str | None = None
    mime_type: str | None = None
    expires_after: int | None = None
    progress: ProgressCallback | None = None
    #: Through the Uploads API: True always (a path), False never, None when large.
    use_uploads: bool | None = None
    #: The id of the upload expected in the state file, to resume.
    resume: str | None = None
