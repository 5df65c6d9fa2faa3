"""A file completed from an upload's parts is a manifest over them (no byte copied): its
downloads read across the parts, byte for byte, for any Range (a seeded random loop over
ranges that start and end at, around and between the parts' boundaries); HEAD, ETag and
`If-None-Match` answer as for any file; deleting it, or its expiry, removes every part."""

from __future__ import annotations

import hashlib
import random
import time
from typing import Any

import httpx

from .._inprocess import AppServer
from .._server import Deployment
from .._server import sql as _sql

#: Parts of sizes that put boundaries everywhere: one byte, a few, empty, around 64 KiB
#: (a read chunk) and over a MiB.
SIZES = [1, 7, 0, 65_536, 3, 65_537, 1_048_583, 2, 131_071, 1]
RANGES = 300


def _content(sizes: list[int], seed: bytes) -> list[bytes]:
    out = []
    for i, size in enumerate(sizes):
        block = hashlib.sha256(seed + str(i).encode()).digest()
        out.append((block * (size // len(block) + 1))[:size])
    return out


def _composed(http: httpx.Client, pieces: list[bytes], md5: bool = False) -> dict[str, Any]:
    """The file an upload of `pieces` completes into (its parts sent in reverse order,
    completed in order)."""
    whole = b"".join(pieces)
    r = http.post(
        "/uploads",
        json={
            "filename": "composed.bin",
            "purpose": "vision",
            "bytes": len(whole),
            "mime_type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    uid = r.json()["id"]
    ids: dict[int, str] = {}
    for i in reversed(range(len(pieces))):
        r = http.post(f"/uploads/{uid}/parts", files={"data": ("blob", pieces[i])})
        assert r.status_code == 200, r.text
        ids[i] = r.json()["id"]
    body: dict[str, Any] = {"part_ids": [ids[i] for i in range(len(pieces))]}
    if md5:
        body["md5"] = hashlib.md5(whole).hexdigest()
    r = http.post(f"/uploads/{uid}/complete", json=body)
    assert r.status_code == 200, r.text
    file: dict[str, Any] = r.json()["file"]
    assert file["bytes"] == len(whole)
    return file


def _keys(server: AppServer) -> list[str]:
    blobs = server.app.state.service.blobs

    async def run() -> list[str]:
        return [k async for k in blobs.list_object_keys(time.time() + 60)]

    return list(server.portal.call(run))


def _parts_of(server: AppServer, key: str) -> list[tuple[str, int]] | None:
    result: list[tuple[str, int]] | None = server.portal.call(
        server.app.state.service.blobs.parts_of, key
    )
    return result


def test_a_completed_upload_is_its_parts_in_order(server: AppServer, api_key: str) -> None:
    pieces = _content(SIZES, b"order")
    whole = b"".join(pieces)
    with server.http(api_key) as http:
        file = _composed(http, pieces, md5=True)
        # The store holds a manifest of the parts, in the order given: nothing was copied.
        parts = _parts_of(server, file["id"])
        assert parts is not None
        assert [size for _, size in parts] == SIZES
        assert all(name.startswith(file["id"] + ".part_") for name, _ in parts)
        r = http.get(f"/files/{file['id']}/content")
        assert r.status_code == 200 and r.content == whole
        assert r.headers["content-length"] == str(len(whole))
        assert r.headers["etag"] == f'"{file["id"]}"'
        head = http.head(f"/files/{file['id']}/content")
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(whole))
        assert head.headers["etag"] == r.headers["etag"]
        r = http.get(f"/files/{file['id']}/content", headers={"if-none-match": r.headers["etag"]})
        assert r.status_code == 304
        # A file sent in one request stays one object: no manifest.
        r = http.post("/files", files={"file": ("one.bin", whole)}, data={"purpose": "vision"})
        assert r.status_code == 200, r.text
        assert _parts_of(server, r.json()["id"]) is None


def _expected(header: str, size: int) -> tuple[int, int]:
    """`[start, end)` a `bytes=` range selects (RFC 9110), for ranges that are satisfiable."""
    first, _, last = header.removeprefix("bytes=").partition("-")
    if first == "":
        return max(0, size - int(last)), size
    return int(first), min(size, int(last) + 1) if last else size


def test_every_range_across_part_boundaries_is_byte_exact(server: AppServer, api_key: str) -> None:
    pieces = _content(SIZES, b"ranges")
    whole = b"".join(pieces)
    size = len(whole)
    boundaries = [0]
    for piece in pieces:
        boundaries.append(boundaries[-1] + len(piece))
    rng = random.Random(20261208)

    def position() -> int:
        # Near a boundary most of the time (on it, a byte before or after), else anywhere.
        if rng.random() < 0.7:
            return min(size - 1, max(0, rng.choice(boundaries) + rng.choice((-1, 0, 1))))
        return rng.randrange(size)

    with server.http(api_key) as http:
        file = _composed(http, pieces)
        url = f"/files/{file['id']}/content"
        for _ in range(RANGES):
            kind = rng.random()
            a, b = sorted((position(), position()))
            if kind < 0.7:
                header = f"bytes={a}-{b}"
            elif kind < 0.85:
                header = f"bytes={a}-"
            else:
                header = f"bytes=-{rng.randrange(1, size + 10)}"
            start, end = _expected(header, size)
            r = http.get(url, headers={"range": header})
            assert r.status_code == 206, (header, r.text)
            assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{size}", header
            assert r.content == whole[start:end], header
        # Past the end: 416, as for any file.
        assert http.get(url, headers={"range": f"bytes={size}-"}).status_code == 416

    # The store's own reads, the same ranges without HTTP (every offset pair at the
    # boundaries, and random ones).
    blobs = server.app.state.service.blobs

    async def read(start: int, end: int) -> bytes:
        return b"".join([bytes(c) async for c in blobs.read(file["id"], start, end)])

    pairs = [(a, b) for a in boundaries for b in boundaries if a <= b]
    for _ in range(50):
        a, b = sorted((rng.randrange(size + 1), rng.randrange(size + 1)))
        pairs.append((a, b))
    for start, end in pairs:
        assert server.portal.call(read, start, end) == whole[start:end], (start, end)


def test_deleting_a_composed_file_removes_every_part(server: AppServer, api_key: str) -> None:
    pieces = _content([5, 70_000, 3], b"delete")
    with server.http(api_key) as http:
        file = _composed(http, pieces)
        ours = [k for k in _keys(server) if k.startswith(file["id"])]
        assert len(ours) == 1 + len(pieces)  # the manifest's key and each part's
        assert http.delete(f"/files/{file['id']}").status_code == 200
        assert not [k for k in _keys(server) if k.startswith(file["id"])]
        assert http.get(f"/files/{file['id']}/content").status_code == 404


def test_the_sweeper_keeps_a_composed_files_parts_and_takes_them_with_it(
    server: AppServer, api_key: str, deployment: Deployment
) -> None:
    """The parts are named while their file is (the sweep with no grace leaves them); once
    the file expires, its parts and manifest go."""
    pieces = _content([10, 20, 30], b"sweep")
    with server.http(api_key) as http:
        file = _composed(http, pieces)
        server.portal.call(server.app.state.service.sweep, 0.0)
        assert http.get(f"/files/{file['id']}/content").content == b"".join(pieces)
        assert len([k for k in _keys(server) if k.startswith(file["id"])]) == 4
        deployment.expire(server, file["id"], int(time.time()) - 1)
        counts = server.portal.call(server.app.state.service.sweep, 0.0)
        assert counts["expired"] >= 1
        assert not [k for k in _keys(server) if k.startswith(file["id"])]
        assert _sql(server, "SELECT COUNT(*) FROM files WHERE id = ?", file["id"]) == 0


def test_orphaned_parts_of_a_deleted_file_are_swept(server: AppServer, api_key: str) -> None:
    """A delete cut short (the row gone, the bytes not): the sweeper removes the parts and
    the manifest, which no row names any more."""
    pieces = _content([10, 20], b"orphans")
    with server.http(api_key) as http:
        file = _composed(http, pieces)
        # The row only, as a delete killed before it removed the bytes leaves it.
        _sql(server, "DELETE FROM files WHERE id = ?", file["id"])
        assert [k for k in _keys(server) if k.startswith(file["id"])]
        server.portal.call(server.app.state.service.sweep, 0.0)
        assert not [k for k in _keys(server) if k.startswith(file["id"])]


def test_a_part_sent_but_not_given_is_removed_at_completion(
    server: AppServer, api_key: str
) -> None:
    """The parts given add up to the upload's bytes, so a part left out holds none: it is
    no one's once the upload is completed, and goes then (not with the file)."""
    with server.http(api_key) as http:
        r = http.post(
            "/uploads",
            json={"filename": "a.bin", "purpose": "vision", "bytes": 6,
                  "mime_type": "application/octet-stream"},
        )  # fmt: skip
        uid = r.json()["id"]
        given = http.post(f"/uploads/{uid}/parts", files={"data": ("b", b"abcdef")}).json()["id"]
        left = http.post(f"/uploads/{uid}/parts", files={"data": ("b", b"")}).json()["id"]
        r = http.post(f"/uploads/{uid}/complete", json={"part_ids": [given]})
        assert r.status_code == 200, r.text
        file_id = r.json()["file"]["id"]
        keys = _keys(server)
        assert f"{file_id}.{given}" in keys and f"{file_id}.{left}" not in keys
        assert http.get(f"/files/{file_id}/content").content == b"abcdef"
