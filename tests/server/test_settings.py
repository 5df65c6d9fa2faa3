"""Settings in process: the edges of each range are accepted, the file cache size reaches
the cache (`test_cli_serve.py` checks the refusals as `serve` writes them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from openai_files.server import create_app
from openai_files.server.settings import GiB, MiB, Settings
from openai_files.server.stores.cached import FileRowCache

from .._server import create_key
from ._util import auth


@pytest.mark.parametrize(
    "edge",
    [
        {"port": 0},
        {"port": 65535},
        {"key_cache_seconds": 0.0},
        {"key_cache_seconds": 60.0},
        {"body_idle_timeout_seconds": 0.0},
        {"min_body_bytes_per_second": 0},
        {"body_rate_window_seconds": 0.01},
        {"max_uploads_per_key": 0},
        {"file_cache_rows": 0},
        {"org_quota_bytes": 0},
        {"database_pool_min_size": 0, "database_pool_max_size": 1},
        {"database_pool_min_size": 4, "database_pool_max_size": 4},
        {"storage_part_bytes": 5 * MiB},
        {"storage_part_bytes": 5 * GiB},
        {"sweep_interval_seconds": 0.01},
        # 10,000 parts of 8 MiB: the largest file S3 takes with the default part size; a
        # local folder has no such limit.
        {"storage": "s3://files", "max_file_bytes": 10_000 * 8 * MiB},
        {"max_file_bytes": 100 * GiB},
        {"log_level": "WARNING"},
    ],
)
def test_the_edges_of_each_range_are_accepted(edge: dict[str, Any]) -> None:
    settings = Settings(**edge)
    assert all(getattr(settings, name) == value for name, value in edge.items())


def test_a_pool_smaller_than_its_minimum_is_refused() -> None:
    with pytest.raises(ValueError) as refused:
        Settings(database_pool_min_size=5, database_pool_max_size=4)
    assert str(refused.value) == (
        "invalid value 4 for --database-pool-max-size: it must be at least "
        "--database-pool-min-size (5)"
    )


def test_the_environment_is_checked_as_the_flags_are() -> None:
    with pytest.raises(ValueError, match="invalid value 0 for --sweep-interval-seconds"):
        Settings.from_env({"OPENAI_FILES_SWEEP_INTERVAL_SECONDS": "0"})
    settings = Settings.from_env({"OPENAI_FILES_STORAGE_PART_BYTES": "16_777_216"})
    assert settings.storage_part_bytes == 16 * MiB


def test_file_cache_rows_bound_the_cache(tmp_path: Path) -> None:
    """Three files looked up, two rows kept; 0 turns the cache off."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    key = create_key(data_dir, "org-a", "proj_a", env={})
    app = create_app(Settings(data_dir=data_dir, file_cache_rows=2))
    with TestClient(app) as http:
        http.headers.update(auth(key))
        cache = app.state.service.meta
        assert isinstance(cache, FileRowCache)
        ids = []
        for n in range(3):
            made = http.post(
                "/v1/files", files={"file": (f"{n}.txt", b"x")}, data={"purpose": "user_data"}
            )
            assert made.status_code == 200, made.text
            ids.append(made.json()["id"])
        for file_id in ids:
            assert http.get(f"/v1/files/{file_id}").status_code == 200
        assert list(cache._rows) == ids[1:]  # the least recently used went first

    app = create_app(Settings(data_dir=data_dir, file_cache_rows=0))
    with TestClient(app) as http:
        http.headers.update(auth(key))
        assert not isinstance(app.state.service.meta, FileRowCache)
        assert http.get(f"/v1/files/{ids[0]}").status_code == 200
