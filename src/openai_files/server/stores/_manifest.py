"""Composed objects: an object made of others, in order, by a manifest (no byte copied).

An upload's parts are stored under keys that begin with the key of the file they will
make: `<file key>.<part id>` (`part_key`). Completing the upload writes a manifest, the
list of those keys and their sizes, under the file's key (`BlobStore.compose`); the parts
stay where they are and now belong to the file: reading the file reads across them,
deleting it deletes them. A part key is named (kept by the sweeper) while its own row or
its file's key is named (`owner_of`), so a completed file keeps its parts, and they go
with it.

Each store keeps manifests apart from objects, where no object key can be (`.manifests/`
on S3, `manifests/` beside `blobs/` in a local folder): a client's bytes can never be
taken for a manifest.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence

from ._records import Chunk

#: What separates a file's key from a part's id in a part's key.
SEPARATOR = "."
#: A manifest's version, written in it; another is refused (ValueError).
VERSION = 1


def part_key(file_key: str, part_id: str) -> str:
    """The blob key of a part of the upload whose file will have `file_key`."""
    return f"{file_key}{SEPARATOR}{part_id}"


def owner_of(key: str) -> str | None:
    """The file key a part key belongs to (`part_key`); None for any other key."""
    owner, sep, rest = key.partition(SEPARATOR)
    return owner if sep and owner and rest else None


def composable(key: str, sources: Sequence[tuple[str, int]]) -> bool:
    """Whether `sources` may become `key` by a manifest: every one is a part key of `key`
    (so that naming `key` keeps them). Others (parts written before manifests) are
    copied."""
    return bool(sources) and all(owner_of(name) == key for name, _ in sources)


def encode(sources: Sequence[tuple[str, int]]) -> bytes:
    return json.dumps(
        {"version": VERSION, "parts": [[name, size] for name, size in sources]},
        separators=(",", ":"),
    ).encode()


def decode(data: bytes) -> list[tuple[str, int]]:
    """The (key, size) pairs of a manifest; ValueError for one this code cannot read."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != VERSION:
        raise ValueError("not a manifest of this version")
    parts = [(str(name), int(size)) for name, size in doc["parts"]]
    if any(size < 0 for _, size in parts):
        raise ValueError("a manifest with a negative size")
    return parts


def size_of(parts: Sequence[tuple[str, int]]) -> int:
    return sum(size for _, size in parts)


def pieces(
    parts: Sequence[tuple[str, int]], start: int, end: int | None
) -> list[tuple[str, int, int]]:
    """The (key, start, end) of each part that bytes `[start, end)` of the concatenation of
    `parts` take, in order; parts they take nothing of are left out."""
    total = size_of(parts)
    stop = total if end is None else min(end, total)
    out = []
    at = 0
    for name, size in parts:
        lo, hi = max(start, at), min(stop, at + size)
        if lo < hi:
            out.append((name, lo - at, hi - at))
        at += size
        if at >= stop:
            break
    return out


async def read_across(
    read: Callable[[str, int, int], AsyncIterator[Chunk]],
    parts: Sequence[tuple[str, int]],
    start: int,
    end: int | None,
) -> AsyncIterator[Chunk]:
    """Bytes `[start, end)` of the concatenation of `parts`, each part read by `read(key,
    start, end)` for its own range only, in order."""
    for name, lo, hi in pieces(parts, start, end):
        async for chunk in read(name, lo, hi):
            yield chunk
