"""Streaming multipart/form-data: an async stream of body chunks in, part events out.

Built on python-multipart's callback parser, which keeps no part in memory: each body chunk
is fed to it and the events it produced are yielded before the next chunk is read, so
memory is bounded by one socket read whatever the size of the file. Limits are enforced
by whoever consumes the events, mid-stream.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

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
    return boundary


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


async def iter_parts(content_type: str | None, body: AsyncIterator[bytes]) -> AsyncIterator[Event]:
    """Parse a streamed multipart body into PartStart / PartData / PartEnd events."""
    boundary = boundary_of(content_type)
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
        _, params = parse_options_header(headers.get(b"content-disposition", b""))
        name = params.get(b"name")
        if name is None:
            raise InvalidRequest("A multipart part has no name in its Content-Disposition.")
        filename = params.get(b"filename")
        ctype = headers.get(b"content-type")
        events.append(
            PartStart(
                name=_decode(name),
                filename=None if filename is None else _decode(filename),
                content_type=None if ctype is None else _decode(ctype).strip() or None,
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
    parser = MultipartParser(boundary, callbacks)
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
            yield event
        events.clear()
    parser.finalize()
    for event in events:
        yield event
    if not finished:
        raise InvalidRequest("Malformed multipart/form-data body: it ends before its last part.")
