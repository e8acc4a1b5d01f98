"""Pure renderers for ParityChecks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from strategy_rollouts.api.paritycheck import ParityCheckStatus
from strategy_rollouts.cli.fmt import LEVEL_STYLE, age, num, relative, styled
from strategy_rollouts.cli.render_requests import requests_cell
from strategy_rollouts.read.views import DASH, actions_text, status_of


def _target(obj: dict[str, Any]) -> str:
    target = (obj.get("spec") or {}).get("target") or {}
    if target.get("rollout"):
        return f"srl/{target['rollout']}"
    return f"deploy/{target['deployment']}" if target.get("deployment") else DASH


def paritychecks_table(objs: list[dict[str, Any]], now: datetime, all_namespaces: bool = False) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["NAMESPACE"] if all_namespaces else []
    columns += ["NAME", "TARGET", "LEVEL", "TE BPS", "LAST RUN", "NEXT RUN", "BREACHES", "ACTIONS", "REQUESTS", "AGE"]
    for column in columns:
        table.add_column(column, no_wrap=column != "ACTIONS")
    for obj in objs:
        meta, status = obj.get("metadata") or {}, status_of(ParityCheckStatus, obj)
        last = status.last_run
        row: list[RenderableType] = [meta.get("namespace", "")] if all_namespaces else []
        row += [
            meta.get("name", ""),
            _target(obj),
            styled(last.level if last else None, LEVEL_STYLE),
            num(last.tracking_error_bps, 1) if last else DASH,
            f"{relative(last.at, now)} ({last.trigger})" if last else DASH,
            relative(status.next_run_at, now),
            str(status.consecutive_breaches),
            actions_text(status.actions_taken),
            requests_cell(obj),
            age(meta.get("creationTimestamp"), now),
        ]
        table.add_row(*row)
    return table


def run_result(obj: dict[str, Any]) -> Text:
    """One line after a manual run was handled: level, TE, samples, attribution."""
    status = status_of(ParityCheckStatus, obj)
    last = status.last_run
    if last is None:
        return Text("run handled, but no result recorded yet", style="yellow")
    text = Text("run handled: level ")
    text.append_text(styled(last.level, LEVEL_STYLE))
    text.append(f", tracking error {num(last.tracking_error_bps, 1)} bps, {last.samples} samples")
    attr = last.attribution
    if attr is not None:
        parts = [(k, v) for k, v in attr.model_dump().items() if v is not None]
        if parts:
            text.append(" (" + ", ".join(f"{k} {v:.2f}" for k, v in parts) + " bps)")
    if last.message:
        text.append(f": {last.message}")
    return text
