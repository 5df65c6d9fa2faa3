"""The repository stands on its own: what its code, tests and docs read is inside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "docs" / "openai-files-openapi.yml"


def _tracked(*patterns: str) -> list[Path]:
    done = subprocess.run(
        ["git", "ls-files", "-z", "--", *patterns],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    return [ROOT / name for name in done.stdout.decode().split("\0") if name]


def test_the_openapi_description_is_carried_with_its_origin_and_licence() -> None:
    text = SPEC.read_text()
    header = "\n".join(line for line in text.splitlines()[:10] if line.startswith("#"))
    assert "openai/openai-openapi" in header and "MIT" in header
    spec = yaml.safe_load(text)
    assert {"/files", "/files/{file_id}", "/files/{file_id}/content", "/uploads"} <= set(
        spec["paths"]
    )
    assert "OpenAIFile" in spec["components"]["schemas"]


@pytest.mark.parametrize(
    ("name", "paths", "schema"),
    [
        ("openai-batches-openapi.yml", {"/batches", "/batches/{batch_id}"}, "Batch"),
        (
            "openai-admin-openapi.yml",
            {
                "/organization/admin_api_keys",
                "/organization/projects",
                "/organization/projects/{project_id}/service_accounts",
                "/organization/projects/{project_id}/api_keys",
            },
            "Project",
        ),
    ],
)
def test_each_other_description_is_carried_with_its_origin(
    name: str, paths: set[str], schema: str
) -> None:
    text = (ROOT / "docs" / name).read_text()
    header = "\n".join(line for line in text.splitlines()[:10] if line.startswith("#"))
    assert "openai/openai-openapi" in header and "MIT" in header
    spec = yaml.safe_load(text)
    assert paths <= set(spec["paths"])
    assert schema in spec["components"]["schemas"]


def test_the_contract_helper_reads_the_carried_description(tmp_path: Path) -> None:
    """The helper's schema is the carried description's: a real answer of the server passes
    it, and the same answer without a key that description requires does not."""
    import jsonschema

    from ._inprocess import AppServer
    from .api import _contract

    assert _contract.SPEC_PATH.resolve() == SPEC
    required = yaml.safe_load(SPEC.read_text())["components"]["schemas"]["OpenAIFile"]["required"]
    assert {"id", "bytes", "purpose"} <= set(required)
    app = AppServer(tmp_path / "data").start()
    try:
        key = app.create_key("org-contract", "proj_contract")
        with app.http(key) as http:
            made = http.post(
                "/files", files={"file": ("a.txt", b"abc")}, data={"purpose": "vision"}
            )
            assert made.status_code == 200, made.text
            listed = http.get("/files")
    finally:
        app.stop()
    _contract.assert_schema("OpenAIFile", made.json())
    _contract.assert_schema("ListFilesResponse", listed.json())
    for name in required:
        broken = {k: v for k, v in made.json().items() if k != name}
        with pytest.raises(jsonschema.ValidationError):
            _contract.assert_schema("OpenAIFile", broken)


# A path that climbs out of the repository, or names the documents the project started from.
_OUTSIDE = re.compile(r"\.\./shared|parents\[[3-9]\]|CONTRACT\.md|/work/")


@pytest.mark.parametrize(
    "path",
    _tracked("src", "tests", "bench", "docs", "examples", "README.md", "Makefile", ".ci"),
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_file_refers_to_a_path_outside_the_repo(path: Path) -> None:
    if path.suffix in (".png", ".json") or path == Path(__file__):
        return
    text = path.read_text(errors="replace")
    assert not _OUTSIDE.search(text), _OUTSIDE.search(text)


@pytest.mark.parametrize(
    "doc", _tracked("README.md", "docs/*.md"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_every_relative_link_in_the_docs_resolves_inside_the_repo(doc: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", doc.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        resolved = (doc.parent / target).resolve()
        assert resolved.is_relative_to(ROOT), target
        assert resolved.exists(), f"{doc.name} links to {target}, which does not exist"


def test_no_tracked_file_is_a_symbolic_link() -> None:
    """A link committed by mistake (a local virtualenv's, say) points into the machine that
    made it; in a clone it is broken, or shadows what the Makefile builds there."""
    done = subprocess.run(
        ["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True
    )
    links = [
        entry.split("\t", 1)[1]
        for entry in done.stdout.decode().split("\0")
        if entry.startswith("120000 ")
    ]
    assert links == []
