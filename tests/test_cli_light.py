"""The `openai-files` command works on a client-only install (no [server] extra)."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
for name in ("starlette", "uvicorn", "python_multipart", "anyio"):
    sys.modules[name] = None  # as if the [server] extra were not installed
from openai_files.cli import main
try:
    main(["upload", "--help"])
except SystemExit as exc:  # argparse exits after --help
    assert exc.code == 0, exc.code
code = main(["serve", "--port", "0"])
sys.exit(10 + code)
"""


def test_client_commands_without_server_extra() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 12, done.stderr  # serve: a usage error naming the extra
    assert "pip install 'openai-files[server]'" in done.stderr
    assert "Traceback" not in done.stderr
