"""The chart's ClusterGateTemplates (gateTemplates.enabled): each one resolves to a valid gate, and the
RBAC lets the operator read both template kinds."""

from __future__ import annotations

import pytest

from strategy_rollouts.api.gate_templates import GateTemplateSpec
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.gate_templates import Template, resolve
from strategy_rollouts.engine.validation import gate_errors
from tests.unit.test_chart_static import kinds, render

STANDARD = ["deadline-misses", "partial-fills", "risk-budget", "stage-regression", "tick-p95"]


def library() -> dict[str, GateTemplateSpec]:
    docs = [d for d in render("--set", "gateTemplates.enabled=true") if d["kind"] == "ClusterGateTemplate"]
    return {d["metadata"]["name"]: GateTemplateSpec.model_validate(d["spec"]) for d in docs}


def test_the_library_is_off_by_default_and_ships_the_standard_gates() -> None:
    assert "ClusterGateTemplate" not in kinds(render())
    assert sorted(library()) == STANDARD


@pytest.mark.parametrize("name", STANDARD)
def test_each_template_resolves_with_its_defaults_into_a_valid_gate(name: str) -> None:
    spec = library()[name]
    found = {("ClusterGateTemplate", "", name): Template("ClusterGateTemplate", name, "1", spec)}
    gate = GateSpec.model_validate({"name": name, "templateRef": {"name": name}})
    out = resolve("spec.gates", [gate], "trading", found)
    assert out.errors == []
    assert gate_errors("spec.gates", out.gates) == []
    assert "{{args." not in str(out.gates[0].wire())


def test_the_operator_may_read_both_template_kinds() -> None:
    # the operator's own ClusterRole (the action roles strategy-rollouts-operate/-approve/-risk are for people)
    [role] = [d for d in render() if d["kind"] == "ClusterRole" and not d["metadata"]["name"].startswith("strategy-")]
    rules = role["rules"]
    readable = {r for rule in rules if "list" in rule["verbs"] and "watch" in rule["verbs"] for r in rule["resources"]}
    assert {"gatetemplates", "clustergatetemplates"} <= readable
