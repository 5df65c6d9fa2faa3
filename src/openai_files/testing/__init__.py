"""Conformance suites for store backends, written once and run against every backend.

A backend's test module subclasses the suites and provides fixtures (see the project's
`tests/stores/`)::

    class TestMyMetadata(MetadataStoreConformance):
        @pytest.fixture
        async def meta(self): ...  # opened and migrated

        @pytest.fixture
        async def empty_meta(self): ...  # the same, on a new database that holds nothing

The real backing services the suites and `openai-files dev-stack` run (a throwaway PostgreSQL,
SeaweedFS's S3) are in `openai_files.testing.services`; a fake OpenAI-compatible engine for
the Batch API (faults on demand) is in `openai_files.testing.engine`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._blobs import BlobStoreConformance
    from ._metadata import MetadataStoreConformance
    from ._metadata_copy import MetadataCopyConformance

__all__ = ["BlobStoreConformance", "MetadataCopyConformance", "MetadataStoreConformance"]


def __getattr__(name: str) -> Any:
    # The suites import pytest: load them when asked for, so that `testing.services` (used by
    # `openai-files dev-stack`) works where pytest is not installed.
    if name == "BlobStoreConformance":
        from ._blobs import BlobStoreConformance

        return BlobStoreConformance
    if name == "MetadataCopyConformance":
        from ._metadata_copy import MetadataCopyConformance

        return MetadataCopyConformance
    if name == "MetadataStoreConformance":
        from ._metadata import MetadataStoreConformance

        return MetadataStoreConformance
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
