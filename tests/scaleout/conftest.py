"""What the scale-out tests share beyond tests/conftest.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .._services import PostgresCluster, SeaweedS3


@pytest.fixture
def own() -> Iterator[tuple[PostgresCluster, SeaweedS3]]:
    """A PostgreSQL cluster and an S3 server of this test alone, so that it can stop them."""
    pg, s3 = PostgresCluster().start(), SeaweedS3().start()
    try:
        yield pg, s3
    finally:
        pg.stop()
        s3.stop()
