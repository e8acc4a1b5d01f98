"""The operator's memory between API reads: watch caches and which status changes are worth a write."""

from __future__ import annotations

from typing import Any

from strategy_rollouts.engine.rollout import DeploymentObs
from strategy_rollouts.operator.runtime.cache import WatchCache
from strategy_rollouts.operator.strategyrollout.adapter import must_persist


def rollout(rv: str, phase: str = "Progressing") -> dict[str, Any]:
    return {
        "kind": "StrategyRollout",
        "metadata": {"namespace": "ns", "name": "r", "resourceVersion": rv},
        "status": {"phase": phase},
    }


def deployment(rv: str, replicas: int | None, ready: int | None) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    status = {} if ready is None else {"readyReplicas": ready}
    return {"metadata": {"namespace": "ns", "name": "d", "resourceVersion": rv}, "spec": spec, "status": status}


def test_newest_body_wins_whatever_the_arrival_order() -> None:
    w = WatchCache()
    w.offer(rollout("12", "Paused"))
    w.offer(rollout("11", "Progressing"))  # a late watch event of an older version
    assert (w.body("StrategyRollout", "ns", "r") or {})["status"]["phase"] == "Paused"
    w.offer(rollout("13", "Succeeded"))
    assert (w.body("StrategyRollout", "ns", "r") or {})["status"]["phase"] == "Succeeded"
    w.drop("StrategyRollout", "ns", "r")
    assert w.body("StrategyRollout", "ns", "r") is None


def test_opaque_resource_versions_take_the_latest_offer() -> None:
    w = WatchCache()
    w.offer(rollout("b", "Paused"))
    w.offer(rollout("a", "Progressing"))
    assert (w.body("StrategyRollout", "ns", "r") or {})["status"]["phase"] == "Progressing"


def test_deployment_counts_from_watch_and_own_scale() -> None:
    w = WatchCache()
    assert w.deployment("ns", "d") is None
    assert w.offer_deployment(deployment("5", None, None))
    assert w.deployment("ns", "d") == DeploymentObs(replicas=1, ready=0)  # API defaults
    assert w.offer_deployment(deployment("6", 3, 2))
    assert not w.offer_deployment(deployment("7", 3, 2)), "a status event that changes no count wakes nobody"
    w.scaled("ns", "d", 0, "8")  # our scale: the new spec at once, readiness as last seen
    assert w.deployment("ns", "d") == DeploymentObs(replicas=0, ready=2)
    assert not w.offer_deployment(deployment("6", 3, 2)), "the watch catching up with an older version"
    assert w.deployment("ns", "d") == DeploymentObs(replicas=0, ready=2)
    assert not w.offer_deployment(deployment("8", 0, 2)), "the echo of our own scale"
    assert w.offer_deployment(deployment("9", 0, 0))
    assert w.deployment("ns", "d") == DeploymentObs(replicas=0, ready=0)
    assert w.drop_deployment("ns", "d")
    assert w.deployment("ns", "d") is None
    assert not w.drop_deployment("ns", "d")


def gate(result: str, failures: int, at: str, value: float) -> dict[str, Any]:
    return {
        "name": "p95",
        "result": result,
        "failures": failures,
        "inconclusives": 0,
        "value": value,
        "evaluatedAt": at,
        "message": f"{value} < 200",
    }


def status(*gates: dict[str, Any], used: float | None = None) -> dict[str, Any]:
    wire: dict[str, Any] = {"phase": "Paused", "stepIndex": 1, "gates": list(gates)}
    if used is not None:
        wire["riskBudget"] = {"usedPercent": used, "maxPercent": 1.0}
    return wire


def config_map(rv: str, routing: str, created: str = "2026-12-01T10:00:00Z") -> dict[str, Any]:
    meta = {"namespace": "ns", "name": "r-routing", "resourceVersion": rv, "creationTimestamp": created}
    return {"metadata": {**meta, "labels": {"strategyrollouts.io/routing": "true"}}, "data": {"routing.json": routing}}


def test_routing_config_maps_from_watch_and_own_writes() -> None:
    w = WatchCache()
    assert w.config_map("ns", "r-routing") is None, "never delivered: the reader falls back to a GET"
    assert w.offer_config_map(config_map("5", '{"weight":10}'))
    # Our write's response, serialised by the client, then its watch echo formatted by the server.
    assert w.offer_config_map(config_map("6", '{"weight":50}', created="2026-12-01T10:00:00+00:00"))
    assert not w.offer_config_map(config_map("6", '{"weight":50}')), "the echo of our own write wakes nobody"
    assert not w.offer_config_map(config_map("5", '{"weight":10}')), "a late event of an older version"
    assert (w.config_map("ns", "r-routing") or {})["data"]["routing.json"] == '{"weight":50}'
    assert w.offer_config_map(config_map("7", '{"weight":0}')), "someone else's edit wakes the rollout"
    assert w.drop_config_map("ns", "r-routing")
    assert w.config_map("ns", "r-routing") is None


def test_a_new_value_alone_is_not_worth_a_write() -> None:
    old = status(gate("Pass", 0, "2026-11-23T10:00:00Z", 120.0), used=0.1)
    new = status(gate("Pass", 0, "2026-11-23T10:00:30Z", 130.0), used=0.2)
    assert not must_persist(old, new, refresh_s=300)
    assert not must_persist(old, old, refresh_s=0)


def test_results_counters_and_everything_else_are_written() -> None:
    old = status(gate("Pass", 0, "2026-11-23T10:00:00Z", 120.0))
    assert must_persist(old, status(gate("Fail", 1, "2026-11-23T10:00:30Z", 250.0)), refresh_s=300)
    assert must_persist(old, status(gate("Pass", 0, "2026-11-23T10:00:00Z", 120.0), used=0.1), refresh_s=300)
    assert must_persist(old, {**old, "stepIndex": 2}, refresh_s=300)
    assert must_persist(status(), status(gate("Pass", 0, "2026-11-23T10:00:00Z", 1.0)), refresh_s=300)


def test_values_are_refreshed_at_most_every_refresh_interval() -> None:
    old = status(gate("Pass", 0, "2026-11-23T10:00:00Z", 120.0))
    assert not must_persist(old, status(gate("Pass", 0, "2026-11-23T10:04:59Z", 121.0)), refresh_s=300)
    assert must_persist(old, status(gate("Pass", 0, "2026-11-23T10:05:00Z", 121.0)), refresh_s=300)


def test_a_deleted_objects_metric_series_are_forgotten_and_no_others() -> None:
    from prometheus_client import REGISTRY

    from strategy_rollouts.operator.runtime import metrics

    metrics.set_rollout_phase("mem-ns", "gone", "s", "Paused")
    metrics.gate_value.labels("mem-ns", "gone", "p95").set(120.0)
    metrics.gate_value.labels("mem-ns", "kept", "p95").set(130.0)
    metrics.gate_value.labels("other-ns", "gone", "p95").set(140.0)
    metrics.parity_actions_total.labels("mem-ns", "gone", "pause").inc()

    metrics.forget_object("mem-ns", "gone", *metrics.ROLLOUT_FAMILIES, *metrics.PARITY_FAMILIES)

    def value(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    assert value("strategy_rollout_phase", namespace="mem-ns", rollout="gone", strategy="s", phase="Paused") is None
    assert value("rollout_gate_value", namespace="mem-ns", rollout="gone", gate="p95") is None
    assert value("parity_actions_total", namespace="mem-ns", paritycheck="gone", action="pause") is None
    assert value("rollout_gate_value", namespace="mem-ns", rollout="kept", gate="p95") == 130.0
    assert value("rollout_gate_value", namespace="other-ns", rollout="gone", gate="p95") == 140.0
