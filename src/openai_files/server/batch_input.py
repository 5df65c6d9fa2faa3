"""The check of a Batch API input file, as OpenAI makes it when a batch is created, and the
index of its requests: both built as the file's bytes stream in, never holding it whole.

`InputIndex(endpoint)` is fed the file's bytes in order (`feed`), then told that it ended
(`finish`). Each returns the requests (`RequestLine`, valid lines only, in order) of the
lines it completed, so that the caller stores them page by page while the file streams.
Every problem found is a `BatchError`, the shape of a failed batch's `errors.data[]`: the
first `max_errors` are kept (`errors`), all are counted (`error_count`). The lines after a
bad one are still checked, so that one pass reports several problems, as OpenAI's does; a
file with any error fails its batch (the caller's rule). `index_stream` runs an index over
an async stream of chunks, off the event loop.

A file is JSON Lines: lines end at `\\n` (a `\\r` before it is JSON whitespace), the last may
lack one, a blank line is skipped but counted, so that line numbers are those an editor
shows. Every other line must be a JSON object (UTF-8) with
  - `custom_id`: a non-empty string, used by no other line of the file;
  - `method`: "POST";
  - `url`: the batch's endpoint;
  - `body`: a JSON object, sent as written: `RequestLine.body_offset` and `body_length` are
    the span of its bytes in the file. A line with a top-level key twice is refused, so that
    what the span holds is what the line means.
At most `max_requests` lines that are not blank and `max_bytes` bytes: the line or byte past
the limit is one error, and nothing after it is read. A file without a request is an error.
A line is at most `max_line_bytes` bytes long and holds at most `max_line_values` JSON values
(keys count too, counted before the line is parsed).

Codes (`BatchError.code`). OpenAI's, with its words where the message is quoted here:
`invalid_json_line` ("This line is not parseable as valid JSON."; also a line that is JSON
but not an object), `missing_required_parameter` ("Missing required parameter: 'url'.", the
param naming it), `invalid_url` ("The URL provided for this request does not match the batch
endpoint."), `invalid_request` (a field of the wrong type or value; our messages);
`duplicate_custom_id`, `too_many_tasks` and `empty_file` are OpenAI's as its documentation is
reported to list them, with our messages. Ours: `line_too_large` (over `max_line_bytes` or
`max_line_values`) and `file_too_large` (over `max_bytes`; the message follows OpenAI's).

Memory is bounded: the line being received (at most `max_line_bytes`, parsed only when it
holds at most `max_line_values` values), the requests of one `feed`, and a 16-byte digest
per `custom_id` (at most `max_requests`). The CPU of a `feed` is that of the bytes it is
given and of the lines they complete; `index_stream` gives it at most
`VALIDATION_PIECE_BYTES` at a time, in a worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json.decoder
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from . import _json
from . import settings as S
from .settings import (
    BATCH_MAX_BYTES,
    BATCH_MAX_ERRORS,
    BATCH_MAX_REQUESTS,
    MAX_LINE_BYTES,
    MAX_LINE_VALUES,
)

#: The endpoints a batch may run (`POST /v1/batches`'s `endpoint`): the five an
#: OpenAI-compatible engine serves. OpenAI's list also has images and videos.
BATCH_ENDPOINTS = (
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
)
#: OpenAI's codes and words (see the module's docstring for which are ours).
INVALID_JSON_LINE = "invalid_json_line"
MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
INVALID_URL = "invalid_url"
INVALID_REQUEST = "invalid_request"
DUPLICATE_CUSTOM_ID = "duplicate_custom_id"
TOO_MANY_TASKS = "too_many_tasks"
EMPTY_FILE = "empty_file"
LINE_TOO_LARGE = "line_too_large"  # ours
FILE_TOO_LARGE = "file_too_large"  # ours
NOT_PARSEABLE = "This line is not parseable as valid JSON."
URL_MISMATCH = "The URL provided for this request does not match the batch endpoint."
#: The fields of a request line, in the order they are checked.
REQUIRED = ("custom_id", "method", "url", "body")

_BLANK = re.compile(rb"[ \t\r\n]*")
#: json's own string reader (its C one when built): `_scanstring(text, at, True)` reads the
#: JSON string whose text starts at `at` (past its opening quote), strictly (no control
#: character), and returns it with the index past its closing quote. The stubs omit it.
_scanstring: Callable[[str, int, bool], tuple[str, int]] = vars(json.decoder)["scanstring"]
#: The steps of a walk through a line's object, JSON whitespace allowed around each mark:
#: its opening brace, then a key's opening quote or (group 1) the closing brace;
_OPEN = re.compile(r'\{[ \t\r\n]*(?:"|(\}))')
#: the colon after a key;
_COLON = re.compile(r"[ \t\r\n]*:[ \t\r\n]*")
#: after a value, a comma and the next key's opening quote, or (group 1) the closing brace;
_NEXT = re.compile(r'[ \t\r\n]*(?:,[ \t\r\n]*"|(\}))')
#: and nothing but whitespace after it.
_WHITESPACE = re.compile(r"[ \t\r\n]*")


@dataclasses.dataclass(frozen=True)
class RequestLine:
    """A valid request of the file: its line (1-based, blank lines counted), its custom_id,
    the span of its `body` value in the file's bytes, as written, and body["model"] when it
    is a string."""

    line: int
    custom_id: str
    body_offset: int
    body_length: int
    model: str | None


@dataclasses.dataclass(frozen=True)
class BatchError:
    """One problem of the file, as a failed batch lists it (`errors.data[]`)."""

    code: str
    message: str
    param: str | None = None
    line: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "param": self.param, "line": self.line}


class _Bad(Exception):
    """What is wrong with the line being checked."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _shown(value: Any) -> str:
    """A refused value in a message: a string quoted (its first 40 characters), else its
    JSON kind."""
    if isinstance(value, str):
        return repr(value[:40]) if value else "an empty string"
    kinds = {dict: "an object", list: "an array", bool: "a boolean"}
    return kinds.get(type(value), "null" if value is None else "a number")


def _members(text: str, at: int) -> tuple[dict[str, Any], tuple[int, int] | None]:
    """The members of the JSON object that starts at `at` of `text` (a whole line), read
    one at a time, and the span of its `body` value as character indices [start, end).
    ValueError (RecursionError) when the line is not one JSON object; _Bad for a key given
    twice."""
    members: dict[str, Any] = {}
    body: tuple[int, int] | None = None
    twice: str | None = None
    step = _OPEN.match(text, at)
    while step is not None and step.group(1) is None:  # at a key, past its opening quote
        key, at = _scanstring(text, step.end(), True)
        colon = _COLON.match(text, at)
        if colon is None:
            raise ValueError("a key is followed by ':'")
        value, at = _json.DECODER.raw_decode(text, colon.end())
        if key in members:
            twice = key if twice is None else twice
        else:
            members[key] = value
            if key == "body":
                body = (colon.end(), at)
        step = _NEXT.match(text, at)
    if step is None or _WHITESPACE.fullmatch(text, step.end()) is None:
        raise ValueError("not one JSON object")
    if twice is not None:
        raise _Bad(
            INVALID_REQUEST,
            f"This line has the key {twice[:100]!r} more than once; a request's keys must be "
            "unique (its 'body' is sent as written).",
            twice[:100],
        )
    return members, body


def _byte_span(raw: bytes | bytearray, text: str, start: int, end: int) -> tuple[int, int]:
    """The byte offset and length in `raw` of the characters [start, end) of `text`, its
    UTF-8 decoding: the same when every character is ASCII, else the text before and after
    the span is encoded to count its bytes."""
    if len(raw) == len(text):
        return start, end - start
    before = len(text[:start].encode("utf-8"))
    after = len(text[end:].encode("utf-8"))
    return before, len(raw) - before - after


class InputIndex:
    """Fed the file's bytes in order (`feed(chunk)`, bytes or memoryview of any size), then
    `finish()`. `feed` returns the RequestLines that chunk completed (valid lines only, in
    order), `finish` those of the last line. `errors` collects every problem, at most
    `max_errors` of them (the rest are counted: `error_count`); `requests` counts the valid
    request lines so far. Once an error is found the lines after it are still checked (to
    report several errors, as OpenAI does), but the batch fails. Not thread-safe: one
    caller feeds it, one call at a time (from any thread)."""

    def __init__(
        self,
        endpoint: str,
        *,
        max_requests: int = BATCH_MAX_REQUESTS,
        max_bytes: int = BATCH_MAX_BYTES,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_errors: int = BATCH_MAX_ERRORS,
        max_line_values: int = MAX_LINE_VALUES,
    ) -> None:
        self.endpoint = endpoint
        self.max_requests = max_requests
        self.max_bytes = max_bytes
        self.max_line_bytes = max_line_bytes
        self.max_errors = max_errors
        self.max_line_values = max_line_values
        self.errors: list[BatchError] = []
        self.error_count = 0
        self.requests = 0  # valid request lines
        self.line = 0  # lines ended so far
        self._tasks = 0  # lines that are not blank, valid or not
        self._offset = 0  # bytes read so far
        self._line_start = 0  # the file offset of the line being received
        self._partial = bytearray()  # the line being received, without its `\n`
        self._skipping = False  # the line being received is too long: its bytes are dropped
        self._ids: dict[bytes, int] = {}  # digest of each custom_id -> its line
        self._stopped = False  # a limit was passed: nothing more is read
        self._finished = False

    @property
    def stopped(self) -> bool:
        """Whether the index reads no more bytes: a limit was passed, or the file ended."""
        return self._stopped or self._finished

    def feed(self, chunk: bytes | memoryview) -> list[RequestLine]:
        if self._finished:
            raise RuntimeError("the index was told the file has ended")
        if self._stopped or not chunk:
            return []
        data = chunk if isinstance(chunk, bytes) else bytes(chunk)
        base = self._offset
        over = len(data) > self.max_bytes - base
        if over:
            data = data[: self.max_bytes - base]
        self._offset = base + len(data)
        done: list[RequestLine] = []
        start = 0
        while (end := data.find(b"\n", start)) != -1:
            self._take(data, start, end)
            if not self._stopped:
                self._end_line(done)
            if self._stopped:
                break
            start = end + 1
            self._line_start = base + start
        if not self._stopped and start < len(data):
            self._take(data, start, len(data))
        if over and not self._stopped:
            self._error(
                FILE_TOO_LARGE,
                f"The batch input file is larger than the {self.max_bytes} maximum. Please "
                "try again with a smaller batch.",
            )
            self._stop()
        return done

    def finish(self) -> list[RequestLine]:
        if self._finished:
            return []
        done: list[RequestLine] = []
        if not self._stopped:
            if self._partial or self._skipping:
                self._end_line(done)
            if self._tasks == 0:
                self._error(
                    EMPTY_FILE,
                    "The batch input file has no request; write one JSON request per line.",
                )
        self._finished = True
        self._stop()
        return done

    # The lines.
    def _take(self, data: bytes, start: int, end: int) -> None:
        """Add data[start:end] to the line being received, unless that makes it too long."""
        if self._skipping:
            return
        if len(self._partial) + end - start <= self.max_line_bytes:
            self._partial += memoryview(data)[start:end]
            return
        self._partial.clear()
        self._skipping = True
        if self._task(self.line + 1):
            self._error(
                LINE_TOO_LARGE,
                f"This line is longer than {self.max_line_bytes} bytes, the longest line this "
                "server reads; send a smaller request.",
                line=self.line + 1,
            )

    def _end_line(self, done: list[RequestLine]) -> None:
        self.line += 1
        if self._skipping:
            self._skipping = False
            return
        try:
            request = self._check(self._partial)
        finally:
            self._partial.clear()
        if request is not None:
            self.requests += 1
            done.append(request)

    def _task(self, line: int) -> bool:
        """Count a line that is not blank; False (and stop) when it is one too many."""
        if self._tasks >= self.max_requests:
            self._error(
                TOO_MANY_TASKS,
                f"The batch input file holds more than {self.max_requests} requests, the most "
                "a batch runs; split it into several batches.",
                line=line,
            )
            self._stop()
            return False
        self._tasks += 1
        return True

    def _check(self, raw: bytearray) -> RequestLine | None:
        blank = _BLANK.match(raw)
        assert blank is not None  # it matches the empty string
        if blank.end() == len(raw) or not self._task(self.line):
            return None
        try:
            return self._request(raw, blank.end())
        except _Bad as bad:
            self._error(bad.code, bad.message, bad.param, self.line)
            return None

    def _request(self, raw: bytearray, first: int) -> RequestLine:
        if raw[first] != ord("{"):  # not an object, whatever follows
            raise _Bad(INVALID_JSON_LINE, NOT_PARSEABLE)
        if _json.more_values_than(raw, self.max_line_values):
            raise _Bad(
                LINE_TOO_LARGE,
                f"This line holds more than {self.max_line_values} JSON values (keys count "
                "too), the most this server reads in one line; send a smaller request.",
            )
        try:
            text = raw.decode("utf-8")
            # the first byte is ASCII: it is the first character too
            members, span = _members(text, first)
        except (ValueError, RecursionError):  # UnicodeDecodeError, JSONDecodeError too
            raise _Bad(INVALID_JSON_LINE, NOT_PARSEABLE) from None
        for name in REQUIRED:
            if name not in members:
                raise _Bad(
                    MISSING_REQUIRED_PARAMETER, f"Missing required parameter: '{name}'.", name
                )
        custom_id = self._custom_id(members["custom_id"])
        if members["method"] != "POST":
            raise _Bad(
                INVALID_REQUEST,
                f"The method of a batch request must be 'POST', got {_shown(members['method'])}.",
                "method",
            )
        if members["url"] != self.endpoint:
            raise _Bad(INVALID_URL, URL_MISMATCH, "url")
        body = members["body"]
        if not isinstance(body, dict):
            raise _Bad(
                INVALID_REQUEST,
                f"The body of a batch request must be a JSON object, got {_shown(body)}.",
                "body",
            )
        model = body.get("model")
        if not isinstance(model, str):
            model = None
        elif not _encodes(model):
            raise _Bad(INVALID_REQUEST, _lone("body.model", model), "body.model")
        assert span is not None  # the line has a body
        offset, length = _byte_span(raw, text, *span)
        return RequestLine(self.line, custom_id, self._line_start + offset, length, model)

    def _custom_id(self, value: Any) -> str:
        """`value` as a custom_id not used before (kept as its digest)."""
        if not isinstance(value, str) or not value:
            raise _Bad(
                INVALID_REQUEST,
                f"The custom_id of a batch request must be a non-empty string, got "
                f"{_shown(value)}.",
                "custom_id",
            )
        if not _encodes(value):
            raise _Bad(INVALID_REQUEST, _lone("custom_id", value), "custom_id")
        digest = hashlib.blake2b(value.encode("utf-8"), digest_size=16).digest()
        first = self._ids.setdefault(digest, self.line)
        if first != self.line:
            raise _Bad(
                DUPLICATE_CUSTOM_ID,
                f"The custom_id {value[:100]!r} is already used by line {first}; each request "
                "of a batch needs its own.",
                "custom_id",
            )
        return value

    # The outcome.
    def _error(
        self, code: str, message: str, param: str | None = None, line: int | None = None
    ) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(BatchError(code, message, param, line))

    def _stop(self) -> None:
        self._stopped = True
        self._partial = bytearray()
        self._ids.clear()


def _encodes(text: str) -> bool:
    """Whether `text` is Unicode text (no lone surrogate, which a `\\ud800` escape makes):
    a database stores it, an answer can echo it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _lone(name: str, value: str) -> str:
    return (
        f"The {name} {value[:100]!r} holds a lone surrogate (a \\ud800-\\udfff escape that "
        "pairs with no other), which is not a Unicode character; send text as UTF-8."
    )


async def index_stream(
    index: InputIndex, chunks: AsyncIterator[bytes | memoryview]
) -> AsyncIterator[list[RequestLine]]:
    """Feed `index` a whole file from `chunks`, then finish it; yield the RequestLines as
    their lines complete, a group per piece fed (groups are never empty). The index is fed
    off the event loop: in a worker thread, at most `VALIDATION_PIECE_BYTES` at a time, so
    that a group holds the requests of one piece at most. Once the index stops (a limit),
    the rest of `chunks` is read but not fed. The caller reads `index.errors` at the end."""
    size = S.VALIDATION_PIECE_BYTES
    async for chunk in chunks:
        if index.stopped:
            continue
        view = memoryview(chunk) if len(chunk) > size else None  # else fed as it is
        for start in range(0, len(chunk), size):
            piece = chunk if view is None else view[start : start + size]
            group = await anyio.to_thread.run_sync(index.feed, piece)
            if group:
                yield group
    group = await anyio.to_thread.run_sync(index.finish)
    if group:
        yield group


__all__ = ["BatchError", "InputIndex", "RequestLine", "index_stream"]
