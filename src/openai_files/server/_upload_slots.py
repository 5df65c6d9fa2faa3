"""Concurrent uploads per API key (`--max-uploads-per-key`).

An upload holds a connection, a quota reservation and a temp file for as long as its body
streams; a key that opens many at once, each trickling its body, takes the slots of every
other tenant (`--max-connections` is shared). A request that streams a body to
POST /v1/files or POST /v1/uploads/{id}/parts takes one of its key's slots once
authenticated, before its body is read, and gives it back when it ends, however it ends;
past the limit it is a 429 at once. The count is kept by each server process: replicas
behind a load balancer each allow the limit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .errors import TooManyUploads


class UploadSlots:
    """How many uploads each key streams now, and at most `limit` each (0: no limit)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._open: dict[str, int] = {}

    @contextlib.contextmanager
    def hold(self, key_id: str) -> Iterator[None]:
        """One slot of `key_id` for the block; `TooManyUploads` when none is free."""
        if not self.limit:
            yield
            return
        count = self._open.get(key_id, 0)
        if count >= self.limit:
            raise TooManyUploads(self.limit)
        self._open[key_id] = count + 1
        try:
            yield
        finally:
            left = self._open[key_id] - 1
            if left:
                self._open[key_id] = left
            else:
                del self._open[key_id]

    def open_uploads(self, key_id: str) -> int:
        """How many uploads `key_id` streams now."""
        return self._open.get(key_id, 0)
