"""ShadowRun duration in trading time and ParityCheck runs only on session days (real XNYS, fake clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from strategy_rollouts.api.paritycheck import ParityCheckStatus
from strategy_rollouts.api.shadowrun import ShadowRunStatus
from strategy_rollouts.engine import parity_run
from strategy_rollouts.engine.shadow_run import Observations, ShadowDeployment, end_of, reconcile
from strategy_rollouts.operator.checks.calendars import Calendars
from tests.unit.parity_world import NAME, NS, USER, World, measured_at
from tests.unit.parity_world import make_spec as parity_spec
from tests.unit.test_shadow_run import OWNER
from tests.unit.test_shadow_run import make_spec as shadow_spec

CALENDARS = Calendars()
XNYS = CALENDARS.get("XNYS", datetime(2026, 12, 1, tzinfo=UTC))
FRIDAY_15H_NY = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)


def test_shadow_run_duration_counts_trading_time_with_count_time_trading() -> None:
    spec = shadow_spec(duration="48h", market={"calendar": "XNYS", "countTime": "trading"})
    assert end_of(spec, FRIDAY_15H_NY, XNYS) == datetime(2026, 12, 16, 16, 0, tzinfo=UTC)
    wall = shadow_spec(duration="48h", market={"calendar": "XNYS"})  # countTime: wall (default)
    assert end_of(wall, FRIDAY_15H_NY, XNYS) == FRIDAY_15H_NY + timedelta(hours=48)
    crypto = shadow_spec(duration="48h", market={"calendar": "24/7", "countTime": "trading"})
    assert end_of(crypto, FRIDAY_15H_NY, None) == FRIDAY_15H_NY + timedelta(hours=48)


def test_a_started_shadow_run_says_it_runs_until_the_trading_time_end() -> None:
    spec = shadow_spec(duration="6h30m", market={"calendar": "XNYS", "countTime": "trading"})
    obs = Observations(
        NS, "fib", OWNER, deployment=ShadowDeployment(0, {"SHADOW_MODE": "true"}, {"app": "pipeline"}), calendar=XNYS
    )
    saturday = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
    decision = reconcile(spec, ShadowRunStatus(), obs, saturday)
    assert decision.status.phase == "Running"
    # The whole of Monday's session: 14:30Z to 21:00Z.
    assert "2026-12-07T21:00:00+00:00" in (decision.status.message or "")


def parity_at(now: datetime, status: ParityCheckStatus) -> parity_run.Decision:
    spec = parity_spec(schedule="0 6 * * *", market={"calendar": "XNYS"})
    created = datetime(2026, 12, 23, 12, 0, tzinfo=UTC)
    measured = measured_at("Good") if parity_run.plan(spec, status, "ns", created, now, XNYS).ranges else None
    target = World(spec).target() if measured is not None else None
    obs = parity_run.Observations(NS, NAME, USER, created, 1, (), measured, target, XNYS)
    return parity_run.reconcile(spec, status, obs, now)


def test_a_parity_run_due_on_christmas_is_skipped_not_failed_and_monday_runs() -> None:
    status = ParityCheckStatus()
    # Thursday 24 December (a half day, still a session) runs; Christmas and the weekend are skipped.
    wanted = {24: True, 25: False, 26: False, 27: False, 28: True}
    for day, runs in wanted.items():
        now = datetime(2026, 12, day, 6, 0, 30, tzinfo=UTC)
        spec = parity_spec(schedule="0 6 * * *", market={"calendar": "XNYS"})
        due = parity_run.due(spec, status, datetime(2026, 12, 23, 12, 0, tzinfo=UTC), now, XNYS)
        assert (due.trigger == "scheduled") is runs, (day, due)
        decision = parity_at(now, status)
        status = decision.status
        if runs:
            assert status.last_run is not None and status.last_run.at == now
        else:
            assert status.skipped is not None and status.skipped.at == now
            assert "not a XNYS session" in status.skipped.message
            assert status.last_run is None or status.last_run.at < now  # no failed run recorded
            assert any(e.reason == "RunSkipped" for e in decision.events)
            assert status.next_run_at == datetime(2026, 12, day + 1, 6, 0, tzinfo=UTC)
    assert [r.at.day for r in status.history] == [24, 28]
    # Once skipped, the same slot is not due again.
    again = parity_at(datetime(2026, 12, 28, 6, 1, tzinfo=UTC), status)
    assert again.status.run_seq == status.run_seq
