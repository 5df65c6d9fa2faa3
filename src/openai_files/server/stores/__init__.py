"""Store registry: a URL scheme names the backend; a missing extra is named in the error."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from .base import (
    BlobStore,
    BlobWriter,
    CursorNotFound,
    FileRecord,
    KeyRecord,
    MetadataStore,
    Order,
    Owner,
    QuotaExceeded,
    SchemaMismatch,
    ensure_schema,
)

__all__ = [
    "BlobStore",
    "BlobWriter",
    "CursorNotFound",
    "FileRecord",
    "KeyRecord",
    "MetadataStore",
    "Order",
    "Owner",
    "QuotaExceeded",
    "SchemaMismatch",
    "StoreConfigError",
    "ensure_schema",
    "open_blob_store",
    "open_metadata_store",
]


class StoreConfigError(ValueError):
    """A store URL that names no known backend, or one whose extra is not installed."""


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc and parts.netloc != "localhost":
        raise StoreConfigError(f"{url!r}: only local paths are supported for this scheme")
    # sqlite:////abs/path and sqlite:///abs/path both mean /abs/path
    return "/" + path.lstrip("/") if path.startswith("/") else path


def open_metadata_store(url: str) -> MetadataStore:
    """A metadata store for `url` (not yet opened): `sqlite:///PATH`."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(_path_of(url))
    raise StoreConfigError(f"unknown database URL scheme {scheme!r} in {url!r} (known: sqlite)")


def open_blob_store(url: str) -> BlobStore:
    """A blob store for `url` (not yet opened): `file:///PATH`."""
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from .local import LocalBlobStore

        return LocalBlobStore(_path_of(url))
    raise StoreConfigError(f"unknown storage URL scheme {scheme!r} in {url!r} (known: file)")
