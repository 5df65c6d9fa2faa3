"""One helper per contract: the error envelope, and the OpenAPI schemas of the objects."""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import jsonschema
import yaml

#: OpenAI's OpenAPI descriptions of these endpoints, carried in the repo (origin in their
#: headers): Files and Uploads, the Batch API, and the Administration API.
SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openai-files-openapi.yml"
BATCH_SPEC_PATH = SPEC_PATH.with_name("openai-batches-openapi.yml")
ADMIN_SPEC_PATH = SPEC_PATH.with_name("openai-admin-openapi.yml")

# OpenAI sends these keys as null (docs/api.md: every key always present), but its OpenAPI
# description types them as plain strings/integers. Validation allows null for them only.
_NULLABLE = {
    "OpenAIFile": ("expires_at", "status_details"),
    "ListFilesResponse": ("first_id", "last_id"),
    "ListBatchesResponse": ("first_id", "last_id"),
    "Batch": (
        "model",
        "output_file_id",
        "error_file_id",
        "in_progress_at",
        "finalizing_at",
        "completed_at",
        "failed_at",
        "expired_at",
        "cancelling_at",
        "cancelled_at",
    ),
}
#: Objects typed `object` that OpenAI sends as null until they exist.
_NULLABLE_OBJECTS = {"Batch": ("errors",)}


class Answer(Protocol):
    """An HTTP answer: httpx's, or httpx2's (Starlette's TestClient, the official SDK)."""

    @property
    def status_code(self) -> int: ...
    @property
    def text(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self, **kwargs: Any) -> Any: ...


def assert_error(
    response: Answer,
    status: int,
    message: str | re.Pattern[str],
    *,
    param: str | None = None,
    code: str | None = None,
    error_type: str = "invalid_request_error",
) -> dict[str, Any]:
    """Assert an error answer in OpenAI's envelope, exactly."""
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["x-request-id"].startswith("req_")
    body = response.json()
    assert list(body) == ["error"], body
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    if isinstance(message, re.Pattern):
        assert message.fullmatch(error["message"]), error["message"]
    else:
        assert error["message"] == message
    assert error["type"] == error_type
    assert error["param"] == param
    assert error["code"] == code
    assert error["code"] is None or isinstance(error["code"], str)
    return error


@functools.cache
def _spec() -> dict[str, Any]:
    with SPEC_PATH.open() as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    with BATCH_SPEC_PATH.open() as fh:
        batches: dict[str, Any] = yaml.safe_load(fh)
    spec["components"]["schemas"].update(batches["components"]["schemas"])
    return spec


@functools.cache
def _validator(name: str) -> jsonschema.protocols.Validator:
    spec = copy.deepcopy(_spec())
    schemas = spec["components"]["schemas"]
    for schema_name, keys in _NULLABLE.items():
        for key in keys:
            prop = schemas[schema_name]["properties"][key]
            prop["type"] = [prop["type"], "null"]
    for schema_name, keys in _NULLABLE_OBJECTS.items():
        for key in keys:
            prop = schemas[schema_name]["properties"][key]
            schemas[schema_name]["properties"][key] = {"anyOf": [prop, {"type": "null"}]}
    root = {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    return cls(root)


def assert_schema(name: str, instance: Any) -> None:
    """Validate an answer against the named schema of OpenAI's OpenAPI description."""
    _validator(name).validate(instance)


# -- the Administration API: every answer checked against its operation's schema --


@functools.cache
def _admin_spec() -> dict[str, Any]:
    with ADMIN_SPEC_PATH.open() as fh:
        spec: dict[str, Any] = yaml.safe_load(fh)
    return spec


@functools.cache
def _admin_templates() -> list[tuple[re.Pattern[str], str]]:
    """Each path of the description as a pattern of the request paths it names."""
    out = []
    for template in _admin_spec()["paths"]:
        pattern = re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))
        out.append((re.compile(f"/v1{pattern}"), template))
    return out


def admin_operation(method: str, path: str) -> tuple[str, dict[str, Any]] | None:
    """The path template and operation of the Administration API's description that a
    request names; None when it names none."""
    for pattern, template in _admin_templates():
        if pattern.fullmatch(path):
            operation = _admin_spec()["paths"][template].get(method.lower())
            return None if operation is None else (template, operation)
    return None


@functools.cache
def _admin_validator(template: str, method: str, status: int) -> jsonschema.protocols.Validator:
    operation = _admin_spec()["paths"][template][method]
    response = operation["responses"].get(str(status))
    if response is None:  # a status the description does not list: an error
        assert status >= 400, (template, method, status)
        schema: dict[str, Any] = {"$ref": "#/components/schemas/ErrorResponse"}
    else:
        schema = response["content"]["application/json"]["schema"]
    root = {**schema, "components": _admin_spec()["components"]}
    cls = jsonschema.validators.validator_for(root, default=jsonschema.Draft202012Validator)
    return cls(root)


def assert_admin_answer(method: str, path: str, response: Answer) -> None:
    """Validate an answer of the Administration API against the schema its operation gives
    for its status (an error: OpenAI's envelope, exactly). A path the description does not
    name (a route this server does not have) must be a 404 in the envelope."""
    found = admin_operation(method, path)
    body = response.json()
    if found is None or response.status_code >= 400:
        assert response.status_code >= 400, (method, path, response.status_code)
        assert list(body) == ["error"], body
        assert set(body["error"]) == {"message", "type", "param", "code"}, body
    if found is not None:
        template, _ = found
        _admin_validator(template, method.lower(), response.status_code).validate(body)
