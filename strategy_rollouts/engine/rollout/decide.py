"""One reconcile, in order: requests, start, routing, gates and progression, completion, summary."""

from __future__ import annotations

import dataclasses
import functools
from datetime import datetime

from strategy_rollouts.api.common import set_condition
from strategy_rollouts.api.rollout import KeySegment, StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import approvals as approvallib
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine import market, requests
from strategy_rollouts.engine.rollout.assignments import route
from strategy_rollouts.engine.rollout.gates import record_gates
from strategy_rollouts.engine.rollout.lifecycle import fail, finish_if_complete, start
from strategy_rollouts.engine.rollout.model import Decision, Observations
from strategy_rollouts.engine.rollout.progression import advance, progress_deadline_exceeded
from strategy_rollouts.engine.rollout.quarantine import over_limit
from strategy_rollouts.engine.rollout.replicas import scale_downs
from strategy_rollouts.engine.rollout.requests import handle_requests
from strategy_rollouts.engine.rollout.state import ACTIVE, OPERATOR, Run
from strategy_rollouts.engine.rollout.summary import summarize_status
from strategy_rollouts.engine.rollout.world import desired_routing, desired_scales
from strategy_rollouts.engine.routing import NONE
from strategy_rollouts.engine.types import Event
from strategy_rollouts.engine.validation import listed_keys_errors, rollout_errors


def reconcile(
    spec: StrategyRolloutSpec,
    status: StrategyRolloutStatus,
    obs: Observations,
    now: datetime,
) -> Decision:
    """Decide everything for one reconcile. Deterministic in its arguments."""
    errors = spec_errors(spec, obs.namespace)
    if spec.market is not None and market.resolve(spec.market.calendar, obs.calendar) is None:
        errors = [*errors, f"spec.market.calendar: calendar {spec.market.calendar} is not available"]
    if spec.routing.keys_from is not None:
        errors = [*errors, *_listed_errors_of(spec.model_dump_json(), obs.listed_keys)]
    if errors:
        return invalid(status, errors, obs.generation, now)
    run = Run(spec, status, obs, now)
    decide(run)
    run.segment_targets()
    return Decision(
        status=run.st,
        routing=desired_routing(spec, run.st),
        scales=desired_scales(spec, run.st),
        events=run.events,
        wake_at=min(run.wakes) if run.wakes else None,
    )


def decide(run: Run) -> None:
    spec = run.spec
    st = run.st
    if st.canary_version is not None and (
        st.canary_version != spec.canary.version or st.stable_version != spec.stable.version
    ):
        last = st.history[-1] if st.history else None
        # Once per superseded run: a held start of the new version stays Pending pass after pass.
        recorded = (
            last is not None and last.version == st.canary_version and last.outcome in ("Superseded", "Succeeded")
        )
        if st.phase in ACTIVE or (st.phase == "Pending" and not recorded):
            run.history("Superseded", None, f"canary changed to {spec.canary.version}", version=st.canary_version)
            run.event("Normal", "Superseded", f"{st.canary_version} superseded by {spec.canary.version}")
        st.phase = None
    handle_requests(run)
    if st.phase in (None, "Pending", "Invalid"):
        start(run)
    route(run)
    if st.phase in ACTIVE:
        summary = record_gates(run)
        deadline = progress_deadline_exceeded(run)
        frozen = st.manual_pause is not None and st.manual_pause.by == OPERATOR
        if frozen:
            assert st.manual_pause is not None
            reason = "KeysQuarantined" if over_limit(run) else "GateFailed"  # the freeze's own reason
            run.set_phase("Paused", reason, f"frozen (onFailure: pause): {st.manual_pause.reason}")
        elif summary.failed:
            gate = summary.failed[0]
            per_key = {g.name for g in spec.gates if g.per_key is not None}
            reason = "RiskBudgetExceeded" if gate.name.startswith("risk-budget:") else "GateFailed"
            reason = "KeysQuarantined" if gate.name in per_key else reason
            fail(run, reason, summary.failure_reason())
        elif deadline:
            fail(run, "ProgressDeadlineExceeded", deadline)
        elif summary.held:
            run.set_phase("Paused", "Inconclusive", f"holding: {summary.hold_reason()}")
        elif summary.undecided:
            run.set_phase("Paused", "JudgeUndecided", f"holding: {summary.undecided_reason()}")
        elif spec.paused or st.manual_pause is not None:
            who = st.manual_pause
            why = f"paused by {who.by}: {who.reason or ''}" if who else "spec.paused is true"
            run.set_phase("Paused", "Paused", why)
        elif run.hold is not None:
            run.set_phase("Paused", run.hold.reason, run.hold.message)
            run.wake(run.hold.until)
        else:
            if st.phase == "Paused":
                run.set_phase("Progressing", "Resumed", "continuing")
            per_step = gatelib.per_step(spec.gates)
            restarting = any(g.name in per_step and not g.dry_run for g in spec.gates)
            for _ in range(4 * sum(len(s.steps) + 1 for s in spec.stages) + 4):
                if not advance(run, summary) or st.phase not in ACTIVE:
                    break
                if restarting:  # a sequential judge's Pass was the last step's: this step waits for its own
                    summary = dataclasses.replace(summary, all_pass=False)
    route(run)
    finish_if_complete(run)
    scale_downs(run)
    st.approvals = approvallib.current(st.approvals, st.stage, st.stage_started_at)
    summarize_status(run)


def spec_errors(spec: StrategyRolloutSpec, namespace: str) -> list[str]:
    """THE validation of a StrategyRollout spec (the operator, the admission webhook and the engine
    call this one): what the schema cannot express, each message naming the field. Empty: usable.
    `namespace` is the object's (the same signature for every kind; unused by this one). Cached:
    validation depends on the spec alone; specs change rarely, reconciles are frequent."""
    return list(_errors_of(spec.model_dump_json()))


@functools.lru_cache(maxsize=4096)
def _errors_of(spec_json: str) -> tuple[str, ...]:
    # Pure memoization (same input, same output), like state.ranked_keys: no state a reconcile can observe.
    return tuple(rollout_errors(StrategyRolloutSpec.model_validate_json(spec_json)))


@functools.lru_cache(maxsize=256)
def _listed_errors_of(spec_json: str, listed: tuple[str, ...] | None) -> tuple[str, ...]:
    # As _errors_of: a keysFrom list of 100,000 keys is checked once, not every pass.
    return tuple(listed_keys_errors(StrategyRolloutSpec.model_validate_json(spec_json), listed))


def invalid(status: StrategyRolloutStatus, errors: list[str], generation: int, now: datetime) -> Decision:
    """Never act on what cannot be trusted: report, change nothing else, except a stop.

    A stop needs nothing from the spec (every key the status records goes to none, entries off), so a
    pending stopTrading is applied here too, and a stop already recorded keeps being published. Other
    requests wait for a valid spec (they need its stages and versions).
    """
    st = status.model_copy(deep=True)
    message = "; ".join(errors)
    st.phase, st.reason, st.message = "Invalid", "InvalidSpec", message
    st.conditions = set_condition(st.conditions, "InvalidSpec", True, "InvalidSpec", message, now, generation)
    st.observed_generation = generation
    events = [] if status.message == message else [Event("Warning", "InvalidSpec", message)]
    stops = [
        (rid, r)
        for rid, r in requests.in_order(st.requests)
        if r.action == "stopTrading" and requests.outcome_of(st.handled_requests, rid) is None
    ]
    if stops:
        for t in st.targets:
            t.assignments = {key: NONE for key in {**t.assignments, **t.pending}}
            t.pending, t.draining_until, t.weight = {}, None, 0
            if t.segmented is not None:
                t.segmented.segments = [KeySegment(start="", owner=NONE)]
        st.canary_weight = 0
        st.trading_stopped = True
        done = [
            requests.handled(rid, r, "Applied", "every key to none, entries off (spec invalid)", now)
            for rid, r in stops
        ]
        st.handled_requests = requests.log(st.handled_requests, done)
        st.requests = {rid: r for rid, r in st.requests.items() if rid not in {d.id for d in done}}
        who = ", ".join(sorted({r.by for _, r in stops}))
        events.append(Event("Warning", "TradingStopped", f"trading stopped by {who} while the spec is invalid"))
    routing = desired_routing(None, st) if st.trading_stopped else []
    return Decision(st, routing, [], events, None)
