"""Store registry: a URL scheme names the backend; a missing extra is named in the error."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from ..settings import Settings
from ._errors import (
    BatchInputGone,
    BatchNotCancellable,
    CursorNotFound,
    LeaseLost,
    LimitReached,
    PendingUploadsExceeded,
    ProjectArchived,
    ProjectNotFound,
    QuotaExceeded,
    RowsRefused,
    SchemaMismatch,
    StoreNotEmpty,
    StoreUnavailable,
    TooManyBatches,
    UploadFull,
    UploadNotFound,
    UploadNotPending,
)
from ._records import (
    AdminKeyRecord,
    Audit,
    AuditQuery,
    AuditRecord,
    BatchRecord,
    BatchRequestRecord,
    BatchResult,
    Chunk,
    FileRecord,
    KeyRecord,
    Order,
    Owner,
    PartRecord,
    ProjectRecord,
    ServiceAccountRecord,
    UploadRecord,
)
from ._urls import redact_url
from .base import BlobStore, BlobWriter, MetadataStore, ensure_schema, one_writer

__all__ = [
    "AdminKeyRecord",
    "Audit",
    "AuditQuery",
    "AuditRecord",
    "BatchInputGone",
    "BatchNotCancellable",
    "BatchRecord",
    "BatchRequestRecord",
    "BatchResult",
    "BlobStore",
    "BlobWriter",
    "Chunk",
    "CursorNotFound",
    "FileRecord",
    "KeyRecord",
    "LeaseLost",
    "LimitReached",
    "MetadataStore",
    "Order",
    "Owner",
    "PartRecord",
    "PendingUploadsExceeded",
    "ProjectArchived",
    "ProjectNotFound",
    "ProjectRecord",
    "QuotaExceeded",
    "RowsRefused",
    "SchemaMismatch",
    "ServiceAccountRecord",
    "StoreConfigError",
    "StoreNotEmpty",
    "StoreUnavailable",
    "TooManyBatches",
    "UploadFull",
    "UploadNotFound",
    "UploadNotPending",
    "UploadRecord",
    "check_blob_store",
    "ensure_schema",
    "one_writer",
    "open_blob_store",
    "open_metadata_store",
    "redact_url",
]


class StoreConfigError(ValueError):
    """A store URL that names no known backend, or one whose extra is not installed."""


def _require(module: str, extra: str) -> None:
    """Fail with the extra to install when an optional dependency is missing."""
    import importlib

    try:
        importlib.import_module(module)
    except ImportError:
        raise StoreConfigError(
            f"this store needs {module}, which is not installed: "
            f"pip install 'openai-files[{extra}]'"
        ) from None


def _path_of(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path)
    if parts.netloc and parts.netloc != "localhost":
        raise StoreConfigError(f"{url!r}: only local paths are supported for this scheme")
    # sqlite:////abs/path and sqlite:///abs/path both mean /abs/path
    return "/" + path.lstrip("/") if path.startswith("/") else path


def open_metadata_store(url: str, settings: Settings | None = None) -> MetadataStore:
    """A metadata store for `url` (not yet opened): `sqlite:///PATH` or
    `postgresql://USER[:PASSWORD]@HOST[:PORT]/DB`, tuned by `settings` (its `database_*`
    values; the defaults without it)."""
    settings = settings or Settings()
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from .sqlite import SQLiteMetadataStore

        return SQLiteMetadataStore(_path_of(url))
    if scheme in ("postgresql", "postgres"):
        _require("asyncpg", "postgres")
        from .postgres import PostgresMetadataStore

        return PostgresMetadataStore(
            url,
            pool_min_size=settings.database_pool_min_size,
            pool_max_size=settings.database_pool_max_size,
            connect_timeout=settings.database_connect_timeout_seconds,
        )
    raise StoreConfigError(
        f"unknown database URL scheme {scheme!r} in {redact_url(url)!r} (known: sqlite, postgresql)"
    )


def open_blob_store(url: str, settings: Settings | None = None) -> BlobStore:
    """A blob store for `url` (not yet opened): `file:///PATH` or
    `s3://BUCKET[/PREFIX]?endpoint=URL&region=REGION`, tuned by `settings` (its `storage_*`
    values; the defaults without it)."""
    settings = settings or Settings()
    scheme = urlsplit(url).scheme
    if scheme == "file":
        from .local import LocalBlobStore

        return LocalBlobStore(_path_of(url))
    if scheme == "s3":
        _require("obstore", "s3")
        from .s3 import S3BlobStore

        try:
            return S3BlobStore(
                url,
                part_bytes=settings.storage_part_bytes,
                concurrent_parts=settings.storage_concurrent_parts,
                check_timeout=settings.storage_check_timeout_seconds,
            )
        except ValueError as exc:
            raise StoreConfigError(str(exc)) from None
    raise StoreConfigError(f"unknown storage URL scheme {scheme!r} in {url!r} (known: file, s3)")


async def check_blob_store(url: str, settings: Settings | None = None) -> None:
    """The start check of the blob store of `url`: build it and make one cheap request with
    the credentials it has, so that a server refuses to start rather than answer 503.

    Raises StoreConfigError when the URL or the environment is wrong before anything is
    asked (e.g. S3 without credentials), StoreUnavailable when the store answers no (its
    one line names the credentials, the bucket or the endpoint). A local folder passes.
    """
    store = open_blob_store(url, settings)
    await store.check()
