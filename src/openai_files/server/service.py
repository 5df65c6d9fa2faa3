"""The rules of the Files API: purposes, limits, quotas, expiry, ids, and the order of writes.

Stores hold the mechanism, routes the HTTP; this module decides. An upload's bytes are
written under a fresh key and committed durably *before* the row that makes the file
visible; a delete removes the row first, then the bytes. Whatever a crash leaves between
the two is removed by `sweep`.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import string
import time
import unicodedata
from collections.abc import AsyncIterator
from typing import Any

import anyio

from . import settings as S
from ._multipart import PartData, PartEnd, PartStart, boundary_of, iter_parts
from .errors import APIError, FileTooLarge, InvalidRequest, StorageLimitExceeded, no_such_file
from .settings import Settings
from .stores import (
    BlobStore,
    BlobWriter,
    CursorNotFound,
    FileRecord,
    MetadataStore,
    Order,
    Owner,
    QuotaExceeded,
)

log = logging.getLogger("openai_files.server")

UPLOADABLE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
NO_DOWNLOAD_PURPOSES = ("assistants", "user_data")
JSONL_PURPOSES = {"fine-tune": "Fine-Tuning API", "batch": "Batch API"}
DEFAULT_MIME_TYPE = "application/octet-stream"
_ID_ALPHABET = string.ascii_letters + string.digits
_ID_LENGTH = 24  # 24 base62 characters carry 142 of the 144 random bits
_SWEEP_BATCH = 500
KNOWN_FIELDS = frozenset(
    {"purpose", "expires_after", "expires_after[anchor]", "expires_after[seconds]"}
)
#: What the server makes: `file-` and base62. Anything else names no file, and is answered
#: so before any store sees it (a NUL byte is an error in PostgreSQL, not a miss).
_FILE_ID = re.compile(r"file-[A-Za-z0-9]{1,64}")
#: A purpose to filter a listing on: letters, digits, `-`, `_` (every purpose OpenAI has).
_PURPOSE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\t !#-\[\]-~]|\\[\t -~])*"'
#: `type/subtype[; name=value]...` in ASCII (RFC 9110's media-type), at most 255 characters.
_MEDIA_TYPE = re.compile(
    rf"{_TOKEN}/{_TOKEN}(?:[ \t]*;(?:[ \t]*{_TOKEN}=(?:{_TOKEN}|{_QUOTED}))?)*[ \t]*"
)
_MAX_MEDIA_TYPE_LENGTH = 255
_EXPIRES_AFTER_EXAMPLE = '{"anchor": "created_at", "seconds": 3600}'


def new_id(prefix: str) -> str:
    """`prefix` and 24 base62 characters from one read of 144 random bits."""
    number = int.from_bytes(secrets.token_bytes(18), "big")
    chars = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, 62)
        chars.append(_ID_ALPHABET[digit])
    return prefix + "".join(chars)


def is_file_id(value: str) -> bool:
    """Whether `value` has the form of a file id (`file-` and base62)."""
    return _FILE_ID.fullmatch(value) is not None


def clean_content_type(raw: str | None) -> str:
    """The part's declared type when it is a valid ASCII `type/subtype[; params]`, else
    `application/octet-stream`: the type is sent back as a header on every download, where
    a control or non-latin-1 character would break the answer."""
    if raw and len(raw) <= _MAX_MEDIA_TYPE_LENGTH:
        value = raw.strip(" \t")
        if _MEDIA_TYPE.fullmatch(value):
            return value
    return DEFAULT_MIME_TYPE


def _digits(raw: str, max_digits: int = 9) -> int | None:
    """An integer written in ASCII digits only (no sign, `_`, space or other script)."""
    if raw.isascii() and raw.isdigit() and len(raw) <= max_digits:
        return int(raw)
    return None


def clean_filename(raw: str | None) -> str:
    """The name as given, reduced to a base name without control characters."""
    # Browsers and httpx escape `"` in a multipart filename as %22 (WHATWG form encoding).
    name = (raw or "").replace("%22", '"')
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) != "Cc")
    return name if name.strip() else "file"


def file_object(record: FileRecord) -> dict[str, Any]:
    """The OpenAI file object, every key always present."""
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": "processed",
        "status_details": None,
    }


def check_purpose(purpose: str | None) -> str:
    if purpose is None or purpose == "":
        raise InvalidRequest("'purpose' is a required property", param="purpose")
    if purpose not in UPLOADABLE_PURPOSES:
        allowed = "[" + ", ".join(repr(p) for p in UPLOADABLE_PURPOSES) + "]"
        raise InvalidRequest(f"{purpose!r} is not one of {allowed} - 'purpose'", param="purpose")
    return purpose


def check_format(purpose: str, filename: str) -> None:
    api = JSONL_PURPOSES.get(purpose)
    if api and not filename.lower().endswith(".jsonl"):
        raise InvalidRequest(f"Invalid file format for {api}. Must be .jsonl", param="file")


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
    value = _digits(seconds) if seconds is not None else None
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
        value = json.loads(raw)
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


def parse_list_params(query: dict[str, str]) -> tuple[str | None, int, Order, str | None]:
    """`purpose`, `limit`, `order`, `after` of a listing, checked."""
    purpose = query.get("purpose") or None
    if purpose is not None and not _PURPOSE.fullmatch(purpose):
        raise InvalidRequest(
            f"Invalid value for 'purpose': {purpose!r}. A purpose is letters, digits, "
            "'-' and '_' (e.g. 'assistants').",
            param="purpose",
        )
    raw_limit = query.get("limit")
    limit = S.LIST_LIMIT_DEFAULT
    if raw_limit is not None:
        limit = _digits(raw_limit, 6) or -1
        if not S.LIST_LIMIT_MIN <= limit <= S.LIST_LIMIT_MAX:
            raise InvalidRequest(
                f"Invalid 'limit': expected an integer between {S.LIST_LIMIT_MIN} and "
                f"{S.LIST_LIMIT_MAX}, got {raw_limit!r}.",
                param="limit",
            )
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest(
            f"Invalid value for 'order': {order!r}. Supported values are: 'asc' and 'desc'.",
            param="order",
        )
    after = query.get("after") or None
    if after is not None and not is_file_id(after):
        raise no_such_file(after, param="after")
    return purpose, limit, order, after  # type: ignore[return-value]


class _Upload:
    """The state of one multipart upload being received."""

    def __init__(self, service: FilesService, file_id: str, reservation: str) -> None:
        self.service = service
        self.file_id = file_id
        self.reservation = reservation
        self.renew_at = time.monotonic() + service.settings.reservation_ttl_seconds / 3
        self.fields: dict[str, str] = {}
        self.field_buf: bytearray | None = None
        self.field_name = ""
        self.writer: BlobWriter | None = None
        self.filename = ""
        self.mime_type = DEFAULT_MIME_TYPE
        self.size = 0
        self.in_file = False
        self.file_seen = False
        #: Bytes of all non-file fields so far: bounded, however many fields come.
        self.field_bytes = 0

    def size_limit(self) -> tuple[int, str]:
        settings = self.service.settings
        if self.fields.get("purpose") == "batch":
            return min(settings.max_batch_file_bytes, settings.max_file_bytes), "Batch file"
        return settings.max_file_bytes, "File"

    async def feed(self, parts: AsyncIterator[PartStart | PartData | PartEnd]) -> None:
        async for event in parts:
            if isinstance(event, PartData):
                if self.in_file:
                    self.size += len(event.data)
                    limit, what = self.size_limit()
                    if self.size > limit:
                        raise FileTooLarge(limit, what)
                    assert self.writer is not None
                    await self.writer.write(event.data)
                    if time.monotonic() >= self.renew_at:
                        await self.renew()
                elif self.field_buf is not None:
                    self.field_buf.extend(event.data)
                    self.field_bytes += len(event.data)
                    if len(self.field_buf) > S.MAX_FIELD_BYTES:
                        raise InvalidRequest(
                            f"The form field {self.field_name!r} is too long.",
                            param=self.field_name,
                        )
                    if self.field_bytes > S.MULTIPART_OVERHEAD_BYTES:
                        raise InvalidRequest(
                            "The form fields other than 'file' are too large together "
                            f"(at most {S.MULTIPART_OVERHEAD_BYTES} bytes)."
                        )
            elif isinstance(event, PartStart):
                self.start_part(event)
            else:
                self.end_part()

    async def renew(self) -> None:
        """Extend the reservation's lease: a long upload keeps its quota and its key."""
        ttl = self.service.settings.reservation_ttl_seconds
        await self.service.meta.renew(self.reservation, int(time.time() + ttl))
        self.renew_at = time.monotonic() + ttl / 3

    def start_part(self, part: PartStart) -> None:
        if part.name == "file":
            if self.file_seen:
                raise InvalidRequest("Only one 'file' part may be sent.", param="file")
            self.file_seen = True
            self.in_file = True
            self.filename = clean_filename(part.filename)
            self.mime_type = clean_content_type(part.content_type)
            if "purpose" in self.fields:  # refuse early when the purpose came first
                check_format(self.fields["purpose"], self.filename)
            self.writer = self.service.blobs.writer(self.file_id)
        else:
            self.field_name = part.name
            self.field_buf = bytearray()

    def end_part(self) -> None:
        if self.in_file:
            self.in_file = False
            return
        if self.field_buf is None:
            return
        value = self.field_buf.decode("utf-8", errors="replace")
        self.field_buf = None
        if self.field_name not in KNOWN_FIELDS:
            return  # ignored, as OpenAI ignores fields it does not know
        self.fields.setdefault(self.field_name, value)
        if self.field_name == "purpose":
            check_purpose(value)
            if self.file_seen:
                check_format(value, self.filename)


class FilesService:
    """Files API operations over a metadata store and a blob store."""

    def __init__(self, settings: Settings, meta: MetadataStore, blobs: BlobStore) -> None:
        self.settings = settings
        self.meta = meta
        self.blobs = blobs
        self._next_reconcile = 0.0

    # -- upload --
    async def upload(
        self,
        owner: Owner,
        content_type: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
    ) -> FileRecord:
        settings = self.settings
        boundary = boundary_of(content_type)
        if content_length is not None and (
            content_length > settings.max_file_bytes + S.MULTIPART_OVERHEAD_BYTES
        ):
            raise FileTooLarge(settings.max_file_bytes)
        file_id = new_id("file-")
        # The reservation names the key before any byte is written: the sweeper of any
        # replica leaves the key alone until the row replaces the reservation.
        reservation = await self._reserve(owner, content_length or 0, file_id)
        upload = _Upload(self, file_id, reservation)
        committed = inserted = False
        try:
            await upload.feed(iter_parts(boundary, body, settings.max_form_parts))
            purpose = check_purpose(upload.fields.get("purpose"))
            if upload.writer is None:
                raise InvalidRequest("'file' is a required property", param="file")
            check_format(purpose, upload.filename)
            limit, what = upload.size_limit()
            if upload.size > limit:
                raise FileTooLarge(limit, what)
            expires_in = parse_expires_after(*expires_after_fields(upload.fields))
            if expires_in is None and purpose == "batch":
                expires_in = S.BATCH_DEFAULT_EXPIRES_SECONDS
            await upload.writer.commit()
            committed = True
            now = int(time.time())
            record = FileRecord(
                id=file_id,
                org_id=owner.org_id,
                project_id=owner.project_id,
                bytes=upload.size,
                created_at=now,
                expires_at=None if expires_in is None else now + expires_in,
                filename=upload.filename,
                purpose=purpose,
                mime_type=upload.mime_type,
                blob_key=file_id,
            )
            try:
                await self.meta.insert_file(record, reservation, settings.org_quota_bytes)
            except QuotaExceeded as exc:
                raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
            inserted = True
            return record
        finally:
            if not inserted:
                # Shielded: a client that went away must not leave bytes or a reservation.
                with anyio.CancelScope(shield=True):
                    await self._undo_upload(upload, committed, reservation)

    async def _reserve(self, owner: Owner, content_length: int, blob_key: str) -> str:
        """Hold quota for an upload before its body is read; refuse one that cannot fit.

        The body's length bounds the file's size from above, and from below once the
        multipart framing is taken off. The upper bound is held when it fits; else the lower
        bound, and the insert's own atomic check decides. When even the lower bound does
        not fit, the upload is refused before a byte of it is read. Without a length
        (a chunked body) nothing is held, and the insert decides.
        """
        settings = self.settings
        upper = min(content_length, settings.max_file_bytes)
        lower = max(0, upper - S.MULTIPART_OVERHEAD_BYTES)
        reservation = new_id("rsv_")
        expires_at = int(time.time() + settings.reservation_ttl_seconds)
        for nbytes in (upper, lower):
            try:
                await self.meta.reserve(
                    reservation,
                    owner.org_id,
                    nbytes,
                    settings.org_quota_bytes,
                    expires_at,
                    blob_key,
                )
                return reservation
            except QuotaExceeded as exc:
                if nbytes == lower:
                    raise StorageLimitExceeded(exc.used, exc.requested, exc.quota) from None
        raise AssertionError("unreachable")

    async def _undo_upload(self, upload: _Upload, committed: bool, reservation: str) -> None:
        try:
            if committed:
                await self.blobs.delete(upload.file_id)
            elif upload.writer is not None:
                await upload.writer.abort()
        except Exception:  # the sweeper removes what is left
            log.exception("could not discard the bytes of failed upload %s", upload.file_id)
        try:
            await self.meta.release(reservation)
        except Exception:  # the lease lapses by itself
            log.exception("could not release reservation %s", reservation)

    # -- read --
    async def get(self, owner: Owner, file_id: str) -> FileRecord:
        if not is_file_id(file_id):
            raise no_such_file(file_id)
        record = await self.meta.get_file(owner, file_id, int(time.time()))
        if record is None:
            raise no_such_file(file_id)
        return record

    async def list_files(self, owner: Owner, query: dict[str, str]) -> dict[str, Any]:
        purpose, limit, order, after = parse_list_params(query)
        try:
            rows, has_more = await self.meta.list_files(
                owner,
                purpose=purpose,
                limit=limit,
                order=order,
                after=after,
                now=int(time.time()),
            )
        except CursorNotFound:
            raise no_such_file(str(after), param="after") from None
        data = [file_object(r) for r in rows]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": has_more,
        }

    async def for_download(self, owner: Owner, file_id: str) -> FileRecord:
        record = await self.get(owner, file_id)
        if record.purpose in NO_DOWNLOAD_PURPOSES and not self.settings.allow_download_all_purposes:
            raise InvalidRequest(f"Not allowed to download files of purpose: {record.purpose}")
        return record

    # -- delete --
    async def delete(self, owner: Owner, file_id: str) -> dict[str, Any]:
        if not is_file_id(file_id):
            raise no_such_file(file_id)
        record = await self.meta.delete_file(owner, file_id, int(time.time()))
        if record is None:
            raise no_such_file(file_id)
        with anyio.CancelScope(shield=True):
            await self._remove_bytes(record.blob_key)
        return {"id": record.id, "object": "file", "deleted": True}

    async def _remove_bytes(self, key: str) -> None:
        try:
            await self.blobs.delete(key)
        except Exception:  # the row is gone, so the sweeper will find these bytes
            log.exception("could not remove the bytes of %s", key)

    # -- housekeeping --
    async def sweep(self, grace_seconds: float | None = None) -> dict[str, int]:
        """Remove expired files, lapsed reservations, stale temp files and orphan bytes."""
        grace = self.settings.sweep_grace_seconds if grace_seconds is None else grace_seconds
        now = time.time()
        counts = {"expired": 0, "temp": 0, "orphans": 0}
        while batch := await self.meta.pop_expired(int(now), _SWEEP_BATCH):
            for record in batch:
                await self._remove_bytes(record.blob_key)
            counts["expired"] += len(batch)
        await self.meta.purge_reservations(int(now))
        counts["temp"] = await self.blobs.remove_stale_temp(now - grace)
        # Reconciling lists every stored object, which grows with the store: do it at most
        # once a third of the grace period (an orphan is left no longer than that anyway).
        if grace_seconds is None and now < self._next_reconcile:
            return self._log_sweep(counts)
        self._next_reconcile = now + grace / 3
        pending: list[str] = []
        async for key in self.blobs.list_object_keys(now - grace):
            pending.append(key)
            if len(pending) >= _SWEEP_BATCH:
                counts["orphans"] += await self._remove_orphans(pending)
                pending = []
        if pending:
            counts["orphans"] += await self._remove_orphans(pending)
        # Unfinished multipart uploads of a replica killed mid-upload (S3): a live upload's
        # key is named by its reservation, renewed while its bytes arrive.
        abort_stale_uploads = getattr(self.blobs, "abort_stale_uploads", None)
        if abort_stale_uploads is not None:
            counts["uploads"] = await abort_stale_uploads(now - grace, self.meta.named_blob_keys)
        return self._log_sweep(counts)

    @staticmethod
    def _log_sweep(counts: dict[str, int]) -> dict[str, int]:
        if any(counts.values()):
            log.info("sweep removed %s", counts)
        return counts

    async def _remove_orphans(self, keys: list[str]) -> int:
        named = await self.meta.named_blob_keys(keys)
        orphans = [k for k in keys if k not in named]
        for key in orphans:
            await self._remove_bytes(key)
        return len(orphans)


__all__ = ["APIError", "FilesService", "file_object"]
