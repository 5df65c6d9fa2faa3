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
from openai_files.server.stores._sigv4 import signed_request
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


def _abort_all(client: Any, prefix: str) -> None:
    listed = client.list_multipart_uploads(Bucket=BUCKET, Prefix=prefix)
    for u in listed.get("Uploads", []):
        client.abort_multipart_upload(Bucket=BUCKET, Key=u["Key"], UploadId=u["UploadId"])


async def _never_named(keys: Any) -> set[str]:
    return set()


async def test_upload_gone_meanwhile_does_not_stop_the_others(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An upload its owner completed or aborted between the listing and our abort (404
    NoSuchUpload) is done: the others are still aborted and the reconciler stays on."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = secrets.token_hex(4)
    blobs = S3BlobStore(s3.url(BUCKET, prefix=prefix))
    client = s3.client()
    _open_upload(client, f"{prefix}/file-b")
    _open_upload(client, f"{prefix}/file-c")
    time.sleep(1.1)
    listing = blobs._reconciler.stale_uploads

    async def listed_then_gone(*args: Any) -> list[tuple[str, str]]:
        # The real listing, and first an upload whose id S3 no longer knows (SeaweedFS
        # still answers 204 to a second abort of one, as AWS does not).
        return [("file-a", "0123456789abcdef"), *await listing(*args)]

    monkeypatch.setattr(blobs._reconciler, "stale_uploads", listed_then_gone)
    try:
        assert await blobs.abort_stale_uploads(time.time(), _never_named) == 2
        assert _open_keys(client, f"{prefix}/") == set()
        assert blobs.aborts_stale_uploads is True
    finally:
        _abort_all(client, f"{prefix}/")


async def test_keys_not_ours_are_left_alone(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only keys shaped like our ids (a file's, a part's) are aborted: a key starting with a
    dot does not end the run, and another application's upload under the prefix stays
    open."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = secrets.token_hex(4)
    blobs = S3BlobStore(s3.url(BUCKET, prefix=prefix))
    client = s3.client()
    _open_upload(client, f"{prefix}/.hidden")
    _open_upload(client, f"{prefix}/file-stale")
    _open_upload(client, f"{prefix}/report.csv")
    # An Uploads API part's key (its file's id, then its own) is ours; a look-alike is not.
    _open_upload(client, f"{prefix}/file-stale.part_stale")
    _open_upload(client, f"{prefix}/file-stale.notes")
    time.sleep(1.1)
    try:
        assert await blobs.abort_stale_uploads(time.time(), _never_named) == 2
        assert _open_keys(client, f"{prefix}/") == {
            f"{prefix}/.hidden",
            f"{prefix}/report.csv",
            f"{prefix}/file-stale.notes",
        }
    finally:
        _abort_all(client, f"{prefix}/")


async def test_prefix_with_a_space(s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signed query names the prefix as it is sent (a space is %20 in both)."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = f"my files {secrets.token_hex(4)}"
    blobs = S3BlobStore(s3.url(BUCKET, prefix=prefix))
    client = s3.client()
    _open_upload(client, f"{prefix}/file-stale")
    time.sleep(1.1)
    try:
        assert await blobs.abort_stale_uploads(time.time(), _never_named) == 1
        assert _open_keys(client, f"{prefix}/") == set()
    finally:
        _abort_all(client, f"{prefix}/")


async def test_bad_signature_does_not_disable_the_reconciler(
    s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A refused signature (a wrong secret, a skewed clock) can be fixed without a restart:
    the sweep warns and the next one tries again. Only AccessDenied turns it off."""
    for name, value in s3.env.items():
        monkeypatch.setenv(name, value)
    prefix = secrets.token_hex(4)
    blobs = S3BlobStore(s3.url(BUCKET, prefix=prefix))
    client = s3.client()
    _open_upload(client, f"{prefix}/file-stale")
    time.sleep(1.1)
    try:
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
        assert await blobs.abort_stale_uploads(time.time(), _never_named) == 0
        assert "SignatureDoesNotMatch" in caplog.text
        assert "lifecycle rule must" not in caplog.text
        assert blobs.aborts_stale_uploads is True
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.env["AWS_SECRET_ACCESS_KEY"])
        assert await blobs.abort_stale_uploads(time.time(), _never_named) == 1
    finally:
        _abort_all(client, f"{prefix}/")


@pytest.mark.parametrize(
    ("bucket_url", "host"),
    [
        ("http://127.0.0.1:80/files", "127.0.0.1"),
        ("https://s3.example.com:443/files", "s3.example.com"),
        ("http://127.0.0.1:9000/files", "127.0.0.1:9000"),
    ],
)
def test_signature_covers_what_httpx_sends(bucket_url: str, host: str) -> None:
    """The signature is over the Host and query httpx sends (no default port; a space in
    the prefix as %20), checked with botocore's SigV4 over that request."""
    from botocore.auth import S3SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    query = {"uploads": "", "prefix": "my files/", "key-marker": "a+b"}
    request = signed_request("GET", bucket_url, query, "eu-west-1", ("AKID", "secret", "tok"))
    assert request.headers["host"] == host
    assert request.url.query == b"key-marker=a%2Bb&prefix=my%20files%2F&uploads="
    sent = {
        name: request.headers[name]
        for name in ("host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token")
    }
    reference = AWSRequest(method="GET", url=str(request.url), headers=sent)
    reference.context["timestamp"] = sent["x-amz-date"]
    auth = S3SigV4Auth(Credentials("AKID", "secret", "tok"), "s3", "eu-west-1")
    canonical = auth.canonical_request(reference)
    expected = auth.signature(auth.string_to_sign(reference, canonical), reference)
    authorization = request.headers["authorization"]
    assert authorization.endswith(f"Signature={expected}")
    assert "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token," in (
        authorization
    )
