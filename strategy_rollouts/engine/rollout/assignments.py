"""Routing: each target's published key assignments, moved one handoff step at a time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import TargetStatus
from strategy_rollouts.engine.keys import BucketState, canary_buckets, step_buckets
from strategy_rollouts.engine.rollout.state import Run
from strategy_rollouts.engine.routing import NONE, RoutingState, desired_assignments, settled, step_handoff


def earned(run: Run) -> bool:
    """Has the spec's canary a started run? Only then may a key go to it: a version whose start is held
    (frozen, waiting for its ShadowRun, pending, invalid) has earned nothing, whatever the weight left
    in status by the version it superseded."""
    st, spec = run.st, run.spec
    started = st.phase not in (None, "Pending", "Invalid")
    return started and (st.stable_version, st.canary_version) == (spec.stable.version, spec.canary.version)


def kept_after_success(run: Run) -> bool:
    """The run before this unstarted version Succeeded: its keys stay with the version that earned them
    (the new stable) until the new canary earns its own, never drained back to the old stable."""
    last = run.st.history[-1] if run.st.history else None
    return last is not None and last.outcome == "Succeeded" and last.version == run.st.canary_version


def route(run: Run) -> None:
    """Move every target's published assignments one handoff step toward its weight."""
    handoff = parse_duration(run.spec.routing.handoff)
    started = earned(run)
    keep = not started and kept_after_success(run)
    for t in run.st.targets:
        if run.buckets is not None:
            _route_buckets(run, t, handoff, started, keep)
            continue
        # step_handoff returns new dicts and never changes these, so no copies are needed.
        before = (t.assignments, t.pending)
        desired: Mapping[str, str]
        if run.st.trading_stopped or not run.symbols:
            desired = {k: NONE for k in run.ranked} if run.st.trading_stopped and run.symbols else {}
        elif keep:
            continue
        else:
            # A superseding version starts at weight 0: the previous canary's keys drain back to stable.
            desired = _desired(run, t.weight if started else 0)
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


def _route_buckets(run: Run, t: TargetStatus, handoff: timedelta, started: bool, keep: bool) -> None:
    """An open universe: the same handoff, on one range of buckets (engine/keys.py step_buckets)."""
    assert run.buckets is not None
    before = (t.canary_buckets, t.draining_buckets, t.next_buckets)
    if run.st.trading_stopped:
        # Every bucket to none at once (the payload says stopped): nobody owns one, so no drain.
        t.canary_buckets, t.draining_buckets, t.next_buckets, t.draining_until = 0, None, None, None
    elif not keep:
        desired = canary_buckets(t.weight, run.buckets) if started else 0
        published = run.obs.published.get(t.namespace, False) and t.namespace not in run.unpublished
        state = step_buckets(_bucket_state(t), desired, run.now, handoff, published)
        t.canary_buckets = state.canary
        t.draining_buckets = state.draining_to if state.draining else None
        t.next_buckets = state.next if state.draining else None
        t.draining_until = state.until
    if before != (t.canary_buckets, t.draining_buckets, t.next_buckets):
        run.unpublished.add(t.namespace)
    run.wake(t.draining_until)


def _bucket_state(t: TargetStatus) -> BucketState:
    canary = t.canary_buckets or 0
    if t.draining_buckets is None:
        return BucketState(canary, canary, canary, None)
    return BucketState(canary, t.draining_buckets, t.next_buckets or canary, t.draining_until)


def routing_settled(run: Run, t: TargetStatus) -> bool:
    if not run.symbols:
        return True
    if run.buckets is not None:
        return t.draining_buckets is None and (t.canary_buckets or 0) == canary_buckets(t.weight, run.buckets)
    return settled(RoutingState(t.assignments, t.pending, t.draining_until), _desired(run, t.weight))


def _desired(run: Run, weight: float) -> Mapping[str, str]:
    """desired_assignments for `weight`, once per reconcile (read-only: shared between callers)."""
    desired = run.desired_by_weight.get(weight)
    if desired is None:
        spec = run.spec
        desired = desired_assignments(run.ranked, weight, spec.stable.version, spec.canary.version, run.quarantined)
        run.desired_by_weight[weight] = desired
    return desired
