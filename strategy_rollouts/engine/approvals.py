"""Approvals (two-person rule), pure: who approved the current stage, is it enough, what to say while waiting.

`status.approvals` holds the approvals of the current stage only. Each entry names its stage and is
recorded at the time it was handled, so an entry from another stage, or from before the stage (re)started
(a retry, a new canary), is stale and dropped: approvals never carry over.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from strategy_rollouts.api.approvals import Approval
from strategy_rollouts.api.requests import Outcome, RolloutRequest
from strategy_rollouts.api.rollout import Stage


def current(approvals: Sequence[Approval], stage: str | None, stage_started_at: datetime | None) -> list[Approval]:
    """The approvals given for `stage` since it started (empty outside a stage)."""
    if stage is None or stage_started_at is None:
        return []
    return [a for a in approvals if a.stage == stage and a.at >= stage_started_at]


def approvers(approvals: Sequence[Approval]) -> list[str]:
    """Distinct users, in the order they first approved."""
    return list(dict.fromkeys(a.by for a in approvals))


def missing(stage: Stage, approvals: Sequence[Approval]) -> int:
    """How many more distinct users must approve `stage` (approvals of other stages never count)."""
    if stage.approvals is None:
        return 0
    mine = [a for a in approvals if a.stage == stage.name]
    return max(stage.approvals.count - len(approvers(mine)), 0)


def satisfied(stage: Stage, approvals: Sequence[Approval]) -> bool:
    """May the stage be promoted, as far as approvals go? Fail closed: only distinct users count."""
    return missing(stage, approvals) == 0


def waiting_message(stage: Stage, approvals: Sequence[Approval]) -> str:
    """`1 of 2 approvals (alice) for stage prod: risk desk + strategy owner`."""
    need = stage.approvals.count if stage.approvals else 0
    names = approvers(approvals)
    text = f"{len(names)} of {need} approvals"
    if names:
        text += f" ({', '.join(names)})"
    text += f" for stage {stage.name}"
    if stage.approvals and stage.approvals.message:
        text += f": {stage.approvals.message}"
    return text


def approve(
    stage: Stage | None, approvals: Sequence[Approval], request: RolloutRequest, now: datetime
) -> tuple[list[Approval], Outcome, str]:
    """Handle one `approve` request for the current stage: the new approvals, the outcome and why."""
    kept = list(approvals)
    if stage is None:
        return kept, "Rejected", "no stage to approve: the rollout is completing"
    if stage.approvals is None:
        return kept, "Rejected", f"stage {stage.name} asks for no approvals"
    if request.by in approvers(kept):
        return kept, "Rejected", f"{request.by} already approved stage {stage.name}; {waiting_message(stage, kept)}"
    kept.append(Approval(by=request.by, at=now, reason=request.reason, stage=stage.name))
    return kept, "Applied", waiting_message(stage, kept)


def blocks_promotion(
    stages: Sequence[Stage], stage_index: int, step_index: int, approvals: Sequence[Approval], full: bool
) -> str | None:
    """Why a `promote` (leaving the stage) or `promoteFull` (leaving every remaining stage) must wait, if it must.

    A person's promote never stands in for missing approvals: that would make the rule one person's call.
    """
    remaining = list(stages[stage_index:]) if full else list(stages[stage_index : stage_index + 1])
    if not full and (not remaining or step_index < len(remaining[0].steps)):
        return None  # a step within the stage: approvals gate only the stage's promotion
    for stage in remaining:
        if not satisfied(stage, approvals):
            return f"stage {stage.name} needs approvals: {waiting_message(stage, current_of(stage, approvals))}"
    return None


def current_of(stage: Stage, approvals: Sequence[Approval]) -> list[Approval]:
    return [a for a in approvals if a.stage == stage.name]
