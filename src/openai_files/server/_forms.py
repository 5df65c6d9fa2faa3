"""The upload form: multipart part events in, the file's bytes and its fields out.

`read_upload_form` consumes the events of `_multipart.iter_parts`: it keeps the fields the
API knows (each bounded in size), hands the `file` part's name, type and bytes to an
`UploadSink` as they arrive (the service's upload, which applies the rules mid-stream),
and parses `expires_after` once the form has ended.
"""

from __future__ import annotations

import dataclasses
import json
import re
import unicodedata
from collections.abc import AsyncIterator
from typing import Any, Protocol

from . import _json
from . import settings as S
from ._framing import check_other_fields
from ._multipart import Event, PartData, PartStart
from .errors import InvalidRequest

DEFAULT_MIME_TYPE = "application/octet-stream"
#: The fields an upload reads; any other is ignored, as OpenAI ignores fields it does not know.
KNOWN_FIELDS = frozenset(
    {"purpose", "expires_after", "expires_after[anchor]", "expires_after[seconds]"}
)
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
#: `type/subtype[; name=value]...` in ASCII (RFC 9110's media-type), at most 255 characters.
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;(?:[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*[ \t]*"
)
_EXPIRES_AFTER_EXAMPLE = '{"anchor": "created_at", "seconds": 3600}'


def clean_content_type(raw: str | None) -> str:
    """The part's declared type when it is a valid ASCII `type/subtype[; params]`, else
    `application/octet-stream`: the type is sent back as a header on every download, where
    a control or non-latin-1 character would break the answer."""
    if raw and len(raw) <= S.MAX_MEDIA_TYPE_LENGTH:
        value = raw.strip(" \t")
        if _MEDIA_TYPE.fullmatch(value):
            return value
    return DEFAULT_MIME_TYPE


#: What a name may not hold besides controls (category Cc: C0, DEL, C1) and lone
#: surrogates: the line and paragraph separators and Unicode's bidirectional formatting
#: characters (Bidi_Control), which make a name show other than it reads.
_HIDDEN = frozenset(
    "\u2028\u2029"  # line and paragraph separators
    "\u061c\u200e\u200f"  # bidirectional marks
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides
    "\u2066\u2067\u2068\u2069"  # isolates
)


def hidden_character(text: str) -> tuple[int, str] | None:
    """The first character of `text` that would not show as itself (a control, a lone
    surrogate, a line or paragraph separator, a bidirectional override) and its position,
    or None. (PostgreSQL refuses NUL in text.)"""
    for at, ch in enumerate(text):
        if ch in _HIDDEN or unicodedata.category(ch) in ("Cc", "Cs"):
            return at, ch
    return None


def clean_filename(raw: str | None) -> str:
    """The name as given, reduced to a base name without control characters."""
    # Browsers and httpx escape `"` in a multipart filename as %22 (WHATWG form encoding).
    name = (raw or "").replace("%22", '"')
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cc")
    return name if name.strip() else "file"


def ascii_int(raw: str, max_digits: int = 9) -> int | None:
    """An integer written in ASCII digits only (no sign, `_`, space or other script)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw)
    return None


def parse_expires_after(anchor: str | None, seconds: str | None) -> int | None:
    """Seconds after creation at which the file expires, or None when not asked."""
    if anchor is None and seconds is None:
        return None
    if anchor is None:
        raise InvalidRequest(
            "Missing required parameter: 'expires_after[anchor]'.", param="expires_after[anchor]"
        )
    if anchor != "created_at":
        raise InvalidRequest(
            f"Invalid value for 'expires_after[anchor]': {anchor!r}. "
            "Supported values are: 'created_at'.",
            param="expires_after[anchor]",
        )
    lo, hi = S.EXPIRES_AFTER_MIN_SECONDS, S.EXPIRES_AFTER_MAX_SECONDS
    value = ascii_int(seconds) if seconds is not None else None
    if value is None or not lo <= value <= hi:
        raise InvalidRequest(
            f"Invalid 'expires_after[seconds]': expected an integer between {lo} and {hi}, "
            f"got {seconds!r}.",
            param="expires_after[seconds]",
        )
    return value


def expires_after_fields(fields: dict[str, str]) -> tuple[str | None, str | None]:
    """`anchor` and `seconds` of an upload, sent as two fields (`expires_after[anchor]`,
    `expires_after[seconds]`: what the SDK sends) or as one JSON field `expires_after`."""
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    raw = fields.get("expires_after")
    if raw is None:
        return anchor, seconds
    if anchor is not None or seconds is not None:
        raise InvalidRequest(
            "Send 'expires_after' either as one JSON field or as 'expires_after[anchor]' "
            "and 'expires_after[seconds]', not both.",
            param="expires_after",
        )
    try:
        value = _json.loads(raw)
    except (ValueError, RecursionError):
        value = None
    if not isinstance(value, dict) or not ({"anchor", "seconds"} & value.keys()):
        shown = raw if len(raw) <= 100 else raw[:100] + "..."
        raise InvalidRequest(
            f"Invalid 'expires_after': expected a JSON object like {_EXPIRES_AFTER_EXAMPLE}, "
            f"got {shown!r}.",
            param="expires_after",
        )

    def text(item: Any) -> str | None:
        if item is None or isinstance(item, str):
            return item
        if isinstance(item, int) and not isinstance(item, bool):
            return str(item)
        return json.dumps(item)[:100]

    return text(value.get("anchor")), text(value.get("seconds"))


class UploadSink(Protocol):
    """Where the form reader puts an upload (`service.Upload`), which refuses mid-stream
    what the rules refuse."""

    def given_purpose(self, purpose: str) -> None:
        """A `purpose` field has arrived (each one, in order)."""

    def start_file(self, filename: str, mime_type: str) -> None:
        """The `file` part begins, with its cleaned name and type."""

    async def write(self, data: bytes) -> None:
        """Bytes of the file, in order."""

    def check_complete(self) -> str:
        """The form has ended: its purpose when the upload is whole, else an error."""


@dataclasses.dataclass(frozen=True)
class UploadForm:
    """The fields of a whole upload form, checked."""

    purpose: str
    expires_in: int | None


async def read_upload_form(parts: AsyncIterator[Event], upload: UploadSink) -> UploadForm:
    """Read an upload form from its part events, the file's bytes written to `upload` as
    they arrive. The fields other than `file` are bounded: each by `MAX_FIELD_BYTES`, all
    together by `MULTIPART_OVERHEAD_BYTES`; at most one `file` part is accepted."""
    fields: dict[str, str] = {}
    field_name = ""
    field_buf: bytearray | None = None  # the field being read, if any
    field_bytes = 0  # of all non-file fields so far: bounded, however many fields come
    in_file = file_seen = False
    async for event in parts:
        if isinstance(event, PartData):
            if in_file:
                await upload.write(event.data)
            elif field_buf is not None:
                field_buf.extend(event.data)
                field_bytes += len(event.data)
                if len(field_buf) > S.MAX_FIELD_BYTES:
                    raise InvalidRequest(
                        f"The form field {field_name!r} is too long.", param=field_name
                    )
                check_other_fields(field_bytes, "file")
        elif isinstance(event, PartStart):
            if event.name == "file":
                if file_seen:
                    raise InvalidRequest("Only one 'file' part may be sent.", param="file")
                file_seen = in_file = True
                name, ctype = clean_filename(event.filename), clean_content_type(event.content_type)
                upload.start_file(name, ctype)
            else:
                field_name = event.name
                field_buf = bytearray()
        elif in_file:
            in_file = False
        elif field_buf is not None:
            value = field_buf.decode("utf-8", errors="replace")
            field_buf = None
            if field_name in KNOWN_FIELDS:
                fields.setdefault(field_name, value)
                if field_name == "purpose":
                    upload.given_purpose(value)
    purpose = upload.check_complete()
    return UploadForm(purpose, parse_expires_after(*expires_after_fields(fields)))
