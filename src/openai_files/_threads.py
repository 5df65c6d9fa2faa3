"""The blocking driver's `Gather`: operations in threads, and how an interrupt ends them.

`Client` runs each operation of a `Gather` in a thread of its own. A Ctrl-C reaches the
main thread only: there `gather` sets the shared `Interrupt`, every thread ends at its next
step, and the requests whose bodies went whole (`landing`: the server takes them) are
waited for, up to `GRACE` seconds, so that their results still reach `on_done`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from ._core import Gather, Op
from ._steps import Stopped

#: Runs one operation in the current thread, as one flight of a gather.
Run = Callable[[Op[Any], "Flight"], Any]


def gather(effect: Gather, stop: Interrupt | None, run: Run) -> list[Any]:
    """Each operation in a thread of its own, at most `limit` at once.

    After an error no other operation starts, but those running are waited for and
    their results handed to `on_done` (an upload's accepted parts are kept for its
    resume); then the first error is raised.

    Interrupted (Ctrl-C: a KeyboardInterrupt in this thread), it sets `stop`, so that
    every thread below ends at its next step (an upload's part in flight is abandoned
    mid-body), and raises once the requests whose bodies went whole are answered and
    their results handed to `on_done` (the server takes such a part: its id must be
    kept), or after `GRACE` seconds at most; at once when there are none. The threads
    are daemons, so a program that exits on the interrupt does not wait for them.
    """
    stop = Interrupt() if stop is None else stop
    results: list[Any] = [None] * len(effect.ops)
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for index in range(len(effect.ops)):
        todo.put(index)
    finished: queue.SimpleQueue[_Finished] = queue.SimpleQueue()
    halt = threading.Event()  # an operation failed: no other starts

    def work() -> None:
        while not (halt.is_set() or stop.is_set()):
            try:
                index = todo.get_nowait()
            except queue.Empty:
                break
            flight = Flight(stop)
            try:
                finished.put((index, run(effect.ops[index], flight), None, flight))
            except BaseException as exc:  # handed to the gathering thread
                finished.put((index, None, exc, flight))
        finished.put((-1, None, None, None))  # this worker is done

    workers = [
        threading.Thread(target=work, name="openai-files", daemon=True)
        for _ in range(min(effect.limit, len(effect.ops)))
    ]
    first: BaseException | None = None
    try:
        for worker in workers:
            worker.start()
        running = len(workers)
        while running:
            index, result, exc, flight = _next(finished, stop)
            try:
                if index < 0:
                    running -= 1
                elif exc is not None:
                    if first is None:
                        first = exc
                        halt.set()
                else:
                    results[index] = result
                    if effect.on_done is not None:
                        effect.on_done(index, result)
            finally:
                if flight is not None:
                    flight.landed()
    except BaseException:
        stop.halt()
        _land(finished, stop, effect.on_done)
        raise
    for op in effect.ops:
        op.close()  # those never started
    if first is not None:
        raise first
    return results


def _next(finished: Any, stop: threading.Event) -> _Finished:
    """The next result; `Stopped` as soon as `stop` is set (by an outer `_gather`, in
    another thread: the interrupt reaches the main thread only)."""
    while True:
        if stop.is_set():
            raise Stopped
        try:
            item: _Finished = finished.get(timeout=POLL)
        except queue.Empty:
            continue
        return item


#: How often a gathering thread other than the main one looks whether it was stopped.
POLL = 0.05
#: The most an interrupted call waits for the answers to requests whose bodies went whole.
GRACE = 1.5


class Interrupt(threading.Event):
    """Set when a call is interrupted; counts the requests whose bodies went whole and
    whose results are not yet handed on (`landing`), which the interrupt waits for until
    `until` (a `time.monotonic()`)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.landing = 0
        self.until = 0.0

    def halt(self) -> None:
        with self._lock:
            if not self.is_set():
                self.until = time.monotonic() + GRACE
                self.set()

    def land(self) -> bool:
        """Count one more landing request, unless the call was interrupted already."""
        with self._lock:
            if self.is_set():
                return False
            self.landing += 1
            return True

    def landed(self) -> None:
        with self._lock:
            self.landing -= 1


class Flight:
    """One operation of a `Gather`: whether its request's body went whole (`landing`)."""

    def __init__(self, stop: Interrupt) -> None:
        self.stop = stop
        self.landing = False

    @property
    def stopped(self) -> bool:
        return self.stop.is_set()

    def land(self) -> bool:
        self.landing = self.stop.land()
        return self.landing

    def landed(self) -> None:
        if self.landing:
            self.landing = False
            self.stop.landed()


#: An operation's index (-1: its worker is done), result, error and flight.
_Finished = tuple[int, Any, "BaseException | None", "Flight | None"]


def _land(finished: Any, stop: Interrupt, on_done: Any) -> None:
    """After an interrupt: hand the results that come to `on_done` until no request is
    landing any more, or `stop.until`."""
    while True:
        try:
            item: _Finished = finished.get_nowait()
        except queue.Empty:
            left = stop.until - time.monotonic()
            if stop.landing <= 0 or left <= 0:
                return
            try:
                item = finished.get(timeout=min(POLL, left))
            except queue.Empty:
                continue
        index, result, exc, flight = item
        try:
            if index >= 0 and exc is None and on_done is not None:
                on_done(index, result)
        finally:
            if flight is not None:
                flight.landed()


class Stoppable(httpx.SyncByteStream):
    """A request body that ends (the request with it) once `flight.stop` is set, before
    its last chunk only: from there it is landing (see `Interrupt`). `length` is the
    body's (None: unknown, the body lands once its chunks are all written)."""

    def __init__(self, inner: httpx.SyncByteStream, flight: Flight, length: int | None) -> None:
        self._inner = inner
        self._flight = flight
        self._length = length

    def __iter__(self) -> Iterator[bytes]:
        flight, sent = self._flight, 0
        for chunk in self._inner:
            sent += len(chunk)
            last = self._length is not None and sent >= self._length
            if flight.stop.is_set() or (last and not flight.landing and not flight.land()):
                raise Stopped
            yield chunk
        if not flight.landing and not flight.land():
            raise Stopped

    def close(self) -> None:
        self._inner.close()
