"""Pure renderers for approvals (two-person rule): the `get` cell and the `status` section."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.cli.fmt import relative


def _required(obj: dict[str, Any], status: StrategyRolloutStatus) -> tuple[str, int, str] | None:
    """(stage, count, message) the current stage asks for, None when it asks for no approvals."""
    stages = list((obj.get("spec") or {}).get("stages") or [])
    index = status.stage_index
    if index is None or not 0 <= index < len(stages):
        return None
    wanted = stages[index].get("approvals")
    if not isinstance(wanted, dict) or not isinstance(wanted.get("count"), int):
        return None
    return str(stages[index].get("name", "")), wanted["count"], str(wanted.get("message") or "")


def _distinct(status: StrategyRolloutStatus, stage: str) -> list[str]:
    return list(dict.fromkeys(a.by for a in status.approvals if a.stage == stage))


def approvals_cell(obj: dict[str, Any], status: StrategyRolloutStatus) -> str:
    """`get` REASON suffix: ` (approvals 1/2)` when the current stage asks for approvals, else ``."""
    required = _required(obj, status)
    if required is None:
        return ""
    stage, count, _ = required
    return f" (approvals {len(_distinct(status, stage))}/{count})"


def approvals_table(obj: dict[str, Any], status: StrategyRolloutStatus, now: datetime) -> Group | None:
    """`status` section: who approved the current stage, and how many are missing; None if it asks none."""
    required = _required(obj, status)
    if required is None:
        return None
    stage, count, message = required
    names = _distinct(status, stage)
    title = f"Approvals: {len(names)} of {count} for stage {stage}" + (f" ({message})" if message else "")
    if len(names) < count:
        title += f", {count - len(names)} missing"
    # A line of its own, not the table's title: a title wraps at the width of a narrow table.
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("WHEN", "BY", "REASON"):
        table.add_column(column)
    for approval in status.approvals:
        if approval.stage == stage:
            table.add_row(relative(approval.at, now), approval.by, Text(approval.reason or ""))
    return Group(Text(title, style="bold" if len(names) >= count else "bold yellow"), table)
