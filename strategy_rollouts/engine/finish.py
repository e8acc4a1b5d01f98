"""The last step of every kind's decision, the same for all kinds and pure.

A kind's `reconcile` decides; `complete` then records what the pass's checks learned and what the
decision means for people: which gate template each measured gate used, the notification outbox,
and InvalidStatus cleared once the status parses again. The pipeline applies it to every Decision
before the one status write; nothing changes a Decision after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.gates import GateStatus, TemplateUse
from strategy_rollouts.api.notify import NotifyRule
from strategy_rollouts.engine import notifications

INVALID_STATUS = "InvalidStatus"  # the condition a hold on an unparseable status sets


def stamp(statuses: list[GateStatus], used: Mapping[str, TemplateUse], measured: Iterable[str]) -> list[GateStatus]:
    """Record on each gate measured in this pass the template (and resourceVersion) it was measured with."""
    names = set(measured)
    return [
        g.model_copy(update={"template": used[g.name]}) if g.name in names and g.name in used else g for g in statuses
    ]


def cleared(conditions: list[Condition], generation: int | None, now: datetime) -> list[Condition]:
    """InvalidStatus=False once the status parses again (only if it was ever reported)."""
    if not any(c.type == INVALID_STATUS for c in conditions):
        return conditions
    return set_condition(conditions, INVALID_STATUS, False, "StatusParses", "", now, generation)


def complete(
    new: Any,
    old: Any,
    *,
    gates_field: str | None,
    templates_used: Mapping[str, TemplateUse],
    measured: Iterable[str],
    rules: Sequence[NotifyRule],
    occurrences: Iterable[notifications.Occurrence],
    generation: int,
    now: datetime,
) -> None:
    """Complete a decided status in place. `gates_field`: the status field of gate results ("gates",
    "kpis"; None for a kind without gates); `old`: the status the pass started from."""
    if gates_field is not None:
        setattr(new, gates_field, stamp(getattr(new, gates_field), templates_used, measured))
    new.notifications = notifications.outbox(rules, old.notifications, occurrences, now)
    new.conditions = cleared(list(new.conditions), generation, now)
