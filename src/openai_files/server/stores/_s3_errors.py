"""How the S3 store's failures are told: one line each, the client's internals logged."""

from __future__ import annotations

import logging

from ._errors import StoreUnavailable

#: The S3 store's logger, one for all its modules.
log = logging.getLogger("openai_files.server.stores.s3")


def first_line(exc: BaseException) -> str:
    """obstore's message without the Rust `Debug source:` dump that follows it (~30 lines)."""
    text = str(exc)
    return text.split("\n", 1)[0].strip() or type(exc).__name__


def unavailable(exc: BaseException) -> StoreUnavailable:
    """The error to raise (`from None`): its first line; the whole text, with the client's
    internals, only in the debug log."""
    log.debug("object storage error: %s", exc)
    return StoreUnavailable(f"object storage is unreachable: {first_line(exc)}")
