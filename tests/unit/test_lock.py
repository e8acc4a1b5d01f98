"""The dependency lock, read as files (no uv, no network): uv.lock is what `make venv` installs (`uv sync
--locked`); requirements/image.txt (the operator image) and examples/quoter/requirements.txt (the quoter
image) are exported from it by `make lock`. A stale lock or export fails here, before any install."""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "strategy-rollouts"
IMAGE_REQUIREMENTS = ROOT / "requirements" / "image.txt"
QUOTER_REQUIREMENTS = ROOT / "examples" / "quoter" / "requirements.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def lock() -> dict[str, Any]:
    return tomllib.loads((ROOT / "uv.lock").read_text())


def packages() -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for package in lock()["package"]:
        out.setdefault(package["name"], []).append(package)
    return out


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        if m := PIN.match(line):
            found[norm(m.group(1))] = m.group(2)
    return found


Declared = tuple[str, str, tuple[str, ...], str | None]  # name, specifier, extras, the extra that needs it


def test_lock_was_made_from_this_pyproject() -> None:
    """uv.lock records the requirements it resolved; they must be pyproject.toml's (else: `make lock`)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: set[Declared] = set()
    groups: list[tuple[str | None, list[str]]] = [(None, project["dependencies"])]
    groups += list(project["optional-dependencies"].items())
    for extra, requirements in groups:
        for text in requirements:
            r = Requirement(text)
            assert r.marker is None, f"{text}: a marker; teach this test to compare it"
            declared.add((norm(r.name), str(r.specifier), tuple(sorted(r.extras)), extra))
    (root,) = packages()[PROJECT]
    recorded: set[Declared] = set()
    for d in root["metadata"]["requires-dist"]:
        marker = d.get("marker")
        m = re.fullmatch(r"extra == '([^']+)'", marker) if marker else None
        assert marker is None or m, f"{d}: a marker; teach this test to compare it"
        spec = str(SpecifierSet(d.get("specifier", "")))
        recorded.add((d["name"], spec, tuple(sorted(d.get("extras", []))), m.group(1) if m else None))
    assert declared == recorded, (
        f"uv.lock is stale: run `make lock`. pyproject only: {sorted(declared - recorded)}; "
        f"uv.lock only: {sorted(recorded - declared)}"
    )


def runtime_closure(extras: tuple[str, ...]) -> set[str]:
    """Every package the project needs with these extras, on any platform (markers ignored, as the export
    keeps them all with their markers)."""
    by_name = packages()
    (root,) = by_name[PROJECT]
    todo = [d["name"] for d in root.get("dependencies", [])]
    for extra in extras:
        todo += [d["name"] for d in root.get("optional-dependencies", {}).get(extra, [])]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name == PROJECT:
            continue
        seen.add(name)
        for package in by_name[name]:
            todo += [d["name"] for d in package.get("dependencies", [])]
    return seen


@pytest.mark.parametrize("path", [IMAGE_REQUIREMENTS, QUOTER_REQUIREMENTS], ids=lambda p: p.parent.name)
def test_exports_pin_the_locked_versions_with_hashes(path: Path) -> None:
    locked = {name: {p["version"] for p in found} for name, found in packages().items()}
    found = pins(path)
    assert found, f"{path}: no pins"
    for name, version in found.items():
        assert version in locked.get(name, set()), f"{path}: {name}=={version}, uv.lock has {locked.get(name)}"
    entries = re.split(r"\n(?=[A-Za-z0-9])", path.read_text().split("\n", 2)[2])
    assert all("--hash=sha256:" in e for e in entries if PIN.match(e)), f"{path}: every pin has its hashes"


def test_image_requirements_are_exactly_the_runtime_and_dashboard_closure() -> None:
    assert set(pins(IMAGE_REQUIREMENTS)) == runtime_closure(("dashboard",)), "run `make lock`"
