"""Every bad gate input is a field-named InvalidSpec message (pydantic's or engine/validation.py's)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.engine.rollout import spec_errors
from strategy_rollouts.engine.validation import gate_errors
from tests.unit.rollout_sim import EXAMPLE

JUDGE = {"query": 'pnl{version="{{version}}"}', "worseWhen": "lower"}
SEQ = {**JUDGE, "test": "sequential"}


def spec_message(gate: dict[str, Any]) -> str:
    data = yaml.safe_load(EXAMPLE)
    data["gates"] = [{"name": "g", **gate}]
    try:
        spec = StrategyRolloutSpec.model_validate(data)
    except ValidationError as exc:
        return validation_message(exc)
    return "; ".join(spec_errors(spec, "ns"))


@pytest.mark.parametrize(
    ("gate", "expected"),
    [
        ({"judge": {"worseWhen": "lower"}}, "spec.gates[0].judge.query: Field required"),
        ({"judge": {**JUDGE, "minSamples": 2}}, "spec.gates[0].judge.minSamples: Input should be greater"),
        ({"judge": {**JUDGE, "confidence": 0.5}}, "spec.gates[0].judge.confidence: Input should be greater than 0.5"),
        ({"judge": {**JUDGE, "confidence": 1}}, "spec.gates[0].judge.confidence: Input should be less than 1"),
        ({"judge": {**JUDGE, "query": "pnl"}}, "spec.gates[0].judge.query: must use {{version}}"),
        ({"judge": {**JUDGE, "query": "pnl{v='{{versoin}}'}"}}, "spec.gates[0].judge.query: unknown placeholder"),
        ({"judge": {**JUDGE, "window": "1m", "step": "5m"}}, "spec.gates[0].judge.window: 1m is shorter than step"),
        ({"judge": {**SEQ, "margin": 1, "marginPercent": 5}}, "spec.gates[0].judge.marginPercent: set margin or"),
        ({"judge": {**SEQ, "margin": -1}}, "spec.gates[0].judge.margin: Input should be greater than or equal to 0"),
        ({"judge": {**SEQ, "marginPercent": -5}}, "spec.gates[0].judge.marginPercent: Input should be greater"),
        ({"judge": {**SEQ, "onUndecided": "promote"}}, "spec.gates[0].judge.onUndecided: Input should be 'hold'"),
        (
            {"judge": {**SEQ, "decideWithin": "20m", "minSamples": 30, "step": "1m"}},
            "spec.gates[0].judge.decideWithin: 20m is shorter than minSamples x step (30 x 1m = 30m)",
        ),
        (
            {"judge": {**SEQ, "query": 'pnl{version="{{version}}"} @ end()'}},
            "spec.gates[0].judge.query: pairing: time cannot align the sides of a query with an @ modifier",
        ),
        ({"judge": {**JUDGE, "margin": 1}}, "spec.gates[0].judge.margin: only with test: sequential"),
        ({"judge": {**JUDGE, "decideWithin": "1h"}}, "spec.gates[0].judge.decideWithin: only with test: sequential"),
        ({"webhook": {"url": "ftp://risk/confirm"}}, "spec.gates[0].webhook.url: String should match pattern"),
        ({"webhook": {"url": "file:///etc/passwd"}}, "spec.gates[0].webhook.url: String should match pattern"),
        ({"judge": JUDGE, "condition": "< 1"}, "spec.gates[0]: set exactly one of condition, baseline"),
        ({"judge": JUDGE, "query": "x"}, "spec.gates[0].judge: a judge has its own query"),
        ({}, "spec.gates[0]: set exactly one of condition, baseline with maxIncreasePercent, judge or webhook"),
        ({"condition": "< 1"}, "spec.gates[0].query: required with condition or baseline"),
    ],
)
def test_bad_gate_is_named(gate: dict[str, Any], expected: str) -> None:
    assert expected in spec_message(gate)


def test_valid_judge_and_webhook_gates_have_no_errors() -> None:
    assert spec_message({"judge": JUDGE}) == ""
    full = {**SEQ, "margin": 2.0, "minSamples": 30, "step": "1m", "decideWithin": "30m", "onUndecided": "rollback"}
    assert spec_message({"judge": full}) == ""
    at = {**SEQ, "pairing": "none", "query": 'pnl{version="{{version}}"} @ end()'}
    assert spec_message({"judge": at}) == ""  # two samples need no common timestamps
    assert spec_message({"webhook": {"url": "https://risk.internal/confirm", "at": "promotion"}}) == ""


def test_webhooks_are_not_shadow_run_kpis() -> None:
    from strategy_rollouts.api.gates import GateSpec

    kpi = GateSpec.model_validate({"name": "w", "webhook": {"url": "http://127.0.0.1:1/x"}})
    assert gate_errors("spec.kpis", [kpi], webhooks=False) == [
        "spec.kpis[0].webhook: webhook gates are for StrategyRollouts only"
    ]
