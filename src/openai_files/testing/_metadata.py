"""The metadata store contract, as tests: subclass and provide a `meta` fixture."""

from __future__ import annotations

import pytest

from ._metadata_admin import AdminRowsConformance
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
):
    """Every metadata store passes these. Provide `meta`: an opened, migrated store."""
