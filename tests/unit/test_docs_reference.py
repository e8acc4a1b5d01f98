"""The docs' field tables are generated from the models and must be current; links must resolve."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def test_field_tables_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(DOCS / "gen_reference.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", ["strategyrollout.md", "shadowrun.md", "paritycheck.md"])
def test_every_spec_field_is_documented(page: str) -> None:
    text = (DOCS / page).read_text()
    rows = re.findall(r"^\| `(spec\.[^`]+)` \|.*\| ([^|]*) \|$", text, flags=re.M)
    assert rows
    undocumented = [path for path, meaning in rows if not meaning.strip() and not path.endswith((".name", ".key"))]
    assert not undocumented, undocumented


@pytest.mark.parametrize("page", sorted(p.name for p in DOCS.glob("*.md")))
def test_relative_links_resolve(page: str) -> None:
    text = (DOCS / page).read_text()
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (DOCS / target).exists(), f"{page}: broken link {target}"
