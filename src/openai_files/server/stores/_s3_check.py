"""Before the S3 store serves: where its credentials come from, and what a failed start
check says (one line naming the credentials, the bucket or the endpoint to fix)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from ._s3_errors import first_line

#: The URL option that lets the client take the machine's instance role.
INSTANCE_CREDENTIALS = "instance"


#: S3 error codes that mean the credentials themselves were refused.
_BAD_CREDENTIALS = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "Unauthorized",
    }
)


#: S3 error codes that mean the bucket is in another region than the one we sign for.
_WRONG_REGION = frozenset({"AuthorizationHeaderMalformed", "PermanentRedirect"})


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def credential_source(environ: Mapping[str, str], instance: bool) -> tuple[str, str]:
    """Where the S3 client will take its credentials from, in its own order: a kind
    (`anonymous`, `keys`, `web-identity`, `container` or `instance`) and words for messages.
    A ValueError naming the variables to set when nothing gives them (the client would then
    ask the instance metadata service, which only `instance` allows)."""

    def has(name: str) -> bool:
        return bool(environ.get(name, "").strip())

    if _truthy(environ.get("AWS_SKIP_SIGNATURE")):
        return "anonymous", "no credentials (AWS_SKIP_SIGNATURE)"
    key, secret = has("AWS_ACCESS_KEY_ID"), has("AWS_SECRET_ACCESS_KEY")
    if key and secret:
        return "keys", "the credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"
    if key or secret:
        given, missing = (
            ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
            if key
            else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        )
        raise ValueError(f"S3 credentials: {given} is set but {missing} is not; set both")
    if has("AWS_WEB_IDENTITY_TOKEN_FILE") and has("AWS_ROLE_ARN"):
        return "web-identity", "the web identity in AWS_WEB_IDENTITY_TOKEN_FILE / AWS_ROLE_ARN"
    if has("AWS_CONTAINER_CREDENTIALS_FULL_URI") or has("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        return "container", "the container credentials (AWS_CONTAINER_CREDENTIALS_*)"
    if instance:
        return "instance", "the instance role (credentials=instance)"
    raise ValueError(
        "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or add "
        "credentials=instance to the storage URL to use this machine's instance role"
    )


def connect_reason(text: str) -> str:
    """Why a connection failed, in a few words, from obstore's error text."""
    lowered = text.lower()
    for needle, reason in (
        ("connection refused", "connection refused"),
        ("dns error", "host name not found"),
        ("invalidcontenttype", "TLS handshake failed: is it http://?"),
        ("certificate", "TLS certificate refused"),
        ("tls", "TLS handshake failed"),
        ("timed out", "no answer"),
        ("kind: timeout", "no answer"),
    ):
        if needle in lowered:
            return reason
    return "cannot connect"


def explain(exc: BaseException, bucket: str, endpoint: str, source: str) -> str:
    """One line for a failed start check: what is wrong and what to fix."""
    text = str(exc)
    first = first_line(exc).removeprefix("Generic S3 error: ")
    found = re.search(r"<Code>([^<]+)</Code>", text)
    code = found.group(1) if found else ""
    status_found = re.search(r"status code: (\d{3})", first)
    status = int(status_found.group(1)) if status_found else 0
    if "list request" not in first:
        # The failing request was not ours but the one that fetches the credentials.
        return f"cannot get S3 credentials from {source}: {first}"
    if code == "NoSuchBucket":
        return (
            f"the S3 bucket {bucket!r} does not exist at {endpoint}: create it, or fix "
            "the bucket name in the storage URL"
        )
    if code in _BAD_CREDENTIALS or status == 401:
        return f"the S3 endpoint {endpoint} refused {source} ({code or status}): check them"
    if code in _WRONG_REGION:
        return (
            f"the S3 bucket {bucket!r} is in another region ({code}): set region= in "
            "the storage URL"
        )
    if code == "AccessDenied" or status == 403:
        return (
            f"the S3 endpoint {endpoint} denied access to bucket {bucket!r} with {source} "
            f"({code or status}): check the credentials and the bucket's policy"
        )
    if "error sending request" in first or isinstance(exc, OSError):
        return (
            f"cannot reach the S3 endpoint {endpoint} ({connect_reason(text)}): check "
            "endpoint= in the storage URL and that the server runs"
        )
    return f"the S3 bucket {bucket!r} at {endpoint} failed the start check: {first}"
