"""The status summary every pass ends with: replicas, routing, conditions, market."""

from __future__ import annotations

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.rollout import ReplicaStatus, RoutingStatus
from strategy_rollouts.engine import market
from strategy_rollouts.engine.rollout.state import ACTIVE, Run
from strategy_rollouts.engine.routing import count_draining, count_owned


def summarize_status(run: Run) -> None:
    st, spec = run.st, run.spec
    if st.targets:
        index = min(st.stage_index or 0, len(spec.stages) - 1)
        t = run.target(run.stage_ns(index))
        stable = run.deployment(t.namespace, spec.stable.deployment)
        canary = run.deployment(t.namespace, spec.canary.deployment)
        st.replicas = ReplicaStatus(
            stable=stable.replicas if stable else 0,
            canary=canary.replicas if canary else 0,
            stable_ready=stable.ready if stable else 0,
            canary_ready=canary.ready if canary else 0,
        )
        st.routing = RoutingStatus(
            revision=run.obs.revisions.get(t.namespace, st.routing.revision if st.routing else 0),
            canary_keys=count_owned(t.assignments, spec.canary.version),
            draining=count_draining(t.assignments),
        )
    gen = run.obs.generation
    phase = st.phase
    conds = st.conditions
    conds = set_condition(conds, "InvalidSpec", False, "Valid", "", run.now, gen)
    conds = set_condition(conds, "Progressing", phase == "Progressing", st.reason or "", st.message or "", run.now, gen)
    conds = set_condition(conds, "Paused", phase == "Paused", st.reason or "", st.message or "", run.now, gen)
    conds = set_condition(conds, "Completed", phase == "Succeeded", st.reason or "", st.message or "", run.now, gen)
    conds = set_condition(conds, "Degraded", phase == "RolledBack", st.reason or "", st.message or "", run.now, gen)
    conds = _market_summary(run, conds)
    st.conditions = conds
    st.observed_generation = gen


def _market_summary(run: Run, conds: list[Condition]) -> list[Condition]:
    """status.market and condition Frozen, only for a rollout that has a market or freeze windows."""
    st, spec = run.st, run.spec
    live = st.phase in (*ACTIVE, "Pending")
    st.market = market.status(spec.market, spec.freeze_windows, run.calendar, run.now) if live else None
    if st.market is not None:
        run.wake(market.next_boundary(spec.market, spec.freeze_windows, run.calendar, run.now))
    held = st.reason in ("Frozen", "MarketClosed") and st.phase in ("Paused", "Pending")
    if st.market is None and not held and not any(c.type == "Frozen" for c in conds):
        return conds
    return set_condition(
        conds,
        "Frozen",
        held,
        (st.reason or "") if held else "NotFrozen",
        (st.message or "") if held else "",
        run.now,
        run.obs.generation,
    )
