"""Market hours and freeze windows, pure: may an object make progress now, and how much trading time passed.

The calendar is an input (`Calendar`): the operator builds one from `exchange_calendars`
(operator/checks/calendars.py), tests build the same or a `TwentyFourSeven`. Everything here takes `now`.
A calendar is a sorted list of open intervals (a lunch break splits a session in two), so trading
time is a prefix sum and every question is a binary search.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.market import TWENTY_FOUR_SEVEN, FreezeWindow, MarketSpec, MarketStatus
from strategy_rollouts.engine import schedule
from strategy_rollouts.engine.gates import Measurement

ZERO = timedelta(0)
# Back-to-back windows (one starts where another ends) hold as one; more links than this are a loop.
_CHAIN_LIMIT = 16


class Calendar(Protocol):
    """What the engines ask of an exchange's trading hours."""

    @property
    def name(self) -> str: ...

    def is_open(self, now: datetime) -> bool: ...

    def last_open(self, now: datetime) -> datetime | None:
        """Start of the open interval holding `now` (None: closed, or a market that never opens/closes)."""
        ...

    def next_open(self, now: datetime) -> datetime | None:
        """First open strictly after `now` (None: none known)."""
        ...

    def next_close(self, now: datetime) -> datetime | None:
        """End of the open interval holding `now`, else of the next one (None: never closes / unknown)."""
        ...

    def trading_time_between(self, a: datetime, b: datetime) -> timedelta: ...

    def add_trading_time(self, start: datetime, duration: timedelta) -> datetime | None:
        """The instant `duration` of trading time after `start` (None: beyond what the calendar knows)."""
        ...


@dataclass(frozen=True)
class TwentyFourSeven:
    """Always open: trading time is wall time."""

    name: str = TWENTY_FOUR_SEVEN

    def is_open(self, now: datetime) -> bool:
        return True

    def last_open(self, now: datetime) -> datetime | None:
        return None

    def next_open(self, now: datetime) -> datetime | None:
        return None

    def next_close(self, now: datetime) -> datetime | None:
        return None

    def trading_time_between(self, a: datetime, b: datetime) -> timedelta:
        return max(b - a, ZERO)

    def add_trading_time(self, start: datetime, duration: timedelta) -> datetime | None:
        return start + max(duration, ZERO)


@dataclass(frozen=True)
class Sessions:
    """A calendar as sorted, disjoint open intervals `[open, close)`, known between `covers` bounds."""

    name: str
    intervals: Sequence[tuple[datetime, datetime]]
    opens: list[datetime] = field(init=False, repr=False)
    closes: list[datetime] = field(init=False, repr=False)
    cumulative: list[timedelta] = field(init=False, repr=False)  # open time before interval i

    def __post_init__(self) -> None:
        opens = [a for a, _ in self.intervals]
        closes = [b for _, b in self.intervals]
        cumulative = [ZERO]
        for a, b in self.intervals:
            cumulative.append(cumulative[-1] + (b - a))
        object.__setattr__(self, "opens", opens)
        object.__setattr__(self, "closes", closes)
        object.__setattr__(self, "cumulative", cumulative)

    def _index(self, now: datetime) -> int:
        """Index of the last interval opening at or before `now` (-1: none)."""
        return bisect.bisect_right(self.opens, now) - 1

    def is_open(self, now: datetime) -> bool:
        i = self._index(now)
        return i >= 0 and now < self.closes[i]

    def last_open(self, now: datetime) -> datetime | None:
        i = self._index(now)
        return self.opens[i] if i >= 0 and now < self.closes[i] else None

    def next_open(self, now: datetime) -> datetime | None:
        i = self._index(now) + 1
        return self.opens[i] if i < len(self.opens) else None

    def next_close(self, now: datetime) -> datetime | None:
        i = self._index(now)
        if i >= 0 and now < self.closes[i]:
            return self.closes[i]
        return self.closes[i + 1] if i + 1 < len(self.closes) else None

    def _elapsed(self, t: datetime) -> timedelta:
        """Open time from the first known interval up to `t`."""
        i = self._index(t)
        if i < 0:
            return ZERO
        return self.cumulative[i] + min(t, self.closes[i]) - self.opens[i]

    def trading_time_between(self, a: datetime, b: datetime) -> timedelta:
        return max(self._elapsed(b) - self._elapsed(a), ZERO)

    def add_trading_time(self, start: datetime, duration: timedelta) -> datetime | None:
        if duration <= ZERO:
            return start
        target = self._elapsed(start) + duration
        # First interval whose end reaches the target.
        j = bisect.bisect_left(self.cumulative, target, lo=1) - 1
        if j >= len(self.intervals):
            return None
        return self.opens[j] + (target - self.cumulative[j])

    def covers(self, start: datetime, end: datetime) -> bool:
        """Do the known intervals reach from before `start` to after `end`?"""
        return bool(self.opens) and self.opens[0] <= start and self.closes[-1] >= end

    def shortest_open(self) -> timedelta | None:
        """Shortest open interval (half-days, lunch-split halves): avoidOpenClose must fit in it."""
        return min((b - a for a, b in self.intervals), default=None)


def resolve(market_calendar: str | None, given: Calendar | None) -> Calendar | None:
    """The calendar to use: the operator's, or 24/7 built here (None: a named calendar was not provided)."""
    if given is not None:
        return given
    if market_calendar is None or market_calendar == TWENTY_FOUR_SEVEN:
        return TwentyFourSeven()
    return None


# ---------------------------------------------------------------------------------------- freeze windows
@dataclass(frozen=True)
class ActiveWindow:
    name: str
    end: datetime


def occurrence(window: FreezeWindow, now: datetime) -> tuple[datetime, datetime] | None:
    """The [start, end) of `window` holding `now`, if any."""
    if window.start is not None and window.end is not None:
        start, end = _utc(window.start), _utc(window.end)
        return (start, end) if start <= now < end else None
    if window.schedule is None or window.duration is None:
        return None
    local = now.astimezone(ZoneInfo(window.time_zone))
    # +1us: croniter's get_prev from an exact slot returns the slot before it.
    prev = croniter(window.schedule.strip(), local + timedelta(microseconds=1)).get_prev(datetime)
    assert isinstance(prev, datetime)
    start = prev.astimezone(UTC)
    end = start + parse_duration(window.duration)
    return (start, end) if start <= now < end else None


def active_window(windows: Sequence[FreezeWindow], now: datetime) -> ActiveWindow | None:
    """The window holding `now` and when the freeze really ends (overlapping/back-to-back windows chain)."""
    first: str | None = None
    until = now
    for _ in range(_CHAIN_LIMIT):
        held = [(w.name, occ[1]) for w in windows if (occ := occurrence(w, until)) is not None]
        if not held:
            break
        if first is None:
            first = max(held, key=lambda h: h[1])[0]
        until = max(end for _, end in held)
    return ActiveWindow(first, until) if first is not None else None


def next_window_start(windows: Sequence[FreezeWindow], now: datetime) -> datetime | None:
    starts: list[datetime] = []
    for w in windows:
        if w.start is not None and w.start > now:
            starts.append(_utc(w.start))
        elif w.schedule is not None:
            starts.append(schedule.next_run(w.schedule, w.time_zone, now))
    return min(starts, default=None)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# ------------------------------------------------------------------------------------------ the question
@dataclass(frozen=True)
class Hold:
    """Progress is not allowed now: why, and when to look again."""

    reason: Literal["Frozen", "MarketClosed"]
    message: str
    until: datetime | None
    window: str | None = None


def stamp(at: datetime | None) -> str:
    """Short UTC time for messages and the printer column: `Mon 14:30Z`."""
    return "unknown" if at is None else at.astimezone(UTC).strftime("%a %H:%MZ")


def advance_allowed(
    market: MarketSpec | None, windows: Sequence[FreezeWindow], calendar: Calendar, now: datetime
) -> Hold | None:
    """None when the object may make progress now, else the Hold (Frozen wins over MarketClosed)."""
    active = active_window(windows, now)
    if active is not None:
        return Hold(
            "Frozen",
            f"frozen by window {active.name} until {active.end.isoformat()}",
            active.end,
            active.name,
        )
    if market is None or market.advance != "whenOpen":
        return None
    name = calendar.name
    if not calendar.is_open(now):
        opens = calendar.next_open(now)
        margin = _margin(market)
        resume = opens + margin if opens is not None else None
        when = f"opens {opens.isoformat()}" if opens is not None else "no next open known"
        return Hold("MarketClosed", f"{name} is closed; {when}", resume)
    margin = _margin(market)
    if margin > ZERO:
        opened, closes = calendar.last_open(now), calendar.next_close(now)
        if opened is not None and now < opened + margin:
            resume = opened + margin
            return Hold(
                "MarketClosed", f"within {market.avoid_open_close} of the {name} open; continues at {resume}", resume
            )
        if closes is not None and now >= closes - margin:
            opens = calendar.next_open(now)
            resume = opens + margin if opens is not None else None
            return Hold(
                "MarketClosed",
                f"within {market.avoid_open_close} of the {name} close; continues at {resume}",
                resume,
            )
    return None


def _margin(market: MarketSpec) -> timedelta:
    return parse_duration(market.avoid_open_close) if market.avoid_open_close else ZERO


def closed(market: MarketSpec | None, calendar: Calendar, now: datetime) -> bool:
    """Is the object's market closed now (no market: never)?"""
    return market is not None and not calendar.is_open(now)


def deadline(count_time: str, calendar: Calendar, start: datetime, duration: timedelta) -> datetime | None:
    """When `duration` from `start` is over: wall time, or trading time (None: beyond the calendar)."""
    if count_time != "trading":
        return start + duration
    return calendar.add_trading_time(start, duration)


def status(
    market: MarketSpec | None, windows: Sequence[FreezeWindow], calendar: Calendar, now: datetime
) -> MarketStatus | None:
    """status.market, or None for an object without market or freeze windows."""
    if market is None and not windows:
        return None
    active = active_window(windows, now)
    is_open = calendar.is_open(now) if market is not None else None
    next_open = calendar.next_open(now) if market is not None else None
    next_close = calendar.next_close(now) if market is not None else None
    if active is not None:
        summary = f"frozen: {active.name}"
    elif is_open is False:
        summary = f"closed, opens {stamp(next_open)}" if next_open else "closed"
    else:
        summary = "open"
    return MarketStatus(
        open=is_open,
        next_open=next_open,
        next_close=next_close,
        frozen_by=active.name if active else None,
        frozen_until=active.end if active else None,
        summary=summary,
    )


def next_boundary(
    market: MarketSpec | None, windows: Sequence[FreezeWindow], calendar: Calendar, now: datetime
) -> datetime | None:
    """The next instant status.market changes (a window starts, the market opens or closes)."""
    times = [next_window_start(windows, now)]
    if market is not None:
        times += [calendar.next_open(now), calendar.next_close(now)]
    return min((t for t in times if t is not None), default=None)


# ------------------------------------------------------------------------------------------- validation
def market_errors(prefix: str, market: MarketSpec | None, windows: Sequence[FreezeWindow]) -> list[str]:
    """Checks that need no calendar (the operator checks the code and avoidOpenClose against sessions)."""
    errors: list[str] = []
    seen: set[str] = set()
    for i, w in enumerate(windows):
        where = f"{prefix}.freezeWindows[{i}]"
        if w.name in seen:
            errors.append(f"{where}.name: duplicate window name {w.name!r}")
        seen.add(w.name)
        try:
            ZoneInfo(w.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            errors.append(f"{where}.timeZone: unknown time zone {w.time_zone!r} (an IANA name like America/New_York)")
            continue
        absolute = w.start is not None or w.end is not None
        recurring = w.schedule is not None or w.duration is not None
        if absolute == recurring:
            errors.append(f"{where}: set either start and end, or schedule and duration")
            continue
        if absolute:
            if w.start is None or w.end is None:
                errors.append(f"{where}: start and end go together")
            elif _utc(w.end) <= _utc(w.start):
                errors.append(f"{where}.end: {w.end.isoformat()} is not after start {w.start.isoformat()}")
            continue
        if w.schedule is None or w.duration is None:
            errors.append(f"{where}: schedule and duration go together")
            continue
        problem = schedule.validate_schedule(w.schedule, w.time_zone)
        if problem is not None:
            errors.append(f"{where}.{problem}")
        if parse_duration(w.duration) <= ZERO:
            errors.append(f"{where}.duration: must be > 0")
    if market is not None and market.avoid_open_close and market.advance != "whenOpen":
        errors.append(f"{prefix}.market.avoidOpenClose: applies only with advance: whenOpen")
    return errors


def closed_result(prev: GateStatus | None, recorded: GateStatus, m: Measurement, calendar_name: str) -> GateStatus:
    """A gate measured while the market is closed: an empty result is not counted as inconclusive (no
    trading, no data) and stays Inconclusive, so it never counts as a pass. Pass and Fail stand, and so
    does an unreachable Prometheus (that is not the market's doing)."""
    if recorded.result != "Inconclusive" or not m.empty:
        return recorded
    return recorded.model_copy(
        update={
            "inconclusives": prev.inconclusives if prev else 0,
            "message": f"MarketClosed: {calendar_name} is closed ({recorded.message})",
        }
    )


def session_day(calendar: Calendar, at: datetime, time_zone: str) -> bool:
    """Is `at`'s date (in `time_zone`) a trading day: open at its start, or a session opens that day?"""
    zone = ZoneInfo(time_zone)
    start = at.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    end = (start + timedelta(days=1)).replace(tzinfo=zone)  # wall-clock midnight, across a DST change too
    if calendar.is_open(start):
        return True
    opens = calendar.next_open(start)
    return opens is not None and opens < end
