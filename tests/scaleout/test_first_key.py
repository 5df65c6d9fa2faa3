"""Replicas started together on a new PostgreSQL database mint one first key between them,
and one of them prints it."""

from __future__ import annotations

import concurrent.futures
import os
import uuid
from pathlib import Path

import httpx

from .._server import Deployment, ServerProcess, openai_files_cli, sql
from .._services import PostgresCluster, SeaweedS3

REPLICAS = 4


def test_replicas_started_together_mint_one_first_key(
    postgres: PostgresCluster, s3: SeaweedS3, tmp_path: Path
) -> None:
    env = Deployment("scaleout", tmp_path, postgres=postgres, s3=s3).env()
    done = openai_files_cli("migrate", env={**os.environ, **env})
    assert done.returncode == 0, done.stderr
    servers = [
        ServerProcess(tmp_path / f"replica-{uuid.uuid4().hex[:8]}" / "data", env=env)
        for _ in range(REPLICAS)
    ]
    try:
        # Each started on a thread of its own: the processes start at the same moment.
        with concurrent.futures.ThreadPoolExecutor(REPLICAS) as pool:
            list(pool.map(lambda server: server.start(60), servers))
        assert sql(servers[0], "SELECT COUNT(*) FROM api_keys") == 1
        printed = [server.first_key for server in servers if server.first_key]
        assert len(printed) == 1, [server.log_text() for server in servers]
        for server in servers:
            text = server.log_text()
            if server.first_key:
                assert "created API key" in text
            else:
                assert "1 active API key;" in text, text
        # The key printed is the one stored, and every replica takes it.
        for server in servers:
            r = httpx.get(
                server.base_url + "/files", headers={"Authorization": f"Bearer {printed[0]}"}
            )
            assert r.status_code == 200, r.text
    finally:
        for server in servers:
            server.stop()
