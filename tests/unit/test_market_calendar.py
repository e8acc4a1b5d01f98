"""Trading hours from the real exchange_calendars library, with a fake clock (every `now` is an argument)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.market import FreezeWindow, MarketSpec
from strategy_rollouts.engine import market
from strategy_rollouts.engine.market import Sessions, TwentyFourSeven
from strategy_rollouts.operator.checks.calendars import Calendars, calendar_for

NY = ZoneInfo("America/New_York")
CALENDARS = Calendars()  # one per module: building a calendar takes a few hundred ms
BUILT_AT = datetime(2026, 12, 1, tzinfo=UTC)


def cal(code: str) -> Sessions:
    built = CALENDARS.get(code, BUILT_AT)
    assert isinstance(built, Sessions)
    return built


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def test_a_48h_trading_time_soak_started_friday_15h_new_york_ends_wednesday_after_next_at_11h() -> None:
    start = datetime(2026, 12, 4, 15, 0, tzinfo=NY)  # 1h of Friday's session left
    end = cal("XNYS").add_trading_time(start, timedelta(hours=48))
    # 1h Fri + 7 full sessions of 6h30 (Mon 7 .. Tue 15) = 46h30, then 1h30 of Wed 16 from 09:30.
    assert end == datetime(2026, 12, 16, 11, 0, tzinfo=NY)
    assert cal("XNYS").trading_time_between(start, end) == timedelta(hours=48)
    # Wall time would have ended on Sunday.
    assert end - start > timedelta(days=11)


def test_christmas_and_the_christmas_eve_early_close_are_honoured() -> None:
    nyse = cal("XNYS")
    eve = datetime(2026, 12, 24, 12, 30, tzinfo=NY)
    assert nyse.next_close(eve) == datetime(2026, 12, 24, 13, 0, tzinfo=NY)  # early close
    assert not nyse.is_open(datetime(2026, 12, 25, 11, 0, tzinfo=NY))  # Christmas
    assert nyse.next_open(eve) == datetime(2026, 12, 28, 9, 30, tzinfo=NY)
    # 30 minutes on the 24th, then the rest after the holiday and the weekend.
    assert nyse.add_trading_time(eve, timedelta(hours=1)) == datetime(2026, 12, 28, 10, 0, tzinfo=NY)


def test_dst_change_moves_the_new_york_open_by_an_hour_in_utc() -> None:
    nyse = cal("XNYS")
    assert nyse.next_open(utc(2027, 3, 12, 0)) == utc(2027, 3, 12, 14, 30)  # EST: 09:30 = 14:30Z
    assert nyse.next_open(utc(2027, 3, 13, 0)) == utc(2027, 3, 15, 13, 30)  # EDT after 14 March: 13:30Z
    assert not nyse.is_open(utc(2027, 3, 12, 14, 0))
    assert nyse.is_open(utc(2027, 3, 15, 14, 0))
    # 1h from the Friday close minus 30m: 30m on Friday, 30m after Monday's (earlier in UTC) open.
    assert nyse.add_trading_time(utc(2027, 3, 12, 20, 30), timedelta(hours=1)) == utc(2027, 3, 15, 14, 0)


def test_london_christmas_eve_half_day_then_christmas_and_boxing_day() -> None:
    lse = cal("XLON")
    assert lse.next_close(utc(2026, 12, 24, 9)) == utc(2026, 12, 24, 12, 30)
    assert lse.next_open(utc(2026, 12, 24, 13)) == utc(2026, 12, 29, 8, 0)
    assert lse.trading_time_between(utc(2026, 12, 24, 0), utc(2026, 12, 29, 0)) == timedelta(hours=4, minutes=30)


def test_tokyo_lunch_break_is_closed_and_not_counted() -> None:
    tse = cal("XTKS")
    assert tse.is_open(utc(2026, 12, 2, 2, 0))
    assert not tse.is_open(utc(2026, 12, 2, 2, 45))  # 11:45 JST, lunch
    assert tse.next_open(utc(2026, 12, 2, 2, 45)) == utc(2026, 12, 2, 3, 30)
    assert tse.last_open(utc(2026, 12, 2, 4, 0)) == utc(2026, 12, 2, 3, 30)
    assert tse.add_trading_time(utc(2026, 12, 2, 0, 0), timedelta(hours=3)) == utc(2026, 12, 2, 4, 0)
    assert tse.trading_time_between(utc(2026, 12, 2, 0), utc(2026, 12, 3, 0)) == timedelta(hours=5, minutes=30)


def test_twenty_four_seven_is_wall_time_and_never_closes() -> None:
    always = CALENDARS.get("24/7", BUILT_AT)
    assert isinstance(always, TwentyFourSeven)
    now = utc(2026, 12, 5, 3)  # a Saturday night
    assert always.is_open(now) and always.next_open(now) is None and always.next_close(now) is None
    assert always.add_trading_time(now, timedelta(hours=48)) == now + timedelta(hours=48)
    assert market.advance_allowed(MarketSpec(calendar="24/7", advance="whenOpen"), [], always, now) is None


def test_unknown_calendar_lists_valid_codes_and_too_long_avoid_open_close_is_invalid() -> None:
    calendar, error = calendar_for(CALENDARS, "spec.market", "NOPE", None, BUILT_AT)
    assert calendar is None and error is not None
    assert error.startswith("spec.market.calendar: unknown calendar 'NOPE'") and "XNYS" in error
    calendar, error = calendar_for(CALENDARS, "spec.market", "XNYS", "2h", BUILT_AT)
    # The shortest NYSE session in view is a 3h30 half day: 2h at both ends leaves nothing.
    assert calendar is None and error is not None and error.startswith("spec.market.avoidOpenClose:")
    calendar, error = calendar_for(CALENDARS, "spec.market", "XNYS", "15m", BUILT_AT)
    assert calendar is not None and error is None


def test_when_open_holds_outside_the_session_and_near_open_and_close() -> None:
    nyse = cal("XNYS")
    spec = MarketSpec(calendar="XNYS", advance="whenOpen", avoidOpenClose="15m")
    saturday = utc(2026, 12, 5, 16)
    hold = market.advance_allowed(spec, [], nyse, saturday)
    assert hold is not None and hold.reason == "MarketClosed" and "opens 2026-12-07T14:30" in hold.message
    assert hold.until == utc(2026, 12, 7, 14, 45)
    near_open = market.advance_allowed(spec, [], nyse, utc(2026, 12, 7, 14, 40))
    assert near_open is not None and near_open.until == utc(2026, 12, 7, 14, 45) and "open" in near_open.message
    assert market.advance_allowed(spec, [], nyse, utc(2026, 12, 7, 14, 45)) is None
    near_close = market.advance_allowed(spec, [], nyse, utc(2026, 12, 7, 20, 50))
    assert near_close is not None and near_close.until == utc(2026, 12, 8, 14, 45)
    always = MarketSpec(calendar="XNYS")
    assert market.advance_allowed(always, [], nyse, saturday) is None  # advance: always


def test_recurring_freeze_window_in_new_york_time_and_its_status() -> None:
    nyse = cal("XNYS")
    window = FreezeWindow(name="close-auction", schedule="50 15 * * 1-5", duration="20m", timeZone="America/New_York")
    inside = datetime(2026, 12, 7, 15, 55, tzinfo=NY)
    hold = market.advance_allowed(None, [window], nyse, inside)
    assert hold is not None and hold.reason == "Frozen" and hold.window == "close-auction"
    assert hold.until == datetime(2026, 12, 7, 16, 10, tzinfo=NY)
    assert "close-auction" in hold.message
    assert market.advance_allowed(None, [window], nyse, datetime(2026, 12, 7, 16, 10, tzinfo=NY)) is None
    assert market.advance_allowed(None, [window], nyse, datetime(2026, 12, 5, 15, 55, tzinfo=NY)) is None  # Sat
    spec = MarketSpec(calendar="XNYS")
    shown = market.status(spec, [window], nyse, inside)
    assert shown is not None and shown.summary == "frozen: close-auction" and shown.frozen_by == "close-auction"
    closed = market.status(spec, [window], nyse, utc(2026, 12, 5, 16))
    assert closed is not None and closed.summary == "closed, opens Mon 14:30Z" and closed.open is False


def test_back_to_back_windows_hold_until_the_last_one_ends() -> None:
    a = FreezeWindow(name="a", start=utc(2026, 12, 16, 18), end=utc(2026, 12, 16, 19))
    b = FreezeWindow(name="b", start=utc(2026, 12, 16, 19), end=utc(2026, 12, 16, 20))
    hold = market.advance_allowed(None, [a, b], TwentyFourSeven(), utc(2026, 12, 16, 18, 30))
    assert hold is not None and hold.until == utc(2026, 12, 16, 20) and hold.window == "a"


@pytest.mark.parametrize(
    ("window", "expected"),
    [
        ({"name": "w", "start": "2026-12-16T20:00:00Z", "end": "2026-12-16T18:00:00Z"}, "freezeWindows[0].end:"),
        ({"name": "w", "schedule": "61 * * * *", "duration": "5m"}, "freezeWindows[0].schedule:"),
        ({"name": "w", "schedule": "0 9 * * *", "duration": "5m", "timeZone": "Mars/Olympus"}, ".timeZone:"),
        ({"name": "w", "schedule": "0 9 * * *"}, "freezeWindows[0]: schedule and duration go together"),
    ],
)
def test_bad_windows_are_field_named(window: dict[str, str], expected: str) -> None:
    errors = market.market_errors("spec", None, [FreezeWindow.model_validate(window)])
    assert len(errors) == 1 and errors[0].startswith("spec.") and expected in errors[0], errors


MOMENTS = st.datetimes(min_value=datetime(2026, 11, 1), max_value=datetime(2027, 11, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=0)
)


@settings(max_examples=200, deadline=None)
@given(code=st.sampled_from(["XNYS", "XLON", "XTKS"]), times=st.lists(MOMENTS, min_size=3, max_size=3))
def test_property_trading_time_is_monotone_and_additive(code: str, times: list[datetime]) -> None:
    a, b, c = sorted(times)
    calendar = cal(code)
    ab, bc, ac = (calendar.trading_time_between(*pair) for pair in ((a, b), (b, c), (a, c)))
    assert ab + bc == ac
    assert timedelta(0) <= ab <= ac and ab <= b - a


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(["XNYS", "XLON", "XTKS"]),
    start=MOMENTS,
    minutes=st.integers(min_value=1, max_value=60 * 24 * 20),
)
def test_property_adding_trading_time_is_the_inverse_of_measuring_it(code: str, start: datetime, minutes: int) -> None:
    calendar = cal(code)
    end = calendar.add_trading_time(start, timedelta(minutes=minutes))
    assert end is not None and end > start
    assert calendar.trading_time_between(start, end) == timedelta(minutes=minutes)
    # It ends inside or at the end of a session, never in a closed gap.
    assert calendar.is_open(end) or calendar.is_open(end - timedelta(microseconds=1))
