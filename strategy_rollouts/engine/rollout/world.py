"""The desired world a decided status implies: routing per target and replicas per deployment."""

from __future__ import annotations

from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus, TargetStatus
from strategy_rollouts.engine.rollout.model import BucketRouting, RoutingPayload, Scale


def desired_routing(spec: StrategyRolloutSpec | None, st: StrategyRolloutStatus) -> list[RoutingPayload]:
    entries = False if st.trading_stopped else None
    return [
        RoutingPayload(t.namespace, t.config_map, t.weight, dict(t.assignments), entries, _buckets(spec, st, t))
        for t in st.targets
    ]


def _buckets(spec: StrategyRolloutSpec | None, st: StrategyRolloutStatus, t: TargetStatus) -> BucketRouting | None:
    """An open universe's routing, from status alone (none without a spec: an invalid one publishes only
    a stop, which needs no buckets)."""
    if spec is None or spec.routing.buckets is None or t.canary_buckets is None:
        return None
    canary = t.canary_buckets
    draining = (canary, t.draining_buckets) if t.draining_buckets is not None else None
    salt = spec.routing.salt or spec.strategy
    return BucketRouting(spec.routing.buckets, salt, canary, draining, stopped=st.trading_stopped)


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
    """The `routing.json` the strategy apps read (api/keyhash.py `owner` reads it for both universes)."""
    document: dict[str, object] = {
        "strategy": spec.strategy,
        "stableVersion": spec.stable.version,
        "canaryVersion": spec.canary.version,
        "weight": payload.weight,
        "assignments": dict(sorted(payload.assignments.items())),
        "sizeMultiplier": size_multiplier,
        "entriesEnabled": entries_enabled,
        "revision": revision,
    }
    b = payload.buckets
    if b is not None:
        document.update({"buckets": b.buckets, "salt": b.salt, "canaryBuckets": b.canary})
        if b.draining is not None:
            document["drainingBuckets"] = list(b.draining)
        if b.stopped:
            document["stopped"] = True
    return document
