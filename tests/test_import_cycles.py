"""No import circle among the modules of a package: every import counts, also one made inside
a function or under `TYPE_CHECKING` (a circle there still ties the modules into one)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_files(base: Path, package: str) -> dict[str, Path]:
    """Each module of `package` (a folder under `base`) by its dotted name."""
    found = {}
    for path in (base / package).rglob("*.py"):
        parts = path.relative_to(base).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imported(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of `known` that module `name` (at `path`) imports, anywhere in it."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*parts, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            for alias in node.names:
                # `from . import x` imports the module x when there is one, else a name.
                sub = f"{source}.{alias.name}"
                names.add(sub if sub in known else source)
    edges = set()
    for target in names:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name:
            edges.add(target)
    return edges


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


@pytest.mark.parametrize(
    ("base", "package"),
    [
        pytest.param(ROOT / "src", "openai_files", id="src"),
        pytest.param(ROOT, "bench", id="bench"),
    ],
)
def test_no_import_cycle(base: Path, package: str) -> None:
    known = module_files(base, package)
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert cycles(graph) == []


def test_a_cycle_is_found(tmp_path: Path) -> None:
    """The check itself: a circle through a lazy import and one through `TYPE_CHECKING`."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import x\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.d\n"
    )
    (pkg / "d.py").write_text("from pkg.c import y\n")
    (pkg / "e.py").write_text("from . import a, c\n")
    known = module_files(tmp_path, "pkg")
    graph = {name: imported(name, path, known) for name, path in known.items()}
    assert cycles(graph) == [["pkg.a", "pkg.b"], ["pkg.c", "pkg.d"]]
