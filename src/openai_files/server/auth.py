"""API keys: made once, stored hashed, always masked.

A key is found by the SHA-256 of the presented secret (an indexed lookup), so no secret is
ever compared byte by byte: the time a lookup takes depends on the hash, which tells an
attacker nothing about any stored key.

Two kinds of key, told apart by how they begin: a project's key (`sk-...`, a service
account's `sk-svcacct-...`) reaches the data routes of its project; an organization's
admin key (`sk-admin-...`) reaches the Administration API of its organization and nothing
else. Each kind presented where the other is needed is refused in OpenAI's words for a key
without the scope.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import secrets
import time
from collections.abc import Iterable

from .._config import mask_key
from . import settings as S
from .audit import key_created, key_deleted, recording
from .errors import (
    CREATE_KEY_HINT,
    NO_API_KEY_MESSAGE,
    MissingAdminScope,
    MissingScope,
    Unauthorized,
)
from .ids import new_key_id
from .stores import AdminKeyRecord, KeyRecord, MetadataStore

KEY_PREFIX = "sk-"
#: How a service account's key begins (OpenAI's `sk-svcacct-`).
SERVICE_ACCOUNT_KEY_PREFIX = "sk-svcacct-"
#: How an admin key begins (OpenAI's `sk-admin-`); no project key begins so.
ADMIN_KEY_PREFIX = "sk-admin-"


def hash_key(key: str) -> str:
    """The stored form of a key. Keys carry 256 random bits, so a plain SHA-256 suffices."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _hint(secret: str, prefix: str) -> str:
    """How a key is shown once made: its kind's prefix, then 4 of its first and its last
    4 characters (`sk-admin-abcd****wxyz`; a project key's is `mask_key`'s form)."""
    return f"{prefix}{secret[len(prefix) : len(prefix) + 4]}****{secret[-4:]}"


def _secret(prefix: str) -> str:
    while True:
        secret = prefix + secrets.token_urlsafe(32)
        # A project key that happened to begin like an admin key would be looked up among
        # the admin keys (one chance in 2**36): draw again.
        if prefix == ADMIN_KEY_PREFIX or not secret.startswith(ADMIN_KEY_PREFIX):
            return secret


@dataclasses.dataclass(frozen=True)
class NewKey:
    record: KeyRecord
    secret: str


@dataclasses.dataclass(frozen=True)
class NewAdminKey:
    record: AdminKeyRecord
    secret: str


def new_key(
    org_id: str,
    project_id: str,
    *,
    name: str | None = S.DEFAULT_KEY_NAME,
    service_account_id: str | None = None,
    now: int | None = None,
) -> NewKey:
    """A new key of the project (of its service account, when given): not yet stored."""
    prefix = SERVICE_ACCOUNT_KEY_PREFIX if service_account_id else KEY_PREFIX
    secret = _secret(prefix)
    record = KeyRecord(
        id=new_key_id(),
        org_id=org_id,
        project_id=project_id,
        key_hash=hash_key(secret),
        hint=_hint(secret, prefix),
        created_at=int(time.time()) if now is None else now,
        revoked_at=None,
        name=name,
        service_account_id=service_account_id,
    )
    return NewKey(record, secret)


def new_admin_key(
    org_id: str, name: str | None, *, expires_in: int | None = None, now: int | None = None
) -> NewAdminKey:
    """A new admin key of the organization, expiring `expires_in` seconds after it is made
    (None: never): not yet stored."""
    secret = _secret(ADMIN_KEY_PREFIX)
    created_at = int(time.time()) if now is None else now
    record = AdminKeyRecord(
        id=new_key_id(),
        org_id=org_id,
        key_hash=hash_key(secret),
        hint=_hint(secret, ADMIN_KEY_PREFIX),
        name=name,
        created_at=created_at,
        expires_at=None if expires_in is None else created_at + expires_in,
        revoked_at=None,
    )
    return NewAdminKey(record, secret)


async def create_key(
    store: MetadataStore, org_id: str, project_id: str, name: str | None = S.DEFAULT_KEY_NAME
) -> NewKey:
    """Create and store a key (the command line's: the audit log's `api_key.created` has no
    actor); the secret is returned once and never stored. Raises ProjectArchived when the
    project is archived."""
    key = new_key(org_id, project_id, name=name)
    await store.add_api_key(key.record, audit=recording(key_created(key.record, None)))
    return key


async def create_first_key(store: MetadataStore, org_id: str, project_id: str) -> NewKey | None:
    """Create and store a key when the store holds none at all (admin keys and revoked ones
    count), as a server's first start does; None when it holds one. Servers starting
    together on one new database mint one key between them, not one each."""
    key = new_key(org_id, project_id)
    made = await store.add_first_api_key(key.record, audit=recording(key_created(key.record, None)))
    return key if made else None


async def create_admin_key(
    store: MetadataStore, org_id: str, name: str | None, expires_in: int | None = None
) -> NewAdminKey:
    """Create and store an admin key (the command line's: no actor in the audit log); the
    secret is returned once and never stored."""
    key = new_admin_key(org_id, name, expires_in=expires_in)
    await store.add_admin_key(key.record, audit=recording(key_created(key.record, None)))
    return key


async def revoke_key(store: MetadataStore, key_id: str, now: int) -> bool | None:
    """Revoke a project's key or an admin key by its id, as the command line does (the
    audit log's `api_key.deleted` has no actor): True when this call revoked it, False
    when it was revoked already, None when there is no such key."""
    found: KeyRecord | AdminKeyRecord | None = await store.get_api_key(key_id)
    if found is not None:
        audit = recording(key_deleted(found, None))
        return await store.revoke_api_key(key_id, now, audit=audit)
    found = await store.get_admin_key(key_id)
    if found is not None:
        audit = recording(key_deleted(found, None))
        return await store.revoke_admin_key(key_id, now, audit=audit)
    return None


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
    and revoked keys are never cached. `ttl` 0 turns the cache off.

    `generation` counts the `forget` calls: a lookup reads it before asking the store and
    hands it to `put`, which keeps nothing when a `forget` ran meanwhile (the record read
    may be of a key revoked since, which would otherwise come back for one `ttl`)."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self.generation = 0
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, digest: str) -> KeyRecord | None:
        entry = self._entries.get(digest)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[digest]
            return None
        return entry[1]

    def put(self, record: KeyRecord, generation: int) -> None:
        """Keep `record`, read from the store after `generation` was read, unless a key
        was forgotten since."""
        if self.ttl <= 0 or generation != self.generation:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude, but bounded; refills within one ttl
        self._entries[record.key_hash] = (time.monotonic() + self.ttl, record)

    def forget(self, records: Iterable[KeyRecord]) -> None:
        """Drop keys revoked here: they stop working on this server at once (others
        trust their own copy for at most `ttl`)."""
        self.generation += 1
        for record in records:
            self._entries.pop(record.key_hash, None)


def _incorrect(token: str) -> Unauthorized:
    return Unauthorized(
        f"Incorrect API key provided: {mask_key(token)}. {CREATE_KEY_HINT}",
        code="invalid_api_key",
    )


def _check_organization(organization: str | None, org_id: str) -> None:
    if organization and organization != org_id:
        raise Unauthorized(
            "OpenAI-Organization header should match organization for API key",
            code="mismatched_organization",
        )


async def _project_key(
    store: MetadataStore, digest: str, cache: KeyCache | None
) -> KeyRecord | None:
    """The active project key of this hash (from the cache when it holds it)."""
    record = cache.get(digest) if cache else None
    if record is None:
        generation = cache.generation if cache else 0
        record = await store.find_api_key(digest)
        if cache and record is not None and record.revoked_at is None:
            cache.put(record, generation)
    return None if record is None or record.revoked_at is not None else record


def _usable_admin_key(record: AdminKeyRecord | None, now: float) -> AdminKeyRecord | None:
    if record is None or record.revoked_at is not None:
        return None
    if record.expires_at is not None and record.expires_at <= now:
        return None
    return record


async def authenticate_key(
    store: MetadataStore,
    authorization: str | None,
    organization: str | None = None,
    project: str | None = None,
    cache: KeyCache | None = None,
    scope: str = "api.files.read",
) -> KeyRecord:
    """The request's active project key (Bearer, or the password of Basic auth);
    Unauthorized in OpenAI's words otherwise: an organization's admin key is refused as a
    key without `scope` (what the route needs).

    `organization` and `project` are the optional `OpenAI-Organization` / `OpenAI-Project`
    headers: when given they must match the key, as OpenAI requires.
    """
    token = presented_key(authorization)
    if token is None:
        raise Unauthorized(NO_API_KEY_MESSAGE)
    digest = hash_key(token)
    if token.startswith(ADMIN_KEY_PREFIX):
        if _usable_admin_key(await store.find_admin_key(digest), time.time()):
            raise MissingScope(scope)
        raise _incorrect(token)
    record = await _project_key(store, digest, cache)
    if record is None:
        raise _incorrect(token)
    _check_organization(organization, record.org_id)
    if project and project != record.project_id:
        raise Unauthorized(
            "OpenAI-Project header should match project for API key",
            code="mismatched_project",
        )
    return record


async def authenticate_admin_key(
    store: MetadataStore,
    authorization: str | None,
    organization: str | None = None,
    cache: KeyCache | None = None,
    scope: str = "api.management.read",
) -> AdminKeyRecord:
    """The request's admin key: active (not revoked, not expired). A project's key is
    refused as a key without `scope` (403, MissingAdminScope); an unknown, revoked or
    expired key as an incorrect one (401). An `OpenAI-Organization` header must name the
    key's organization. Admin keys are not cached: one revoked stops working at once."""
    token = presented_key(authorization)
    if token is None:
        raise Unauthorized(NO_API_KEY_MESSAGE)
    digest = hash_key(token)
    if not token.startswith(ADMIN_KEY_PREFIX):
        if await _project_key(store, digest, cache):
            raise MissingAdminScope(scope)
        raise _incorrect(token)
    record = _usable_admin_key(await store.find_admin_key(digest), time.time())
    if record is None:
        raise _incorrect(token)
    _check_organization(organization, record.org_id)
    return record
