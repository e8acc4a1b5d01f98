"""ParityCheck scheduling: next slots, time zones, validation, one catch-up run after an outage."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.engine.schedule import RunDecision, due_runs, next_run, validate_schedule

TWICE_DAILY = "0 6,18 * * *"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_next_runs_twice_daily() -> None:
    assert next_run(TWICE_DAILY, "UTC", utc(2024, 1, 1, 0, 0)) == utc(2024, 1, 1, 6, 0)
    assert next_run(TWICE_DAILY, "UTC", utc(2024, 1, 1, 6, 0)) == utc(2024, 1, 1, 18, 0)  # strictly after
    assert next_run(TWICE_DAILY, "UTC", utc(2024, 1, 1, 18, 0, 1)) == utc(2024, 1, 2, 6, 0)
    assert next_run(TWICE_DAILY, "UTC", utc(2024, 12, 31, 19, 0)) == utc(2025, 1, 1, 6, 0)


def test_next_run_in_time_zones_returns_utc() -> None:
    # 06:00 in Tokyo (UTC+9, no DST) is 21:00 UTC the day before.
    got = next_run(TWICE_DAILY, "Asia/Tokyo", utc(2024, 1, 1, 0, 0))
    assert got == utc(2024, 1, 1, 9, 0)  # 18:00 JST
    assert got.tzinfo == UTC
    # New York: 06:00 EST = 11:00 UTC in winter, 06:00 EDT = 10:00 UTC in summer.
    assert next_run(TWICE_DAILY, "America/New_York", utc(2024, 1, 15, 0, 0)) == utc(2024, 1, 15, 11, 0)
    assert next_run(TWICE_DAILY, "America/New_York", utc(2024, 7, 15, 0, 0)) == utc(2024, 7, 15, 10, 0)
    # An aware `after` in another zone is the same instant.
    after = datetime(2024, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Paris"))  # 00:00 UTC
    assert next_run(TWICE_DAILY, "UTC", after) == utc(2024, 1, 1, 6, 0)


def test_dst_gap_runs_at_the_first_instant_after_it() -> None:
    # 2024-03-10 02:30 does not exist in New York: the run happens at 03:00 EDT (07:00 UTC), once.
    assert next_run("30 2 * * *", "America/New_York", utc(2024, 3, 9, 12, 0)) == utc(2024, 3, 10, 7, 0)
    assert next_run("30 2 * * *", "America/New_York", utc(2024, 3, 10, 7, 0)) == utc(2024, 3, 11, 6, 30)


def test_next_run_rejects_naive_and_invalid_input() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        next_run(TWICE_DAILY, "UTC", datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="timeZone"):
        next_run(TWICE_DAILY, "Mars/Olympus", utc(2024, 1, 1))
    with pytest.raises(ValueError, match="schedule"):
        next_run("0 25 * * *", "UTC", utc(2024, 1, 1))


@pytest.mark.parametrize(
    ("schedule", "tz", "problem"),
    [
        (TWICE_DAILY, "UTC", None),
        ("@daily", "Europe/London", None),
        ("*/15 9-17 * * MON-FRI", "America/New_York", None),
        ("0 25 * * *", "UTC", "not a valid cron expression"),
        ("0 6 * *", "UTC", "must have 5 fields"),
        ("0 6 * * * *", "UTC", "must have 5 fields"),
        ("@reboot", "UTC", "unknown macro"),
        ("0 0 30 2 *", "UTC", "never fires"),
        (TWICE_DAILY, "Nowhere/City", "timeZone: unknown time zone 'Nowhere/City'"),
        (TWICE_DAILY, "../etc/passwd", "timeZone: unknown time zone"),
    ],
)
def test_validate_schedule(schedule: str, tz: str, problem: str | None) -> None:
    message = validate_schedule(schedule, tz)
    if problem is None:
        assert message is None
    else:
        assert message is not None and problem in message


CREATED = utc(2024, 1, 1, 0, 0)


def test_first_run_waits_for_the_first_slot_after_creation() -> None:
    d = due_runs(TWICE_DAILY, "UTC", None, CREATED, utc(2024, 1, 1, 5, 59))
    assert d == RunDecision(run_now=False, catch_up=False, next_run_at=utc(2024, 1, 1, 6, 0))
    d = due_runs(TWICE_DAILY, "UTC", None, CREATED, utc(2024, 1, 1, 6, 0, 30))
    assert d == RunDecision(run_now=True, catch_up=False, next_run_at=utc(2024, 1, 1, 18, 0))


def test_three_day_outage_yields_exactly_one_catch_up_run() -> None:
    last = utc(2024, 1, 1, 6, 0, 10)
    now = utc(2024, 1, 4, 9, 0)  # six slots missed
    d = due_runs(TWICE_DAILY, "UTC", last, CREATED, now)
    assert d == RunDecision(run_now=True, catch_up=True, next_run_at=utc(2024, 1, 4, 18, 0))
    # The caller records the run at `now`: nothing more is due until the next slot.
    after = due_runs(TWICE_DAILY, "UTC", now, CREATED, now + timedelta(seconds=30))
    assert after == RunDecision(run_now=False, catch_up=False, next_run_at=utc(2024, 1, 4, 18, 0))


@settings(max_examples=25, deadline=None)
@given(
    outage_minutes=st.integers(0, 10 * 24 * 60),
    poll_seconds=st.integers(300, 3600),
    tz=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
)
def test_polling_after_any_outage_runs_once_then_on_schedule(outage_minutes: int, poll_seconds: int, tz: str) -> None:
    """A timer polling every few seconds after an outage of any length: one run for the backlog,
    then exactly one per slot."""
    last = utc(2024, 1, 1, 12, 0)
    now = last_start(outage_minutes)
    end = now + timedelta(days=2)
    runs: list[datetime] = []
    while now < end:
        d = due_runs(TWICE_DAILY, tz, last, CREATED, now)
        if d.run_now:
            runs.append(now)
            last = now
        assert d.next_run_at > now
        now += timedelta(seconds=poll_seconds)
    first_slot = next_run(TWICE_DAILY, tz, utc(2024, 1, 1, 12, 0))
    if first_slot <= last_start(outage_minutes):  # slots were missed: caught up at once
        assert runs[0] == last_start(outage_minutes)
    for a, b in itertools.pairwise(runs):  # afterwards exactly one run per slot, punctual
        slot = next_run(TWICE_DAILY, tz, a)
        assert slot <= b < slot + timedelta(seconds=poll_seconds)


def last_start(outage_minutes: int) -> datetime:
    return utc(2024, 1, 1, 12, 0) + timedelta(minutes=outage_minutes)


def test_due_runs_requires_aware_times() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        due_runs(TWICE_DAILY, "UTC", None, CREATED, datetime(2024, 1, 2))
