"""A blocking call run in a worker thread, one at a time, its result shared by its callers.

A thread cannot be cancelled: a caller that stops waiting for one (readiness's timeout,
`GET /readyz`) leaves it running. Started anew by every caller, a call that hangs (a data
folder on a hung disk or network mount) would hold one more thread each time it is asked
for, and a pool of a few threads would soon be all blocked. Shared, it holds one thread
however many callers come and go: a caller that arrives while it runs waits for it, and
the next call starts once it has returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SharedCall(Generic[T]):
    """`await shared()` runs `start()` (which hands a call to a worker thread) unless a call
    it started is still running, in which case it waits for that one. A caller cancelled
    while it waits leaves the call running for the next caller."""

    def __init__(self, start: Callable[[], Awaitable[T]]) -> None:
        self._start = start
        self._running: asyncio.Future[T] | None = None
        #: Calls started: one per call that returned, plus the one running.
        self.started = 0

    async def __call__(self) -> T:
        if self._running is None:
            running = asyncio.ensure_future(self._start())
            running.add_done_callback(self._ended)
            self._running = running
            self.started += 1
        # Shielded: a caller that gives up does not cancel the call others may wait for.
        return await asyncio.shield(self._running)

    def _ended(self, running: asyncio.Future[T]) -> None:
        if self._running is running:
            self._running = None
        if not running.cancelled():
            # Read, so that a failure whose callers all gave up is not logged as unread.
            running.exception()

    def cancel(self) -> None:
        """Stop waiting for the running call, if any (when its store closes); its thread
        ends when the call returns."""
        if self._running is not None:
            self._running.cancel()
            self._running = None
