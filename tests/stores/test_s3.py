import secrets
from collections.abc import AsyncIterator

import pytest

from openai_files.server.settings import S3_MIN_PART_BYTES, UPLOAD_PART_BUFFER_BYTES, MiB
from openai_files.server.stores._s3_writer import part_sizes
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


def test_a_buffer_size_gives_the_part_size_and_the_parts_in_flight() -> None:
    """A writer holds about one part more than it has in flight: half the buffer is a part
    (S3's smallest at least, the store's own at most), the rest the parts in flight."""
    assert part_sizes(None, 8 * MiB, 3) == (8 * MiB, 3)
    assert part_sizes(UPLOAD_PART_BUFFER_BYTES, 8 * MiB, 3) == (S3_MIN_PART_BYTES, 1)
    assert part_sizes(1, 8 * MiB, 3) == (S3_MIN_PART_BYTES, 1)
    assert part_sizes(1024 * MiB, 8 * MiB, 3) == (8 * MiB, 3)
    assert part_sizes(32 * MiB, 8 * MiB, 4) == (8 * MiB, 3)
