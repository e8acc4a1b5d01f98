"""The desired world a decided status implies: routing per target and replicas per deployment."""

from __future__ import annotations

from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine.rollout.model import RoutingPayload, Scale


def desired_routing(spec: StrategyRolloutSpec | None, st: StrategyRolloutStatus) -> list[RoutingPayload]:
    entries = False if st.trading_stopped else None
    return [RoutingPayload(t.namespace, t.config_map, t.weight, dict(t.assignments), entries) for t in st.targets]


def desired_scales(spec: StrategyRolloutSpec, st: StrategyRolloutStatus) -> list[Scale]:
    scales: list[Scale] = []
    for t in st.targets:
        if t.stable_replicas is not None:
            scales.append(Scale(t.namespace, spec.stable.deployment, t.stable_replicas))
        if t.canary_replicas is not None:
            scales.append(Scale(t.namespace, spec.canary.deployment, t.canary_replicas))
    return scales


def routing_document(
    spec: StrategyRolloutSpec,
    payload: RoutingPayload,
    revision: int,
    size_multiplier: float,
    entries_enabled: bool,
) -> dict[str, object]:
    """The `routing.json` the strategy apps read."""
    return {
        "strategy": spec.strategy,
        "stableVersion": spec.stable.version,
        "canaryVersion": spec.canary.version,
        "weight": payload.weight,
        "assignments": dict(sorted(payload.assignments.items())),
        "sizeMultiplier": size_multiplier,
        "entriesEnabled": entries_enabled,
        "revision": revision,
    }
