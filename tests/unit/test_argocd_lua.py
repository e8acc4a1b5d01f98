"""Argo CD health checks and resource actions in a real Lua VM (lupa), over engine-made fixtures: the
fast inner loop (no Go build). The authority is tests/argocd/test_argocd_runtime.py, which runs the same
scripts and fixtures in Argo CD's own code (gopher-lua, its settings parser, the controller's health and
the API server's action path); it takes seconds warm, minutes cold.

Argo CD runs these scripts in gopher-lua (Lua 5.1 semantics), so they run under Lua 5.1 here, as Argo CD
runs them: actions and discovery WITHOUT the standard libraries (base and table only, `os` only through
`require("os")`, which gives time and date; no string methods), health scripts with the standard
libraries because the patch sets `resource.customizations.useOpenLibs.<group_kind>`. Scripts are taken
from the generated argocd-cm patch, i.e. what users install. The fixtures in tests/fixtures/argocd/ come
from tests/fixtures/argocd/generate.py (the real engine). Also checked only here: a stale
observedGeneration, pending requests in the health message, one request per object version.
"""

from __future__ import annotations

import copy
import importlib.util
import subprocess
import sys
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from strategy_rollouts.api.requests import ParityRequest, RolloutRequest

lupa = pytest.importorskip("lupa")

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "manifests" / "argocd"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
GROUP = "strategyrollouts.io"
ARGOCD_USER = "system:serviceaccount:argocd:argocd-server"
RESOURCE_VERSION = "4711"
HEALTH = {"StrategyRollout": "strategyrollout", "ShadowRun": "shadowrun", "ParityCheck": "paritycheck"}
ROLLOUT_ACTIONS = {
    "promote": "promote",
    "promote-full": "promoteFull",
    "abort": "abort",
    "retry": "retry",
    "pause": "pause",
    "resume": "resume",
    "approve": "approve",
}
LUA_VERSIONS = ["lua51"]  # gopher-lua's dialect; Argo CD itself runs in tests/argocd

# Runs a chunk the way Argo CD runs an action: an environment with only the base functions, `table`,
# `obj` and a `require` that knows just the safe `os` (Argo CD's util/lua SafeOsLoader: time, date);
# strings lose their methods, as in gopher-lua without the string library.
RESTRICTED = """
local src, obj = ...
local safe_os = { time = os.time, date = os.date }
local env = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs, pcall = pcall,
  rawequal = rawequal, rawget = rawget, rawset = rawset, select = select, setmetatable = setmetatable,
  getmetatable = getmetatable, tonumber = tonumber, tostring = tostring, type = type,
  unpack = unpack or table.unpack, xpcall = xpcall, table = table, obj = obj,
}
env._G = env
env.require = function(name)
  if name == "os" then
    return safe_os
  end
  error("module '" .. tostring(name) .. "' not found")
end
local fn, err
if setfenv then
  fn, err = loadstring(src, "=action")
  if fn then
    setfenv(fn, env)
  end
else
  fn, err = load(src, "=action", "t", env)
end
if not fn then
  error(err, 0)
end
local strings = getmetatable("")
local methods = strings.__index
strings.__index = nil
local ok, result = pcall(fn)
strings.__index = methods
if not ok then
  error(result, 0)
end
return result
"""


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


@cache
def cm_data() -> dict[str, str]:
    cm: dict[str, Any] = yaml.safe_load((ARGOCD / "argocd-cm-patch.yaml").read_text())
    return dict(cm["data"])


def health_script(kind: str) -> str:
    return cm_data()[f"resource.customizations.health.{GROUP}_{kind}"]


def action_scripts(kind: str) -> tuple[str, dict[str, str]]:
    """(discovery.lua, {action name: action.lua}) as the patch ships them."""
    actions = yaml.safe_load(cm_data()[f"resource.customizations.actions.{GROUP}_{kind}"])
    return actions["discovery.lua"], {d["name"]: d["action.lua"] for d in actions["definitions"]}


def run_health(version: str, kind: str, obj: dict[str, Any]) -> Any:
    """Health as Argo CD runs it with useOpenLibs: every standard library."""
    assert cm_data()[f"resource.customizations.useOpenLibs.{GROUP}_{kind}"] == "true"
    lua = runtime(version)
    lua.globals().obj = to_lua(lua, copy.deepcopy(obj))
    return from_lua(lua.execute(f"return (function() {health_script(kind)} end)()"))


def run_restricted(version: str, script: str, obj: dict[str, Any]) -> Any:
    """An action or discovery script as Argo CD runs it: no standard libraries."""
    lua = runtime(version)
    return from_lua(lua.execute(RESTRICTED, script, to_lua(lua, copy.deepcopy(obj))))


def with_version(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = RESOURCE_VERSION
    return out


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
    hs = run_health(version, obj["kind"], obj)
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
        hs = run_health(version, obj["kind"], stale)
        assert hs["status"] == "Progressing", (path.name, hs)
        assert "Waiting for the operator" in hs["message"]


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_rollout_health_names_pending_requests(version: str) -> None:
    obj = rollout_with_phase("Progressing")
    obj["status"]["requests"] = {
        "b1": {"action": "pause", "by": "bob", "at": "2026-01-05T06:00:00Z"},
        "a1": {"action": "abort", "by": "alice", "at": "2026-01-05T06:00:01Z"},
    }
    hs = run_health(version, "StrategyRollout", obj)
    assert hs["status"] == "Progressing"
    assert hs["message"].endswith("; pending request(s): abort by alice, pause by bob"), hs


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
        ("Progressing", {"promote", "promote-full", "abort", "pause", "approve"}),
        ("Paused", {"promote", "promote-full", "abort", "resume", "approve"}),
        ("Succeeded", set()),
        ("RolledBack", {"retry"}),
        ("Invalid", set()),
    ],
)
def test_rollout_action_discovery(version: str, phase: str, enabled: set[str]) -> None:
    discovery, _ = action_scripts("StrategyRollout")
    actions = run_restricted(version, discovery, rollout_with_phase(phase))
    assert set(actions) == set(ROLLOUT_ACTIONS)
    assert {name for name, a in actions.items() if not a["disabled"]} == enabled


def only_status_changed(before: dict[str, Any], after: dict[str, Any]) -> None:
    """Nothing outside status changes: Argo CD sends this as a /status patch, the spec never drifts."""
    after, before = prune(after), prune(before)
    assert {k: v for k, v in after.items() if k != "status"} == {k: v for k, v in before.items() if k != "status"}


def assert_utc_now(at: datetime) -> None:
    assert at.tzinfo is not None and abs((datetime.now(UTC) - at).total_seconds()) < 60


@pytest.mark.parametrize("version", LUA_VERSIONS)
@pytest.mark.parametrize(("name", "action"), sorted(ROLLOUT_ACTIONS.items()))
def test_rollout_actions_add_one_request(version: str, name: str, action: str) -> None:
    before = with_version(rollout_with_phase("Progressing"))
    before["status"]["requests"] = {"someone": {"action": "pause", "by": "bob", "at": "2026-01-05T06:00:00Z"}}
    _, scripts = action_scripts("StrategyRollout")
    after = run_restricted(version, scripts[name], before)
    only_status_changed(before, after)
    # Exactly one new key; everything else in status (another writer's pending request included) stays.
    assert prune({k: v for k, v in after["status"].items() if k != "requests"}) == prune(
        {k: v for k, v in before["status"].items() if k != "requests"}
    )
    requests = after["status"]["requests"]
    assert set(requests) == {"someone", f"argocd-{RESOURCE_VERSION}-{name}"}
    assert requests["someone"] == before["status"]["requests"]["someone"]
    request = RolloutRequest.model_validate(requests[f"argocd-{RESOURCE_VERSION}-{name}"])
    assert request.action == action and request.by == ARGOCD_USER
    assert request.reason == f"Argo CD resource action {name}"
    assert_utc_now(request.at)


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_the_same_action_at_the_same_version_is_one_request(version: str) -> None:
    _, scripts = action_scripts("StrategyRollout")
    once = run_restricted(version, scripts["abort"], with_version(rollout_with_phase("Progressing")))
    twice = run_restricted(version, scripts["abort"], once)
    assert list(twice["status"]["requests"]) == [f"argocd-{RESOURCE_VERSION}-abort"]


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_rollout_action_on_an_object_without_status(version: str) -> None:
    obj = with_version(load(FIXTURES / "strategyrollout-new.yaml")["object"])
    _, scripts = action_scripts("StrategyRollout")
    after = run_restricted(version, scripts["abort"], obj)
    (request,) = after["status"]["requests"].values()
    assert RolloutRequest.model_validate(request).action == "abort"


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_the_restricted_runtime_refuses_what_argocd_lacks(version: str) -> None:
    """The harness itself: the global os, the string library and string methods are not there."""
    obj = with_version(rollout_with_phase("Progressing"))
    for script, error in (
        ("return os.time()", "os"),
        ('return string.format("%d", 1)', "string"),
        ('return ("x"):upper()', "index a string value"),
        ('return require("io")', "io"),
    ):
        with pytest.raises(pytest.importorskip(f"lupa.{version}").LuaError, match=error):
            run_restricted(version, script, obj)
    assert run_restricted(version, 'local os = require("os"); return os.date("!%Y")', obj) == str(
        datetime.now(UTC).year
    )


@pytest.mark.parametrize("version", LUA_VERSIONS)
def test_parity_run_action(version: str) -> None:
    obj = with_version(load(FIXTURES / "paritycheck-warning.yaml")["object"])
    discovery, scripts = action_scripts("ParityCheck")
    actions = run_restricted(version, discovery, obj)
    assert actions == {"run": {"disabled": False, "iconClass": "fa fa-fw fa-play"}}
    after = run_restricted(version, scripts["run"], obj)
    only_status_changed(obj, after)
    request = ParityRequest.model_validate(after["status"]["requests"][f"argocd-{RESOURCE_VERSION}-run"])
    assert request.by == ARGOCD_USER and request.action == "run"
    assert_utc_now(request.at)
    invalid = copy.deepcopy(obj)
    invalid["status"]["phase"] = "Invalid"
    assert run_restricted(version, discovery, invalid)["run"]["disabled"] is True


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
        assert data[f"resource.customizations.useOpenLibs.{GROUP}_{kind}"] == "true"
    discovery, scripts = action_scripts("StrategyRollout")
    folder = ARGOCD / "actions" / "strategyrollout"
    assert discovery == (folder / "discovery.lua").read_text()
    assert sorted(scripts) == sorted(ROLLOUT_ACTIONS)
    for name, script in scripts.items():
        assert script == (folder / f"{name}.lua").read_text()
    assert list(action_scripts("ParityCheck")[1]) == ["run"]


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("argocd_generate", ARGOCD / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_action_scripts_are_the_template_with_their_words() -> None:
    """The committed actions/<kind>/<action>.lua are generate.py's output from actions/action.lua.template
    (`generate.py --check` above fails on drift); each differs from the template in its own words only."""
    gen = generator()
    template = (ARGOCD / "actions" / "action.lua.template").read_text()
    expected = {("strategyrollout", name): request for name, request in ROLLOUT_ACTIONS.items()} | {
        ("paritycheck", "run"): "run"
    }
    assert {(stem, name) for stem in gen.ACTIONS for name in gen.ACTIONS[stem]} == set(expected)
    for (stem, name), request in expected.items():
        path = ARGOCD / "actions" / stem / f"{name}.lua"
        text = path.read_text()
        assert text == gen.action_script(stem, name), f"{path}: stale, run `make manifests`"
        assert gen.ACTIONS[stem][name].request == request
        assert f'action = "{request}",' in text and f'-{name}"' in text
        differing = [t for t, g in zip(template.splitlines(), text.splitlines(), strict=True) if t != g]
        assert all("${" in line for line in differing), (path, differing)
    assert gen.stray_actions() == []


def test_the_argocd_user_is_a_parameter() -> None:
    gen = generator()
    text = gen.render("system:serviceaccount:gitops:argocd-server")
    actions = yaml.safe_load(yaml.safe_load(text)["data"][f"resource.customizations.actions.{GROUP}_StrategyRollout"])
    for d in actions["definitions"]:
        assert 'local by = "system:serviceaccount:gitops:argocd-server"' in d["action.lua"]
        assert ARGOCD_USER not in d["action.lua"]
    with pytest.raises(SystemExit):
        gen.render('x" .. os.exit() .. "')
    chart_copy = (ROOT / "charts" / "strategy-rollouts" / "files" / "argocd-cm-patch.yaml").read_text()
    assert chart_copy == gen.render(gen.USER_PLACEHOLDER)


def test_scripts_avoid_what_argocd_lacks() -> None:
    """Argo CD's VM is Lua 5.1: no goto, integer division, bitwise operators or utf8 library; actions
    run without the standard libraries, so `require` only for the safe os, and no `string.` there."""
    for path in ARGOCD.rglob("*.lua"):
        text = path.read_text().replace('local os = require("os")', "")
        for token in ("goto ", "//", " & ", " | ", "utf8.", "require("):
            if token in text:
                raise AssertionError(f"{path}: uses {token!r}")
        if "actions" in path.parts:
            for token in ("string.", "math.", "io.", ":format(", ":gsub(", ":sub(", ":find("):
                if token in text:
                    raise AssertionError(f"{path}: uses {token!r}, which Argo CD's actions do not have")
