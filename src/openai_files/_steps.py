"""What is common to the two drivers' loops: hand out an operation's effects one by one,
take back each one's result or error, and end an operation of a stopped `Gather`.

`Client._run` and `AsyncClient._run` differ only in how they perform an effect (a blocking
call or an `await`); the rest of their loop is `Steps`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar

from ._core import Effect, Op, Read

T = TypeVar("T")


class Stopped(BaseException):
    """An operation of a `Gather` ends: the call that started it was interrupted."""


class Flight(Protocol):
    """One operation of a `Gather`, as its driver keeps it."""

    #: The gather was stopped (the caller was interrupted or cancelled).
    @property
    def stopped(self) -> bool: ...

    #: Its request's body went whole: the server takes it, its answer is waited for.
    @property
    def landing(self) -> bool: ...


class Steps(Generic[T]):
    """The part of a driver that performs nothing: it hands out `op`'s effects one by one
    (iterate), takes back each one's result (`ok`) or error (`failed`), and ends with the
    operation's `value`. Once `flight` is stopped, the next effect raises `Stopped`, but
    for reading the answer to a request whose body went whole."""

    def __init__(self, op: Op[T], flight: Flight | None = None) -> None:
        self._op = op
        self._flight = flight
        self._result: Any = None
        self._error: Exception | None = None
        self.value: T

    def __iter__(self) -> Iterator[Effect]:
        op, flight = self._op, self._flight
        while True:
            try:
                effect = op.send(self._result) if self._error is None else op.throw(self._error)
            except StopIteration as done:
                self.value = done.value
                return
            if flight is not None and _ends(flight, effect):
                raise Stopped
            self._result, self._error = None, None
            yield effect

    def ok(self, result: Any) -> None:
        self._result = result

    def failed(self, error: Exception) -> None:
        self._error = error


def _ends(flight: Flight, effect: Effect) -> bool:
    """Whether a stopped flight ends here: anywhere but reading a landing answer."""
    return flight.stopped and not (flight.landing and isinstance(effect, Read))
