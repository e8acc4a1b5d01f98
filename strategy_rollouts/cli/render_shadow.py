"""Pure renderers for ShadowRuns."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.table import Table

from strategy_rollouts.api.shadowrun import ShadowRunStatus
from strategy_rollouts.cli.fmt import PHASE_STYLE, VERDICT_STYLE, age, percent, relative, styled
from strategy_rollouts.read.views import DASH, mismatches_text, status_of


def shadowruns_table(objs: list[dict[str, Any]], now: datetime, all_namespaces: bool = False) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["NAMESPACE"] if all_namespaces else []
    columns += ["NAME", "PHASE", "VERDICT", "MATCH", "COMPARED", "MISMATCHES", "STARTED", "COMPLETED", "AGE"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    for obj in objs:
        meta, status = obj.get("metadata") or {}, status_of(ShadowRunStatus, obj)
        decisions = status.decisions
        row: list[RenderableType] = [meta.get("namespace", "")] if all_namespaces else []
        row += [
            meta.get("name", ""),
            styled(status.phase or "Pending", PHASE_STYLE),
            styled(status.verdict, VERDICT_STYLE),
            percent(decisions.match_rate, 2) if decisions else DASH,
            str(decisions.compared) if decisions else DASH,
            mismatches_text(decisions.mismatches) if decisions else DASH,
            relative(status.started_at, now),
            relative(status.completed_at, now),
            age(meta.get("creationTimestamp"), now),
        ]
        table.add_row(*row)
    return table


def report_config_map(obj: dict[str, Any]) -> str:
    """Name of the ConfigMap holding the report: `status.report`, default `<name>-report`."""
    status = status_of(ShadowRunStatus, obj)
    return status.report or f"{(obj.get('metadata') or {}).get('name', '')}-report"
