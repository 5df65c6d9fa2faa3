"""Store URLs as messages, logs and backup manifests show them."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urlsplit

#: Query parameters whose value is a secret: libpq's `password` and `sslpassword` (which a
#: PostgreSQL URL may carry instead of `user:password@`), and anything named like a secret
#: or a signature (an S3 URL takes its credentials from the environment only, but a
#: presigned-style `X-Amz-Signature`, a `secret_access_key` or a `token` is masked too).
_SECRET_PARAM = re.compile(r"pass|secret|token|signature|credential|(^|[_-])key$", re.I)
#: Parameters named like one above that hold no secret (the S3 URL's `credentials=instance`).
_NOT_SECRET = frozenset({"credentials"})
MASK = "****"


def redact_url(url: str) -> str:
    """A URL without its password, for messages, logs and backup manifests: the one of
    `user:password@` masked, and the values of query parameters that hold secrets
    (`?password=…`, `?sslpassword=…`); a parameter whose value is itself a URL (an S3
    `endpoint=`) is redacted the same way.

    Example::

        >>> redact_url("postgresql://files@db/files?sslmode=require&password=hunter2")
        'postgresql://files@db/files?sslmode=require&password=****'
    """
    parts = urlsplit(url)
    head, question, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    if parts.password is not None:  # in the authority, before the path's first "/"
        scheme, slashes, rest = head.partition("://")
        netloc, slash, path = rest.partition("/")
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
        head = f"{scheme}{slashes}{netloc}{slash}{path}"
    if query:
        query = "&".join(_redact_param(p) for p in query.split("&"))
    return f"{head}{question}{query}{hash_}{fragment}"


def _redact_param(param: str) -> str:
    name, eq, value = param.partition("=")
    if not eq:
        return param
    plain = unquote(name.replace("+", " ")).strip()
    if _SECRET_PARAM.search(plain) and plain.lower() not in _NOT_SECRET:
        return f"{name}={MASK}"
    inner = unquote(value.replace("+", " "))
    if "://" in inner and urlsplit(inner).password is not None:
        return f"{name}={quote(redact_url(inner), safe=':/@*')}"
    return param
