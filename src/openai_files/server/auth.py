"""API keys: made once, stored hashed, always masked.

A key is found by the SHA-256 of the presented secret (an indexed lookup), so no secret is
ever compared byte by byte: the time a lookup takes depends on the hash, which tells an
attacker nothing about any stored key.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import secrets
import time

from .._config import mask_key
from .errors import CREATE_KEY_HINT, NO_API_KEY_MESSAGE, Unauthorized
from .stores import KeyRecord, MetadataStore

KEY_PREFIX = "sk-"
KEY_ID_PREFIX = "key_"


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclasses.dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    secret: str


def new_key(org_id: str, project_id: str) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    record = KeyRecord(
        id=KEY_ID_PREFIX + secrets.token_hex(12),
        org_id=org_id,
        project_id=project_id,
        key_hash=hash_key(secret),
        hint=mask_key(secret),
        created_at=int(time.time()),
        revoked_at=None,
    )
    return NewKey(record, secret)


async def create_key(store: MetadataStore, org_id: str, project_id: str) -> NewKey:
    """Create and store a key; the secret is returned once and never stored."""
    key = new_key(org_id, project_id)
    await store.add_api_key(key.record)
    return key


async def create_first_key(store: MetadataStore, org_id: str, project_id: str) -> NewKey | None:
    """Create and store a key when the store holds none at all (revoked ones count), as a
    server's first start does; None when it holds one. Servers starting together on one new
    database mint one key between them, not one each."""
    key = new_key(org_id, project_id)
    return key if await store.add_first_api_key(key.record) else None


#: How the key goes in HTTP Basic auth, said by every 401 about a malformed Basic header.
BASIC_HINT = (
    "With Basic auth, send the API key as the password and a blank user name "
    '(i.e. curl -u ":YOUR_KEY").'
)


def presented_key(authorization: str | None) -> str | None:
    """The API key in an Authorization header: the token of `Bearer KEY`, or the password
    of `Basic base64(user:KEY)` (OpenAI takes the key as the password, with a blank user
    name, for clients such as browsers that prompt for one; the user name is not checked).

    None when the header carries no key; Unauthorized, with a message saying what is wrong,
    when a Basic header cannot be read.
    """
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() == "bearer":
        return token or None
    if scheme.lower() != "basic" or not token:
        return None
    try:
        decoded = base64.b64decode(token, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthorized(
            "Invalid Authorization header: the Basic credentials are not base64 of "
            f"UTF-8 'user:password'. {BASIC_HINT}"
        ) from None
    user, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthorized(
            f"Invalid Authorization header: the Basic credentials hold no ':'. {BASIC_HINT}"
        )
    if not password:
        if user:
            # Most likely the key in the user name (curl -u "KEY:"); never echo it.
            raise Unauthorized(
                f"You didn't provide an API key: the Basic auth password is blank. {BASIC_HINT}"
            )
        return None
    return password


class KeyCache:
    """Active keys looked up in the last `ttl` seconds, so that a busy client does not pay
    a database round trip per request. A revoked key stops working within `ttl`; unknown
    and revoked keys are never cached. `ttl` 0 turns the cache off."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, digest: str) -> KeyRecord | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, record: KeyRecord) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude, but bounded; refills within one ttl
        self._entries[record.key_hash] = (time.monotonic() + self.ttl, record)


async def authenticate_key(
    store: MetadataStore,
    authorization: str | None,
    organization: str | None = None,
    project: str | None = None,
    cache: KeyCache | None = None,
) -> KeyRecord:
    """The request's active key (Bearer, or the password of Basic auth); Unauthorized in
    OpenAI's words otherwise.

    `organization` and `project` are the optional `OpenAI-Organization` / `OpenAI-Project`
    headers: when given they must match the key, as OpenAI requires.
    """
    token = presented_key(authorization)
    if token is None:
        raise Unauthorized(NO_API_KEY_MESSAGE)
    digest = hash_key(token)
    record = cache.get(digest) if cache else None
    if record is None:
        record = await store.find_api_key(digest)
        if cache and record is not None and record.revoked_at is None:
            cache.put(record)
    if record is None or record.revoked_at is not None:
        raise Unauthorized(
            f"Incorrect API key provided: {mask_key(token)}. {CREATE_KEY_HINT}",
            code="invalid_api_key",
        )
    if organization and organization != record.org_id:
        raise Unauthorized(
            "OpenAI-Organization header should match organization for API key",
            code="mismatched_organization",
        )
    if project and project != record.project_id:
        raise Unauthorized(
            "OpenAI-Project header should match project for API key",
            code="mismatched_project",
        )
    return record
