"""Small pure formatting helpers shared by the renderers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.text import Text

from strategy_rollouts.read.views import DASH

RESULT_MARK = {"Pass": "✓", "Fail": "✗", "Inconclusive": "?", "Error": "!", "Rejected": "✋", "Undecided": "…"}
RESULT_STYLE = {
    "Pass": "green",
    "Fail": "red",
    "Inconclusive": "yellow",
    "Error": "red",
    "Rejected": "yellow",
    "Undecided": "cyan",
}
PHASE_STYLE = {
    "Succeeded": "green",
    "Completed": "green",
    "Progressing": "cyan",
    "Running": "cyan",
    "Scheduled": "cyan",
    "Paused": "yellow",
    "Pending": "dim",
    "RolledBack": "red",
    "Invalid": "red",
    "Suspended": "yellow",
}
LEVEL_STYLE = {
    "Excellent": "green",
    "Good": "green",
    "Warning": "yellow",
    "Critical": "red",
    "Emergency": "bold red",
    "Unknown": "dim",
}
VERDICT_STYLE = {"Pass": "green", "Hold": "yellow", "Fail": "red"}


def parse_time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """kubectl-style age: 45s, 12m, 3h, 2d (`-` when unknown)."""
    then = parse_time(value)
    if then is None:
        return DASH
    seconds = max(0, int((now - then).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def relative(value: Any, now: datetime) -> str:
    """`3m ago` / `in 2h` (`-` when unknown)."""
    then = parse_time(value)
    if then is None:
        return DASH
    if then <= now:
        return f"{age(then, now)} ago"
    return f"in {age(now, then)}"


def num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return DASH
    if value != value:  # NaN
        return "NaN"
    return f"{value:.{digits}f}"


def percent(value: float | None, digits: int = 1) -> str:
    """A 0..1 ratio as a percentage."""
    return DASH if value is None else f"{value * 100:.{digits}f}%"


def styled(text: str | None, styles: dict[str, str]) -> Text:
    """`text` styled by its value (phase, level, verdict); `-` when None."""
    if text is None:
        return Text(DASH, style="dim")
    return Text(text, style=styles.get(text, ""))
