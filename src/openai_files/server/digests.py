"""The md5 of an upload's parts, computed as they arrive (when they arrive one after the
other at this server), so that a completion given an md5 need not read the file back."""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from . import settings as S


@dataclasses.dataclass
class Running:
    """The md5 of an upload's parts, in the order they arrived at this server, while each
    arrived after the one before had ended (one at a time, as the official SDK sends)."""

    digest: Any = dataclasses.field(default_factory=lambda: hashlib.md5(usedforsecurity=False))
    part_ids: list[str] = dataclasses.field(default_factory=list)
    busy: bool = False


class RunningDigests:
    """The md5 of the whole file, computed as parts arrive when they arrive one after the
    other, so that a completion with an md5 need not read the file back. Kept per server in
    memory: a part that arrives at another replica, or while another is still streaming,
    leaves a sequence that no longer matches, and completion then reads the parts once."""

    def __init__(self, size: int = S.RUNNING_DIGESTS) -> None:
        self.size = size
        self._by_upload: OrderedDict[str, Running] = OrderedDict()

    def start(self, upload_id: str, parts_before: int) -> Running | None:
        """The running md5 a new part continues, or None when the part cannot (another is
        streaming, or parts reached the upload elsewhere): the upload's md5 is then read
        at completion, and the sequence is dropped."""
        running = self._by_upload.get(upload_id)
        if running is None and parts_before == 0:
            running = self._by_upload[upload_id] = Running()
            while len(self._by_upload) > self.size:
                self._by_upload.popitem(last=False)
        if running is None or running.busy or len(running.part_ids) != parts_before:
            self._by_upload.pop(upload_id, None)
            return None
        self._by_upload.move_to_end(upload_id)
        running.busy = True
        return running

    def pop(self, upload_id: str) -> Running | None:
        return self._by_upload.pop(upload_id, None)

    def md5_of(self, upload_id: str, part_ids: Sequence[str]) -> str | None:
        """The md5 of the parts `part_ids` in this order when this server saw all of them
        arrive in it, one after the other; None otherwise."""
        running = self._by_upload.get(upload_id)
        if running is None or running.busy or running.part_ids != list(part_ids):
            return None
        return str(running.digest.hexdigest())
