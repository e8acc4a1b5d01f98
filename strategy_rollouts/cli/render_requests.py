"""Pure renderers for requests (any kind): pending ones oldest first, then the last handled ones."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.table import Table
from rich.text import Text

from strategy_rollouts.cli.fmt import relative
from strategy_rollouts.read.requests import requests_of
from strategy_rollouts.read.views import DASH

OUTCOME_STYLE = {"Applied": "green", "Rejected": "red", "Superseded": "yellow"}
SHOWN_HANDLED = 5


def requests_cell(obj: dict[str, Any]) -> Text:
    """`get` column: `2 pending`, else the last outcome (`abort Applied (alice)`), else `-`."""
    reqs = requests_of(obj)
    if reqs.pending:
        return Text(f"{len(reqs.pending)} pending", style="yellow")
    if reqs.handled:
        last = reqs.handled[-1]
        text = Text(f"{last.action} ")
        text.append(last.outcome, style=OUTCOME_STYLE.get(last.outcome, ""))
        return text.append(f" ({last.by})")
    return Text(DASH)


def requests_table(obj: dict[str, Any], now: datetime) -> Table | None:
    """`status` section: every pending request, then the last handled ones newest first; None if none."""
    reqs = requests_of(obj)
    if not reqs.pending and not reqs.handled:
        return None
    table = Table(title="Requests", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("WHEN", "ACTION", "BY", "OUTCOME", "REASON", "MESSAGE", "ID"):
        table.add_column(column)
    for id_, req in reqs.pending:
        by = req.by + (f" for {req.source}" if req.source else "")
        table.add_row(relative(req.at, now), req.action, by, Text("Pending", style="yellow"), req.reason or "", "", id_)
    for entry in reversed(reqs.handled[-SHOWN_HANDLED:]):
        by = entry.by + (f" for {entry.source}" if entry.source else "")
        table.add_row(
            relative(entry.at, now),
            entry.action,
            by,
            Text(entry.outcome, style=OUTCOME_STYLE.get(entry.outcome, "")),
            entry.reason or "",
            entry.message,
            entry.id,
        )
    return table
