"""Store URLs as messages, logs and backup manifests show them: no password in any form
a URL may carry one."""

from __future__ import annotations

import pytest

from openai_files.server.stores import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://files:hunter2@db/files", "postgresql://files:****@db/files"),
        ("postgresql://files:p%40ss@db:5432/files", "postgresql://files:****@db:5432/files"),
        (
            "postgresql://files@db/files?sslmode=require&password=hunter2",
            "postgresql://files@db/files?sslmode=require&password=****",
        ),
        (
            "postgresql://files@db/files?sslpassword=hunter2&sslcert=/etc/c.pem",
            "postgresql://files@db/files?sslpassword=****&sslcert=/etc/c.pem",
        ),
        (
            "postgresql:///files?host=/run/pg&PASSWORD=x",
            "postgresql:///files?host=/run/pg&PASSWORD=****",
        ),
        (
            "s3://bucket/prefix?endpoint=http://s3.internal:8333&region=eu",
            "s3://bucket/prefix?endpoint=http://s3.internal:8333&region=eu",
        ),
        (
            "s3://bucket?endpoint=http://AKIA:wJalr@s3.internal:8333",
            "s3://bucket?endpoint=http://AKIA:****@s3.internal:8333",
        ),
        (
            "s3://bucket?aws_secret_access_key=wJalr&X-Amz-Signature=ab&session_token=t",
            "s3://bucket?aws_secret_access_key=****&X-Amz-Signature=****&session_token=****",
        ),
        ("s3://bucket?credentials=instance", "s3://bucket?credentials=instance"),
        ("sqlite:///data/files.sqlite3", "sqlite:///data/files.sqlite3"),
    ],
)
def test_no_password_is_shown(url: str, shown: str) -> None:
    assert redact_url(url) == shown
