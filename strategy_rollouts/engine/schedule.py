"""Cron scheduling for ParityCheck runs (croniter does the cron math; this module adds time zones,
validation and the once-only catch-up after an outage).

Time zones: slots are computed on the wall clock of `timeZone`. A wall time skipped by a DST jump
forward runs at the first instant after the gap (02:30 -> 03:00); a wall time repeated by a jump
back is two distinct instants and croniter yields both (the same as an hourly schedule would).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, CroniterError, croniter

DEFAULT_TZ: Final = "UTC"
# The macros Kubernetes CronJob accepts; croniter's extra fields (seconds, year) are not allowed.
MACROS: Final = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})
# A run this much after its slot is a catch-up run (operator was down), not a punctual one.
DEFAULT_GRACE: Final = timedelta(minutes=5)
_PROBE: Final = datetime(2000, 1, 1, tzinfo=UTC)  # any instant, to check that a schedule ever fires


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value.isoformat()}")
    return value


def _zone(tz: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz or DEFAULT_TZ)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timeZone: unknown time zone {tz!r}") from None


def next_run(schedule: str, tz: str, after: datetime) -> datetime:
    """First slot strictly after `after`, in UTC. ValueError when schedule or tz is invalid."""
    start = _aware(after, "after").astimezone(_zone(tz))
    try:
        slot = croniter(schedule.strip(), start).get_next(datetime)
    except (CroniterError, ValueError, KeyError) as exc:
        raise ValueError(f"schedule: {schedule!r} is not a valid cron expression ({exc})") from None
    assert isinstance(slot, datetime)
    return slot.astimezone(UTC)


def validate_schedule(schedule: str, tz: str) -> str | None:
    """Message naming the problem (for InvalidSpec), or None when the schedule is usable."""
    expr = schedule.strip()
    if not expr.startswith("@") and len(expr.split()) != 5:
        return f"schedule: {schedule!r} must have 5 fields (minute hour day-of-month month day-of-week)"
    if expr.startswith("@") and expr not in MACROS:
        return f"schedule: unknown macro {expr!r}; allowed: {', '.join(sorted(MACROS))}"
    if not croniter.is_valid(expr):
        return f"schedule: {schedule!r} is not a valid cron expression"
    try:
        _zone(tz)
    except ValueError as exc:
        return str(exc)
    try:
        croniter(expr, _PROBE).get_next(datetime)
    except CroniterBadDateError:
        return f"schedule: {schedule!r} never fires (no such date)"
    return None


@dataclass(frozen=True, slots=True)
class RunDecision:
    run_now: bool
    catch_up: bool  # the due slot was missed (operator down): this one run stands for all missed slots
    next_run_at: datetime  # the next slot after the run that happens now (or the pending one)


def due_runs(
    schedule: str,
    tz: str,
    last_run_at: datetime | None,
    created_at: datetime,
    now: datetime,
    *,
    grace: timedelta = DEFAULT_GRACE,
) -> RunDecision:
    """Whether a scheduled run is due at `now`.

    However many slots passed since the last run (or creation), at most ONE run is due; the caller
    then records `last_run_at = now`, which moves the next slot past `now`. Manual runs are the
    caller's business (recording them as `last_run_at` too is fine: it does not skip a later slot).
    """
    now = _aware(now, "now")
    since = _aware(last_run_at or created_at, "last_run_at" if last_run_at else "created_at")
    slot = next_run(schedule, tz, since)
    if slot > now:
        return RunDecision(run_now=False, catch_up=False, next_run_at=slot)
    return RunDecision(run_now=True, catch_up=now - slot > grace, next_run_at=next_run(schedule, tz, now))
