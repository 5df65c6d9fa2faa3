from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server.stores.local import LocalBlobStore
from openai_files.testing import BlobStoreConformance


class TestLocalBlobs(BlobStoreConformance):
    @pytest.fixture
    async def blobs(self, tmp_path: Path) -> AsyncIterator[LocalBlobStore]:
        store = LocalBlobStore(tmp_path / "data")
        await store.open()
        yield store
        await store.close()
