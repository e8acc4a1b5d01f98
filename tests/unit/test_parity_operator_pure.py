"""The pure parts of operator/paritychecks.py: validation, scheduling decision, evaluation, status bookkeeping."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from strategy_rollouts.api.paritycheck import ManualRun, ParityCheckSpec, ParityCheckStatus, ParityRun
from strategy_rollouts.engine import parity
from strategy_rollouts.operator import paritychecks as pc
from strategy_rollouts.operator.prometheus import Series

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
    assert pc.encode_action(action) == text
    assert pc.decode_action(text) == action


def test_unknown_status_entries_are_ignored() -> None:
    assert pc.decode_action("launchMissiles") is None
    assert pc.decode_action("sizeMultiplier=lots") is None
    status = ParityCheckStatus(active_actions=["pauseRollout", "bogus", "sizeMultiplier=0.25"])
    assert pc.in_force(status) == [parity.Action("pause_rollout"), parity.Action("set_size_multiplier", 0.25)]


def test_rollout_actions_are_dropped_for_deployment_targets() -> None:
    s = spec(target={"deployment": "legacy"}, actions={"critical": {"pauseRollout": True, "abortRollout": True}})
    assert pc.actions_spec(s).critical == parity.LevelActions()
    assert pc.actions_spec(spec()).critical.pause_rollout is True


# ---- validation ------------------------------------------------------------------------------------------


def test_a_valid_spec_has_no_errors() -> None:
    assert pc.validate(spec()) == []


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
    errors = pc.validate(spec(**overrides))
    assert errors and any(e.startswith(field) for e in errors), errors


def test_parse_reports_model_errors_and_never_raises() -> None:
    s, status, errors = pc.parse({"spec": {"strategy": "x"}, "status": {"phase": "nonsense"}})
    assert s is None and "spec.target" in errors[0] and status == ParityCheckStatus()


def test_invalid_status_answers_a_pending_request() -> None:
    st0 = ParityCheckStatus(run_request=ManualRun(id="r1", by="bob"))
    new = pc.invalid_status(st0, ["spec.schedule: bad"], 3, NOW)
    assert new.phase == "Invalid" and new.message == "spec.schedule: bad" and new.next_run_at is None
    assert new.run_request is None and new.handled_requests == ["r1"]
    cond = next(c for c in new.conditions if c.type == "InvalidSpec")
    assert cond.status == "True" and cond.observed_generation == 3


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


def test_a_manual_request_runs_now_even_when_suspended_but_only_once() -> None:
    req = ManualRun(id="r1", by="alice")
    d = pc.due(spec(suspend=True), ParityCheckStatus(run_request=req), created_at=NOW, now=NOW)
    assert (d.trigger, d.by, d.request_id) == ("manual", "alice", "r1")
    handled = ParityCheckStatus(run_request=req, handled_requests=["r1"])
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


# ---- status bookkeeping ----------------------------------------------------------------------------------


def test_record_keeps_30_runs_marks_the_request_handled_and_leaves_failed_actions_out_of_force() -> None:
    old_runs = [ParityRun(at=NOW - timedelta(hours=i), level="Good") for i in range(30, 0, -1)]
    status = ParityCheckStatus(history=old_runs, run_request=ManualRun(id="r9"), handled_requests=["r8"])
    run = ParityRun(at=NOW, level="Critical", tracking_error_bps=60.0, trigger="manual")
    size, entries = parity.Action("set_size_multiplier", 0.5), parity.Action("set_entries_enabled", False)
    plan = parity.ActionPlan(due=(size, entries), in_force=(size, entries))
    outcomes = [pc.Outcome(size, True, "configmap/x", "ok"), pc.Outcome(entries, False, "configmap/x", "conflict")]
    nxt = NOW + timedelta(hours=6)
    new = pc.record(spec(), status, run, 1, plan, outcomes, nxt, "r9", 2, NOW)
    assert len(new.history) == 30 and new.history[-1] == run and new.history[0] == old_runs[1]
    assert new.last_run == run and new.next_run_at == nxt and new.consecutive_breaches == 1
    assert new.run_request is None and new.handled_requests == ["r8", "r9"]
    assert new.active_actions == ["sizeMultiplier=0.5"]  # the failed one is retried by the next run
    assert [(a.action, a.message) for a in new.actions_taken] == [
        ("sizeMultiplier=0.5", "ok"),
        ("entriesEnabled=false", "failed: conflict"),
    ]
    breaching = next(c for c in new.conditions if c.type == "Breaching")
    assert breaching.status == "True" and breaching.reason == "Critical"


def test_idle_status_is_stable() -> None:
    first = pc.idle_status(spec(), ParityCheckStatus(), NOW + timedelta(hours=1), 1, NOW)
    again = pc.idle_status(spec(), first, NOW + timedelta(hours=1), 1, NOW + timedelta(minutes=5))
    assert again.wire() == first.wire()  # no write at rest
    assert first.phase == "Scheduled" and pc.idle_status(spec(suspend=True), first, NOW, 1, NOW).phase == "Suspended"


def test_request_ids_are_deterministic_per_run_and_action() -> None:
    a = pc.request_id("uid", NOW, "pause")
    assert a == pc.request_id("uid", NOW, "pause") and len(a) == 32
    assert a != pc.request_id("uid", NOW, "stopTrading") and a != pc.request_id("uid", None, "pause")


def test_routing_changes() -> None:
    acts = [parity.Action("set_size_multiplier", 0.5), parity.Action("set_entries_enabled", False)]
    assert pc.routing_changes(acts, False, ["A"]) == {"sizeMultiplier": 0.5, "entriesEnabled": False}
    stop = [parity.Action("stop_trading")]
    assert pc.routing_changes(stop, False, ["A"]) == {"entriesEnabled": False}  # the rollout frees the keys
    assert pc.routing_changes(stop, True, ["A", "B"]) == {
        "entriesEnabled": False,
        "assignments": {"A": "none", "B": "none"},
    }
    lifts = [
        parity.Action("set_size_multiplier", 1.0, lift=True),
        parity.Action("set_entries_enabled", True, lift=True),
    ]
    assert pc.routing_changes(lifts, False, []) == {"sizeMultiplier": 1.0, "entriesEnabled": True}


def test_a_request_already_handled_is_cleared_without_a_run() -> None:
    status = ParityCheckStatus(run_request=ManualRun(id="r1"), handled_requests=["r1"])
    assert pc.due(spec(), status, created_at=NOW, now=NOW).trigger is None
    new = pc.idle_status(spec(), status, NOW + timedelta(hours=1), 1, NOW)
    assert new.run_request is None and new.handled_requests == ["r1"]
