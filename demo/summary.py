"""Run the story's parts in order, time each, and sum them up in one table. A part that does not end as
expected (or raises) stops the story: the parts after it depend on it and are shown as skipped."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rich.console import Console
from rich.table import Table

from demo.story import Unexpected

W = TypeVar("W")
Part = tuple[str, str, Callable[[W], str]]  # name, what is expected, the part (returns what happened)


@dataclass(frozen=True)
class Outcome:
    name: str
    expected: str
    happened: str
    seconds: float
    ok: bool | None  # None: skipped


def run_parts(world: W, parts: Sequence[Part[W]], console: Console) -> list[Outcome]:
    outcomes: list[Outcome] = []
    for name, expected, part in parts:
        failed = next((o.name for o in outcomes if o.ok is False), None)
        if failed is not None:
            outcomes.append(Outcome(name, expected, f"skipped: {failed} did not end as expected", 0, None))
            continue
        started = time.monotonic()
        try:
            happened, ok = part(world), True
        except Unexpected as exc:
            happened, ok = str(exc), False
        except Exception as exc:  # a timeout or a failing command: shown in the summary, with where
            console.print(traceback.format_exc(), markup=False, highlight=False)
            happened, ok = f"{type(exc).__name__}: {exc}", False
        outcomes.append(Outcome(name, expected, happened, time.monotonic() - started, ok))
    return outcomes


def summary_table(outcomes: Sequence[Outcome], total_seconds: float) -> Table:
    table = Table(title="make demo", title_justify="left", header_style="bold")
    for column in ("PART", "EXPECTED", "WHAT HAPPENED", "TIME", ""):
        table.add_column(column, overflow="fold")
    for o in outcomes:
        mark = {True: "[green]✓[/]", False: "[red]✗[/]", None: "[dim]-[/]"}[o.ok]
        table.add_row(o.name, o.expected, o.happened, f"{o.seconds:.0f}s", mark)
    table.add_row("[bold]total[/]", "", "", f"[bold]{total_seconds:.0f}s[/]", "")
    return table
