"""Lint the Dockerfile without Docker: parse it and check what `docker build` would rely on."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def parse(text: str) -> list[Instruction]:
    """Instructions with line continuations joined; comments and blank lines dropped."""
    out: list[Instruction] = []
    buf: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if not buf:
            start = number
        if line.endswith("\\"):
            buf.append(line[:-1])
            continue
        buf.append(line)
        joined = " ".join(part.strip() for part in buf)
        buf = []
        keyword, _, args = joined.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not buf, "Dockerfile ends with a line continuation"
    return out


INSTRUCTIONS = parse(DOCKERFILE.read_text())


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in INSTRUCTIONS:
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Go filepath.Match as moby's patternmatcher extends it: `*` stays within a segment, `**` not."""
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out)


def dockerignore_excludes(rel: str) -> bool:
    """Docker's rule: the last matching pattern wins, `!` re-includes, and a pattern matching a parent
    directory matches everything under it."""
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    parts = Path(rel).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        regex = _pattern_regex((pattern[1:] if negate else pattern).strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            excluded = not negate
    return excluded


def test_multi_stage_with_builder_and_slim_runtime() -> None:
    froms = [ins for ins in INSTRUCTIONS if ins.keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    args = {
        m.group(1): m.group(2)
        for ins in INSTRUCTIONS
        if ins.keyword == "ARG" and (m := re.fullmatch(r"(\w+)=(\S+)", ins.args))
    }
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.args.split()[0]) for f in froms]
    assert all(img.startswith("python:3.11") for img in images), images
    assert images[-1].endswith("-slim")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11"


def test_runtime_installs_the_wheel_built_by_the_builder() -> None:
    builder, runtime = stages()[0], stages()[-1]
    assert any(i.keyword == "RUN" and "pip wheel" in i.args for i in builder)
    assert any(i.keyword == "COPY" and i.args.startswith("--from=builder") for i in runtime)
    installs = [i.args for i in runtime if i.keyword == "RUN" and "pip install" in i.args]
    assert installs and "--no-index" in installs[0], "runtime must install offline from the built wheels"


def test_builder_takes_the_dependencies_from_the_lock_with_hashes() -> None:
    """requirements/image.txt is uv.lock's export (tests/unit/test_lock.py); the project wheel adds nothing."""
    builder = stages()[0]
    wheels = [i for i in builder if i.keyword == "RUN" and "pip wheel" in i.args]
    locked = [i for i in wheels if "--require-hashes" in i.args and "-r requirements/image.txt" in i.args]
    assert locked, "the dependencies come from the lock's export, hash-checked"
    assert all("--no-deps" in i.args for i in wheels if i not in locked), "no dependency outside the lock"
    copies = [i for i in builder if i.keyword == "COPY"]
    first_source = min(i.line for i in copies if "strategy_rollouts/" in i.args)
    assert locked[0].line < first_source, "the dependency layer is built before the sources are copied"


def test_runs_as_numeric_non_root_user() -> None:
    runtime = stages()[-1]
    users = [i for i in runtime if i.keyword == "USER"]
    assert users, "the runtime stage must set USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) != 0, "numeric non-root uid (runAsNonRoot can verify it)"
    assert user == "65532"
    assert not group or (group.isdigit() and int(group) != 0)
    # Nothing after USER may need root.
    after = runtime[runtime.index(users[-1]) + 1 :]
    assert not [i for i in after if i.keyword in {"RUN", "COPY", "ADD"}]


def test_entrypoint_is_the_console_script_with_run() -> None:
    runtime = stages()[-1]
    entry = [i for i in runtime if i.keyword == "ENTRYPOINT"]
    cmd = [i for i in runtime if i.keyword == "CMD"]
    assert entry and json.loads(entry[-1].args) == ["strategy-rollouts"], "exec form entrypoint"
    assert cmd and json.loads(cmd[-1].args) == ["run"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert "strategy-rollouts" in scripts


def test_read_only_root_friendly() -> None:
    env = " ".join(i.args for i in stages()[-1] if i.keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env, "no .pyc writes at runtime"
    assert "HOME=/tmp" in env, "anything that wants $HOME writes to the /tmp emptyDir"
    assert not [i for i in INSTRUCTIONS if i.keyword in {"VOLUME", "ADD"}]
    assert not [i for i in INSTRUCTIONS if i.keyword == "HEALTHCHECK"], "Kubernetes probes instead"


def copy_sources(ins: Instruction) -> list[str]:
    words = [w for w in shlex.split(ins.args) if not w.startswith("--")]
    return words[:-1]


@pytest.mark.parametrize(
    "source",
    sorted(
        {
            src
            for ins in INSTRUCTIONS
            if ins.keyword == "COPY" and "--from=" not in ins.args
            for src in copy_sources(ins)
        }
    ),
)
def test_every_copy_source_exists_and_is_in_the_build_context(source: str) -> None:
    path = ROOT / source
    assert path.exists(), f"COPY {source}: not in the repository"
    assert not dockerignore_excludes(source.rstrip("/")), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    for heavy in (".venv", ".git", ".devcluster", "tests", "devcluster", "bench"):
        assert dockerignore_excludes(heavy), heavy
    assert not dockerignore_excludes("strategy_rollouts/main.py")
    assert dockerignore_excludes("strategy_rollouts/__pycache__/main.cpython-311.pyc")


def test_readme_needed_by_the_build_backend_is_copied() -> None:
    readme = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"].get("readme")
    copied = {s for ins in INSTRUCTIONS if ins.keyword == "COPY" for s in copy_sources(ins)}
    assert readme in copied
    assert "pyproject.toml" in copied
