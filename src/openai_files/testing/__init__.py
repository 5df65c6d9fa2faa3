"""Conformance suites for store backends, written once and run against every backend.

A backend's test module subclasses the suites and provides fixtures (see the project's
`tests/stores/`)::

    class TestMyMetadata(MetadataStoreConformance):
        @pytest.fixture
        async def meta(self): ...
"""

from ._blobs import BlobStoreConformance
from ._metadata import MetadataStoreConformance

__all__ = ["BlobStoreConformance", "MetadataStoreConformance"]
