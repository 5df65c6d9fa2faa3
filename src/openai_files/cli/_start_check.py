"""The start check of `openai-files serve`: before the server answers anything, the blob store
must take the credentials it has (the database is checked as it is opened)."""

from __future__ import annotations

import asyncio
from typing import Any

from ._common import EXIT_FAILURE, EXIT_USAGE, CLIError


def check_storage(settings: Any) -> None:
    """One cheap request to the blob store of `settings`; a CLIError of one line otherwise:
    exit 2 for a URL or environment that is wrong before anything is asked (no credentials),
    1 for a store that answers no (credentials refused, no such bucket, no endpoint)."""
    from ..server.stores import StoreConfigError, StoreUnavailable, check_blob_store

    try:
        asyncio.run(check_blob_store(settings.storage_url, settings))
    except StoreConfigError as exc:
        raise CLIError(f"storage: {exc}", EXIT_USAGE) from None
    except StoreUnavailable as exc:
        raise CLIError(f"storage: {exc}", EXIT_FAILURE) from None
