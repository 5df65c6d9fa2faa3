"""What the server tests share: hand-built streamed uploads, listings, the data folder."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Final

import httpx

MiB = 1024 * 1024
BOUNDARY = "openai-files-test-boundary-7d3f0a"
PURPOSE: Final = "evals"  # no format rule and downloads are allowed


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def multipart_parts(filename: str, size: int, purpose: str = PURPOSE) -> tuple[bytes, bytes, int]:
    """The framing around a file part of `size` bytes: (head, tail, Content-Length)."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="purpose"\r\n\r\n'
        f"{purpose}\r\n"
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head, tail, len(head) + size + len(tail)


def multipart_headers(key: str, length: int | None) -> dict[str, str]:
    headers = {**auth(key), "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    if length is not None:
        headers["Content-Length"] = str(length)
    return headers


def streamed_body(head: bytes, chunks: Iterable[bytes], tail: bytes) -> Iterator[bytes]:
    yield head
    yield from chunks
    yield tail


def upload(
    http: httpx.Client,
    key: str,
    content: bytes,
    filename: str,
    *,
    chunked: bool = False,
    purpose: str = PURPOSE,
) -> httpx.Response:
    """POST /v1/files with a hand-built body; `chunked` sends no Content-Length."""
    head, tail, length = multipart_parts(filename, len(content), purpose)
    if chunked:
        body: bytes | Iterator[bytes] = streamed_body(head, [content], tail)
        return http.post("/files", content=body, headers=multipart_headers(key, None))
    return http.post(
        "/files", content=head + content + tail, headers=multipart_headers(key, length)
    )


def list_files(http: httpx.Client, key: str) -> list[dict[str, Any]]:
    response = http.get("/files", params={"limit": 10_000, "order": "asc"}, headers=auth(key))
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["has_more"] is False
    data: list[dict[str, Any]] = page["data"]
    return data


def download(http: httpx.Client, key: str, file_id: str) -> httpx.Response:
    return http.get(f"/files/{file_id}/content", headers=auth(key))


def blob_names(data_dir: Path) -> set[str]:
    """The keys of the committed objects of a local blob store (the file ids)."""
    return {p.name for p in (data_dir / "blobs").glob("*/*")}


def temp_names(data_dir: Path) -> list[str]:
    tmp = data_dir / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


#: Every error test asserts OpenAI's envelope through the one contract helper.
STORAGE_LIMIT = re.compile(r"Organization storage limit exceeded: .+ bytes allowed\.")


def no_such_file(file_id: str) -> str:
    return f"No such File object: {file_id}"


def memory(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            number, unit = value.split()
            assert unit == "kB"
            values[name] = int(number) * 1024
    return values


def reset_peak(pid: int) -> int:
    """Reset the peak RSS to the current RSS (clear_refs 5, Linux >= 4.0); returns it."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    now = memory(pid)
    assert now["VmHWM"] <= now["VmRSS"] + MiB, f"the peak was not reset: {now}"
    return now["VmRSS"]
