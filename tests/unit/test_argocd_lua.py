"""Argo CD health checks and resource actions, run in a real Lua VM (lupa) over engine-made fixtures.

Argo CD runs these scripts in gopher-lua (Lua 5.1 semantics), so every script is run under Lua 5.1 and
5.4. The fixtures in tests/fixtures/argocd/ come from tests/fixtures/argocd/generate.py (the real engine).
"""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from strategy_rollouts.api.paritycheck import ManualRun
from strategy_rollouts.api.rollout import ManualRequest

lupa = pytest.importorskip("lupa")

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
GROUP = "strategyrollouts.io"
HEALTH = {"StrategyRollout": "strategyrollout", "ShadowRun": "shadowrun", "ParityCheck": "paritycheck"}
ROLLOUT_ACTIONS = {
    "promote": "promote",
    "promote-full": "promoteFull",
    "abort": "abort",
    "retry": "retry",
    "pause": "pause",
    "resume": "resume",
}
LUA_VERSIONS = ["lua51", "lua54"]


def runtime(version: str) -> Any:
    module = pytest.importorskip(f"lupa.{version}")
    return module.LuaRuntime(unpack_returned_tuples=True)


def to_lua(lua: Any, value: Any) -> Any:
    """JSON-like Python -> Lua tables, as Argo CD converts the live object (null: absent)."""
    if isinstance(value, dict):
        return lua.table_from({k: to_lua(lua, v) for k, v in value.items() if v is not None})
    if isinstance(value, list):
        return lua.table_from([to_lua(lua, v) for v in value])
    return value


def from_lua(value: Any) -> Any:
    if type(value).__name__ == "_LuaTable":
        keys = list(value.keys())
        if keys and all(isinstance(k, int) for k in keys):
            return [from_lua(value[i]) for i in range(1, len(keys) + 1)]
        return {k: from_lua(v) for k, v in value.items()}
    return value


def prune(value: Any) -> Any:
    """Drop empty lists/maps: Lua cannot tell them apart (Argo CD has the same ambiguity)."""
    if isinstance(value, dict):
        pruned = {k: prune(v) for k, v in value.items()}
        return {k: v for k, v in pruned.items() if v not in ({}, [], None)}
    if isinstance(value, list):
        return [prune(v) for v in value]
    return value


def run_script(version: str, path: Path, obj: dict[str, Any]) -> Any:
    lua = runtime(version)
    lua.globals().obj = to_lua(lua, copy.deepcopy(obj))
    fn = lua.execute(f"return function() {path.read_text()} end")
    return from_lua(fn())


def fixtures() -> list[Path]:
    return sorted(FIXTURES.glob("*.yaml"))


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def test_fixtures_cover_every_phase_and_health() -> None:
    seen: dict[str, set[str]] = {}
    healths: set[str] = set()
    for path in fixtures():
        data = load(path)
        kind = data["object"]["kind"]
        phase = (data["object"].get("status") or {}).get("phase", "<none>")
        seen.setdefault(kind, set()).add(phase)
        healths.add(data["expected"]["status"])
    assert seen["StrategyRollout"] >= {"<none>", "Progressing", "Paused", "Succeeded", "RolledBack", "Invalid"}
    assert seen["ShadowRun"] >= {"<none>", "Running", "Completed", "Invalid"}
    assert seen["ParityCheck"] >= {"<none>", "Scheduled", "Suspended"}
    assert healths == {"Healthy", "Progressing", "Suspended", "Degraded"}


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize("fixture", fixtures(), ids=lambda p: p.stem)
def test_health(fixture: Path, version: str) -> None:
    data = load(fixture)
    obj = data["object"]
    script = ARGOCD / "health" / f"{HEALTH[obj['kind']]}.lua"
    hs = run_script(version, script, obj)
    assert hs["status"] == data["expected"]["status"], hs
    assert hs.get("message"), "always say why"
    assert data["expected"]["messageContains"] in hs["message"], hs


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_observed_generation_behind_is_progressing_whatever_the_phase(version: str) -> None:
    for path in fixtures():
        obj = load(path)["object"]
        if "status" not in obj:
            continue
        stale = copy.deepcopy(obj)
        stale["metadata"]["generation"] = obj["status"].get("observedGeneration", 0) + 5
        hs = run_script(version, ARGOCD / "health" / f"{HEALTH[obj['kind']]}.lua", stale)
        assert hs["status"] == "Progressing", (path.name, hs)
        assert "Waiting for the operator" in hs["message"]


def rollout_with_phase(phase: str) -> dict[str, Any]:
    for path in fixtures():
        obj: dict[str, Any] = load(path)["object"]
        if obj["kind"] == "StrategyRollout" and (obj.get("status") or {}).get("phase") == phase:
            return obj
    raise AssertionError(f"no StrategyRollout fixture in phase {phase}")


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize(
    ("phase", "enabled"),
    [
        ("Progressing", {"promote", "promote-full", "abort", "pause"}),
        ("Paused", {"promote", "promote-full", "abort", "resume"}),
        ("Succeeded", set()),
        ("RolledBack", {"retry"}),
        ("Invalid", set()),
    ],
)
def test_rollout_action_discovery(version: str, phase: str, enabled: set[str]) -> None:
    actions = run_script(version, ARGOCD / "actions" / "strategyrollout" / "discovery.lua", rollout_with_phase(phase))
    assert set(actions) == set(ROLLOUT_ACTIONS)
    assert {name for name, a in actions.items() if not a["disabled"]} == enabled


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize(("name", "action"), sorted(ROLLOUT_ACTIONS.items()))
def test_rollout_actions_write_only_the_status_request(version: str, name: str, action: str) -> None:
    before = rollout_with_phase("Progressing")
    after = run_script(version, ARGOCD / "actions" / "strategyrollout" / f"{name}.lua", before)
    # Nothing outside status changes: Argo CD sends this as a /status patch, the spec never drifts.
    after, before = prune(after), prune(before)
    assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in before.items() if k != "status"}
    assert {k: v for k, v in after["status"].items() if k != "request"} == before["status"]
    request = ManualRequest.model_validate(after["status"]["request"])
    assert request.action == action
    assert request.by == "argocd"
    assert request.id.startswith(f"argocd-{name}-") and request.id.split("-")[-1].isdigit()
    assert request.at is not None and abs((datetime.now(request.at.tzinfo) - request.at).total_seconds()) < 60


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_rollout_action_on_an_object_without_status(version: str) -> None:
    obj = load(FIXTURES / "strategyrollout-new.yaml")["object"]
    after = run_script(version, ARGOCD / "actions" / "strategyrollout" / "abort.lua", obj)
    assert ManualRequest.model_validate(after["status"]["request"]).action == "abort"


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_parity_run_action(version: str) -> None:
    obj = load(FIXTURES / "paritycheck-warning.yaml")["object"]
    actions = run_script(version, ARGOCD / "actions" / "paritycheck" / "discovery.lua", obj)
    assert actions == {"run": {"disabled": False, "iconClass": "fa fa-fw fa-play"}}
    after = run_script(version, ARGOCD / "actions" / "paritycheck" / "run.lua", obj)
    assert prune({k: v for k, v in after.items() if k != "status"}) == prune(
        {k: v for k, v in obj.items() if k != "status"}
    )
    run = ManualRun.model_validate(after["status"]["runRequest"])
    assert run.by == "argocd" and run.id.startswith("argocd-run-")
    invalid = copy.deepcopy(obj)
    invalid["status"]["phase"] = "Invalid"
    actions = run_script(version, ARGOCD / "actions" / "paritycheck" / "discovery.lua", invalid)
    assert actions["run"]["disabled"] is True


def test_cm_patch_is_generated_from_the_lua_files() -> None:
    result = subprocess.run(
        [sys.executable, str(ARGOCD / "generate.py"), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_cm_patch_contents_match_the_lua_files() -> None:
    cm = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    data = cm["data"]
    for kind, stem in HEALTH.items():
        assert data[f"resource.customizations.health.{GROUP}_{kind}"] == (ARGOCD / "health" / f"{stem}.lua").read_text()
    actions = yaml.safe_load(data[f"resource.customizations.actions.{GROUP}_StrategyRollout"])
    folder = ARGOCD / "actions" / "strategyrollout"
    assert actions["discovery.lua"] == (folder / "discovery.lua").read_text()
    names = [d["name"] for d in actions["definitions"]]
    assert sorted(names) == sorted(ROLLOUT_ACTIONS)
    for d in actions["definitions"]:
        assert d["action.lua"] == (folder / f"{d['name']}.lua").read_text()
    parity = yaml.safe_load(data[f"resource.customizations.actions.{GROUP}_ParityCheck"])
    assert [d["name"] for d in parity["definitions"]] == ["run"]


def test_scripts_avoid_what_gopher_lua_lacks() -> None:
    """Argo CD's VM is Lua 5.1: no goto, integer division, bitwise operators or utf8 library."""
    for path in ARGOCD.rglob("*.lua"):
        text = path.read_text()
        for token in ("goto ", "//", " & ", " | ", "utf8.", "require("):
            if token in text:
                raise AssertionError(f"{path}: uses {token!r}")
