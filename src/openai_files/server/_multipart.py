"""Streaming multipart/form-data: an async stream of body chunks in, part events out.

Built on python-multipart's callback parser, which keeps no part in memory: each body chunk
is fed to it and the events it produced are yielded before the next chunk is read, so
memory is bounded by one socket read whatever the size of the file. Limits are enforced
by whoever consumes the events, mid-stream.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote_to_bytes

from python_multipart.multipart import MultipartParser, parse_options_header

from .errors import InvalidRequest


@dataclasses.dataclass
class PartStart:
    name: str
    filename: str | None
    content_type: str | None


@dataclasses.dataclass
class PartData:
    data: bytes


@dataclasses.dataclass
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


#: RFC 2046: a boundary is 1 to 70 characters.
MAX_BOUNDARY_LENGTH = 70
#: Printable ASCII, not ending in a space: RFC 2046's characters and a few more that
#: clients are known to use; anything else (controls, non-ASCII) is refused.
_BOUNDARY = re.compile(rb"[\x20-\x7e]*[\x21-\x7e]")
#: The value of `filename*=charset'language'percent-encoded` (RFC 5987 / RFC 8187).
_EXT_VALUE = re.compile(r"([A-Za-z0-9!#$&+^_`{}~-]+)'[^']*'([^;\"\s]*)")


def boundary_of(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body, or a 400 that says what is wrong."""
    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data":
        raise InvalidRequest(
            "Invalid Content-Type header "
            f"({(content_type or 'none')!s}), expected multipart/form-data.",
        )
    boundary = params.get(b"boundary")
    if not boundary:
        raise InvalidRequest("The multipart/form-data body has no boundary.")
    if len(boundary) > MAX_BOUNDARY_LENGTH:
        raise InvalidRequest(
            f"The multipart boundary is {len(boundary)} characters long; "
            f"at most {MAX_BOUNDARY_LENGTH} are allowed (RFC 2046)."
        )
    if not _BOUNDARY.fullmatch(boundary):
        raise InvalidRequest(
            "The multipart boundary may hold only printable ASCII characters (RFC 2046)."
        )
    return boundary


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _parameter(header: str, wanted: str) -> str | None:
    """The value of parameter `wanted` (any case) of a `value; name=value; ...` header,
    unquoted; a `;` or `name=` inside a quoted value is text, not a parameter."""
    segments: list[str] = []
    start, quoted, escaped = 0, False, False
    for i, char in enumerate(header):
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == ";" and not quoted:
            segments.append(header[start:i])
            start = i + 1
    segments.append(header[start:])
    for segment in segments[1:]:
        name, _, value = segment.partition("=")
        if name.strip(" \t").lower() == wanted:
            value = value.strip(" \t")
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1]
            return value
    return None


def extended_filename(disposition: bytes) -> str | None:
    """The name of a `filename*=UTF-8''caf%C3%A9.txt` parameter (RFC 5987), if any.

    RFC 7578 asks senders not to use it in a form, but some do; when it is there and can
    be decoded it wins over `filename`, as RFC 6266 says. Only UTF-8 and ISO-8859-1 are
    understood (the two RFC 5987 requires); anything else is ignored.
    """
    value = _parameter(disposition.decode("latin-1"), "filename*")
    match = None if value is None else _EXT_VALUE.fullmatch(value)
    if match is None:
        return None
    charset = match.group(1).lower()
    if charset not in ("utf-8", "iso-8859-1"):
        return None
    try:
        return unquote_to_bytes(match.group(2)).decode(charset)
    except UnicodeDecodeError:
        return None


async def iter_parts(
    boundary: bytes, body: AsyncIterator[bytes], max_parts: int
) -> AsyncIterator[Event]:
    """Parse a streamed multipart body into PartStart / PartData / PartEnd events, its
    `boundary` checked by `boundary_of` first.

    A body of more than `max_parts` parts is a 400 at the first part too many: thousands of
    tiny fields cost parsing time that no byte limit bounds. The parser itself bounds the
    headers of a part (their count and the length of each line).
    """
    parts = 0
    events: list[Event] = []
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}
    finished = False

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        disposition = headers.get(b"content-disposition", b"")
        _, params = parse_options_header(disposition)
        name = params.get(b"name")
        if name is None:
            raise InvalidRequest("A multipart part has no name in its Content-Disposition.")
        raw_filename = params.get(b"filename")
        filename = extended_filename(disposition)
        if filename is None and raw_filename is not None:
            filename = _decode(raw_filename)
        ctype = headers.get(b"content-type")
        events.append(
            PartStart(
                name=_decode(name),
                filename=filename,
                content_type=None if ctype is None else _decode(ctype).strip(" \t") or None,
            )
        )

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if end > start:
            events.append(PartData(bytes(data[start:end])))

    def on_part_end() -> None:
        events.append(PartEnd())

    def on_end() -> None:
        nonlocal finished
        finished = True

    callbacks: Any = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": on_part_end,
        "on_end": on_end,
    }

    def counted(event: Event) -> Event:
        # Counted as the consumer sees them, so that its own limits on the parts before
        # come first, whatever the chunks the body arrived in.
        nonlocal parts
        if isinstance(event, PartStart):
            parts += 1
            if parts > max_parts:
                raise InvalidRequest(
                    "Too many parts in the multipart/form-data body: "
                    f"at most {max_parts} are accepted."
                )
        return event

    try:
        parser = MultipartParser(boundary, callbacks)
    except Exception as exc:
        raise InvalidRequest(f"Malformed multipart/form-data body: {exc}") from None
    async for chunk in body:
        if not chunk:
            continue
        try:
            parser.write(chunk)
        except InvalidRequest:
            raise
        except Exception as exc:
            raise InvalidRequest(f"Malformed multipart/form-data body: {exc}") from None
        for event in events:
            yield counted(event)
        events.clear()
    parser.finalize()
    for event in events:
        yield counted(event)
    if not finished:
        raise InvalidRequest("Malformed multipart/form-data body: it ends before its last part.")
