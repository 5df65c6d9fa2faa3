"""The body idle timeout: a request body that sends no byte for a while ends the request.

It is kept at the ASGI layer, around `receive`, because only there is the wait the
client's fault: the time counts while the app waits for the next body chunk, never while
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


class BodyIdleTimeout:
    """Raise `BodyTimeout` from `receive` when the next body chunk takes over `seconds`."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.seconds:
            await self.app(scope, receive, send)
            return
        body_done = False
        timing: anyio.CancelScope | None = None  # the wait for the next body chunk

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                # The body is read, or the response started (a GET whose announced body
                # never came streams as slowly as its client reads): only disconnects are
                # left, and a response may wait for one as long as it streams.
                return await receive()
            nonlocal timing
            timing = anyio.CancelScope(deadline=anyio.current_time() + self.seconds)
            message: Message | None = None
            with timing:
                message = await receive()
            timing = None
            if message is None:
                raise BodyTimeout(self.seconds)
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
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
