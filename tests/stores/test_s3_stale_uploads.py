"""The reconciler aborts the S3 multipart uploads that a killed replica left open, and only
those: not a live upload's (its reservation names the key), not a recent one, not one
outside the store's prefix."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from openai_files.server.service import FilesService
from openai_files.server.settings import Settings
from openai_files.server.stores.s3 import S3BlobStore
from openai_files.server.stores.sqlite import SQLiteMetadataStore

from .._services import SeaweedS3

pytestmark = pytest.mark.anyio
BUCKET = "files"
PART = b"p" * (5 * 1024 * 1024)  # S3's smallest part but the last


@pytest.fixture
async def service(
    s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[FilesService, str]]:
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = secrets.token_hex(4)
    meta = SQLiteMetadataStore(tmp_path / "files.sqlite3")
    await meta.open()
    await meta.migrate()
    blobs = S3BlobStore(s3.url(BUCKET, prefix=prefix))
    try:
        yield FilesService(Settings(data_dir=tmp_path), meta, blobs), prefix
    finally:
        await meta.close()


def _open_upload(client: Any, key: str) -> str:
    upload_id: str = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=1, Body=PART)
    return upload_id


def _open_keys(client: Any, prefix: str) -> set[str]:
    listed = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    return {u["Key"] for u in listed.get("Uploads", [])}


async def test_reconciler_aborts_only_stale_unnamed_uploads(
    service: tuple[FilesService, str], s3: SeaweedS3
) -> None:
    files, prefix = service
    client = s3.client()
    other = f"other-{prefix}"
    _open_upload(client, f"{prefix}/file-killed")  # a killed replica's, nobody names it
    _open_upload(client, f"{prefix}/file-live")  # a live upload's, on another replica
    _open_upload(client, f"{other}/file-foreign")  # not under this store's prefix
    await files.meta.reserve(
        "rsv_live", "org-a", 0, 10**9, int(time.time()) + 300, blob_key="file-live"
    )
    try:
        # Younger than the grace: left alone.
        counts = await files.sweep(grace_seconds=3600)
        assert counts["uploads"] == 0
        assert _open_keys(client, f"{prefix}/") == {f"{prefix}/file-killed", f"{prefix}/file-live"}

        time.sleep(1.1)  # S3 dates uploads to the second
        counts = await files.sweep(grace_seconds=1)
        assert counts["uploads"] == 1
        assert _open_keys(client, f"{prefix}/") == {f"{prefix}/file-live"}
        assert _open_keys(client, f"{other}/") == {f"{other}/file-foreign"}

        # Once the live upload's reservation is gone (its replica died), it goes too.
        await files.meta.release("rsv_live")
        counts = await files.sweep(grace_seconds=1)
        assert counts["uploads"] == 1
        assert _open_keys(client, f"{prefix}/") == set()
    finally:
        for key in _open_keys(client, f"{other}/"):
            for u in client.list_multipart_uploads(Bucket=BUCKET, Prefix=key)["Uploads"]:
                client.abort_multipart_upload(Bucket=BUCKET, Key=key, UploadId=u["UploadId"])


async def test_refused_listing_does_not_fail_the_sweep(
    s3: SeaweedS3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Credentials that may not list unfinished uploads: one warning naming the lifecycle
    rule, the sweep goes on, and the reconciler stops asking."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    blobs = S3BlobStore(s3.url(BUCKET, prefix=secrets.token_hex(4)))

    async def named(keys: Any) -> set[str]:
        return set()

    assert await blobs.abort_stale_uploads(time.time(), named) == 0
    assert "lifecycle rule" in caplog.text
    assert blobs.aborts_stale_uploads is False
    caplog.clear()
    assert await blobs.abort_stale_uploads(time.time(), named) == 0
    assert "could not abort" not in caplog.text
