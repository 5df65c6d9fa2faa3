"""The async driver's `Gather`: operations in tasks, and how a cancellation ends them.

`AsyncClient` runs each operation of a `Gather` in a task of its own, inside a shielded
cancel scope (a `Flight`). When the caller is cancelled (Ctrl-C under `asyncio.run`, a
timeout, a cancelled task group), `gather` ends each flight at once, except those whose
request body went whole (`landing`: the server takes such a part), which get up to `GRACE`
seconds more for their answer, so that their results still reach `on_done`; as
`Client` does on Ctrl-C.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import anyio.to_thread
import httpx

from ._core import Gather, Op
from ._steps import Stopped
from ._threads import GRACE

#: Runs one operation in the current task, as one flight of a gather.
Run = Callable[[Op[Any], "Flight"], Awaitable[Any]]


class Flight:
    """One operation of a `Gather`: its cancel scope, whether its request's body went
    whole (`landing`), and whether the gather was stopped (`stopped`)."""

    def __init__(self) -> None:
        self.scope = anyio.CancelScope(shield=True)
        self.landing = False
        self.stopped = False

    def stop(self) -> None:
        """End at once, or within `GRACE` seconds when landing."""
        self.stopped = True
        if self.landing:
            self.scope.deadline = min(self.scope.deadline, anyio.current_time() + GRACE)
        else:
            self.scope.cancel()

    def sending(self, request: httpx.Request) -> None:
        """A new request: it lands once its body has gone whole."""
        self.landing = False
        if isinstance(request.stream, httpx.AsyncByteStream):
            length = request.headers.get("content-length")
            request.stream = _Landing(
                request.stream, self, int(length) if length is not None else None
            )


class _Landing(httpx.AsyncByteStream):
    """A request body that marks its flight as landing as its last chunk goes (`length`
    is the body's; None: unknown, it lands once its chunks are all written)."""

    def __init__(self, inner: httpx.AsyncByteStream, flight: Flight, length: int | None) -> None:
        self._inner = inner
        self._flight = flight
        self._length = length

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self._inner:
            sent += len(chunk)
            if self._length is not None and sent >= self._length:
                self._flight.landing = not self._flight.stopped
            yield chunk
        self._flight.landing = not self._flight.stopped

    async def aclose(self) -> None:
        await self._inner.aclose()


async def gather(effect: Gather, run: Run) -> list[Any]:
    """Each operation in a task of its own (run by `run`), at most `limit` at once.

    After an error no other operation starts, but those running end and their results
    reach `on_done`; then the first error is raised. `on_done` is blocking work (it writes
    the state file): it runs in a worker thread, one call at a time, shielded, so that a
    result that came is never lost to a cancellation.
    """
    results: list[Any] = [None] * len(effect.ops)
    limiter = anyio.Semaphore(effect.limit)
    done_lock = anyio.Lock()
    errors: list[Exception] = []
    flights: set[Flight] = set()
    stopped = False
    left = len(effect.ops)
    all_done = anyio.Event()

    async def one(index: int, op: Op[Any]) -> None:
        nonlocal left
        try:
            async with limiter:
                if errors or stopped:
                    return
                flight = Flight()
                flights.add(flight)
                with flight.scope:
                    try:
                        results[index] = await run(op, flight)
                        if effect.on_done is not None:
                            with anyio.CancelScope(shield=True):
                                async with done_lock:
                                    await anyio.to_thread.run_sync(
                                        effect.on_done, index, results[index]
                                    )
                    except Stopped:
                        pass
                    except Exception as exc:
                        errors.append(exc)
                flights.discard(flight)
        finally:
            left -= 1
            if left == 0:
                all_done.set()

    try:
        async with anyio.create_task_group() as group:
            for index, op in enumerate(effect.ops):
                group.start_soon(one, index, op)
            try:
                if left:
                    await all_done.wait()
            except BaseException:
                stopped = True
                for flight in list(flights):
                    flight.stop()
                raise
    except BaseExceptionGroup as group_errors:
        raise _first_error(group_errors) from None
    finally:
        for op in effect.ops:
            op.close()  # those never started
    if errors:
        raise errors[0]
    return results


def _first_error(errors: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first error of a task group (the one that stopped the others)."""
    first = errors.exceptions[0]
    return _first_error(first) if isinstance(first, BaseExceptionGroup) else first
