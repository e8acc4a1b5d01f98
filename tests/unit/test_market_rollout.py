"""The rollout engine with market hours and freeze windows: a fake clock and the real XNYS calendar."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.rollout import Observations
from strategy_rollouts.operator.checks.calendars import Calendars
from tests.unit.rollout_sim import EXAMPLE, World, spec_from

CALENDARS = Calendars()
MONDAY_OPEN = datetime(2026, 12, 7, 14, 30, tzinfo=UTC)
SATURDAY = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)


@dataclasses.dataclass
class MarketWorld(World):
    """The simulation world plus the calendar the operator would pass."""

    calendar: Calendar | None = None
    unreachable: bool = False  # a missing value is Prometheus down, not an empty answer

    def observe(self) -> Observations:
        obs = super().observe()
        measured = {
            name: dataclasses.replace(m, empty=not self.unreachable) if m.value is None else m
            for name, m in obs.measurements.items()
        }
        return dataclasses.replace(obs, calendar=self.calendar, measurements=measured)

    def run_by_wakes(self, until: datetime, cap: timedelta = timedelta(minutes=10)) -> None:
        """Jump from wake-up to wake-up (as the operator's loop sleeps), at most `cap` at a time."""
        while self.now < until:
            decision = self.reconcile()
            wake = decision.wake_at or self.now + cap
            self.now = min(max(wake, self.now + timedelta(seconds=1)), self.now + cap)


def world(spec: StrategyRolloutSpec, now: datetime, code: str | None = "XNYS") -> MarketWorld:
    calendar = CALENDARS.get(code, now) if code else None
    return MarketWorld(spec, now=now, calendar=calendar)


def with_market(text: str = EXAMPLE, **overrides: Any) -> StrategyRolloutSpec:
    return spec_from(text, **overrides)


def cond(w: World, type_: str) -> str | None:
    return next((c.status for c in w.status.conditions if c.type == type_), None)


def freeze(start: datetime, minutes: int, name: str = "fomc") -> list[dict[str, str]]:
    end = start + timedelta(minutes=minutes)
    return [{"name": name, "start": start.isoformat(), "end": end.isoformat()}]


def test_freeze_window_holds_the_step_gates_keep_running_and_it_continues_after() -> None:
    now = MONDAY_OPEN + timedelta(hours=1)
    w = world(with_market(), now, None)
    w.run(40)
    step = w.status.step_index
    end = w.now + timedelta(minutes=30)
    w.spec = with_market(freezeWindows=freeze(w.now, 30))  # an edit mid-rollout applies at once
    started = w.status.started_at
    w.run(5)
    assert w.status.phase == "Paused" and w.status.reason == "Frozen"
    assert w.status.message == f"frozen by window fomc until {end.isoformat()}"
    assert cond(w, "Frozen") == "True"
    assert w.status.market is not None and w.status.market.frozen_by == "fomc"
    assert w.status.market.summary == "frozen: fomc"
    seen = w.status.gates[0].evaluated_at
    w.run(25 * 60)
    assert w.status.step_index == step and w.status.phase == "Paused"
    assert w.status.gates[0].evaluated_at is not None and seen is not None and w.status.gates[0].evaluated_at > seen
    assert w.status.gates[0].result == "Pass"
    w.run_until("Succeeded")
    assert w.status.started_at == started  # not restarted
    assert cond(w, "Frozen") == "False"
    assert [h.outcome for h in w.status.history] == ["Succeeded"]


def test_a_failing_gate_during_a_freeze_still_rolls_back_at_once() -> None:
    now = MONDAY_OPEN + timedelta(hours=1)
    w = world(with_market(freezeWindows=freeze(now + timedelta(seconds=60), 60)), now, None)
    w.run(90)
    assert w.status.reason == "Frozen"
    w.gate_values["tick-p95-ms"] = 999.0
    w.run(40)
    assert w.status.phase == "RolledBack" and "tick-p95-ms" in (w.status.message or "")


def test_a_promote_during_a_freeze_is_rejected_with_the_window() -> None:
    now = MONDAY_OPEN + timedelta(hours=1)
    w = world(with_market(freezeWindows=freeze(now + timedelta(seconds=30), 60)), now, None)
    w.run(60)
    w.request("p1", "promote", "alice")
    w.run(2)
    assert w.outcome("p1") == "Rejected"
    assert "fomc" in next(h.message for h in w.status.handled_requests if h.id == "p1")


def test_when_open_does_not_start_on_saturday_and_starts_after_monday_open_plus_margin() -> None:
    spec = with_market(market={"calendar": "XNYS", "advance": "whenOpen", "avoidOpenClose": "15m"})
    w = world(spec, SATURDAY)
    w.reconcile()
    assert w.status.phase == "Pending" and w.status.reason == "MarketClosed"
    assert "opens 2026-12-07T14:30" in (w.status.message or "")
    assert cond(w, "Frozen") == "True"
    assert w.status.market is not None and w.status.market.summary == "closed, opens Mon 14:30Z"
    w.run_by_wakes(MONDAY_OPEN + timedelta(minutes=14))
    assert w.status.phase == "Pending"
    w.run_by_wakes(MONDAY_OPEN + timedelta(minutes=16))
    assert w.status.phase == "Progressing" and w.status.started_at == MONDAY_OPEN + timedelta(minutes=15)
    assert w.status.market is not None and w.status.market.summary == "open"


def test_when_open_holds_a_step_at_the_close_and_a_failure_after_the_close_still_rolls_back() -> None:
    close = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    spec = with_market(market={"calendar": "XNYS", "advance": "whenOpen"})
    w = world(spec, close - timedelta(seconds=100))
    w.run(200)
    assert w.status.phase == "Paused" and w.status.reason == "MarketClosed"
    step = w.status.step_index
    w.run(600)
    assert w.status.step_index == step
    w.gate_values["tick-p95-ms"] = 999.0  # a value, not an empty result: it is judged
    w.run(40)
    assert w.status.phase == "RolledBack"


def test_empty_gates_while_closed_are_not_inconclusive_and_never_a_pass() -> None:
    spec = with_market(market={"calendar": "XNYS"})  # advance: always
    close = datetime(2026, 12, 7, 21, 0, tzinfo=UTC)
    w = world(spec, close - timedelta(minutes=5))
    w.run(60)
    step = w.status.step_index
    w.now = close + timedelta(seconds=1)
    w.gate_values["tick-p95-ms"] = None
    w.run(3600)
    gate = w.status.gates[0]
    assert gate.result == "Inconclusive" and gate.inconclusives == 0
    assert (gate.message or "").startswith("MarketClosed:")
    assert w.status.phase == "Progressing" and w.status.reason == "MarketClosed"
    assert w.status.step_index == step  # never counted as a pass
    # Prometheus unreachable is not the market's doing: it counts, closed or not.
    w.unreachable = True
    w.run(100)
    assert w.status.gates[0].inconclusives > 2 and w.status.reason == "Inconclusive"
    w.unreachable = False
    # The same emptiness in the session does count.
    w.now = MONDAY_OPEN + timedelta(days=1, hours=1)
    w.run(120)
    assert w.status.reason == "Inconclusive" and w.status.gates[0].inconclusives > 2


def test_trading_time_pause_started_friday_15h_new_york_ends_wednesday_after_next_at_11h() -> None:
    text = EXAMPLE.replace("interval: 30s", "interval: 10m").replace("handoff: 5s", "handoff: 1s")
    spec = with_market(
        text,
        market={"calendar": "XNYS", "countTime": "trading"},
        stages=[{"name": "prod", "steps": [{"setWeight": 10}, {"pause": {"duration": "48h"}}, {"setWeight": 100}]}],
    )
    friday = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # 15:00 New York
    w = world(spec, friday)
    w.run(30)
    assert w.status.step_index == 1
    paused_at = w.status.step_started_at
    assert paused_at is not None and paused_at - friday < timedelta(seconds=30)
    expected = datetime(2026, 12, 16, 16, 0, tzinfo=UTC) + (paused_at - friday)  # 11:00 New York
    assert (w.status.message or "").endswith(f"pause until {expected.isoformat()}")
    w.run_by_wakes(expected - timedelta(seconds=1))
    assert w.status.step_index == 1
    w.run_by_wakes(expected + timedelta(minutes=11))
    assert (w.status.step_index or 0) >= 2 or w.status.phase == "Succeeded"


def test_trading_time_min_duration_counts_only_sessions() -> None:
    spec = with_market(
        market={"calendar": "XNYS", "countTime": "trading"},
        stages=[{"name": "prod", "steps": [{"setWeight": 10}], "minDuration": "1h"}],
    )
    friday = datetime(2026, 12, 4, 20, 30, tzinfo=UTC)  # 30 minutes before the close
    w = world(spec, friday)
    w.run(60)
    assert w.status.reason == "MinDuration"
    started = w.status.stage_started_at
    assert started is not None
    assert (w.status.message or "").endswith((MONDAY_OPEN + (started - friday) + timedelta(minutes=30)).isoformat())


def test_a_named_calendar_the_operator_did_not_provide_is_invalid_not_24_7() -> None:
    w = world(with_market(market={"calendar": "XNYS"}), SATURDAY, None)
    w.reconcile()
    assert w.status.phase == "Invalid" and "spec.market.calendar" in (w.status.message or "")


def test_invalid_freeze_window_is_reported_and_nothing_starts() -> None:
    bad = [{"name": "w", "start": "2026-12-16T20:00:00Z", "end": "2026-12-16T18:00:00Z"}]
    w = world(with_market(freezeWindows=bad), SATURDAY, None)
    w.reconcile()
    assert w.status.phase == "Invalid" and "spec.freezeWindows[0].end" in (w.status.message or "")
    assert not w.scale_log


def test_no_market_no_frozen_condition_and_no_market_status() -> None:
    w = world(with_market(), SATURDAY, None)
    w.run(60)
    assert w.status.market is None and cond(w, "Frozen") is None


@settings(max_examples=15, deadline=None)
@given(
    offset=st.integers(min_value=0, max_value=300),
    seconds=st.integers(min_value=1, max_value=120),
    fail_after=st.integers(min_value=0, max_value=400),
)
def test_property_a_freeze_never_delays_a_rollback_and_nothing_moves_inside_it(
    offset: int, seconds: int, fail_after: int
) -> None:
    now = MONDAY_OPEN + timedelta(hours=1)
    start = now + timedelta(seconds=offset)
    end = start + timedelta(seconds=seconds)
    window = [{"name": "fomc", "start": start.isoformat(), "end": end.isoformat()}]
    w = world(with_market(freezeWindows=window), now, None)
    failed_at = now + timedelta(seconds=fail_after)
    active_since: datetime | None = None
    last = (w.status.stage_index, w.status.step_index)
    while w.status.phase not in ("RolledBack", "Succeeded"):
        if w.now >= failed_at:
            w.gate_values["tick-p95-ms"] = 999.0
        w.reconcile()
        if active_since is None and w.status.phase in ("Progressing", "Paused"):
            active_since = w.now
        position = (w.status.stage_index, w.status.step_index)
        if start <= w.now < end and w.status.phase != "RolledBack":
            assert position == last, (w.now, last, position)  # nothing starts or moves inside the window
            assert w.status.phase in ("Paused", "Pending") and w.status.reason == "Frozen"
        last = position
        w.now += timedelta(seconds=1)
    if w.status.phase == "RolledBack":
        # The gate (interval 30s, failureLimit 0) acts within one interval of the bad value, frozen or not.
        assert active_since is not None
        assert w.now - max(failed_at, active_since) <= timedelta(seconds=32)
