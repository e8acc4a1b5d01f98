"""Routing: each target's published key assignments, moved one handoff step at a time."""

from __future__ import annotations

from collections.abc import Mapping

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import TargetStatus
from strategy_rollouts.engine.rollout.state import Run
from strategy_rollouts.engine.routing import NONE, RoutingState, desired_assignments, settled, step_handoff


def route(run: Run) -> None:
    """Move every target's published assignments one handoff step toward its weight."""
    handoff = parse_duration(run.spec.routing.handoff)
    for t in run.st.targets:
        # step_handoff returns new dicts and never changes these, so no copies are needed.
        before = (t.assignments, t.pending)
        desired: Mapping[str, str]
        if run.st.trading_stopped or not run.symbols:
            desired = {k: NONE for k in run.ranked} if run.st.trading_stopped and run.symbols else {}
        else:
            desired = _desired(run, t.weight)
        # What this reconcile changed is not in the ConfigMap yet: its drain must not end here.
        published = (run.obs.published.get(t.namespace, False) or not t.assignments) and (
            t.namespace not in run.unpublished
        )
        state = step_handoff(
            RoutingState(t.assignments, t.pending, t.draining_until),
            desired,
            run.now,
            handoff,
            published,
        )
        t.assignments, t.pending, t.draining_until = (
            state.assignments,
            state.pending,
            state.draining_until,
        )
        if before != (t.assignments, t.pending):
            run.unpublished.add(t.namespace)
        run.wake(t.draining_until)


def routing_settled(run: Run, t: TargetStatus) -> bool:
    if not run.symbols:
        return True
    return settled(RoutingState(t.assignments, t.pending, t.draining_until), _desired(run, t.weight))


def _desired(run: Run, weight: int) -> Mapping[str, str]:
    """desired_assignments for `weight`, once per reconcile (read-only: shared between callers)."""
    desired = run.desired_by_weight.get(weight)
    if desired is None:
        desired = desired_assignments(run.ranked, weight, run.spec.stable.version, run.spec.canary.version)
        run.desired_by_weight[weight] = desired
    return desired
