"""Property-based requests from OpenAI's OpenAPI description: no 5xx, every error enveloped.

schemathesis generates requests for every operation the description names (valid ones and
ones that bend its types), with a fixed seed so a failure is the same on every run. The
Uploads operations too.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.core.result import Err, Ok

from .._inprocess import AppServer
from ._contract import SPEC_PATH

#: Cases per operation: a few hundred on the Files calls, fewer on the Uploads calls.
EXAMPLES = {"/files": 200, "/uploads": 40}

T = TypeVar("T")
E = TypeVar("E", bound=Exception)

_SCHEMA = schemathesis.openapi.from_path(SPEC_PATH)


def _ok(result: Ok[T] | Err[E]) -> T:
    """An operation of the description; one that cannot be read fails the collection."""
    if isinstance(result, Err):
        raise result.err()
    return result.ok()


_OPERATIONS = [_ok(result) for result in _SCHEMA.get_all_operations()]


def _examples(path: str) -> int:
    return next(n for prefix, n in EXAMPLES.items() if path.startswith(prefix))


def _assert_answer(status: int, headers: dict[str, list[str]], body: bytes, label: str) -> None:
    assert status < 500, f"{label}: {status} {body[:300]!r}"
    if status < 400:
        return
    content_type = headers.get("content-type") or [""]  # schemathesis: name -> values
    assert content_type[0].startswith("application/json"), (label, status, content_type)
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}, (label, error)
    assert isinstance(error["message"], str) and error["message"], (label, error)
    assert error["code"] is None or isinstance(error["code"], str), (label, error)


@pytest.mark.slow
@pytest.mark.parametrize("operation", _OPERATIONS, ids=lambda op: op.label)
def test_generated_requests_never_fail_the_server(
    operation: Any, server: AppServer, api_key: str
) -> None:
    auth = {"Authorization": f"Bearer {api_key}"}
    seen: dict[int, int] = {}
    # requests as schemathesis prepares them, their bytes handed to the app in this process
    session = server.requests_session()

    @settings(
        max_examples=_examples(operation.path),
        derandomize=True,  # a fixed seed: the same cases on every run
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=server.base_url, headers=auth, session=session)
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        _assert_answer(response.status_code, response.headers, response.content, case.id)

    with session:
        run()
    assert sum(seen.values()) >= _examples(operation.path) // 2, seen
    assert 401 not in seen, seen  # the key was sent: what was tested is past authentication
