"""The seed's examples, translated in `examples/`, run against the real server."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from openai_files import files_upload

from .._server import ServerProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@pytest.fixture
def run_example(server: ServerProcess, api_key: str, tmp_path: Path) -> Runner:
    """Run `examples/NAME` in `tmp_path`, pointed at the test server by the environment."""
    env = {
        **os.environ,
        "OPENAI_API_KEY": api_key,
        "OPENAI_BASE_URL": server.base_url,
    }

    def run(name: str, *args: str, **more_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(EXAMPLES / name), *args],
            capture_output=True, text=True, env={**env, **more_env}, cwd=tmp_path, timeout=60,
            check=False,
        )  # fmt: skip

    return run


def test_the_seeds_examples_in_order(run_example: Runner, tmp_path: Path) -> None:
    pdf = tmp_path / "fonts-example.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + b"0" * 35204)

    done = run_example("files_upload.py", str(pdf))
    assert done.returncode == 0, done.stderr
    data = ast.literal_eval(done.stdout)
    assert (data["filename"], data["bytes"], data["purpose"]) == (
        "fonts-example.pdf",  # the file's own name
        35213,
        "assistants",
    )
    file_id = data["id"]

    for args in [(), ("assistants",)]:
        done = run_example("files_list.py", *args)
        assert done.returncode == 0, done.stderr
        listed = ast.literal_eval(done.stdout)
        assert [f["id"] for f in listed["data"]] == [file_id] and listed["has_more"] is False

    done = run_example("files_retrieve.py", file_id)
    assert done.returncode == 0 and ast.literal_eval(done.stdout) == data

    # As the seed shows: an assistants file cannot be downloaded.
    done = run_example("files_retrieve_content.py", file_id)
    assert done.returncode == 1
    assert "HTTP response is not HTTP_OK!\n\nHTTP Status: 400\n" in done.stderr
    assert "Not allowed to download files of purpose: assistants" in done.stderr

    done = run_example("files_delete.py", file_id)
    assert done.returncode == 0
    assert ast.literal_eval(done.stdout) == {"id": file_id, "object": "file", "deleted": True}

    done = run_example("files_retrieve_content.py", file_id)
    assert done.returncode == 1 and "HTTP Status: 404\nMimetype:    application/json" in done.stderr


def test_upload_without_an_argument_makes_a_small_pdf_offline(
    run_example: Runner, tmp_path: Path
) -> None:
    # Any request to the internet would go to a proxy that is not there, and fail.
    done = run_example("files_upload.py", HTTPS_PROXY="http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    data = ast.literal_eval(done.stdout)
    assert (data["filename"], data["purpose"]) == ("example.pdf", "assistants")
    assert 400 < data["bytes"] < 1000
    assert list(tmp_path.iterdir()) == []  # written in a temporary folder, and gone


def test_upload_keeps_the_files_name(
    run_example: Runner, server: ServerProcess, api_key: str, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    done = run_example("files_upload.py", "notes.txt")
    assert done.returncode == 0, done.stderr
    data = ast.literal_eval(done.stdout)
    assert (data["filename"], data["bytes"]) == ("notes.txt", 5)
    done = run_example("files_upload.py", "a", "b")
    assert done.returncode == 1 and done.stderr.startswith("usage: python ")
    assert "Traceback" not in done.stderr


def test_retrieve_content_saves_the_file(
    run_example: Runner, server: ServerProcess, api_key: str, tmp_path: Path
) -> None:
    response = files_upload(
        b"%PDF-1.4 x", "x.pdf", "application/pdf", "vision",
        openai_api_key=api_key, base_url=server.base_url,
    )  # fmt: skip
    done = run_example("files_retrieve_content.py", response.data["id"])
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Saved to: example.pdf\n"
    assert (tmp_path / "example.pdf").read_bytes() == b"%PDF-1.4 x"


def test_the_client_example(run_example: Runner, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"png-bytes")
    done = run_example("client.py", str(tmp_path / "a.png"))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("uploaded file-") and lines[0].endswith(" a.png 9")
    assert lines[-1] == "gone: 404 id"
    assert (tmp_path / "copy-a.png").read_bytes() == b"png-bytes"
