"""The desired world a decided status implies: routing per target and replicas per deployment."""

from __future__ import annotations

from collections.abc import Mapping

from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus, TargetStatus
from strategy_rollouts.engine.keys import published_segments
from strategy_rollouts.engine.rollout.model import BucketRouting, RoutingPayload, Scale, SegmentedRouting


def desired_routing(spec: StrategyRolloutSpec | None, st: StrategyRolloutStatus) -> list[RoutingPayload]:
    entries = False if st.trading_stopped else None
    return [
        RoutingPayload(
            t.namespace, t.config_map, t.weight, dict(t.assignments), entries, _buckets(spec, st, t), _segmented(t)
        )
        for t in st.targets
    ]


def _segmented(t: TargetStatus) -> SegmentedRouting | None:
    s = t.segmented
    if s is None:
        return None
    return SegmentedRouting(s.keys, s.sha256, tuple((a, b) for a, b in published_segments(s.segments)))


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


def routing_changes(spec: StrategyRolloutSpec | None, payload: RoutingPayload) -> dict[str, object]:
    """The fields of `routing.json` the rollout writes for `payload`; None removes a field. Without a spec
    (a stop while it is invalid) only what the stop changes: every key to none, `stopped: true`."""
    changes: dict[str, object] = {
        "weight": payload.weight,
        "assignments": dict(sorted(payload.assignments.items())),
        "stopped": True if payload.entries_enabled is False else None,  # trading stopped: every id to none
    }
    if spec is not None:
        b, s = payload.buckets, payload.segmented
        changes |= {
            "strategy": spec.strategy,
            "stableVersion": spec.stable.version,
            "canaryVersion": spec.canary.version,
            "buckets": b.buckets if b is not None else None,
            "salt": b.salt if b is not None else (spec.routing.salt or spec.strategy) if s is not None else None,
            "canaryBuckets": b.canary if b is not None else None,
            "drainingBuckets": list(b.draining) if b is not None and b.draining is not None else None,
            "universe": {"keys": s.keys, "sha256": s.sha256} if s is not None else None,
            "segments": [list(x) for x in s.segments] if s is not None else None,
        }
    if payload.entries_enabled is not None:
        changes["entriesEnabled"] = payload.entries_enabled
    return changes


# What says who trades which key or bucket: the operator reads these back to know what apps may act on.
ROUTED_FIELDS = ("assignments", "canaryBuckets", "drainingBuckets", "stopped", "universe", "segments")


def published(document: Mapping[str, object] | None, spec: StrategyRolloutSpec, payload: RoutingPayload) -> bool:
    """Does a routing.json (as read) publish what `payload` routes?"""
    if document is None:
        return False
    changes = routing_changes(spec, payload)
    return all(document.get(k) == changes[k] for k in ROUTED_FIELDS)


def routing_document(
    spec: StrategyRolloutSpec,
    payload: RoutingPayload,
    revision: int,
    size_multiplier: float,
    entries_enabled: bool,
) -> dict[str, object]:
    """The whole `routing.json` the strategy apps read (api/keyhash.py `owner` reads it for both universes)."""
    fields = {**routing_changes(spec, payload), "sizeMultiplier": size_multiplier, "entriesEnabled": entries_enabled}
    return {k: v for k, v in {**fields, "revision": revision}.items() if v is not None}
