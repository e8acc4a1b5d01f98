"""What a StrategyRollout pass observes (engine/types.py `ObservationPlan`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine.rollout.gates import due_gates, due_per_key_gates
from strategy_rollouts.engine.rollout.lifecycle import target_namespaces
from strategy_rollouts.engine.types import ObservationPlan, Ref

# A pending request that must not wait behind a slow or hung gate endpoint: its pass measures nothing.
URGENT: Final = frozenset({"stopTrading", "abort", "pause"})


def urgent(status: StrategyRolloutStatus) -> bool:
    return any(r.action in URGENT for r in status.requests.values())


def plan(
    spec: StrategyRolloutSpec, status: StrategyRolloutStatus, namespace: str, name: str, now: datetime
) -> ObservationPlan:
    """Both deployments in every target namespace; the routing ConfigMaps status records, and for a
    target it does not record yet the one the spec names (what it publishes is adopted, see
    lifecycle); the ShadowRun a start waits for; the gates due now, none while a stop is pending."""
    targets = target_namespaces(spec, namespace)
    recorded = {t.namespace for t in status.targets}
    config_map = spec.routing.config_map or f"{name}-routing"
    return ObservationPlan(
        deployments=tuple((t, d) for t in targets for d in (spec.stable.deployment, spec.canary.deployment)),
        routings=(
            *((t.namespace, t.config_map) for t in status.targets),
            *((ns, config_map) for ns in targets if ns not in recorded),
        ),
        objects=(("shadowruns", (namespace, spec.shadow_run)),) if spec.shadow_run else (),
        measure=() if urgent(status) else tuple(due_gates(spec, status, now)),
        measure_per_key=() if urgent(status) else tuple(due_per_key_gates(spec, status, now)),
        keys_from=spec.routing.keys_from is not None,
        rank=wants_rank(spec, status),
    )


def wants_rank(spec: StrategyRolloutSpec, status: StrategyRolloutStatus) -> bool:
    """A rank query is measured only where a run may start: not mid-run (its order is frozen), not for a
    finished run of these versions with nothing pending (a retry is a request, and then it is measured)."""
    order = spec.routing.order
    if order is None or order.query is None:
        return False
    same = status.canary_version == spec.canary.version and status.stable_version == spec.stable.version
    if same and status.phase in ("Progressing", "Paused"):
        return False
    return not (same and status.phase in ("Succeeded", "RolledBack") and not status.requests)


def held_stop(raw_status: Mapping[str, Any] | None) -> tuple[Ref, ...]:
    """The routing ConfigMaps to stop while the status is held (it does not parse): those its targets
    name, when a stopTrading request is pending. Read leniently, field by field: a stop is always safe
    to apply (every key to none, entries off), so an unreadable neighbour field must not block it.
    Empty: no stop pending, or no target readable."""
    raw = raw_status if isinstance(raw_status, Mapping) else {}
    requests = raw.get("requests")
    pending = requests.values() if isinstance(requests, Mapping) else ()
    if not any(isinstance(r, Mapping) and r.get("action") == "stopTrading" for r in pending):
        return ()
    targets = raw.get("targets")
    refs: list[Ref] = []
    for t in targets if isinstance(targets, list) else ():
        if isinstance(t, Mapping) and isinstance(t.get("namespace"), str) and isinstance(t.get("configMap"), str):
            ref = (t["namespace"], t["configMap"])
            if ref not in refs:
                refs.append(ref)
    return tuple(refs)
