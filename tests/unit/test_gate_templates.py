"""Template resolution (engine/gate_templates.py): args and defaults, override-by-field, field-named errors."""

from __future__ import annotations

from typing import Any

from strategy_rollouts.api.gate_templates import GateTemplateSpec
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.engine.gate_templates import Template, TemplateKey, resolve
from strategy_rollouts.engine.validation import gate_errors

TICK = {
    "args": [{"name": "threshold", "default": "200"}, {"name": "window", "default": "1m"}, {"name": "strategyLabel"}],
    "gate": {
        "query": 'histogram_quantile(0.95, sum by (le) (rate(tick_bucket{s="{{args.strategyLabel}}",'
        'v="{{canary.version}}"}[{{args.window}}]))) * 1000',
        "condition": "< {{args.threshold}}",
        "interval": "15s",
        "failureLimit": "1",
    },
}


def templates(spec: dict[str, Any] = TICK, kind: str = "ClusterGateTemplate", ns: str = "") -> dict[TemplateKey, Any]:
    return {(kind, ns, "tick-p95"): Template(kind, "tick-p95", "42", GateTemplateSpec.model_validate(spec))}


def gate(**kw: Any) -> GateSpec:
    return GateSpec.model_validate({"name": "tick", "templateRef": {"name": "tick-p95"}, **kw})


def test_args_defaults_and_placeholders_are_substituted_and_the_result_validates() -> None:
    out = resolve("spec.gates", [gate(args={"strategyLabel": "fib_rsi", "threshold": "150"})], "trading", templates())
    assert out.errors == []
    [g] = out.gates
    assert g.condition == "< 150"
    assert "[1m]" in (g.query or "") and 's="fib_rsi"' in (g.query or "")
    assert "{{canary.version}}" in (g.query or "")  # not an arg: left for the measurement
    assert (g.interval, g.failure_limit, g.template_ref) == ("15s", 1, None)
    used = out.used["tick"]
    assert (used.kind, used.name, used.resource_version) == ("ClusterGateTemplate", "tick-p95", "42")
    assert gate_errors("spec.gates", out.gates) == []


def test_fields_beside_template_ref_override_the_templates_and_defaults_do_not() -> None:
    out = resolve(
        "spec.gates", [gate(args={"strategyLabel": "x"}, condition="< 99", dryRun=True)], "trading", templates()
    )
    [g] = out.gates
    assert (g.condition, g.dry_run, g.interval) == ("< 99", True, "15s")


def test_missing_template_is_invalid_naming_it() -> None:
    out = resolve("spec.gates", [gate(args={"strategyLabel": "x"})], "trading", {})
    assert out.errors == ["spec.gates[0].templateRef: ClusterGateTemplate 'tick-p95' not found"]
    assert out.gates == []


def test_namespaced_template_is_looked_up_in_the_objects_namespace() -> None:
    ref = {"kind": "GateTemplate", "name": "tick-p95"}
    found = templates(kind="GateTemplate", ns="trading")
    assert resolve("spec.kpis", [gate(templateRef=ref, args={"strategyLabel": "x"})], "trading", found).errors == []
    other = resolve("spec.kpis", [gate(templateRef=ref, args={"strategyLabel": "x"})], "other", found)
    assert other.errors == ["spec.kpis[0].templateRef: GateTemplate 'tick-p95' not found"]


def test_missing_arg_without_default_unknown_arg_and_unknown_placeholder_are_named() -> None:
    assert resolve("spec.gates", [gate()], "t", templates()).errors == [
        "spec.gates[0].args.strategyLabel: required by ClusterGateTemplate tick-p95 (it has no default)"
    ]
    extra = resolve("spec.gates", [gate(args={"strategyLabel": "x", "nope": "1"})], "t", templates())
    assert extra.errors == ["spec.gates[0].args.nope: ClusterGateTemplate tick-p95 declares no such arg"]
    odd = {**TICK, "gate": {**TICK["gate"], "condition": "< {{args.limit}}"}}  # type: ignore[dict-item]
    assert resolve("spec.gates", [gate(args={"strategyLabel": "x"})], "t", templates(odd)).errors == [
        "spec.gates[0].templateRef: ClusterGateTemplate tick-p95 uses unknown {{args.limit}}"
    ]


def test_a_body_that_is_no_valid_gate_after_substitution_is_named_with_its_template() -> None:
    bad = {"args": [], "gate": {"judge": {"worseWhen": "lower", "minSamples": 2}}}
    [error] = resolve("spec.gates", [gate()], "t", templates(bad)).errors
    assert error.startswith("spec.gates[0] (from ClusterGateTemplate tick-p95).judge.query: Field required")
    assert "judge.minSamples: Input should be greater than or equal to 3" in error


def test_an_unresolved_template_ref_never_reaches_the_engine_as_valid() -> None:
    assert gate_errors("spec.gates", [gate()]) == [
        "spec.gates[0].templateRef: ClusterGateTemplate tick-p95 not resolved"
    ]
