"""The cache of checked keys: a key forgotten (revoked on this server) while a lookup of it
was waiting on the store does not come back with that lookup's answer."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from openai_files.server.auth import KeyCache, authenticate_key, hash_key
from openai_files.server.errors import Unauthorized
from openai_files.server.stores import KeyRecord

TOKEN = "sk-" + "a" * 48


class SlowStore:
    """A store whose key lookup answers what `row` is when asked, once `release` is set."""

    def __init__(self, row: KeyRecord) -> None:
        self.row = row
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def find_api_key(self, digest: str) -> KeyRecord | None:
        answer = self.row if digest == self.row.key_hash else None
        self.asked.set()
        await self.release.wait()
        return answer


def _record() -> KeyRecord:
    return KeyRecord("key_a", "org-a", "proj_a", hash_key(TOKEN), "aaaa", 1, None)


async def _authenticate(store: Any, cache: KeyCache) -> KeyRecord:
    return await authenticate_key(store, f"Bearer {TOKEN}", cache=cache)


def test_a_key_forgotten_during_its_lookup_is_not_cached() -> None:
    async def scenario() -> None:
        active = _record()
        store = SlowStore(active)
        cache = KeyCache(60.0)
        lookup = asyncio.create_task(_authenticate(store, cache))
        await store.asked.wait()  # the lookup read the active row and waits
        store.row = dataclasses.replace(active, revoked_at=2)  # revoked here meanwhile
        cache.forget([active])
        store.release.set()
        assert await lookup == active  # the request that was in flight passes
        assert cache.get(active.key_hash) is None  # but its answer is not kept
        with pytest.raises(Unauthorized):  # the next request looks it up: revoked
            await _authenticate(store, cache)

    asyncio.run(scenario())


def test_a_lookup_with_no_forget_meanwhile_is_cached() -> None:
    async def scenario() -> None:
        active = _record()
        store = SlowStore(active)
        store.release.set()
        cache = KeyCache(60.0)
        assert await _authenticate(store, cache) == active
        assert cache.get(active.key_hash) == active

    asyncio.run(scenario())
