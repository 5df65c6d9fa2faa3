from collections.abc import AsyncIterator

import pytest

from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.testing import MetadataCopyConformance, MetadataStoreConformance

from .._services import PostgresCluster


@pytest.fixture(scope="module")
def database(postgres: PostgresCluster) -> str:
    return postgres.create_database()


class TestPostgresMetadata(MetadataStoreConformance):
    @pytest.fixture
    async def meta(self, database: str) -> AsyncIterator[PostgresMetadataStore]:
        store = PostgresMetadataStore(database)
        await store.open()
        await store.migrate()
        yield store
        await store.close()


class TestPostgresCopy(MetadataCopyConformance):
    @pytest.fixture
    async def meta(self, database: str) -> AsyncIterator[PostgresMetadataStore]:
        store = PostgresMetadataStore(database)
        await store.open()
        await store.migrate()
        yield store
        await store.close()

    @pytest.fixture
    async def empty_meta(self, postgres: PostgresCluster) -> AsyncIterator[PostgresMetadataStore]:
        store = PostgresMetadataStore(postgres.create_database())
        await store.open()
        await store.migrate()
        yield store
        await store.close()
