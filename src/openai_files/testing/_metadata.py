"""The metadata store contract, as tests: subclass and provide the `meta` and `empty_meta`
fixtures."""

from __future__ import annotations

import pytest

from ._metadata_admin import AdminRowsConformance
from ._metadata_audit import AuditConformance
from ._metadata_batches import BatchRowsConformance
from ._metadata_completion import CompletionConformance
from ._metadata_files import FileRowsConformance
from ._metadata_uploads import UploadRowsConformance


@pytest.mark.anyio
class MetadataStoreConformance(
    FileRowsConformance,
    UploadRowsConformance,
    CompletionConformance,
    BatchRowsConformance,
    AdminRowsConformance,
    AuditConformance,
):
    """Every metadata store passes these. Provide `meta`: an opened, migrated store (tests
    may share its database: each makes rows of its own organization); and `empty_meta`: an
    opened, migrated store of a new database that holds no row, for what only a store
    holding nothing shows (the first key)."""
