"""The Batch API's calls: create a batch over an uploaded file, retrieve, list and cancel.

A batch runs the requests of a file of purpose `batch` (one JSON line each: `custom_id`,
`method`, `url`, `body`) on the server's side; its results are files, fetched with
`download` once the batch has ended. These are the operations; `_calls` makes them methods.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _core
from ._config import Config
from ._core import Op, RequestSpec, resource_path
from ._models import Batch, BatchList

#: The window OpenAI's batches take (the only one it offers).
DEFAULT_COMPLETION_WINDOW = "24h"


def _batch_path(batch_id: str, suffix: str = "") -> str:
    return resource_path("batches", batch_id, suffix)


def create_spec(
    input_file_id: str,
    endpoint: str,
    completion_window: str = DEFAULT_COMPLETION_WINDOW,
    metadata: Mapping[str, str] | None = None,
    output_expires_after: int | None = None,
) -> RequestSpec:
    """`POST /batches`: `output_expires_after` in seconds after the output file's creation."""
    if not isinstance(input_file_id, str) or not input_file_id.strip():
        raise ValueError(f"a file id is a non-empty string, got {input_file_id!r}")
    body: dict[str, Any] = {
        "input_file_id": input_file_id.strip(),
        "endpoint": endpoint,
        "completion_window": completion_window,
    }
    if metadata is not None:
        body["metadata"] = dict(metadata)
    if output_expires_after is not None:
        body["output_expires_after"] = {
            "anchor": "created_at",
            "seconds": int(output_expires_after),
        }
    return RequestSpec("POST", "/batches", json=body)


def list_spec(after: str | None = None, limit: int | None = None) -> RequestSpec:
    params: dict[str, str] = {}
    if after:
        params["after"] = after
    if limit is not None:
        params["limit"] = str(limit)
    return RequestSpec("GET", "/batches", params=params)


def create(
    config: Config,
    input_file_id: str,
    endpoint: str,
    completion_window: str,
    metadata: Mapping[str, str] | None,
    output_expires_after: int | None,
) -> Op[Batch]:
    spec = create_spec(input_file_id, endpoint, completion_window, metadata, output_expires_after)
    return Batch.from_dict((yield from _core.json_call(config, spec)))


def retrieve(config: Config, batch_id: str) -> Op[Batch]:
    spec = RequestSpec("GET", _batch_path(batch_id))
    return Batch.from_dict((yield from _core.json_call(config, spec)))


def list_page(config: Config, after: str | None, limit: int | None) -> Op[BatchList]:
    return BatchList.from_dict((yield from _core.json_call(config, list_spec(after, limit))))


def cancel(config: Config, batch_id: str) -> Op[Batch]:
    spec = RequestSpec("POST", _batch_path(batch_id, "/cancel"))
    return Batch.from_dict((yield from _core.json_call(config, spec)))
