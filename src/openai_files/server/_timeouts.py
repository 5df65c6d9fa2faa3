"""The body idle timeout: a request body that sends no byte for a while ends the request.

It is kept at the ASGI layer, around `receive`, because only there is the wait the
client's fault: the time counts while the app waits for the next body chunk, never while
the app is busy writing what it got (the server stops reading then). The error raised
unwinds the upload like any other failure, so its quota reservation and temp file are freed
at once, and it is answered 408 in the envelope; the connection is then closed, since the
rest of the body was never read (see `_http.py`).
"""

from __future__ import annotations

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import APIError


class BodyTimeout(APIError):
    status_code = 408

    def __init__(self, seconds: float) -> None:
        shown = int(seconds) if float(seconds).is_integer() else seconds
        super().__init__(
            f"The request body stalled: no byte of it arrived for {shown} seconds, so the "
            "request was abandoned and nothing was kept. Send the body again without pauses.",
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

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                # Only disconnects are left: a response may wait for one as long as it
                # streams.
                return await receive()
            try:
                with anyio.fail_after(self.seconds):
                    message = await receive()
            except TimeoutError:
                raise BodyTimeout(self.seconds) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        await self.app(scope, timed_receive, send)
