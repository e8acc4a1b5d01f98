"""Replicas: how many pods each deployment of a target gets, and the delayed scale-downs."""

from __future__ import annotations

from datetime import datetime

from strategy_rollouts.api.keyhash import share
from strategy_rollouts.api.rollout import ScaleDown, TargetStatus
from strategy_rollouts.engine.rollout.state import Run


def total(run: Run, t: TargetStatus) -> int:
    return run.spec.replicas if run.spec.replicas is not None else (t.base_replicas or 0)


def canary_size(run: Run, t: TargetStatus) -> int:
    if run.spec.canary.replicas is not None:
        return run.spec.canary.replicas
    return max(t.base_replicas or 1, 1)


def want_canary(run: Run, t: TargetStatus, weight: float) -> bool:
    """Scale the canary for `weight`; True once it is Ready to be given keys (or pods)."""
    if run.symbols:
        wanted = canary_size(run, t) if weight > 0 else (t.canary_replicas or 0)
    else:
        wanted = share(weight, total(run, t))
    if (t.canary_replicas or 0) < wanted:
        t.canary_scaled_at = run.now
    t.canary_replicas = max(wanted, t.canary_replicas or 0) if run.symbols else wanted
    dep = run.deployment(t.namespace, run.spec.canary.deployment)
    ready = dep is not None and dep.ready >= wanted and dep.replicas == t.canary_replicas
    if ready:
        t.canary_scaled_at = None
        if not run.symbols:
            t.stable_replicas = total(run, t) - wanted
        t.weight = weight
    return ready


def schedule_scale_down(run: Run, ns: str, deployment: str, at: datetime) -> None:
    others = [s for s in run.st.scale_downs if not (s.namespace == ns and s.deployment == deployment)]
    run.st.scale_downs = [*others, ScaleDown(namespace=ns, deployment=deployment, at=at)]


def scale_downs(run: Run) -> None:
    keep: list[ScaleDown] = []
    for item in run.st.scale_downs:
        if item.at > run.now:
            keep.append(item)
            run.wake(item.at)
            continue
        for t in run.st.targets:
            if t.namespace != item.namespace:
                continue
            if item.deployment == run.spec.canary.deployment:
                t.canary_replicas = 0
            elif item.deployment == run.spec.stable.deployment:
                t.stable_replicas = 0
        run.event("Normal", "ScaledDown", f"{item.namespace}/{item.deployment} scaled to 0")
    run.st.scale_downs = keep
