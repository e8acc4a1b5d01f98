"""The pure parts of a ParityCheck pass: validation, scheduling, evaluation, status forms (engine.parity_run,
engine.parity_actions) and the adapter's parsing helpers (operator/paritycheck/adapter.py)."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus, ParityRun
from strategy_rollouts.api.requests import ParityRequest
from strategy_rollouts.engine import parity
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine import parity_run as pc
from strategy_rollouts.engine.parity import Series
from strategy_rollouts.operator.paritycheck import adapter as paritychecks
from strategy_rollouts.operator.runtime import status_guard

NOW = datetime(2026, 3, 2, 12, 0, 30, tzinfo=UTC)


def spec(**overrides: Any) -> ParityCheckSpec:
    raw: dict[str, Any] = {
        "strategy": "fib_rsi",
        "target": {"rollout": "fib-rsi"},
        "schedule": "0 6,18 * * *",
        "window": "30s",
        "step": "1s",
        "periodsPerYear": 1,
        "minSamples": 3,
        "live": {"query": 'r{s="{{strategy}}",src="live",ns="{{namespace}}"}'},
        "backtest": {"query": 'r{s="{{strategy}}",src="backtest"}[{{window}}:{{step}}]'},
        "attribution": {"fees": {"live": "fl", "backtest": "fb"}},
    }
    raw.update(overrides)
    return ParityCheckSpec.model_validate(raw)


def pts(values: list[float], t0: float = 1000.0) -> list[tuple[float, float]]:
    return [(t0 + i, v) for i, v in enumerate(values)]


# ---- actions in status -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "text"),
    [
        (parity.Action("set_size_multiplier", 0.5), "sizeMultiplier=0.5"),
        (parity.Action("set_size_multiplier", 1.0), "sizeMultiplier=1"),
        (parity.Action("set_entries_enabled", False), "entriesEnabled=false"),
        (parity.Action("set_entries_enabled", True), "entriesEnabled=true"),
        (parity.Action("pause_rollout"), "pauseRollout"),
        (parity.Action("stop_trading"), "stopTrading"),
        (parity.Action("event_only"), "event"),
    ],
)
def test_action_status_form_round_trips(action: parity.Action, text: str) -> None:
    assert acts.encode_action(action) == text
    assert acts.decode_action(text) == action


def test_unknown_status_entries_are_ignored() -> None:
    assert acts.decode_action("launchMissiles") is None
    assert acts.decode_action("sizeMultiplier=lots") is None
    status = ParityCheckStatus(active_actions=["pauseRollout", "bogus", "sizeMultiplier=0.25"])
    assert acts.in_force(status) == [parity.Action("pause_rollout"), parity.Action("set_size_multiplier", 0.25)]


def test_rollout_actions_are_dropped_for_deployment_targets() -> None:
    s = spec(target={"deployment": "legacy"}, actions={"critical": {"pauseRollout": True, "abortRollout": True}})
    assert pc.actions_spec(s).critical == parity.LevelActions()
    assert pc.actions_spec(spec()).critical.pause_rollout is True


# ---- validation ------------------------------------------------------------------------------------------


def test_a_valid_spec_has_no_errors() -> None:
    assert pc.spec_errors(spec(), "ns") == []


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"schedule": "61 * * * *"}, "spec.schedule"),
        ({"schedule": "* * * *"}, "spec.schedule"),
        ({"timeZone": "Mars/Olympus"}, "spec.timeZone"),
        ({"live": {"query": "x{v='{{canary.version}}'}"}}, "spec.live.query"),
        ({"attribution": {"timing": {"live": "ok", "backtest": "{{nope}}"}}}, "spec.attribution.timing.backtest"),
        ({"step": "1m", "window": "30s"}, "spec.step"),
        ({"step": "1s", "window": "7d"}, "spec.step"),
        ({"target": {"rollout": "a", "configMap": "b"}}, "spec.target.configMap"),
        ({"thresholdsBps": {"warning": 50, "critical": 20, "emergency": 100}}, "spec.thresholdsBps"),
    ],
)
def test_invalid_specs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    errors = pc.spec_errors(spec(**overrides), "ns")
    assert errors and any(e.startswith(field) for e in errors), errors


def test_parse_reports_model_errors_and_never_raises() -> None:
    s, error = paritychecks.ADAPTER.parse_spec({"spec": {"strategy": "x"}})
    assert s is None and error is not None and "spec.target" in error


def test_an_old_or_hand_edited_status_does_not_parse_and_names_the_field() -> None:
    """Fail closed: the list-of-ids handledRequests of the old protocol is not read as an empty status."""
    status, error = status_guard.parse_status(ParityCheckStatus, {"handledRequests": ["abc"], "phase": "Scheduled"})
    assert status is None and error is not None and "status.handledRequests" in error
    status, error = status_guard.parse_status(ParityCheckStatus, {"actionsTaken": [{"action": "event"}]})
    assert status is None and error is not None and "status.actionsTaken" in error


def test_rollout_request_bookkeeping_is_read_leniently() -> None:
    obj = {
        "status": {
            "requests": {"a": {"action": "pause"}},
            "handledRequests": [{"id": "b", "outcome": "Rejected", "message": "stopped"}, "junk", {"outcome": "x"}],
        }
    }
    seen = paritychecks.rollout_obs(obj)
    assert seen.pending == frozenset({"a"}) and dict(seen.handled) == {"b": ("Rejected", "stopped")}
    assert paritychecks.rollout_obs({"status": {"requests": "nonsense"}}) == acts.RolloutObs()


def req(by: str = "alice", at: datetime = NOW) -> ParityRequest:
    return ParityRequest(action="run", by=by, at=at)


# ---- scheduling ------------------------------------------------------------------------------------------


def test_nothing_due_before_the_first_slot() -> None:
    d = pc.due(spec(), ParityCheckStatus(), created_at=NOW - timedelta(hours=1), now=NOW)
    assert d.trigger is None and d.next_run_at == datetime(2026, 3, 2, 18, tzinfo=UTC)


def test_a_punctual_slot_is_scheduled_and_an_old_one_is_one_catch_up() -> None:
    at_slot = datetime(2026, 3, 2, 18, 0, 1, tzinfo=UTC)
    d = pc.due(spec(), ParityCheckStatus(), created_at=NOW, now=at_slot)
    assert d.trigger == "scheduled" and d.next_run_at == datetime(2026, 3, 3, 6, tzinfo=UTC)
    last = ParityRun(at=NOW - timedelta(days=3), level="Good")
    d = pc.due(spec(), ParityCheckStatus(last_run=last), created_at=NOW - timedelta(days=9), now=NOW)
    assert d.trigger == "catch-up" and d.next_run_at == datetime(2026, 3, 2, 18, tzinfo=UTC)
    # After that run (lastRun.at = now) nothing more is due: one run for the six missed slots.
    after = ParityCheckStatus(last_run=ParityRun(at=NOW, level="Good"))
    assert pc.due(spec(), after, created_at=NOW - timedelta(days=9), now=NOW + timedelta(seconds=1)).trigger is None


def test_manual_requests_run_now_even_when_suspended_oldest_first_but_only_once() -> None:
    pending = {"r2": req("bob", NOW), "r1": req("alice", NOW - timedelta(seconds=1))}
    d = pc.due(spec(suspend=True), ParityCheckStatus(requests=pending), created_at=NOW, now=NOW)
    assert (d.trigger, d.by, [rid for rid, _ in d.requests]) == ("manual", "alice", ["r1", "r2"])
    done = [pc.reqs.handled("r1", pending["r1"], "Applied", "run 1", NOW)]
    handled = ParityCheckStatus(requests={"r1": pending["r1"]}, handled_requests=done)
    assert pc.due(spec(), handled, created_at=NOW, now=NOW).trigger is None


def test_suspend_skips_scheduled_runs_but_keeps_next_run_at() -> None:
    last = ParityRun(at=NOW - timedelta(days=1), level="Good")
    d = pc.due(spec(suspend=True), ParityCheckStatus(last_run=last), created_at=NOW, now=NOW)
    assert d.trigger is None and d.next_run_at is not None


# ---- evaluation ------------------------------------------------------------------------------------------


def measured(live: list[float], back: list[float], fees: tuple[list[float], list[float]] | None = None) -> pc.Measured:
    comps = {} if fees is None else {"fees": (Series(pts(fees[0])), Series(pts(fees[1])))}
    return pc.Measured(Series(pts(live)), Series(pts(back)), comps)


def test_evaluate_hand_computed() -> None:
    live = [0.0010, 0.0030, -0.0010, 0.0020]
    back = [0.0000, 0.0010, 0.0000, 0.0010]
    # diffs 10, 20, -10, 10 bps: mean 7.5, squared deviations 6.25 + 156.25 + 306.25 + 6.25 = 475, n-1 = 3
    run = pc.evaluate(spec(), measured(live, back, ([9.0, 9.0, 9.0, 9.0], [7.5, 7.5, 7.5, 7.5])), NOW, "manual", "bob")
    assert run.tracking_error_bps == pytest.approx(math.sqrt(475 / 3), abs=1e-5)
    assert run.level == "Good" and run.samples == 4 and run.unmatched == 0
    assert run.attribution is not None
    assert run.attribution.fees == pytest.approx(1.5) and run.attribution.alpha == pytest.approx(6.0)
    assert run.attribution.slippage is None  # not configured
    assert (run.trigger, run.by, run.message) == ("manual", "bob", None)


def test_evaluate_annualizes_with_periods_per_year() -> None:
    run = pc.evaluate(
        spec(periodsPerYear=8760), measured([0.001, 0.003, -0.001, 0.002], [0, 0.001, 0, 0.001]), NOW, "scheduled", None
    )
    assert run.tracking_error_bps == pytest.approx(math.sqrt(475 / 3) * math.sqrt(8760), abs=1e-5)
    assert run.level == "Emergency"


def test_unmatched_points_and_too_few_samples_are_unknown_with_the_reason() -> None:
    m = pc.Measured(Series(pts([0.001, 0.002, 0.003])), Series(pts([0.0, 0.0], t0=1001.0)), {})
    run = pc.evaluate(spec(), m, NOW, "scheduled", None)
    assert run.samples == 2 and run.unmatched == 1 and run.level == "Unknown"
    assert run.message is not None and "fewer than minSamples 3" in run.message
    assert run.tracking_error_bps is not None  # measured and shown, not acted on


def test_prometheus_errors_are_unknown_and_named() -> None:
    m = pc.Measured(Series([], "Prometheus at http://p:9090 unreachable"), Series(pts([0.0] * 5)), {})
    run = pc.evaluate(spec(), m, NOW, "scheduled", None)
    assert run.level == "Unknown" and run.tracking_error_bps is None
    assert run.message == "live: Prometheus at http://p:9090 unreachable"
    bad_fees = pc.Measured(
        Series(pts([0.0, 0.001, 0.0])), Series(pts([0.0, 0.0, 0.0])), {"fees": (Series([], "boom"), Series([]))}
    )
    run = pc.evaluate(spec(), bad_fees, NOW, "scheduled", None)
    assert run.level != "Unknown" and run.message == "attribution.fees: boom"


@given(
    st.lists(
        st.tuples(st.floats(-0.05, 0.05), st.floats(-0.05, 0.05)),
        min_size=3,
        max_size=60,
    ),
    st.floats(1, 10_000),
)
def test_evaluate_matches_the_definition(pairs: list[tuple[float, float]], ppy: float) -> None:
    live, back = [p[0] for p in pairs], [p[1] for p in pairs]
    run = pc.evaluate(spec(periodsPerYear=ppy), measured(live, back), NOW, "scheduled", None)
    diffs = [a - b for a, b in pairs]
    expected = statistics.stdev(diffs) * math.sqrt(ppy) * 1e4
    assert run.tracking_error_bps == pytest.approx(expected, rel=1e-6, abs=1e-5)
    assert run.samples == len(pairs)


# ---- status forms ----------------------------------------------------------------------------------------


def test_action_ids_are_deterministic_and_bounded() -> None:
    assert acts.action_id("fib-rsi-parity", 42, "stopTrading") == "pck-fib-rsi-parity-42-stopTrading"
    long = acts.action_id("x" * 200, 7, "pause")
    assert len(long) <= 128 and long.endswith("-7-pause") and long == acts.action_id("x" * 200, 7, "pause")
    assert long != acts.action_id("x" * 199 + "y", 7, "pause")


def test_lifts_are_told_apart_from_breach_actions() -> None:
    assert acts.is_lift(parity.Action("set_size_multiplier", 1.0, lift=True))
    assert acts.is_lift(parity.Action("set_entries_enabled", True)) and acts.is_lift(parity.Action("resume_rollout"))
    assert not acts.is_lift(parity.Action("set_size_multiplier", 0.5))
    assert not acts.is_lift(parity.Action("set_entries_enabled", False))
    assert not acts.is_lift(parity.Action("stop_trading"))
