import secrets
from collections.abc import AsyncIterator

import pytest

from openai_files.server.stores.s3 import S3BlobStore
from openai_files.testing import BlobStoreConformance

from .._services import SeaweedS3


class TestS3Blobs(BlobStoreConformance):
    @pytest.fixture
    async def blobs(
        self, s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[S3BlobStore]:
        for name, value in s3.env.items():
            monkeypatch.setenv(name, value)
        store = S3BlobStore(s3.url("conformance", prefix=secrets.token_hex(4)))
        await store.open()
        yield store
        await store.close()


@pytest.mark.anyio
async def test_aborted_upload_leaves_no_multipart_upload(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:

    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    bucket = "abort-check"
    store = S3BlobStore(s3.url(bucket))
    writer = store.writer("file-" + secrets.token_hex(8))
    for _ in range(20):  # 20 MiB: past the first part, so a multipart upload is open
        await writer.write(b"z" * (1024 * 1024))
    await writer.abort()
    client = s3.client()
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert client.list_objects_v2(Bucket=bucket).get("KeyCount", 0) == 0
