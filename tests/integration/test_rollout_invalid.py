"""Bad StrategyRollouts: rejected at admission (schema / CEL) or reported as InvalidSpec naming the field.

Either way nothing is half-applied: no routing ConfigMap, no replica changed.
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.workloads import apply, deployment, replicas, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

BASE: dict[str, Any] = {
    "apiVersion": "strategyrollouts.io/v1alpha1",
    "kind": "StrategyRollout",
    "metadata": {"name": "bad"},
    "spec": {
        "strategy": "fib_rsi",
        "stable": {"deployment": "legacy", "version": "v1.0.0"},
        "canary": {"deployment": "pipeline", "version": "v2.0.0"},
        "routing": {"keys": ["BTCUSDT", "ETHUSDT"]},
        "stages": [
            {"name": "staging", "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}]},
            {"name": "prod", "steps": [{"setWeight": 50}, {"setWeight": 100}]},
        ],
        "gates": [{"name": "p95", "query": 'q{v="{{canary.version}}"}', "condition": "< 200"}],
    },
}


ACCOUNTS = [f"ACCOUNT-{i:022d}" for i in range(5000)]


def mutate(path: str, value: Any) -> dict[str, Any]:
    obj = copy.deepcopy(BASE)
    node: Any = obj["spec"]
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is DELETE:
        del node[last]
    elif last.isdigit():
        node[int(last)] = value
    else:
        node[last] = value
    return obj


DELETE = object()
JUDGE = {"query": 'pnl{version="{{version}}"}', "worseWhen": "lower"}
SEQ = {**JUDGE, "test": "sequential"}


def durations(min_duration: str, max_duration: str) -> dict[str, Any]:
    obj = mutate("stages.0.minDuration", min_duration)
    obj["spec"]["stages"][0]["maxDuration"] = max_duration
    return obj


# (case id, object, "admission" or "operator", text the message must contain)
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("weight-over-100", mutate("stages.0.steps.0", {"setWeight": 150}), "admission", "setWeight"),
    (
        "weights-decreasing",
        mutate("stages.1.steps", [{"setWeight": 50}, {"setWeight": 10}]),
        "admission",
        "non-decreasing",
    ),
    (
        "step-both-kinds",
        mutate("stages.0.steps.0", {"setWeight": 10, "pause": {}}),
        "admission",
        "either setWeight or pause",
    ),
    ("missing-strategy", mutate("strategy", DELETE), "admission", "strategy"),
    ("unknown-placeholder", mutate("gates.0.query", "q{v='{{canary.colour}}'}"), "operator", "spec.gates[0].query"),
    ("bad-condition", mutate("gates.0.condition", "<< 200"), "admission", "condition"),
    ("bad-duration", mutate("stages.0.steps.1", {"pause": {"duration": "10 minutes"}}), "admission", "duration"),
    ("max-before-min", durations("2h", "1h"), "admission", "maxDuration"),
    # CEL's duration() has no `d` unit, so day-scale durations are checked by the operator.
    ("max-before-min-days", durations("2d", "1d"), "operator", "spec.stages[0].maxDuration"),
    ("same-deployment", mutate("canary.deployment", "legacy"), "admission", "canary.deployment"),
    ("same-version", mutate("canary.version", "v1.0.0"), "operator", "spec.canary.version"),
    ("duplicate-stage", mutate("stages.1.name", "staging"), "admission", "stages"),
    ("duplicate-gate", mutate("gates", [BASE["spec"]["gates"][0], BASE["spec"]["gates"][0]]), "admission", "gates"),
    (
        "condition-and-baseline",
        mutate("gates.0", {"name": "p95", "query": "q", "condition": "< 1", "baseline": "b", "maxIncreasePercent": 3}),
        "admission",
        "exactly one of condition",
    ),
    ("symbols-without-keys", mutate("routing.keys", []), "admission", "routing.keys"),
    ("bad-on-failure", mutate("onFailure", "explode"), "admission", "onFailure"),
    ("negative-failure-limit", mutate("gates.0.failureLimit", -1), "admission", "failureLimit"),
    ("no-stages", mutate("stages", []), "admission", "stages"),
    ("duplicate-keys", mutate("routing.keys", ["BTCUSDT", "BTCUSDT"]), "admission", "keys"),
    ("unknown-field", mutate("gates.0.treshold", 3), "admission", "treshold"),
    ("risk-over-100", mutate("stages.1.riskBudget", {"query": "r", "maxPercent": 150}), "admission", "maxPercent"),
    (
        "judge-min-samples",
        mutate("gates.0", {"name": "j", "judge": {**JUDGE, "minSamples": 2}}),
        "admission",
        "minSamples",
    ),
    (
        "judge-confidence",
        mutate("gates.0", {"name": "j", "judge": {**JUDGE, "confidence": 1}}),
        "admission",
        "confidence",
    ),
    ("judge-no-query", mutate("gates.0", {"name": "j", "judge": {"worseWhen": "lower"}}), "admission", "query"),
    ("judge-no-version", mutate("gates.0", {"name": "j", "judge": {**JUDGE, "query": "q"}}), "operator", "{{version}}"),
    (
        "sequential-margin-and-percent",
        mutate("gates.0", {"name": "j", "judge": {**SEQ, "margin": 1, "marginPercent": 5}}),
        "admission",
        "set margin or marginPercent, not both",
    ),
    (
        "sequential-negative-margin",
        mutate("gates.0", {"name": "j", "judge": {**SEQ, "margin": -1}}),
        "admission",
        "margin",
    ),
    (
        "sequential-promote-when-undecided",
        mutate("gates.0", {"name": "j", "judge": {**SEQ, "onUndecided": "promote"}}),
        "admission",
        "onUndecided",
    ),
    (
        "sequential-decide-within-too-short",
        mutate("gates.0", {"name": "j", "judge": {**SEQ, "decideWithin": "10m", "minSamples": 30, "step": "1m"}}),
        "operator",
        "spec.gates[0].judge.decideWithin: 10m is shorter than minSamples x step",
    ),
    ("webhook-not-http", mutate("gates.0", {"name": "w", "webhook": {"url": "ftp://desk/x"}}), "admission", "url"),
    (
        "prometheus-secret-missing",  # never a query sent without it (API.md "Credentials and trust")
        mutate("prometheus", {"bearerTokenSecretRef": {"name": "no-such-secret", "key": "token"}}),
        "operator",
        "spec.prometheus.bearerTokenSecretRef: Secret",
    ),
    (
        "order-of-a-segmented-universe",  # 5,000 keys are routed as segments of their hash order: engine/size.py
        mutate(
            "routing", {"keys": [f"ACCOUNT-{i:022d}" for i in range(5000)], "order": {"tiers": [[f"ACCOUNT-{0:022d}"]]}}
        ),
        "operator",
        "spec.routing.order: spec.routing.keys has 5,000 keys, routed as segments of their hash order",
    ),
    (
        "bad-risk-placeholder",
        mutate("stages.1.riskBudget", {"query": "r{{x}}", "maxPercent": 5}),
        "operator",
        "riskBudget.query",
    ),
]


@pytest.mark.parametrize(("case", "obj", "where", "needle"), CASES, ids=[c[0] for c in CASES])
def test_invalid_spec_is_rejected_or_reported(
    cluster: DevCluster,
    namespace: str,
    live_operator: OperatorProcess,
    case: str,
    obj: dict[str, Any],
    where: str,
    needle: str,
) -> None:
    apply(cluster, deployment("legacy", namespace, 3, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    result = cluster.kubectl(
        "apply", "--server-side", "--validate=strict", "-f", "-", input=yaml.safe_dump(obj), check=False
    )
    if where == "admission":
        assert result.returncode != 0, f"{case}: accepted at admission"
        assert needle in result.stderr, result.stderr
        return
    assert result.returncode == 0, result.stderr
    st = wait_for(
        lambda: status(cluster, "bad", namespace).get("phase") == "Invalid" and status(cluster, "bad", namespace),
        30,
        what="phase Invalid",
    )
    assert needle in st["message"], st["message"]
    conditions = {c["type"]: c for c in st["conditions"]}
    assert conditions["InvalidSpec"]["status"] == "True"
    # never acted on: no routing, no scaling
    cms = json.loads(cluster.kubectl("get", "configmap", "-n", namespace, "-o", "json").stdout)["items"]
    assert not [c for c in cms if c["metadata"]["name"].endswith("-routing")]
    assert replicas(cluster, "pipeline", namespace)[0] == 0
    assert replicas(cluster, "legacy", namespace)[0] == 3
