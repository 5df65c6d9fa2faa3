"""Client-side work of the benchmarks, each in a process of its own; prints one JSON line.

python -m bench._worker upload BASE_URL KEY PATH
python -m bench._worker download BASE_URL KEY FILE_ID OUT [durable]
python -m bench._worker sdk-upload BASE_URL KEY PATH
python -m bench._worker latency BASE_URL KEY COUNT PATH [PATH ...]
python -m bench._worker socket-send PORT SIZE
python -m bench._worker socket-file SIZE OUT
python -m bench._worker s3-put URL PATH KEY | s3-get URL KEY OUT | s3-copy URL SRC DST
python -m bench._worker upload-parts BASE_URL KEY PATH PART_BYTES PARALLEL
python -m bench._worker upload-complete BASE_URL KEY UPLOAD_ID PART_IDS MD5|-
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
SELF = os.getpid()


def _kib(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def measure(fn: Callable[[], Any]) -> dict[str, Any]:
    """Time `fn` and the growth of this process's peak RSS while it runs."""
    Path("/proc/self/clear_refs").write_text("5")
    base = _kib("VmRSS")
    start = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rss_growth_kib": max(0, _kib("VmHWM") - base), "result": result}


def cmd_upload(base_url: str, key: str, path: str) -> dict[str, Any]:
    from openai_files import Client

    with Client(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.list(limit=1)  # warm: connection and imports
        out = measure(lambda: client.upload(path, purpose="vision").id)
    return out


def cmd_download(
    base_url: str, key: str, file_id: str, dest: str, durable: str = ""
) -> dict[str, Any]:
    from openai_files import Client

    with Client(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.retrieve(file_id)
        out = measure(lambda: client.download(file_id, dest, durable=durable == "durable"))
    os.unlink(dest)
    return out


def cmd_sdk_upload(base_url: str, key: str, path: str) -> dict[str, Any]:
    import openai

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.files.list(limit=1)
        out = measure(lambda: client.files.create(file=Path(path), purpose="vision").id)
    return out


def cmd_latency(base_url: str, key: str, count: str, *paths: str) -> dict[str, Any]:
    import httpx

    results: dict[str, list[float]] = {}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as http:
        for path in paths:
            for _ in range(5):
                http.get(path).raise_for_status()  # warm
            samples = []
            for _ in range(int(count)):
                start = time.perf_counter()
                http.get(path).raise_for_status()
                samples.append((time.perf_counter() - start) * 1000)
            results[path] = samples
    return {"ms": results}


def cmd_socket_file(size: str, dest: str, source: str = "", durable: str = "") -> dict[str, Any]:
    """The reference of row 2: SIZE bytes over a loopback TCP socket into a file (page
    cache, no fsync), Python to Python: `recv_into` a 1 MiB buffer, `os.write` from it.

    With SOURCE and `durable`, row 1's floor: the sender reads the file SOURCE, and the
    file is fsynced before the clock stops (an upload's copies without HTTP)."""
    total = int(size)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        sender = subprocess.Popen(
            [sys.executable, "-m", "bench._worker", "socket-send", str(port), size, source]
        )
        conn, _ = listener.accept()
        view = memoryview(bytearray(MiB))
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

        def receive() -> int:
            got = 0
            while got < total:
                n = conn.recv_into(view)
                if not n:
                    break
                os.write(fd, view[:n])
                got += n
            if durable:
                os.fsync(fd)
            return got

        try:
            out = measure(receive)
        finally:
            os.close(fd)
            conn.close()
            sender.wait(60)
    os.unlink(dest)
    return out


def cmd_socket_send(port: str, size: str, source: str = "") -> dict[str, Any]:
    """Send SIZE bytes to PORT: from memory, or read from the file SOURCE a MiB at a time."""
    block = memoryview(os.urandom(MiB))
    left = int(size)
    with socket.create_connection(("127.0.0.1", int(port))) as conn:
        if source:
            with open(source, "rb", buffering=0) as fh:
                buffer = memoryview(bytearray(MiB))
                while left:
                    n = fh.readinto(buffer)
                    if not n:
                        break
                    conn.sendall(buffer[:n])
                    left -= n
            return {}
        while left:
            n = min(left, MiB)
            conn.sendall(block[:n])
            left -= n
    return {}


def _s3(url: str) -> Any:
    from openai_files.server.stores.s3 import S3BlobStore

    return S3BlobStore(url).store


def cmd_s3_put(url: str, path: str, key: str) -> dict[str, Any]:
    """The reference of row 8: obstore's own put of the file, to the same SeaweedFS."""
    import obstore

    store = _s3(url)
    obstore.put(store, "warm", b"x")
    return measure(lambda: obstore.put(store, key, Path(path)))


def cmd_s3_get(url: str, key: str, dest: str) -> dict[str, Any]:
    """The reference of row 8's download: obstore's own get into a file, left to the page
    cache as our client's download is (neither fsyncs by default)."""
    import obstore

    store = _s3(url)

    def get() -> int:
        got = 0
        with open(dest, "wb") as fh:
            for chunk in obstore.get(store, key).stream(min_chunk_size=MiB):
                fh.write(chunk)
                got += len(chunk)
        return got

    out = measure(get)
    os.unlink(dest)
    return out


def cmd_s3_copy(url: str, src: str, dst: str) -> dict[str, Any]:
    """A reference of row 9: S3's own copy of one object (CopyObject, server-side); then
    both objects are removed."""
    import obstore

    store = _s3(url)
    obstore.put(store, "warm", b"x")
    out = measure(lambda: obstore.copy(store, src, dst))
    obstore.delete(store, [src, dst])
    return out


def cmd_upload_parts(
    base_url: str, key: str, path: str, part_bytes: str, parallel: str
) -> dict[str, Any]:
    """Row 9: create an upload and send PATH's parts, PARALLEL at a time, with the official
    SDK's `uploads.create` and `uploads.parts.create`; the upload's id and part ids in order."""
    from concurrent.futures import ThreadPoolExecutor

    import openai

    size, step = os.path.getsize(path), int(part_bytes)
    offsets = list(range(0, size, step))

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=600) as client:
        client.files.list(limit=1)  # warm: connection and imports

        def send(upload_id: str, offset: int) -> str:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(step)
            return client.uploads.parts.create(upload_id, data=data).id

        def run() -> dict[str, Any]:
            upload = client.uploads.create(
                bytes=size,
                filename=os.path.basename(path),
                mime_type="application/octet-stream",
                purpose="vision",
            )
            with ThreadPoolExecutor(int(parallel)) as pool:
                part_ids = list(pool.map(lambda at: send(upload.id, at), offsets))
            return {"upload_id": upload.id, "part_ids": part_ids}

        return measure(run)


def cmd_upload_complete(
    base_url: str, key: str, upload_id: str, part_ids: str, md5: str
) -> dict[str, Any]:
    """Row 9: complete an upload (the parts joined in the store; with an md5, read once)."""
    import openai

    with openai.OpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=1800) as client:
        client.files.list(limit=1)

        def run() -> str:
            done = client.uploads.complete(
                upload_id, part_ids=part_ids.split(","), md5=openai.omit if md5 == "-" else md5
            )
            if done.status != "completed" or done.file is None:
                raise RuntimeError(f"upload {upload_id} not completed: {done.status}")
            return done.file.id

        return measure(run)


COMMANDS: dict[str, Callable[..., dict[str, Any]]] = {
    "upload": cmd_upload,
    "download": cmd_download,
    "sdk-upload": cmd_sdk_upload,
    "latency": cmd_latency,
    "socket-send": cmd_socket_send,
    "socket-file": cmd_socket_file,
    "s3-put": cmd_s3_put,
    "s3-get": cmd_s3_get,
    "s3-copy": cmd_s3_copy,
    "upload-parts": cmd_upload_parts,
    "upload-complete": cmd_upload_complete,
}


def main() -> None:
    name, *args = sys.argv[1:]
    print(json.dumps(COMMANDS[name](*args)))


if __name__ == "__main__":
    main()
