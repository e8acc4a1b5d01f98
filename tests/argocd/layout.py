"""Our Argo CD scripts and fixtures laid out as Argo CD's own `resource_customizations/`, plus the cases
file our Go test reads, so that Argo CD's tests (`TestLuaHealthScript`, `TestLuaResourceActionsScript`
in util/lua) and ours run over them inside a copy of Argo CD's module (see test_argocd_runtime.py).

    resource_customizations/strategyrollouts.io/<Kind>/
      health.lua  health_test.yaml  testdata/<fixture>.yaml
      actions/discovery.lua  actions/<name>/action.lua  actions/action_test.yaml  actions/testdata/

Scripts are taken from the generated argocd-cm patch (what users install). Expected health statuses
come from the engine-made fixtures; Argo CD's health test compares the message too, exactly, so the
expected message is the one Lua 5.1 (lupa, the dialect gopher-lua implements) gives: the Go run then
checks that gopher-lua says the same. Expected discovery and action results are written here.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CM_PATCH = ROOT / "manifests" / "argocd" / "argocd-cm-patch.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "argocd"
GROUP = "strategyrollouts.io"
ARGOCD_USER = "system:serviceaccount:argocd:argocd-server"  # `by` in the committed patch
RESOURCE_VERSION = "4711"  # metadata.resourceVersion of every action input: request ids derive from it

# Action name -> request action written to status.requests.
ACTIONS: dict[str, dict[str, str]] = {
    "StrategyRollout": {
        "promote": "promote",
        "promote-full": "promoteFull",
        "pause": "pause",
        "resume": "resume",
        "approve": "approve",
        "abort": "abort",
        "retry": "retry",
    },
    "ParityCheck": {"run": "run"},
}
ICONS = {
    "promote": "fa fa-fw fa-forward",
    "promote-full": "fa fa-fw fa-fast-forward",
    "abort": "fa fa-fw fa-undo",
    "retry": "fa fa-fw fa-redo",
    "pause": "fa fa-fw fa-pause",
    "resume": "fa fa-fw fa-play",
    "approve": "fa fa-fw fa-check",
    "run": "fa fa-fw fa-play",
}
# Which actions discovery enables, by phase (None: no status yet).
ROLLOUT_ENABLED: dict[str | None, set[str]] = {
    None: set(),
    "Pending": {"abort", "pause"},
    "Progressing": {"promote", "promote-full", "abort", "pause", "approve"},
    "Paused": {"promote", "promote-full", "abort", "resume", "approve"},
    "Succeeded": set(),
    "RolledBack": {"retry"},
    "Invalid": set(),
}


def enabled_actions(obj: dict[str, Any]) -> set[str]:
    phase = (obj.get("status") or {}).get("phase")
    if obj["kind"] == "StrategyRollout":
        return ROLLOUT_ENABLED[phase]
    if obj["kind"] == "ParityCheck":
        return set() if phase == "Invalid" else {"run"}
    return set()


def request_id(action: str) -> str:
    return f"argocd-{RESOURCE_VERSION}-{action}"


def expected_request(name: str, kind: str) -> dict[str, str]:
    """The request an action adds, without `at` (the time it ran; the Go test checks it is UTC now)."""
    return {"action": ACTIONS[kind][name], "by": ARGOCD_USER, "reason": f"Argo CD resource action {name}"}


def cm_data() -> dict[str, str]:
    cm: dict[str, Any] = yaml.safe_load(CM_PATCH.read_text())
    return dict(cm["data"])


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    return [(path.stem, yaml.safe_load(path.read_text())) for path in sorted(FIXTURES.glob("*.yaml"))]


def lua51_health(kind: str, obj: dict[str, Any]) -> dict[str, str]:
    from tests.unit.test_argocd_lua import run_health  # lupa: only needed to write the layout

    result: dict[str, str] = run_health("lua51", kind, obj)
    return result


def with_version(obj: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    out["metadata"]["resourceVersion"] = RESOURCE_VERSION
    return out


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def write_kind(folder: Path, kind: str, cases: list[tuple[str, dict[str, Any]]], data: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    (folder / "health.lua").write_text(data[f"resource.customizations.health.{GROUP}_{kind}"])
    tests = []
    for stem, case in cases:
        dump(folder / "testdata" / f"{stem}.yaml", case["object"])
        hs = lua51_health(kind, case["object"])
        assert hs["status"] == case["expected"]["status"], (stem, hs)
        tests.append({"inputPath": f"testdata/{stem}.yaml", "healthStatus": hs})
    dump(folder / "health_test.yaml", {"tests": tests})
    if kind not in ACTIONS:
        return
    actions = yaml.safe_load(data[f"resource.customizations.actions.{GROUP}_{kind}"])
    (folder / "actions").mkdir()
    (folder / "actions" / "discovery.lua").write_text(actions["discovery.lua"])
    for definition in actions["definitions"]:
        dump_text(folder / "actions" / definition["name"] / "action.lua", definition["action.lua"])
    discovery_tests, action_tests = [], []
    for stem, case in cases:
        obj = with_version(case["object"])
        dump(folder / "actions" / "testdata" / f"{stem}.yaml", obj)
        enabled = enabled_actions(obj)
        result = [{"name": n, "disabled": n not in enabled, "iconClass": ICONS[n]} for n in ACTIONS[kind]]
        discovery_tests.append({"inputPath": f"testdata/{stem}.yaml", "result": result})
        for name in ACTIONS[kind]:
            if name not in enabled:
                continue
            out = copy.deepcopy(obj)
            out.setdefault("status", {}).setdefault("requests", {})[request_id(name)] = expected_request(name, kind)
            dump(folder / "actions" / "testdata" / f"{stem}-{name}.out.yaml", out)
            expected = f"testdata/{stem}-{name}.out.yaml"
            action_tests.append({"action": name, "inputPath": f"testdata/{stem}.yaml", "expectedOutputPath": expected})
    dump(folder / "actions" / "action_test.yaml", {"discoveryTests": discovery_tests, "actionTests": action_tests})


def dump_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def cases_json() -> dict[str, Any]:
    """What our Go test (strategyrollouts_argocd_test.go) asserts, fixture by fixture."""
    out = []
    for stem, case in fixtures():
        obj = case["object"]
        kind = obj["kind"]
        out.append(
            {
                "name": stem,
                "object": obj,
                "health": case["expected"],
                "actions": sorted(ACTIONS.get(kind, {})),
                "enabled": sorted(enabled_actions(obj)),
                "requests": {name: expected_request(name, kind) for name in sorted(enabled_actions(obj))},
            }
        )
    return {
        "group": GROUP,
        "kinds": sorted({c["object"]["kind"] for _, c in fixtures()}),
        "actionKinds": sorted(ACTIONS),
        "resourceVersion": RESOURCE_VERSION,
        "cases": out,
    }


def write(module: Path) -> Path:
    """Write resource_customizations/strategyrollouts.io/ into Argo CD's module copy; return it."""
    target = module / "resource_customizations" / GROUP
    if target.exists():
        shutil.rmtree(target)
    data = cm_data()
    by_kind: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for stem, case in fixtures():
        by_kind.setdefault(case["object"]["kind"], []).append((stem, case))
    for kind, cases in by_kind.items():
        write_kind(target / kind, kind, cases, data)
    return target


def write_cases(path: Path) -> None:
    path.write_text(json.dumps(cases_json(), indent=1))
