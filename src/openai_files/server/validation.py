"""Content validation: a file's bytes checked as they stream in, never held whole.

`purposes.validator_for(purpose, strict=...)` makes a `Validator` for one file (None when
the purpose and mode check nothing); it is fed the bytes in order (`feed`), then told the file ended
(`finish`). Either raises `InvalidRequest` (param `file`) naming the first bad line (1-based)
or byte offset, and why. `check_stream` runs one over an async stream of chunks (a stored
file read back, the parts of an upload).

Default mode, OpenAI's check at upload: a `fine-tune` or `batch` file is JSON Lines where
every line that is not blank is a JSON object (a dictionary), in OpenAI's words. Strict mode
also refuses what the job would refuse later (the batch request shape, fine-tuning example
shapes, image types); its messages are ours. docs/api.md ("Content validation") lists both.

Memory is bounded: one line at a time (at most `MAX_LINE_BYTES`, and at most
`MAX_LINE_VALUES` JSON values, counted before the line is parsed), and for a batch file a
16-byte digest per `custom_id`, of at most `BATCH_MAX_REQUESTS` lines. A validator does
CPU work for as long as a line takes: the server feeds it from a worker thread, and no
single step of it (a count, a parse) holds the interpreter for long.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Generator
from typing import Any

import anyio

from . import _json
from . import settings as S
from .batch_input import BATCH_ENDPOINTS
from .errors import InvalidRequest
from .settings import (
    BATCH_MAX_BYTES,
    BATCH_MAX_REQUESTS,
    FINE_TUNE_MIN_EXAMPLES,
    MAX_LINE_BYTES,
    MAX_LINE_VALUES,
)

FINE_TUNE_ROLES = ("system", "developer", "user", "assistant", "tool")
#: OpenAI's answer to a line that is not a JSON object (its own words, then a hint).
NOT_A_DICTIONARY = (
    "Expected file to have JSONL format, where every line is a JSON dictionary. "
    "Line {line} is not a dictionary (HINT: line starts with: {hint})."
)
#: The bytes a validator is fed: a request's chunk, a stored object's, or a piece of one.
Chunk = bytes | memoryview
#: A running hash (`hashlib.md5()`) fed the same bytes as a validator.
Digest = Any
_BLANK = re.compile(rb"[ \t\r\n]*")


def refuse(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="file")


def _hint(raw: bytes) -> str:
    """What OpenAI's hint shows: the line's first four characters (or, when they are not
    UTF-8, the first four bytes as Python writes bytes), then `...`; characters that would
    not show (a byte order mark, a control character) are escaped."""
    try:
        head = raw[:16].decode("utf-8", errors="strict")[:4]
    except UnicodeDecodeError as exc:
        if exc.start >= 4:
            head = raw[: exc.start].decode("utf-8")[:4]
        else:
            return f'"{raw[:4]!r}..."'
    shown = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in head)
    return f'"{shown}..."'


class Validator:
    """Checks one file's bytes, fed in order. `feed` and `finish` raise InvalidRequest."""

    def feed(self, chunk: bytes | memoryview) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError


class JsonLinesValidator(Validator):
    """Every line that is not blank is a JSON object (OpenAI's check). Lines end at `\\n`
    (a `\\r` before it is JSON whitespace); the last may lack one; blank lines are skipped
    but counted, so that line numbers are those an editor shows."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self.partial = bytearray()  # the line being received, without its `\n`
        self.line = 0  # lines ended so far
        self.offset = 0  # bytes fed so far

    def feed(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk)
        self.offset += len(data)
        self.on_bytes(self.offset)
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            if self.partial:  # checked where it is: a long line is not copied
                self._grow(end - start)
                self.partial += data[start:end]
                raw: bytes | bytearray = self.partial
            else:
                raw = data[start:end]
                self._check_length(len(raw))
            self.line += 1
            try:
                self._line(raw)
            finally:
                self.partial.clear()
            start = end + 1
        if start < len(data):
            self._grow(len(data) - start)
            self.partial += data[start:]

    def finish(self) -> None:
        if self.partial:
            self.line += 1
            try:
                self._line(self.partial)
            finally:
                self.partial.clear()
        self.at_end()

    def _grow(self, more: int) -> None:
        self._check_length(len(self.partial) + more)

    def _check_length(self, size: int) -> None:
        if size > self.max_line_bytes:
            raise refuse(
                f"Line {self.line + 1} is longer than {self.max_line_bytes} bytes, the longest "
                "line this server reads; split the example or request."
            )

    def _line(self, raw: bytes | bytearray) -> None:
        blank = _BLANK.match(raw)
        assert blank is not None  # it matches the empty string
        first = blank.end()
        if first == len(raw):
            return
        value = None
        if raw[first] == ord("{"):  # else not an object, whatever follows
            if _json.more_values_than(raw, MAX_LINE_VALUES):
                raise refuse(
                    f"Line {self.line} holds more than {MAX_LINE_VALUES} JSON values (keys "
                    "count too), the most this server reads in one line; split the example "
                    "or request."
                )
            with contextlib.suppress(UnicodeDecodeError, ValueError, RecursionError):
                value = _json.loads(raw.decode("utf-8"))
        if not isinstance(value, dict):
            raise refuse(NOT_A_DICTIONARY.format(line=self.line, hint=_hint(bytes(raw[:16]))))
        self.check(value)

    # Strict checks: hooks of the subclasses.
    def on_bytes(self, total: int) -> None:
        """`total` bytes have arrived."""

    def check(self, obj: dict[str, Any]) -> None:
        """A line (`self.line`) that is a JSON object."""

    def at_end(self) -> None:
        """The file has ended."""


def _kind(value: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "null" if value is None else "a number"
    )


class BatchValidator(JsonLinesValidator):
    """Strict `batch`: each line a request OpenAI's Batch API runs (`custom_id` unique,
    `method` POST, `url` one of BATCH_ENDPOINTS and the same on every line, `body` an
    object), at most BATCH_MAX_REQUESTS lines and BATCH_MAX_BYTES bytes."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes)
        self.requests = 0
        self.url: tuple[str, int] | None = None  # the first line's url, and that line
        self.ids: dict[bytes, int] = {}  # digest of each custom_id -> its line

    def _bad(self, why: str) -> InvalidRequest:
        return refuse(f"Line {self.line} is not a valid batch request: {why}.")

    def on_bytes(self, total: int) -> None:
        if total > BATCH_MAX_BYTES:
            raise refuse(
                f"The batch file is larger than {BATCH_MAX_BYTES} bytes (200 MB), the most "
                f"the Batch API reads (byte {BATCH_MAX_BYTES}); split it into several batches."
            )

    def check(self, obj: dict[str, Any]) -> None:
        self.requests += 1
        if self.requests > BATCH_MAX_REQUESTS:
            raise refuse(
                f"Line {self.line} is request {self.requests}: a batch file holds at most "
                f"{BATCH_MAX_REQUESTS} requests; split it into several batches."
            )
        custom_id = obj.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            raise self._bad(f"'custom_id' must be a non-empty string, got {_kind(custom_id)}")
        digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16)
        first = self.ids.setdefault(digest.digest(), self.line)
        if first != self.line:
            raise self._bad(
                f"'custom_id' {custom_id[:100]!r} is already used by line {first}; each "
                "request needs its own"
            )
        method = obj.get("method")
        if method != "POST":
            shown = repr(method[:20]) if isinstance(method, str) else _kind(method)
            raise self._bad(f"'method' must be 'POST', got {shown}")
        url = obj.get("url")
        if url not in BATCH_ENDPOINTS:
            shown = repr(url[:100]) if isinstance(url, str) else _kind(url)
            raise self._bad(f"'url' must be one of {', '.join(BATCH_ENDPOINTS)}, got {shown}")
        assert isinstance(url, str)
        if self.url is None:
            self.url = (url, self.line)
        elif url != self.url[0]:
            raise self._bad(
                f"'url' is {url!r} but line {self.url[1]} has {self.url[0]!r}; every "
                "request of a batch goes to the same endpoint"
            )
        if not isinstance(obj.get("body"), dict):
            raise self._bad(f"'body' must be an object, got {_kind(obj.get('body'))}")

    def at_end(self) -> None:
        if self.requests == 0:
            raise refuse("The batch file has no request; add one JSON request per line.")


_KINDS = {"chat": "a chat", "preference": "a preference", "completion": "a prompt-completion"}


class FineTuneValidator(JsonLinesValidator):
    """Strict `fine-tune`: each line one example of the kind of the first: chat
    (`messages`), preference (`input`, `preferred_output`, `non_preferred_output`) or
    prompt-completion (`prompt`, `completion`); at least FINE_TUNE_MIN_EXAMPLES."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        super().__init__(max_line_bytes)
        self.examples = 0
        self.kind: tuple[str, int] | None = None  # the first example's kind, and its line

    def _bad(self, why: str) -> InvalidRequest:
        return refuse(f"Line {self.line} is not a valid fine-tuning example: {why}.")

    def _messages(self, value: Any, where: str) -> None:
        if not isinstance(value, list) or not value:
            raise self._bad(f"'{where}' must be a non-empty array of messages")
        for i, message in enumerate(value):
            at = f"{where}[{i}]"
            if not isinstance(message, dict):
                raise self._bad(f"'{at}' must be an object, got {_kind(message)}")
            role = message.get("role")
            if role not in FINE_TUNE_ROLES:
                shown = repr(role[:40]) if isinstance(role, str) else _kind(role)
                raise self._bad(
                    f"'{at}.role' must be one of {', '.join(FINE_TUNE_ROLES)}, got {shown}"
                )
            calls = role == "assistant" and ("tool_calls" in message or "function_call" in message)
            if "content" not in message and not calls:
                raise self._bad(f"'{at}' has no 'content'")

    def check(self, obj: dict[str, Any]) -> None:
        self.examples += 1
        if "messages" in obj:
            kind = "chat"
            self._messages(obj["messages"], "messages")
            if not any(m.get("role") == "assistant" for m in obj["messages"]):
                raise self._bad("'messages' has no 'assistant' message to learn from")
        elif "input" in obj:
            kind = "preference"
            given = obj["input"]
            if not isinstance(given, dict):
                raise self._bad(f"'input' must be an object with 'messages', got {_kind(given)}")
            self._messages(given.get("messages"), "input.messages")
            for name in ("preferred_output", "non_preferred_output"):
                self._messages(obj.get(name), name)
        elif "prompt" in obj or "completion" in obj:
            kind = "completion"
            for name in ("prompt", "completion"):
                if not isinstance(obj.get(name), str):
                    raise self._bad(f"'{name}' must be a string, got {_kind(obj.get(name))}")
        else:
            raise self._bad(
                "expected 'messages' (chat), 'input' with 'preferred_output' and "
                "'non_preferred_output' (preference), or 'prompt' and 'completion'"
            )
        if self.kind is None:
            self.kind = (kind, self.line)
        elif kind != self.kind[0]:
            raise self._bad(
                f"it is {_KINDS[kind]} example but line {self.kind[1]} is "
                f"{_KINDS[self.kind[0]]} example; a file holds one kind"
            )

    def at_end(self) -> None:
        if self.examples < FINE_TUNE_MIN_EXAMPLES:
            raise refuse(
                f"The file has {self.examples} training example(s); fine-tuning needs at "
                f"least {FINE_TUNE_MIN_EXAMPLES}, one per line."
            )


_IMAGE_TYPES = "PNG, JPEG, WEBP or non-animated GIF"


class _Refused(Exception):
    def __init__(self, offset: int, why: str) -> None:
        super().__init__(why)
        self.offset = offset
        self.why = why


class ImageValidator(Validator):
    """Strict `vision`: a PNG, JPEG, WEBP or GIF by its first bytes; a GIF with more than one
    image (a frame) is animated and refused, whatever its extensions say. A GIF is followed
    block by block, skipping image data, holding at most 768 bytes."""

    def __init__(self) -> None:
        self.head = bytearray()  # the first 12 bytes
        self.gif: Generator[int, bytes, None] | None = None
        self.need = 0
        self.buf = bytearray()
        self.offset = 0  # of the first byte in `buf`
        self.frames = 0
        self.done = False

    def _refuse(self, offset: int, why: str) -> InvalidRequest:
        return refuse(f"The file is not a {_IMAGE_TYPES} image: {why} (byte offset {offset}).")

    def feed(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk)
        if len(self.head) < 12:
            take = data[: 12 - len(self.head)]
            self.head += take
            self.buf += take
            data = data[len(take) :]
            if len(self.head) < 12:
                return
            self._start()
        if self.gif is not None and not self.done:
            self.buf += data
            self._run()

    def _start(self) -> None:
        head = bytes(self.head)
        if head.startswith((b"GIF87a", b"GIF89a")):
            self.gif = self._gif_blocks()
            self.need = next(self.gif)
        elif not (
            head.startswith(b"\x89PNG\r\n\x1a\n")
            or head.startswith(b"\xff\xd8\xff")
            or (head.startswith(b"RIFF") and head[8:12] == b"WEBP")
        ):
            raise self._refuse(0, f"it starts with {head[:8]!r}")

    def _run(self) -> None:
        assert self.gif is not None
        while len(self.buf) >= self.need:
            piece = bytes(self.buf[: self.need])
            del self.buf[: self.need]
            at = self.offset
            self.offset += len(piece)
            try:
                self.need = self.gif.send(piece)
            except StopIteration:
                self.done = True
                self.buf.clear()
                return
            except _Refused as exc:
                raise self._refuse(at + exc.offset, exc.why) from None

    def _gif_blocks(self) -> Generator[int, bytes, None]:
        """Asks for byte counts (yield n), gets them; returns at the trailer."""
        header = yield 13  # signature and logical screen descriptor
        if header[10] & 0x80:
            yield 3 * 2 ** ((header[10] & 7) + 1)  # global color table
        while True:
            introducer = (yield 1)[0]
            if introducer == 0x3B:  # trailer
                return
            if introducer == 0x2C:  # image descriptor: one frame
                self.frames += 1
                if self.frames > 1:
                    raise _Refused(0, "it is an animated GIF (a second image)")
                descriptor = yield 9
                if descriptor[8] & 0x80:
                    yield 3 * 2 ** ((descriptor[8] & 7) + 1)  # local color table
                yield 1  # LZW minimum code size
            elif introducer == 0x21:  # extension
                yield 1  # its label
            else:
                raise _Refused(0, f"a GIF block starts with byte {introducer:#04x}")
            while size := (yield 1)[0]:  # data sub-blocks, up to a 0 size
                yield size

    def finish(self) -> None:
        if len(self.head) < 12:
            raise self._refuse(0, f"it has only {len(self.head)} bytes")
        if self.gif is not None and self.frames == 0:
            raise self._refuse(self.offset + len(self.buf), "the GIF has no image")


async def feed(validator: Validator | None, data: Chunk, digest: Digest | None = None) -> None:
    """Feed `validator` (and `digest`, when given) the next bytes of a file, off the event
    loop: in a worker thread, at most `VALIDATION_PIECE_BYTES` at a time. The one policy
    of both upload paths, as the bytes arrive and when stored bytes are read back."""
    if validator is None and digest is None:
        return
    size = S.VALIDATION_PIECE_BYTES
    view = memoryview(data) if len(data) > size else None  # else fed as it is, not copied
    for start in range(0, len(data), size):
        piece = data if view is None else view[start : start + size]
        if digest is not None and validator is not None:
            await anyio.to_thread.run_sync(_take, validator, digest, piece)
        elif validator is not None:
            await anyio.to_thread.run_sync(validator.feed, piece)
        elif digest is not None:
            await anyio.to_thread.run_sync(digest.update, piece)


def _take(validator: Validator, digest: Digest, piece: Chunk) -> None:
    digest.update(piece)
    validator.feed(piece)


async def finish(validator: Validator | None) -> None:
    """Tell `validator` the file has ended (raises on refusal), in a worker thread: the
    last line is parsed now."""
    if validator is not None:
        await anyio.to_thread.run_sync(validator.finish)


async def check_stream(
    validator: Validator | None,
    chunks: AsyncIterator[Chunk],
    digest: Digest | None = None,
    *,
    ahead: int = 0,
) -> None:
    """Feed `validator` (and `digest`) a whole file from `chunks`, then finish it (raises on
    refusal), as `feed` does: off the event loop, in bounded pieces. With `ahead`, up to
    that many chunks are read while the one before is checked (reading and hashing then
    overlap, each in its own thread)."""
    if not ahead:
        async for chunk in chunks:
            await feed(validator, chunk, digest)
        await finish(validator)
        return
    send, receive = anyio.create_memory_object_stream[Chunk](ahead)
    # Errors are carried out of the task group by hand, so that they reach the caller as
    # they were raised (not in an exception group).
    failed: list[Exception] = []

    async def pump() -> None:
        try:
            async with send:
                async for chunk in chunks:
                    await send.send(chunk)
        except Exception as exc:  # the reader's error (a missing part, a store down)
            failed.append(exc)
        finally:
            close = getattr(chunks, "aclose", None)
            if close is not None:
                with anyio.CancelScope(shield=True):
                    await close()

    async with anyio.create_task_group() as group:
        group.start_soon(pump)
        try:
            async with receive:
                async for chunk in receive:
                    await feed(validator, chunk, digest)
        except Exception as exc:  # a refused line: the reading stops
            failed.append(exc)
            group.cancel_scope.cancel()
    if failed:
        raise failed[0]
    await finish(validator)


__all__ = [
    "BATCH_ENDPOINTS",
    "NOT_A_DICTIONARY",
    "Validator",
    "check_stream",
    "feed",
    "finish",
]
