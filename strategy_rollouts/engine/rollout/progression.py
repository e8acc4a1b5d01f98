"""Progression: stages and their steps (weights, pauses, durations), approvals and webhook confirmations."""

from __future__ import annotations

from datetime import datetime

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import Stage
from strategy_rollouts.engine import approvals as approvallib
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine import market, webhook_gates
from strategy_rollouts.engine.rollout.assignments import routing_settled
from strategy_rollouts.engine.rollout.lifecycle import fail
from strategy_rollouts.engine.rollout.replicas import want_canary
from strategy_rollouts.engine.rollout.state import Run


def next_step(run: Run) -> None:
    run.st.step_index = (run.st.step_index or 0) + 1
    run.st.step_started_at = run.now
    restart_gates(run)


def restart_gates(run: Run) -> None:
    """Failure counts start afresh; a sequential judge starts over on this step's samples, measured now."""
    restart = gatelib.per_step(run.spec.gates)
    run.st.gates = webhook_gates.consume(run.spec.gates, gatelib.reset_step_counts(run.st.gates, restart))
    if restart:
        run.wake(run.now)


def next_stage(run: Run) -> None:
    index = (run.st.stage_index or 0) + 1
    if index >= len(run.spec.stages):
        begin_completion(run)
        return
    run.event(
        "Normal",
        "StagePromoted",
        f"stage {run.spec.stages[index - 1].name} done; starting {run.spec.stages[index].name}",
    )
    run.st.stage_index, run.st.step_index = index, 0
    run.st.stage = run.spec.stages[index].name
    run.st.stage_started_at = run.st.step_started_at = run.now
    restart_gates(run)
    run.st.canary_weight = run.target(run.stage_ns(index)).weight


def begin_completion(run: Run) -> None:
    run.st.stage_index = len(run.spec.stages)
    run.st.step_index = 0
    run.st.stage = None
    for t in run.st.targets:
        want_canary(run, t, 100)
    run.st.canary_weight = 100
    run.set_phase("Progressing", "Completing", "handing every key to the canary")


def progress_deadline_exceeded(run: Run) -> str | None:
    deadline = parse_duration(run.spec.progress_deadline)
    for t in run.st.targets:
        if t.canary_scaled_at is not None:
            if run.now - t.canary_scaled_at > deadline:
                dep = run.deployment(t.namespace, run.spec.canary.deployment)
                ready = dep.ready if dep else 0
                return (
                    f"canary {t.namespace}/{run.spec.canary.deployment} has {ready}/{t.canary_replicas} Ready"
                    f" pods {run.spec.progress_deadline} after scale-up"
                )
            run.wake(t.canary_scaled_at + deadline)
    return None


def advance(run: Run, summary: gatelib.GateSummary) -> bool:
    """Try to move one step; True when something moved (the caller loops)."""
    spec, st = run.spec, run.st
    if (st.stage_index or 0) >= len(spec.stages):
        return False
    stage = spec.stages[st.stage_index or 0]
    t = run.target(run.stage_ns(st.stage_index or 0))
    serving = any(x.weight > 0 for x in st.targets)
    gates_ok = summary.all_pass or not serving
    max_ends = ends(run, st.stage_started_at, stage.max_duration)
    if max_ends is not None and max_ends > run.now:
        run.wake(max_ends)
    if max_ends is not None and run.now >= max_ends:
        if any(g.result == "Fail" and not g.dry_run for g in st.gates):
            fail(run, "MaxDurationFailed", f"stage {stage.name} reached maxDuration with a failing gate")
            return False
        if gates_ok and awaiting_approval(run, stage):
            return False
        if gates_ok and confirm(run, "promotion"):
            run.event(
                "Normal",
                "MaxDurationPromoted",
                f"stage {stage.name} reached maxDuration with gates passing",
            )
            next_stage(run)
            return True
        if gates_ok:
            return False  # waiting for a promotion webhook (confirm set the phase)
        run.set_phase("Progressing", "WaitingForGates", f"stage {stage.name} at maxDuration; gates not all passing")
        return False
    if (st.step_index or 0) >= len(stage.steps):
        return _leave_stage(run, stage, gates_ok)
    step = stage.steps[st.step_index or 0]
    if step.set_weight is not None:
        if step.set_weight > t.weight and not confirm(run, "stepIncrease"):
            return False
        if not want_canary(run, t, step.set_weight):
            run.set_phase("Progressing", "WaitingForCanary", f"waiting for canary pods in {t.namespace}")
            return False
        st.canary_weight = t.weight
        if not routing_settled(run, t):
            run.set_phase("Progressing", "Handoff", f"setting weight {step.set_weight} in {t.namespace}")
            return False
        if not gates_ok:
            waiting_for_gates(run)
            return False
        run.set_phase("Progressing", "WeightSet", f"{stage.name}: weight {step.set_weight}")
        next_step(run)
        return True
    # pause step
    if step.pause is None or step.pause.duration is None:
        run.set_phase("Paused", "AwaitingPromotion", f"{stage.name}: step {st.step_index} waits for promote")
        return False
    pause_ends = ends(run, st.step_started_at, step.pause.duration)
    if pause_ends is None or run.now < pause_ends:
        run.wake(pause_ends)
        until = pause_ends.isoformat() if pause_ends else "the calendar's end (trading time)"
        run.set_phase("Progressing", "Pausing", f"{stage.name}: pause until {until}")
        return False
    if not gates_ok:
        waiting_for_gates(run)
        return False
    next_step(run)
    return True


def ends(run: Run, start: datetime | None, duration: str | None) -> datetime | None:
    """When `duration` from `start` is over, in wall or trading time (spec.market.countTime)."""
    if duration is None:
        return None
    count = run.spec.market.count_time if run.spec.market else "wall"
    return market.deadline(count, run.calendar, start or run.now, parse_duration(duration))


def waiting_for_gates(run: Run) -> None:
    if run.closed:
        opens = run.calendar.next_open(run.now)
        run.set_phase(
            "Progressing",
            "MarketClosed",
            f"waiting for gates: {run.calendar.name} closed, opens {market.stamp(opens)}",
        )
        return
    run.set_phase("Progressing", "WaitingForGates", "waiting for every gate to pass")


def _leave_stage(run: Run, stage: Stage, gates_ok: bool) -> bool:
    stage_ends = ends(run, run.st.stage_started_at, stage.min_duration)
    if stage.min_duration and (stage_ends is None or run.now < stage_ends):
        run.wake(stage_ends)
        until = stage_ends.isoformat() if stage_ends else "the calendar's end (trading time)"
        run.set_phase("Progressing", "MinDuration", f"stage {stage.name} runs until {until}")
        return False
    if not gates_ok:
        waiting_for_gates(run)
        return False
    if awaiting_approval(run, stage):
        return False
    if stage.promotion == "manual":
        run.set_phase("Paused", "AwaitingPromotion", f"stage {stage.name} done; promotion is manual")
        return False
    if not confirm(run, "promotion"):
        return False
    next_stage(run)
    return True


def awaiting_approval(run: Run, stage: Stage) -> bool:
    """Phase Paused, reason AwaitingApproval, while the stage lacks approvals (True: it must wait)."""
    if approvallib.satisfied(stage, run.st.approvals):
        return False
    run.set_phase("Paused", "AwaitingApproval", approvallib.waiting_message(stage, run.st.approvals))
    return True


def confirm(run: Run, at: str) -> bool:
    """Webhook gates with `at` (stepIncrease / promotion) have said yes to this transition."""
    ok, why = webhook_gates.confirmed(run.spec.gates, run.st.gates, at)
    if not ok:
        run.set_phase("Progressing", "WaitingForWebhook", why)
        asked = {g.name for g in run.st.gates}
        if any(webhook_gates.confirms(g) == at and g.name not in asked for g in run.spec.gates):
            run.wake(run.now)  # not asked yet (it applies from this pass on): the next pass asks
    return ok
