"""Keys as first-class (issue 33), the API half: tiers, buckets, keysFrom, per-key gates, maxQuarantined.

Bad input is refused naming the field, by the one validation the operator, the admission webhook and the
engine share (engine.rollout.spec_errors); the CRD's CEL rules say the same where the schema can.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from strategy_rollouts.api.crdgen import KINDS, crd
from strategy_rollouts.api.requests import RolloutRequest
from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.engine.rollout import spec_errors
from tests.unit.rollout_sim import EXAMPLE

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]


def spec(
    routing: dict[str, Any] | None = None, weights: list[float] | None = None, **extra: Any
) -> StrategyRolloutSpec:
    data = yaml.safe_load(EXAMPLE)
    data["routing"] = {"keys": KEYS, **(routing or {})}
    if weights is not None:
        data["stages"] = [{"name": "prod", "steps": [{"setWeight": w} for w in weights]}]
    data.update(extra)
    return StrategyRolloutSpec.model_validate(data)


def errors(s: StrategyRolloutSpec) -> list[str]:
    return spec_errors(s, "trading")


def test_tiers_buckets_keysfrom_and_per_key_gates_are_accepted() -> None:
    tiers = spec({"order": {"tiers": [["DOTUSDT", "LINKUSDT"], ["ADAUSDT"]]}, "maxQuarantined": 2})
    assert errors(tiers) == []
    ranked = spec({"order": {"query": "sum by (symbol) (volume)", "label": "symbol", "ascending": True}})
    assert errors(ranked) == []
    gates = [{"name": "net-bps", "query": "q", "condition": "> -5", "perKey": {"label": "symbol"}}]
    assert errors(spec({"maxQuarantined": "10%"}, gates=gates)) == []
    buckets = spec({"keys": [], "buckets": 10_000}, weights=[0.5, 1, 12.25, 100])
    assert errors(buckets) == [] and buckets.stages[0].steps[0].set_weight == 0.5
    from_cm = spec({"keys": [], "keysFrom": {"configMapKeyRef": {"name": "symbols", "key": "list"}}})
    assert errors(from_cm) == []


def test_whole_weights_stay_integers_on_the_wire() -> None:
    s = spec(weights=[10, 50])
    assert s.model_dump(by_alias=True)["stages"][0]["steps"][0]["setWeight"] == 10
    assert isinstance(s.stages[0].steps[0].set_weight, int)


@pytest.mark.parametrize(
    ("routing", "weights", "expected"),
    [
        (
            {"order": {"tiers": [["DOTUSDT", "ADAUSDT"], ["LINKUSDT", "DOTUSDT"]]}},
            None,
            "spec.routing.order.tiers[1][1]: key 'DOTUSDT' is named twice (first at spec.routing.order.tiers[0][0])",
        ),
        (
            {"order": {"tiers": [["DOTUSDT"], ["PEPEUSDT"]]}},
            None,
            "spec.routing.order.tiers[1][0]: key 'PEPEUSDT' is not in spec.routing.keys",
        ),
        (
            {"order": {"query": "sum by (symbol) (volume)"}},
            None,
            "spec.routing.order.label: required with query",
        ),
        ({"order": {"label": "symbol"}}, None, "spec.routing.order.label: only with query"),
        (
            {"order": {"tiers": [["DOTUSDT"]], "query": "q", "label": "symbol"}},
            None,
            "spec.routing.order: set tiers or query, not both",
        ),
        ({}, [0.5, 100], "spec.stages[0].steps[0].setWeight: 0.5 is fractional; listed keys and replicas take whole"),
        (
            {"keys": [], "buckets": 10_000},
            [0.001, 100],
            "spec.stages[0].steps[0].setWeight: 0.001% of 10000 buckets is 0.1 buckets, not a whole number",
        ),
        (
            {"keys": [], "buckets": 100, "order": {"tiers": [["a"]]}},
            None,
            "spec.routing.order: buckets go to the canary in number order",
        ),
        ({"buckets": 100}, None, "spec.routing.buckets: set one of keys, keysFrom or buckets (got keys, buckets)"),
        ({"keys": []}, None, "spec.routing.keys: symbols mode needs keys, keysFrom or buckets"),
        ({"maxQuarantined": 101}, None, "spec.routing.maxQuarantined: 101 allows 101 quarantined keys, at most 100"),
        (
            {"order": {"query": 'v{x="{{nope}}"}', "label": "symbol"}},
            None,
            "spec.routing.order.query: unknown placeholder {{nope}}",
        ),
    ],
)
def test_bad_keys_input_is_refused_naming_the_field(
    routing: dict[str, Any], weights: list[float] | None, expected: str
) -> None:
    found = errors(spec(routing, weights))
    assert any(e.startswith(expected) for e in found), found


def test_per_key_gates_need_a_query_and_keys() -> None:
    judge = {"query": 'p{v="{{version}}"}', "worseWhen": "lower"}
    gates = [{"name": "j", "judge": judge, "perKey": {"label": "symbol"}}]
    assert any(
        e.startswith("spec.gates[0].perKey: only a threshold or compare gate") for e in errors(spec(gates=gates))
    )
    gates = [{"name": "g", "query": "q", "condition": "< 1", "perKey": {"label": "symbol"}}]
    found = errors(spec({"keys": [], "buckets": 100}, gates=gates))
    assert any(e.startswith("spec.gates[0].perKey: buckets are not keys") for e in found), found


@pytest.mark.parametrize("bad", [-1, "101%", "ten", "5"])
def test_max_quarantined_is_a_count_or_a_percent(bad: object) -> None:
    with pytest.raises(ValidationError, match="maxQuarantined"):
        spec({"maxQuarantined": bad})


def test_release_key_is_a_request_naming_its_key() -> None:
    r = RolloutRequest.model_validate(
        {"action": "releaseKey", "key": "SOLUSDT", "by": "alice", "at": "2026-01-05T06:00:00Z"}
    )
    assert r.key == "SOLUSDT"


def test_the_crd_says_the_same_where_cel_can() -> None:
    resource = crd(next(k for k in KINDS if k.kind == "StrategyRollout"))
    schema = resource["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    routing = schema["routing"]
    assert routing["properties"]["maxQuarantined"]["x-kubernetes-int-or-string"] is True
    rules = [r["message"] for r in routing["properties"]["order"]["x-kubernetes-validations"]]
    assert "a rank query needs label (and label a query)" in rules
    steps = schema["stages"]["items"]["properties"]["steps"]["items"]["properties"]
    assert steps["setWeight"]["type"] == "number"


def test_at_most_four_per_key_gates_each_with_its_scoreboard() -> None:
    gates = [{"name": f"g{i}", "query": "q", "condition": "< 1", "perKey": {"label": "symbol"}} for i in range(5)]
    assert errors(spec(gates=gates[:4])) == []
    assert errors(spec(gates=gates)) == [
        "spec.gates[4].perKey: at most 4 per-key gates (got 5): each keeps a scoreboard of up to 50 keys in status"
    ]
