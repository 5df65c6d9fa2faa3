"""Download links: a link names one file and the key that asked for it, works for a minute,
and is signed with the deployment's shared secret, so that the browser downloads the file
itself without the key in a URL. The access log writes a link without its signature."""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from collections.abc import Callable

from ..errors import APIError
from ..ids import is_file_id
from ..stores import KeyRecord, MetadataStore

#: Where download links begin; the token follows.
DOWNLOAD_PREFIX = "/console/download/"
#: How long a download link works.
LINK_SECONDS = 60
#: The name of the links' signing secret in the metadata store (shared by every server).
SECRET_NAME = "console-download-links"
#: Signed before the token's fields, so that a signature made for anything else never fits.
_SIGNED_PREFIX = b"openai-files console download v1\n"
INVALID_LINK_MESSAGE = (
    "This download link is invalid or has expired (links work for {seconds} seconds). "
    "Ask the console for a new one."
)


class InvalidLink(APIError):
    """A download link that is malformed, tampered with, expired, or whose key is gone."""

    status_code = 403

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message or INVALID_LINK_MESSAGE.format(seconds=LINK_SECONDS),
            code="invalid_download_link",
        )


#: A link's token anywhere in a path (`/console//download/…` too, or behind a proxy that
#: rewrites the prefix): the fields before the signature, then the signature.
_SIGNED_TOKEN = re.compile(r"([^/.]+\.key_[^/.]+\.\d+\.)[A-Za-z0-9_-]+")


def loggable_path(path: str) -> str:
    """A request path as the access log writes it: a download link without its signature,
    so that a log reader cannot use the link (the file, key id and expiry stay).

    Example:
        >>> loggable_path("/console/download/file-abc.key_01.1700000000.c2lnbmF0dXJl")
        '/console/download/file-abc.key_01.1700000000.<signature>'
    """
    return _SIGNED_TOKEN.sub(r"\1<signature>", path)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _signature(secret: bytes, payload: str) -> str:
    return _b64(hmac.new(secret, _SIGNED_PREFIX + payload.encode("ascii"), "sha256").digest())


def sign_link(secret: bytes, file_id: str, key_id: str, expires_at: int) -> str:
    """The token of a link to `file_id` for the key `key_id`, working until `expires_at`:
    `<file id>.<key id>.<expiry>.<HMAC-SHA256 of those, base64url>`.

    Example:
        >>> sign_link(b"k" * 32, "file-abc", "key_0123", 1700000000)[:34]
        'file-abc.key_0123.1700000000.5Gaot'
    """
    payload = f"{file_id}.{key_id}.{expires_at}"
    return f"{payload}.{_signature(secret, payload)}"


def read_link(secret: bytes, token: str) -> tuple[str, str, int]:
    """The file id, key id and expiry of a token this secret signed; InvalidLink for any
    other string (the signature compared in constant time)."""
    fields = token.split(".")
    if len(fields) != 4 or not token.isascii():
        raise InvalidLink()
    file_id, key_id, expiry, signature = fields
    payload = f"{file_id}.{key_id}.{expiry}"
    if not hmac.compare_digest(_signature(secret, payload), signature):
        raise InvalidLink()
    if not (is_file_id(file_id) and expiry.isdigit()):
        raise InvalidLink()  # signed by us, so never; checked all the same
    return file_id, key_id, int(expiry)


class DownloadLinks:
    """Signs and checks download links with the deployment's shared secret (read from the
    metadata store once, made there by the first server that needs it). `clock` is the
    time in Unix seconds (tests move it)."""

    def __init__(self, clock: Callable[[], float] = time.time, extra_secret: str = "") -> None:
        self.clock = clock
        self.extra_secret = extra_secret
        self._secret: bytes | None = None

    async def secret(self, meta: MetadataStore) -> bytes:
        """The signing key: the database's shared secret, mixed with `--console-link-secret`
        when one is set (then reading the database alone cannot sign a link). Checking a
        link may make the database's secret, on a deployment that has none yet."""
        if self._secret is None:
            stored = await meta.server_secret(SECRET_NAME, secrets.token_hex(32), int(self.clock()))
            key = stored.encode("ascii")
            if self.extra_secret:
                key = hmac.new(self.extra_secret.encode(), key, "sha256").digest()
            self._secret = key
        return self._secret

    async def make(self, meta: MetadataStore, file_id: str, key: KeyRecord) -> tuple[str, int]:
        """A token for `file_id` and `key`, and when it stops working."""
        expires_at = int(self.clock()) + LINK_SECONDS
        return sign_link(await self.secret(meta), file_id, key.id, expires_at), expires_at

    async def check(self, meta: MetadataStore, token: str) -> tuple[str, KeyRecord]:
        """The file id and the key of a valid, unexpired token whose key is still active;
        InvalidLink otherwise."""
        file_id, key_id, expires_at = read_link(await self.secret(meta), token)
        if self.clock() >= expires_at:
            raise InvalidLink()
        key = await meta.get_api_key(key_id)
        if key is None or key.revoked_at is not None:
            raise InvalidLink(
                "The API key that made this download link was revoked. Open the console "
                "with an active key and download the file again."
            )
        return file_id, key
