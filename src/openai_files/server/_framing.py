"""The room a multipart form takes around its file: the framing of its parts and its other
fields, at most `MULTIPART_OVERHEAD_BYTES` together. A body's length bounds its file's size
from above and from below by it, and a form's other fields are held to it. Light (no HTTP
framework): the service reads it as well as the routes and the form parser.
"""

from __future__ import annotations

from . import settings as S
from .errors import InvalidRequest


def largest_form_bytes(file_bytes: int) -> int:
    """The longest multipart body that can carry a file of at most `file_bytes`: the file,
    and its framing and other fields (`MULTIPART_OVERHEAD_BYTES`)."""
    return file_bytes + S.MULTIPART_OVERHEAD_BYTES


def smallest_file_bytes(form_bytes: int) -> int:
    """The fewest bytes the file of a multipart body of `form_bytes` can hold."""
    return max(0, form_bytes - S.MULTIPART_OVERHEAD_BYTES)


def check_other_fields(size: int, main: str) -> None:
    """The fields of a form other than its `main` one (the file, a part's data) hold at
    most `MULTIPART_OVERHEAD_BYTES` together, however many they are."""
    if size > S.MULTIPART_OVERHEAD_BYTES:
        raise InvalidRequest(
            f"The form fields other than {main!r} are too large together "
            f"(at most {S.MULTIPART_OVERHEAD_BYTES} bytes)."
        )
