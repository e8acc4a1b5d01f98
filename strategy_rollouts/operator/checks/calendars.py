"""Exchange calendars for the engines: `exchange_calendars` schedules turned into pure `Sessions`.

The library (and pandas) is imported only when an object names a calendar, and each calendar is
built once per process (Context.calendars) over a window around now, rebuilt when now nears its end.
Holidays, early closes and lunch breaks all come from the library's schedule.
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from strategy_rollouts.api.durations import format_duration, parse_duration
from strategy_rollouts.api.market import TWENTY_FOUR_SEVEN
from strategy_rollouts.engine.market import Calendar, Sessions, TwentyFourSeven

# How much history and future a built calendar covers, and how close to its end it is rebuilt.
BEHIND = timedelta(days=60)
AHEAD = timedelta(days=730)
REBUILD_MARGIN = timedelta(days=180)
EXAMPLES = ("XNYS", "XNAS", "XLON", "XTKS", "XHKG", "XFRA", "CMES", TWENTY_FOUR_SEVEN)


class UnknownCalendar(ValueError):
    """Not an exchange_calendars code; the message lists a few valid ones."""


def build(code: str, start: datetime, end: datetime) -> Sessions:
    """The regular sessions of `code` between `start` and `end` (UTC), lunch breaks split out."""
    import exchange_calendars  # heavy (pandas): only for objects that name a calendar
    from exchange_calendars.errors import InvalidCalendarName

    with warnings.catch_warnings():
        # exchange_calendars 4.x uses pandas APIs that pandas 3 deprecates (Pandas4Warning); not ours to fix.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            cal = exchange_calendars.get_calendar(code, start=start.strftime("%Y-%m-%d"), end=end.strftime("%Y-%m-%d"))
        except InvalidCalendarName:
            raise UnknownCalendar(f"unknown calendar {code!r}; valid codes include {', '.join(EXAMPLES)}") from None
        sched = cal.schedule
    intervals: list[tuple[datetime, datetime]] = []
    for row in sched.itertuples(index=False):
        opens, closes = _dt(row.open), _dt(row.close)
        brk, resume = _dt(row.break_start), _dt(row.break_end)
        if brk is not None and resume is not None and opens is not None and closes is not None:
            intervals += [(opens, brk), (resume, closes)]
        elif opens is not None and closes is not None:
            intervals.append((opens, closes))
    return Sessions(code, intervals)


def _dt(value: Any) -> datetime | None:
    """A pandas Timestamp (UTC) as a datetime; NaT (no break that day) as None."""
    if value is None or value != value:  # NaT != NaT
        return None
    converted = value.to_pydatetime()
    assert isinstance(converted, datetime)
    return converted


@dataclass
class Calendars:
    """Built calendars by code (one Context field); never the truth, only a cache of the library."""

    built: dict[str, Sessions] = field(default_factory=dict)
    unknown: dict[str, str] = field(default_factory=dict)  # code -> message

    def ready(self, code: str, now: datetime) -> bool:
        """Is `code` answerable from memory (no build needed)?"""
        cached = self.built.get(code)
        fresh = cached is not None and cached.covers(now - timedelta(days=7), now + REBUILD_MARGIN)
        return code == TWENTY_FOUR_SEVEN or code in self.unknown or fresh

    def get(self, code: str, now: datetime) -> Calendar:
        """The calendar for `code`, covering `now`; UnknownCalendar for a code the library lacks."""
        if code == TWENTY_FOUR_SEVEN:
            return TwentyFourSeven()
        if code in self.unknown:
            raise UnknownCalendar(self.unknown[code])
        cached = self.built.get(code)
        if cached is not None and self.ready(code, now):
            return cached
        try:
            sessions = build(code, now - BEHIND, now + AHEAD)
        except UnknownCalendar as exc:
            self.unknown[code] = str(exc)
            raise
        self.built[code] = sessions
        return sessions


async def market_calendar(
    calendars: Calendars, field_name: str, code: str, avoid_open_close: str | None, now: datetime
) -> tuple[Calendar | None, str | None]:
    """calendar_for, with a first build (pandas, a few hundred ms) off the event loop."""
    if calendars.ready(code, now):
        return calendar_for(calendars, field_name, code, avoid_open_close, now)
    return await asyncio.to_thread(calendar_for, calendars, field_name, code, avoid_open_close, now)


def calendar_for(
    calendars: Calendars, field_name: str, code: str, avoid_open_close: str | None, now: datetime
) -> tuple[Calendar | None, str | None]:
    """(calendar, None) or (None, a field-named InvalidSpec message)."""
    try:
        calendar = calendars.get(code, now)
    except UnknownCalendar as exc:
        return None, f"{field_name}.calendar: {exc}"
    if avoid_open_close and isinstance(calendar, Sessions):
        margin = parse_duration(avoid_open_close)
        shortest = calendar.shortest_open()
        if shortest is not None and 2 * margin >= shortest:
            return None, (
                f"{field_name}.avoidOpenClose: {avoid_open_close} at both ends leaves no time in {code}'s"
                f" shortest session ({format_duration(shortest)})"
            )
    return calendar, None
