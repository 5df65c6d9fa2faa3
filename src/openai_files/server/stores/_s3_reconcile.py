"""The S3 store's reconciler: aborts the multipart uploads a killed replica left open.

Unfinished multipart uploads are not objects, and obstore can neither list nor abort them
by id. The reconciler does it with two plain S3 requests (`_s3_api.py`):
ListMultipartUploads under the prefix, then AbortMultipartUpload for each one older than
the grace whose key no row or live reservation names. It can sign only with
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or unsigned); with other credentials it leaves
them to the bucket's lifecycle rule (`AbortIncompleteMultipartUpload`, docs/deploy.md),
which every bucket should have anyway.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Sequence

import httpx

from ..ids import is_file_id, is_part_id
from . import _manifest
from ._errors import StoreUnavailable
from ._s3_api import S3Api, S3Refused, children, text
from ._s3_errors import log


def _ours(key: str) -> bool:
    """Whether `key` is one the server makes: a file id, or an Uploads API part's key (its
    file's id and its own, `_manifest.part_key`; a bare part id before manifests)."""
    owner, _, part = key.partition(_manifest.SEPARATOR)
    return is_file_id(key) or is_part_id(key) or (is_file_id(owner) and is_part_id(part))


class Reconciler:
    """Aborts the stale multipart uploads under `prefix` with `api` (None: it cannot sign,
    and leaves them to the bucket's lifecycle rule); `path_of` turns a key into its path."""

    def __init__(self, api: S3Api | None, prefix: str, path_of: Callable[[str], str]) -> None:
        self._api = api
        self._prefix = prefix
        self._path_of = path_of
        #: Whether it aborts unfinished multipart uploads (it signs with keys).
        self.enabled = api is not None
        self._said_lifecycle = False

    async def stale_uploads(
        self, http: httpx.AsyncClient, cutoff: datetime.datetime
    ) -> list[tuple[str, str]]:
        """(key, upload id) of the multipart uploads under the prefix started before
        `cutoff` whose key is one of ours (a file id), all pages of the listing."""
        assert self._api is not None
        prefix = f"{self._prefix}/" if self._prefix else ""
        stale: list[tuple[str, str]] = []
        markers: dict[str, str] = {}
        while True:
            page = await self._api.uploads_page(http, prefix, markers)
            for upload in children(page, "Upload"):
                key = text(upload, "Key")[len(prefix) :]
                initiated = datetime.datetime.fromisoformat(
                    text(upload, "Initiated").replace("Z", "+00:00")
                )
                # Only our keys: another application's upload in a shared bucket (or under
                # our prefix) is not ours to abort.
                if _ours(key) and initiated < cutoff:
                    stale.append((key, text(upload, "UploadId")))
            if text(page, "IsTruncated") != "true":
                return stale
            markers = {
                "key-marker": text(page, "NextKeyMarker"),
                "upload-id-marker": text(page, "NextUploadIdMarker"),
            }

    def _refused_for_good(self, exc: BaseException) -> bool:
        """Whether `exc` says the credentials may not list or abort uploads (AccessDenied);
        then the reconciler stops asking and says so once. A bad signature, a skewed clock
        or an unreachable endpoint can be fixed without a restart: tried again next sweep."""
        if not (isinstance(exc, S3Refused) and exc.code == "AccessDenied"):
            return False
        self._said_lifecycle = True
        self.enabled = False
        log.warning(
            "could not abort unfinished S3 uploads: %s (the credentials may not list or "
            "abort them; the bucket's lifecycle rule must)",
            exc,
        )
        return True

    async def abort_stale_uploads(
        self,
        older_than: float,
        named: Callable[[Sequence[str]], Awaitable[set[str]]],
    ) -> int:
        """Abort the multipart uploads under the prefix started before `older_than` whose
        key `named` does not name (a live upload's reservation names its key); how many."""
        if not self.enabled or self._api is None:
            if not self._said_lifecycle:
                self._said_lifecycle = True
                log.info(
                    "unfinished S3 multipart uploads are left to the bucket's lifecycle rule "
                    "(the reconciler signs only with AWS_ACCESS_KEY_ID credentials)"
                )
            return 0
        cutoff = datetime.datetime.fromtimestamp(older_than, tz=datetime.UTC)
        aborted = 0
        # Not worth failing the sweep for: the next one tries again, and the lifecycle
        # rule is the safety net.
        errors = (httpx.HTTPError, ET.ParseError, ValueError, StoreUnavailable)
        async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
            try:
                stale = await self.stale_uploads(http, cutoff)
            except errors as exc:
                if not self._refused_for_good(exc):
                    log.warning("could not list unfinished S3 uploads: %s", exc)
                return 0
            kept = await named([key for key, _ in stale]) if stale else set()
            failed: list[str] = []
            for key, upload_id in stale:
                if key in kept:
                    continue  # a live upload (its reservation is renewed as bytes come)
                query = {"uploadId": upload_id}
                try:
                    await self._api.send(http, "DELETE", self._path_of(key), query)
                except errors as exc:
                    if isinstance(exc, S3Refused) and exc.code == "NoSuchUpload":
                        continue  # completed or aborted by its owner since the listing
                    if self._refused_for_good(exc):
                        break
                    failed.append(f"{key}: {exc}")
                    continue
                aborted += 1
            if failed:
                log.warning(
                    "could not abort %d unfinished S3 upload(s), tried again next sweep: %s",
                    len(failed),
                    failed[0],
                )
        return aborted
