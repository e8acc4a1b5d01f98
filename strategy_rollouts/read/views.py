"""What the CLI and the dashboard both show of an object, as plain text (no rich, no HTML).

The CLI's renderers and the dashboard's JSON views build on these, so a rollout's step, a check's
actions or a shadow run's mismatches read the same in the terminal and in the browser.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from strategy_rollouts.api.paritycheck import ActionTaken
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.api.shadowrun import Mismatches

M = TypeVar("M", bound=BaseModel)

DASH = "-"  # shown for a value not known (yet)


def status_of(model: type[M], obj: dict[str, Any]) -> M:
    """The object's status as a model; an unreadable status (newer/older operator) shows as empty."""
    try:
        return model.model_validate(obj.get("status") or {})
    except ValidationError:
        return model.model_validate({})


def stages_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """A StrategyRollout's `spec.stages` as written (empty when absent)."""
    return list((obj.get("spec") or {}).get("stages") or [])


def step_text(obj: dict[str, Any]) -> str:
    """`i/n` within the current stage (1-based), `-` before the rollout started."""
    status = status_of(StrategyRolloutStatus, obj)
    stages = stages_of(obj)
    if status.stage_index is None or status.step_index is None or status.stage_index >= len(stages):
        return DASH
    total = len(stages[status.stage_index].get("steps") or [])
    return f"{min(status.step_index + 1, total)}/{total}"


def actions_text(actions: list[ActionTaken], limit: int = 3) -> str:
    """The latest actions, newest first: `pauseRollout (Critical)`; not yet in force: `(Critical, Pending)`."""
    if not actions:
        return "none"
    shown = [
        f"{a.action} ({a.level})" if a.state == "Applied" else f"{a.action} ({a.level}, {a.state})"
        for a in reversed(actions[-limit:])
    ]
    more = len(actions) - limit
    return ", ".join(shown) + (f", +{more} more" if more > 0 else "")


def mismatches_text(mismatches: Mismatches) -> str:
    """Non-zero mismatch kinds, e.g. `price=3 missing_shadow=1` (`none` when all zero)."""
    counts = mismatches.model_dump()
    parts = [f"{kind}={count}" for kind, count in counts.items() if count]
    return " ".join(parts) or "none"
