"""AWS Signature Version 4 for the few S3 requests obstore cannot make (`_s3_api.py`).

Written here rather than taken from a library: httpx-auth's AWS4Auth, the maintained httpx
signer, reads a streamed body whole into memory before it signs (`requires_request_body`)
and pins httpx to one minor version, narrower than the range the client supports. This
signer hashes a body's chunks once and sends them as they are.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx


def signed_request(
    method: str,
    url: str,
    query: Mapping[str, str],
    region: str,
    keys: tuple[str, str, str | None] | None,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | Sequence[bytes] | None = None,
) -> httpx.Request:
    """The request for `url` and `query` with `headers` and the body `content` (bytes, or
    chunks sent one after another without joining them), signed with `keys` (access key,
    secret, session token) unless None. The query string is written here, in SigV4's
    encoding (a space is %20, not +), so that what is sent is what is signed."""
    query_string = "&".join(f"{_uri_encode(k)}={_uri_encode(v)}" for k, v in sorted(query.items()))
    chunks = [content] if isinstance(content, bytes) else list(content or [])
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    sent = {name.lower(): value for name, value in (headers or {}).items()}
    body: Any = None
    if chunks:
        sent["content-length"] = str(sum(len(chunk) for chunk in chunks))
        body = _stream(chunks)
    request = httpx.Request(
        method, url + ("?" + query_string if query_string else ""), headers=sent, content=body
    )
    if keys is not None:
        amz = {name: value for name, value in sent.items() if name.startswith("x-amz-")}
        request.headers.update(sign(request, region, *keys, digest.hexdigest(), amz))
    return request


async def _stream(chunks: Sequence[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


def _uri_encode(value: str) -> str:
    return quote(value, safe="-_.~")


def _canonical_request(request: httpx.Request, headers: Mapping[str, str]) -> str:
    """SigV4's canonical request, from the path, query and Host that httpx sends (which
    leaves out a default port, :80 or :443, that the endpoint URL may name)."""
    path, _, query = request.url.raw_path.decode("ascii").partition("?")
    signing = {"host": request.headers["host"], **headers}
    return "\n".join(
        [
            request.method,
            path or "/",
            "&".join(sorted(query.split("&"), key=lambda p: p.partition("="))) if query else "",
            "".join(f"{k}:{signing[k]}\n" for k in sorted(signing)),
            ";".join(sorted(signing)),
            signing["x-amz-content-sha256"],
        ]
    )


def sign(
    request: httpx.Request,
    region: str,
    access_key: str,
    secret_key: str,
    token: str | None,
    payload_hash: str = hashlib.sha256(b"").hexdigest(),
    amz_headers: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The headers that sign an S3 request whose body has the sha256 `payload_hash`, with
    its `x-amz-*` headers signed too (AWS Signature Version 4)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    day = stamp[:8]
    headers = {**(amz_headers or {}), "x-amz-content-sha256": payload_hash, "x-amz-date": stamp}
    if token:
        headers["x-amz-security-token"] = token
    canonical = _canonical_request(request, headers)
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed = ";".join(sorted(["host", *headers]))
    headers["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, SignedHeaders={signed}, "
        f"Signature={signature}"
    )
    return headers
