"""Optional extras the tests use: missing, a test is skipped on a developer's machine, but
fails under CI=true, where `make test` installs every extra (as with LiteLLM's proxy,
tests/_litellm.py)."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def import_or_skip(module: str, extra: str) -> ModuleType:
    """`pytest.importorskip`, but a failure under CI=true."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        reason = f"{module} is not installed ({e}): pip install 'openai-files[{extra}]'"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
