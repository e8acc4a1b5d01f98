"""Requests (status.requests; see api/requests.py): each pending one gets exactly one outcome per pass."""

from __future__ import annotations

from strategy_rollouts.api.requests import HandledRequest, Outcome, RolloutRequest
from strategy_rollouts.api.rollout import HistoryEntry
from strategy_rollouts.engine import approvals as approvallib
from strategy_rollouts.engine import requests as reqlib
from strategy_rollouts.engine.rollout.lifecycle import rollback, stop_trading
from strategy_rollouts.engine.rollout.progression import begin_completion, next_stage, next_step
from strategy_rollouts.engine.rollout.quarantine import release_key
from strategy_rollouts.engine.rollout.replicas import want_canary
from strategy_rollouts.engine.rollout.state import ACTIVE, Run

# Strength of a request: the strongest pending one is applied first and makes weaker ones moot.
STRENGTH = {"stopTrading": 3, "abort": 2, "pause": 1}
# After a stop in the same pass these are Rejected (not merely Superseded): they would move it again.
AFTER_STOP_REJECTED = ("promote", "promoteFull", "resume", "retry", "approve")


def handle_requests(run: Run) -> None:
    """Every pending request, oldest first, gets exactly one outcome in this pass.

    The strongest pending action (stopTrading > abort > pause) is applied first, whenever it was
    written; the requests it makes moot are Superseded, and after a stop a promote/resume/retry
    of the same pass is Rejected (nothing but a later retry by a person moves the rollout again).
    """
    # An id already in the handled log was re-added (a retried write): its outcome stands, once.
    pending = [
        (rid, req)
        for rid, req in reqlib.in_order(run.st.requests)
        if reqlib.outcome_of(run.st.handled_requests, rid) is None
    ]
    if not pending:
        run.st.requests = {}
        return
    strongest = max(STRENGTH.get(req.action, 0) for _, req in pending)
    winner = next((rid for rid, req in pending if strongest and STRENGTH.get(req.action, 0) == strongest), None)
    outcomes: dict[str, HandledRequest] = {}
    if winner is not None:
        outcomes[winner] = apply_request(run, winner, run.st.requests[winner])
    for rid, req in pending:
        if rid == winner:
            continue
        if winner is not None and _mooted(run.st.requests[winner], req):
            by = run.st.requests[winner]
            what = f"{by.action} {winner} by {by.by}"
            if by.action == "stopTrading" and req.action in AFTER_STOP_REJECTED:
                outcomes[rid] = reqlib.handled(
                    rid, req, "Rejected", f"rejected: trading was stopped by {what} in the same pass", run.now
                )
            else:
                outcomes[rid] = reqlib.handled(rid, req, "Superseded", f"superseded by {what}", run.now)
            continue
        outcomes[rid] = apply_request(run, rid, req)
    ordered = [outcomes[rid] for rid, _ in pending]
    for entry in ordered:
        if entry.outcome != "Applied":
            run.event("Warning", f"Request{entry.outcome}", f"{entry.action} by {entry.by}: {entry.message}")
    run.st.handled_requests = reqlib.log(run.st.handled_requests, ordered)
    run.st.requests = {}


def _mooted(winner: RolloutRequest, other: RolloutRequest) -> bool:
    """Does applying `winner` make `other` (of the same pass) moot?"""
    if winner.action in ("stopTrading", "abort"):
        return True
    return other.action in ("pause", "promote", "promoteFull", "resume")  # winner is a pause


def apply_request(run: Run, rid: str, req: RolloutRequest) -> HandledRequest:
    outcome, message = _apply(run, req)
    return reqlib.handled(rid, req, outcome, message, run.now)


def _apply(run: Run, req: RolloutRequest) -> tuple[Outcome, str]:
    by, why, action = req.by, req.reason, req.action
    phase = run.st.phase
    stop = run.st.trading_stopped
    if action == "stopTrading":
        already = stop and phase == "RolledBack"
        stop_trading(run, by, why, req.source)
        return "Applied", "trading was already stopped" if already else "every key to none, entries off"
    if stop and action != "retry":
        return "Rejected", f"trading is stopped ({run.st.message}); only a retry by a person moves it again"
    if action == "retry":
        if phase != "RolledBack":
            return "Rejected", f"retry applies after a rollback, not in phase {phase}"
        if stop and req.source is not None:
            return "Rejected", "after stopTrading only a person may retry (this request names a source)"
        run.history("Retried", by, why)
        run.st.phase = None
        run.event("Normal", "Retried", f"retry by {by}: {why or ''}")
        return "Applied", "restarting from the first step of the first stage"
    if action == "abort":
        if phase not in (*ACTIVE, "Pending"):
            return "Rejected", f"nothing to abort in phase {phase}"
        rollback(run, "Aborted", f"aborted by {by}: {why or 'no reason given'}", "Aborted", by)
        return "Applied", "rolling back to stable"
    if phase not in ACTIVE:
        return "Rejected", f"{action} does not apply in phase {phase}"
    if action == "approve":
        return approve(run, req)
    if action == "releaseKey":
        return release_key(run, req.key)
    if action == "pause":
        if run.st.manual_pause is not None:
            return "Rejected", f"already paused by {run.st.manual_pause.by}"
        run.st.manual_pause = HistoryEntry(
            version=run.spec.canary.version, outcome="Paused", at=run.now, by=by, reason=why
        )
        run.history("Paused", by, why)
        run.event("Normal", "Paused", f"paused by {by}: {why or ''}")
        return "Applied", "paused"
    if action == "resume":
        if run.st.manual_pause is None:
            return "Rejected", "not paused by a request (spec.paused and failing gates are not lifted by resume)"
        run.st.manual_pause = None
        # A freeze from onFailure: pause is lifted with fresh counts, or it would freeze again at once.
        run.st.gates = [
            g.model_copy(update={"failures": 0, "consecutive_failures": 0, "inconclusives": 0}) for g in run.st.gates
        ]
        run.history("Resumed", by, why)
        run.event("Normal", "Resumed", f"resumed by {by}: {why or ''}")
        return "Applied", "resumed"
    if action in ("promote", "promoteFull") and run.hold is not None:
        return "Rejected", f"held: {run.hold.message}"
    if action in ("promote", "promoteFull") and (run.st.stage_index or 0) >= len(run.spec.stages):
        return "Rejected", "already completing: every key is being handed to the canary"
    waiting = approvallib.blocks_promotion(
        run.spec.stages, run.st.stage_index or 0, run.st.step_index or 0, run.st.approvals, action != "promote"
    )
    if waiting:
        return "Rejected", waiting
    if action == "promote":
        promote_step(run, by, why)
        return "Applied", f"promoted to stage {run.st.stage or 'completion'} step {run.st.step_index}"
    run.history("Promoted", by, why or "promote --full")
    run.event("Normal", "PromotedFull", f"promoted to 100% everywhere by {by}")
    begin_completion(run)
    return "Applied", "handing every key to the canary"


def approve(run: Run, req: RolloutRequest) -> tuple[Outcome, str]:
    index = run.st.stage_index or 0
    stage = run.spec.stages[index] if index < len(run.spec.stages) else None
    given = approvallib.current(run.st.approvals, run.st.stage, run.st.stage_started_at)
    run.st.approvals, outcome, message = approvallib.approve(stage, given, req, run.now)
    if outcome == "Applied":
        run.history("Approved", req.by, req.reason)
        run.event("Normal", "Approved", f"approved by {req.by}: {message}")
    return outcome, message


def promote_step(run: Run, by: str | None, why: str | None) -> None:
    stage = run.spec.stages[run.st.stage_index or 0]
    index = run.st.step_index or 0
    run.history("Promoted", by, why or "promote")
    run.event("Normal", "Promoted", f"promoted by {by} from {stage.name} step {index}")
    if index >= len(stage.steps):
        next_stage(run)
        return
    step = stage.steps[index]
    if step.set_weight is not None:
        # A human override: the weight applies even before the canary reports Ready.
        t = run.target(run.stage_ns(run.st.stage_index or 0))
        want_canary(run, t, step.set_weight)
        t.weight = step.set_weight
        run.st.canary_weight = step.set_weight
    next_step(run)
