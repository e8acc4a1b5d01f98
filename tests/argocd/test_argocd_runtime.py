"""Our Argo CD health checks and actions in Argo CD's own code (issue 17).

devcluster/argocd.sh makes (once per version, cached) a writable copy of Argo CD's Go module from the
module proxy. Into it go our scripts and fixtures as Argo CD's `resource_customizations/` layout
(tests/argocd/layout.py) and our Go test (strategyrollouts_argocd_test.go), then one `go test` runs:

- Argo CD's own `TestLuaHealthScript` and `TestLuaResourceActionsScript` (util/lua), which walk
  resource_customizations/ (Argo CD's built-in scripts and ours)
- ours: the argocd-cm patch through Argo CD's settings parser, health as the application controller
  computes it, every enabled action as the API server runs it (status-only merge patch)

Cold (first run: module download and compile) takes minutes; warm (Go's build cache) seconds.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.argocd import layout

HERE = Path(__file__).resolve().parent
ARGOCD_SH = layout.ROOT / "devcluster" / "argocd.sh"
GO_TEST = HERE / "strategyrollouts_argocd_test.go"
PACKAGE = "strategyrollouts"  # our test's package directory inside the module copy
TESTS = "^(TestLuaHealthScript|TestLuaResourceActionsScript|TestArgoCD.*)$"


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    if shutil.which("go") is None and Path("/usr/local/go/bin/go").exists():
        env["PATH"] = f"{env['PATH']}:/usr/local/go/bin"
    env["GOTOOLCHAIN"] = "auto"
    return env


def module_copy(env: dict[str, str]) -> Path:
    result = subprocess.run(["bash", str(ARGOCD_SH), "src"], capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, f"devcluster/argocd.sh src failed:\n{result.stderr}"
    return Path(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(3600)  # cold: downloads and compiles Argo CD's dependencies
def test_scripts_in_argocd_runtime(tmp_path: Path) -> None:
    env = go_env()
    src = module_copy(env)
    # The copy is shared by every checkout on this machine: one writer and test run at a time.
    with (src.parent / "test.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        output = run_in_module(src, env, tmp_path)
    # Argo CD's tests did walk our layout: one passing subtest per fixture, discovery and action.
    for stem, case in layout.fixtures():
        kind = case["object"]["kind"]
        assert f"--- PASS: TestLuaHealthScript/{layout.GROUP}/{kind}/testdata/{stem}.yaml" in output, stem
        if kind in layout.ACTIONS:
            assert f"--- PASS: TestLuaResourceActionsScript/discovery/testdata/{stem}.yaml" in output, stem
            for name in layout.enabled_actions(case["object"]):
                assert f"--- PASS: TestLuaResourceActionsScript/actions/{name}/testdata/{stem}.yaml" in output
    for test in (
        "TestArgoCDConfigMapOverrides",
        "TestArgoCDControllerHealth",
        "TestArgoCDHealthNeedsOpenLibs",
        "TestArgoCDServerActions",
    ):
        assert f"--- PASS: {test} " in output, test


def run_in_module(src: Path, env: dict[str, str], tmp_path: Path) -> str:
    """Lay out our scripts and Go test in Argo CD's module copy, run `go test` there; its output."""
    layout.write(src)
    package = src / PACKAGE
    if package.exists():
        shutil.rmtree(package)
    package.mkdir()
    shutil.copy(GO_TEST, package / GO_TEST.name)
    cases = tmp_path / "cases.json"
    layout.write_cases(cases)
    env["SR_CASES"] = str(cases)
    env["SR_CM_PATCH"] = str(layout.CM_PATCH)
    parallel = os.environ.get("BUILD_PARALLELISM", "2")
    result = subprocess.run(
        ["go", "test", "-p", parallel, "-count=1", "-v", "-run", TESTS, "./util/lua", f"./{PACKAGE}"],
        cwd=src,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    return output
