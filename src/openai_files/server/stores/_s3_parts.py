"""The compose planner: which parts of a multipart upload concatenate some objects, each
copied by S3 (UploadPartCopy) or read and sent, within S3's limits on a part. No I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from ..settings import S3_MAX_PART_BYTES, S3_MIN_PART_BYTES


@dataclasses.dataclass(frozen=True)
class Piece:
    """Bytes `[start, end)` of the object `key`."""

    key: str
    start: int
    end: int


@dataclasses.dataclass(frozen=True)
class Part:
    """One part of a composed object: a server-side copy of one piece (`copy`), or pieces
    read and sent as one body."""

    copy: bool
    pieces: tuple[Piece, ...]

    @property
    def size(self) -> int:
        return sum(piece.end - piece.start for piece in self.pieces)


def plan_parts(
    sources: Sequence[tuple[str, int]],
    min_part: int = S3_MIN_PART_BYTES,
    max_part: int = S3_MAX_PART_BYTES,
) -> list[Part]:
    """The parts of a multipart upload that concatenates `sources` (key, size), in order.

    A source of at least `min_part` is copied server-side (split into near-equal copies
    when over `max_part`); runs of smaller sources are merged into sent parts of at least
    `min_part`; a run that falls short takes the head of the next big source (or all of it
    when what is left of it would fall short). A sent part is under 2 x `min_part`; only the
    last part may be under `min_part`."""
    parts: list[Part] = []
    pending: list[Piece] = []
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending_bytes
        parts.append(Part(False, tuple(pending)))
        pending.clear()
        pending_bytes = 0

    for key, size in sources:
        if size <= 0:
            continue
        start = 0
        if size >= min_part and pending_bytes:
            need = min_part - pending_bytes
            if size - need < min_part:
                pending.append(Piece(key, 0, size))
                flush()
                continue
            pending.append(Piece(key, 0, need))
            flush()
            start = need
        left = size - start
        if left >= min_part:
            count = -(-left // max_part)
            step = -(-left // count)
            for at in range(start, size, step):
                parts.append(Part(True, (Piece(key, at, min(at + step, size)),)))
        else:
            pending.append(Piece(key, start, size))
            pending_bytes += left
            if pending_bytes >= min_part:
                flush()
    if pending:
        flush()
    return parts
