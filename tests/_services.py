"""The test suite's real backing services: they live in `openai_files.testing.services`
(`openai-files dev-stack` starts the same ones)."""

from openai_files.testing.services import LOOPBACK, PostgresCluster, SeaweedS3, free_port

__all__ = ["LOOPBACK", "PostgresCluster", "SeaweedS3", "free_port"]
