"""The body timeouts: a request body that sends no byte for a while, or that arrives slower
than a minimum rate, ends the request.

The idle timeout bounds the gap between two chunks; the minimum rate (as Apache's
mod_reqtimeout `MinRate`) bounds the average over each window, so that a body trickled a
byte every few seconds, which never trips the idle timeout, cannot hold a connection slot
for hours. Both are kept at the ASGI layer, around `receive`, because only there is the wait
the client's fault: the time counts while the app waits for the next body chunk, never while
the app is busy writing what it got (the server stops reading then). The error raised
unwinds the upload like any other failure, so its quota reservation and temp file are freed
at once, and it is answered 408 in the envelope; the connection is then closed, since the
rest of the body was never read (see `_http.py`).
"""

from __future__ import annotations

import math

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError
from .settings import shown_float


class BodyTimeout(APIError):
    status_code = 408

    def __init__(self, seconds: float) -> None:
        super().__init__(
            f"The request body stalled: no byte of it arrived for {shown_float(seconds)} "
            "seconds, so the request was abandoned and nothing was kept. "
            "Send the body again without pauses.",
            code="request_timeout",
        )


class BodyTooSlow(APIError):
    status_code = 408

    def __init__(self, bytes_per_second: int, window: float) -> None:
        super().__init__(
            f"The request body arrived too slowly: under {bytes_per_second} bytes per second "
            f"over {shown_float(window)} seconds, the least this server accepts, so the "
            "request was abandoned and nothing was kept. Send the body again over a faster "
            "connection.",
            code="request_timeout",
        )


class BodyTimeouts:
    """Raise `BodyTimeout` from `receive` when the next body chunk takes over `idle`
    seconds, and `BodyTooSlow` when, over `window` seconds of waiting for the body, fewer
    than `min_rate` bytes a second arrived. 0 turns either off."""

    def __init__(self, app: ASGIApp, idle: float, min_rate: int = 0, window: float = 60.0) -> None:
        self.app = app
        self.idle = idle
        self.min_rate = min_rate
        self.window = window

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.idle or self.min_rate):
            await self.app(scope, receive, send)
            return
        idle = self.idle or math.inf
        window = self.window
        least = self.min_rate * window  # bytes each window must bring
        body_done = False
        timing: anyio.CancelScope | None = None  # the wait for the next body chunk
        waited = 0.0  # seconds spent waiting for the body in the current window
        got = 0  # bytes that arrived in the current window

        async def timed_receive() -> Message:
            nonlocal body_done, timing, waited, got
            if body_done:
                # The body is read, or the response started (a GET whose announced body
                # never came streams as slowly as its client reads): only disconnects are
                # left, and a response may wait for one as long as it streams.
                return await receive()
            started = anyio.current_time()
            idle_deadline = started + idle
            rate_deadline = started + (window - waited) if got < least else math.inf
            timing = anyio.CancelScope(deadline=min(idle_deadline, rate_deadline))
            message: Message | None = None
            with timing:
                message = await receive()
            timing = None
            if message is None:
                if rate_deadline < idle_deadline:
                    raise BodyTooSlow(self.min_rate, window)
                raise BodyTimeout(idle)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True  # the whole body came (or the client left)
                return message
            waited += anyio.current_time() - started
            got += len(message.get("body", b""))
            if waited >= window:  # a window ends
                if got < least:
                    raise BodyTooSlow(self.min_rate, window)
                waited, got = 0.0, 0
            return message

        def stop_timing() -> None:
            nonlocal body_done
            body_done = True
            if timing is not None:  # a wait already under way (listen_for_disconnect)
                timing.deadline = math.inf

        async def marking_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                stop_timing()
            await send(message)

        await self.app(scope, timed_receive, marking_send)
