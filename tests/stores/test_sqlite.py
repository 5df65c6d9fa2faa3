from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from openai_files.server.stores.sqlite import SQLiteMetadataStore
from openai_files.testing import MetadataStoreConformance


class TestSQLiteMetadata(MetadataStoreConformance):
    @pytest.fixture
    async def meta(self, tmp_path: Path) -> AsyncIterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "files.sqlite3")
        await store.open()
        await store.migrate()
        yield store
        await store.close()
