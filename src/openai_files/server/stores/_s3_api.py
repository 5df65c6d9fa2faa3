"""The S3 requests obstore cannot make (multipart uploads by id, UploadPartCopy), with httpx.

Each is signed with SigV4 (`_sigv4.py`) unless the store is anonymous, with the keys in
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; S3 answers in XML, read with ElementTree.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from urllib.parse import quote

import httpx

from ._errors import StoreUnavailable
from ._sigv4 import signed_request


class S3Refused(StoreUnavailable):
    """An S3 request answered with an error status; its S3 error code when it gave one."""

    def __init__(self, method: str, url: httpx.URL, response: httpx.Response) -> None:
        found = re.search(r"<Code>([^<]+)</Code>", response.text)
        self.status = response.status_code
        self.code = found.group(1) if found else ""
        super().__init__(
            f"S3 {method} {url} answered {self.status}" + (f" ({self.code})" if self.code else "")
        )


def signing_keys() -> tuple[str, str, str | None]:
    """(access key, secret, session token) to sign with, from the environment."""
    env = os.environ
    return (
        env["AWS_ACCESS_KEY_ID"].strip(),
        env["AWS_SECRET_ACCESS_KEY"].strip(),
        env.get("AWS_SESSION_TOKEN", "").strip() or None,
    )


class S3Api:
    """Requests to the bucket at `bucket_url` (path-style, as obstore's) in `region`,
    unsigned when `anonymous`."""

    def __init__(self, bucket_url: str, region: str, *, anonymous: bool) -> None:
        self.bucket_url = bucket_url
        self.region = region
        self.anonymous = anonymous

    async def send(
        self,
        http: httpx.AsyncClient,
        method: str,
        key: str,
        query: dict[str, str],
        headers: Mapping[str, str] | None = None,
        content: bytes | Sequence[bytes] | None = None,
    ) -> httpx.Response:
        """One S3 request, signed unless anonymous; S3Refused when refused (also an error
        in a 200 answer, as UploadPartCopy and CompleteMultipartUpload may give)."""
        request = signed_request(
            method,
            self.bucket_url + ("/" + quote(key, safe="/-_.~") if key else ""),
            query,
            self.region,
            None if self.anonymous else signing_keys(),
            headers=headers,
            content=content,
        )
        response = await http.send(request)
        if response.status_code >= 300 or (
            response.status_code == 200
            and response.content.lstrip().startswith(b"<?xml")
            and b"<Error>" in response.content[:512]
        ):
            raise S3Refused(method, request.url, response)
        return response

    async def uploads_page(
        self, http: httpx.AsyncClient, prefix: str, markers: Mapping[str, str] | None = None
    ) -> ET.Element:
        """One page of ListMultipartUploads under `prefix` (from `markers` on)."""
        query = {"uploads": "", "prefix": prefix, **(markers or {})}
        return ET.fromstring((await self.send(http, "GET", "", query)).content)


def children(node: ET.Element, name: str) -> list[ET.Element]:
    """The children of `node` named `name`, in any XML namespace."""
    return [child for child in node if child.tag.rsplit("}", 1)[-1] == name]


def text(node: ET.Element, name: str) -> str:
    """The text of the first child of `node` named `name`; empty when there is none."""
    found = children(node, name)
    return (found[0].text or "") if found else ""
