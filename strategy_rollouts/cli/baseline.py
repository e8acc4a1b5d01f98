"""`baseline update`: the shadow's measured p95 per stage -> the budgets ConfigMap (pure part)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text

from strategy_rollouts.api.shadowrun import ShadowRunStatus
from strategy_rollouts.cli.errors import CliError
from strategy_rollouts.read.views import DASH, status_of


def format_ms(value: float) -> str:
    """p95 in ms rounded to 0.1, as a ConfigMap value: 145.0 -> `145`, 123.44 -> `123.4`."""
    text = f"{round(value, 1):.1f}"
    return text[:-2] if text.endswith(".0") else text


def budgets_config_map(obj: dict[str, Any]) -> str:
    name = (((obj.get("spec") or {}).get("latencyProfile") or {}).get("budgets") or {}).get("configMap")
    if not name:
        meta = obj.get("metadata") or {}
        raise CliError(
            f"shadowrun {meta.get('namespace')}/{meta.get('name')} has no spec.latencyProfile.budgets.configMap"
        )
    return str(name)


def new_budgets(obj: dict[str, Any], force: bool = False) -> dict[str, str]:
    """stage -> shadow p95 (ms) from status.latencyProfile; refuses unless the verdict is Pass."""
    meta = obj.get("metadata") or {}
    what = f"shadowrun {meta.get('namespace')}/{meta.get('name')}"
    status = status_of(ShadowRunStatus, obj)
    if status.verdict != "Pass" and not force:
        raise CliError(f"{what} has verdict {status.verdict or 'none yet'}, not Pass (use --force to override)")
    budgets = {
        stage: format_ms(lat.shadow.p95)
        for stage, lat in sorted(status.latency_profile.items())
        if lat.shadow.p95 is not None
    }
    if not budgets:
        raise CliError(f"{what} has no measured shadow p95 in status.latencyProfile")
    return budgets


def _change(before: str | None, after: str) -> str:
    try:
        old, new = float(before or ""), float(after)
    except ValueError:
        return "new"
    if old == 0:
        return DASH
    return f"{(new - old) / old * 100:+.1f}%"


def budgets_table(before: dict[str, str], after: dict[str, str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("STAGE", "BEFORE (ms)", "AFTER (ms)", "CHANGE"):
        table.add_column(column, justify="left" if column == "STAGE" else "right")
    for stage in sorted(set(before) | set(after)):
        new = after.get(stage)
        if new is None:
            table.add_row(stage, before[stage], Text("unchanged", style="dim"), "")
            continue
        table.add_row(stage, before.get(stage, DASH), new, _change(before.get(stage), new))
    return table
