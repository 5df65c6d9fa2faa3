from collections.abc import AsyncIterator

import pytest

from openai_files.server.stores.postgres import PostgresMetadataStore
from openai_files.testing import MetadataCopyConformance, MetadataStoreConformance

from .._services import PostgresCluster


@pytest.fixture(scope="module")
def database(postgres: PostgresCluster) -> str:
    return postgres.create_database()


async def _opened(url: str) -> AsyncIterator[PostgresMetadataStore]:
    store = PostgresMetadataStore(url)
    await store.open()
    await store.migrate()
    yield store
    await store.close()


class TestPostgresMetadata(MetadataStoreConformance):
    @pytest.fixture
    async def meta(self, database: str) -> AsyncIterator[PostgresMetadataStore]:
        async for store in _opened(database):  # one database for the module's tests
            yield store

    @pytest.fixture
    async def empty_meta(self, postgres: PostgresCluster) -> AsyncIterator[PostgresMetadataStore]:
        async for store in _opened(postgres.create_database()):
            yield store


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
