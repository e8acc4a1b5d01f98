"""ParityCheck engine: alignment, tracking error and attribution (hand values and numpy), levels,
consecutive breaches and the actions due."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.engine.parity import (
    Action,
    ActionsSpec,
    Level,
    LevelActions,
    Thresholds,
    actions_due,
    align,
    attribute,
    level,
    next_breach_count,
    plan_actions,
    tracking_error_bps,
)

HOUR = 3600.0
THRESHOLDS = Thresholds(warning=20, critical=50, emergency=100)
SPEC = ActionsSpec(
    warning=LevelActions(size_multiplier=1.0),
    critical=LevelActions(size_multiplier=0.5, entries_enabled=False, pause_rollout=True),
    emergency=LevelActions(stop_trading=True),
)
CRITICAL_ACTIONS = (
    Action("set_size_multiplier", 0.5),
    Action("set_entries_enabled", False),
    Action("pause_rollout"),
)


# ------------------------------------------------------------------------------------------ align


def test_align_by_timestamp_on_the_step_grid() -> None:
    live = [(0.0, 0.1), (HOUR, 0.2), (2 * HOUR, 0.3), (3 * HOUR, float("nan"))]
    backtest = [(HOUR + 0.2, 0.25), (2 * HOUR, 0.35), (4 * HOUR, 0.0)]
    a = align(live, backtest, step_s=HOUR)
    assert a.pairs == ((HOUR, 0.2, 0.25), (2 * HOUR, 0.3, 0.35))
    assert (a.unmatched_live, a.unmatched_backtest) == (2, 1)
    assert a.diffs == pytest.approx((-0.05, -0.05))


def test_align_without_step_matches_exact_timestamps_and_drops_duplicates() -> None:
    a = align([(1.0, 1.0), (1.0, 2.0), (2.0, 3.0)], [(1.0, 0.5), (2.5, 1.0)])
    assert a.pairs == ((1.0, 1.0, 0.5),)
    assert (a.unmatched_live, a.unmatched_backtest) == (2, 1)
    with pytest.raises(ValueError, match="step"):
        align([], [], step_s=0)


# -------------------------------------------------------------------------------- tracking error


def test_tracking_error_hand_computed() -> None:
    # diffs +1 bp and -1 bp: mean 0, sample variance (1e-4^2 * 2) / 1 -> stdev 1.41421e-4 per hour.
    assert tracking_error_bps([0.0001, -0.0001], 1) == pytest.approx(1.414213562, rel=1e-9)
    # Annualized hourly: x sqrt(8760) = 93.5948717 -> 132.3631 bps.
    assert tracking_error_bps([0.0001, -0.0001], 8760) == pytest.approx(132.3631369, rel=1e-9)
    # diffs 10, -10, 20, 0 bps: mean 5, squared deviations 25+225+225+25 = 500, / 3, sqrt = 12.90994 bps.
    assert tracking_error_bps([0.001, -0.001, 0.002, 0.0], 1) == pytest.approx(12.90994449, rel=1e-9)
    assert tracking_error_bps([0.0003, 0.0003, 0.0003], 8760) == pytest.approx(0, abs=1e-9)


def test_tracking_error_needs_two_samples() -> None:
    assert tracking_error_bps([], 8760) is None
    assert tracking_error_bps([0.01], 8760) is None
    with pytest.raises(ValueError, match="periodsPerYear"):
        tracking_error_bps([0.0, 1.0], 0)


_returns = st.floats(min_value=-0.05, max_value=0.05, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    pairs=st.lists(st.tuples(_returns, _returns), min_size=2, max_size=200),
    periods_per_year=st.sampled_from([252, 365, 8760, 525_600]),
)
def test_tracking_error_matches_numpy(pairs: list[tuple[float, float]], periods_per_year: int) -> None:
    live = [(i * HOUR, lv) for i, (lv, _) in enumerate(pairs)]
    backtest = [(i * HOUR, bt) for i, (_, bt) in enumerate(pairs)]
    a = align(live, backtest, step_s=HOUR)
    assert len(a.pairs) == len(pairs)
    diffs = np.array([lv for lv, _ in pairs]) - np.array([bt for _, bt in pairs])
    expected = float(np.std(diffs, ddof=1)) * math.sqrt(periods_per_year) * 1e4
    assert tracking_error_bps(a.diffs, periods_per_year) == pytest.approx(expected, rel=1e-9, abs=1e-9)


# ----------------------------------------------------------------------------------- attribution


def test_attribution_hand_computed() -> None:
    # Returns differ by 10 and 20 bps: mean 15 bps. fees -3, slippage -1, timing missing (0), sizing 1.
    a = attribute(
        [0.0010, 0.0020],
        {"fees": [-2.0, -4.0], "slippage": [-1.0], "timing": [], "sizing": [0.5, 1.5]},
    )
    assert (a.fees, a.slippage, a.timing, a.sizing) == (-3.0, -1.0, 0.0, 1.0)
    assert a.alpha == pytest.approx(18.0)
    assert a.missing == ("timing",)
    assert a.as_dict()["alpha"] == a.alpha


def test_attribution_without_data() -> None:
    a = attribute([], {})
    assert a.alpha is None
    assert a.missing == ("fees", "slippage", "timing", "sizing")


_bps = st.floats(min_value=-50, max_value=50, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    returns=st.lists(st.tuples(_returns, _returns), min_size=1, max_size=100),
    fees=st.lists(st.tuples(_bps, _bps), max_size=100),
    slippage=st.lists(st.tuples(_bps, _bps), min_size=1, max_size=100),
)
def test_attribution_matches_numpy(
    returns: list[tuple[float, float]], fees: list[tuple[float, float]], slippage: list[tuple[float, float]]
) -> None:
    def diffs(series: list[tuple[float, float]]) -> tuple[float, ...]:
        return align([(i, lv) for i, (lv, _) in enumerate(series)], [(i, b) for i, (_, b) in enumerate(series)]).diffs

    a = attribute(diffs(returns), {"fees": diffs(fees), "slippage": diffs(slippage)})

    def mean(s: list[tuple[float, float]]) -> float:
        return float(np.mean(np.array([x for x, _ in s]) - np.array([y for _, y in s]))) if s else 0.0

    assert a.fees == pytest.approx(mean(fees), abs=1e-9)
    assert a.slippage == pytest.approx(mean(slippage), abs=1e-9)
    assert a.alpha == pytest.approx(mean(returns) * 1e4 - mean(fees) - mean(slippage), abs=1e-7)
    assert set(a.missing) == {"timing", "sizing"} | (set() if fees else {"fees"})


# ----------------------------------------------------------------------------------------- levels


@pytest.mark.parametrize(
    ("te", "expected"),
    [
        (0.0, "Excellent"),
        (9.999, "Excellent"),
        (10.0, "Good"),
        (19.999, "Good"),
        (20.0, "Warning"),
        (49.999, "Warning"),
        (50.0, "Critical"),
        (99.999, "Critical"),
        (100.0, "Emergency"),
        (1e9, "Emergency"),
    ],
)
def test_levels_at_band_edges(te: float, expected: Level) -> None:
    assert level(te, THRESHOLDS, samples=24) == expected


def test_level_unknown_without_enough_data() -> None:
    assert level(500.0, THRESHOLDS, samples=9) == "Unknown"
    assert level(5.0, THRESHOLDS, samples=3, min_samples=3) == "Excellent"
    assert level(None, THRESHOLDS, samples=100) == "Unknown"
    assert level(float("nan"), THRESHOLDS, samples=100) == "Unknown"


def test_warning_threshold_below_ten_wins_over_excellent() -> None:
    assert level(7.0, Thresholds(5, 50, 100), samples=24) == "Warning"
    with pytest.raises(ValueError, match="warning <= critical"):
        Thresholds(50, 20, 100)


def test_breach_counting() -> None:
    assert next_breach_count(0, "Warning") == 1
    assert next_breach_count(1, "Emergency") == 2
    assert next_breach_count(3, "Unknown") == 3  # neither increments nor resets
    assert next_breach_count(3, "Good") == 0
    assert next_breach_count(3, "Excellent") == 0


# ---------------------------------------------------------------------------------------- actions


def run(levels: list[Level], consecutive: int = 2, auto_recover: bool = False) -> list[list[Action]]:
    """Drive the engine through a sequence of runs as the operator would; the actions due per run."""
    count, out = 0, []
    in_force: tuple[Action, ...] = ()
    for lvl in levels:
        count = next_breach_count(count, lvl)
        plan = plan_actions(lvl, count, consecutive, SPEC, in_force, auto_recover=auto_recover)
        in_force = plan.in_force
        out.append(list(plan.due))
    return out


def test_consecutive_breaches_two_acts_only_on_the_second() -> None:
    assert run(["Critical", "Critical", "Critical"]) == [[], list(CRITICAL_ACTIONS), []]
    assert run(["Critical", "Good", "Critical"]) == [[], [], []]
    assert run(["Critical", "Unknown", "Critical"]) == [[], [], list(CRITICAL_ACTIONS)]


def test_emergency_stop_trading_implies_entries_off_and_abort() -> None:
    assert run(["Emergency"], consecutive=1) == [
        [Action("set_entries_enabled", False), Action("abort_rollout"), Action("stop_trading")]
    ]
    # After critical actions, only what is new is due.
    assert run(["Critical", "Emergency"], consecutive=1)[1] == [
        Action("abort_rollout"),
        Action("stop_trading"),
    ]


def test_warning_observe_is_an_event_once_per_episode() -> None:
    assert run(["Warning", "Warning", "Good", "Warning"], consecutive=1) == [
        [Action("event_only")],
        [],
        [],
        [Action("event_only")],
    ]


def test_lower_breach_level_never_relaxes() -> None:
    # Warning's sizeMultiplier 1.0 after critical's 0.5: the multiplier stays at 0.5.
    assert run(["Critical", "Warning"], consecutive=1)[1] == [Action("event_only")]


def test_recovery_lifts_only_with_auto_recover() -> None:
    assert run(["Critical", "Good"], consecutive=1, auto_recover=False)[1] == []
    assert run(["Critical", "Excellent"], consecutive=1, auto_recover=True)[1] == [
        Action("set_size_multiplier", 1.0, lift=True),
        Action("set_entries_enabled", True, lift=True),
        Action("resume_rollout", lift=True),
    ]
    # Lifted once, not again.
    assert run(["Critical", "Good", "Good"], consecutive=1, auto_recover=True)[2] == []
    # stopTrading is never lifted automatically.
    assert run(["Emergency", "Good"], consecutive=1, auto_recover=True)[1] == []


def test_actions_due_is_idempotent_with_already_applied() -> None:
    assert actions_due("Critical", 2, 2, SPEC, []) == list(CRITICAL_ACTIONS)
    assert actions_due("Critical", 2, 2, SPEC, list(CRITICAL_ACTIONS)) == []
    assert actions_due("Critical", 1, 2, SPEC, []) == []
    assert actions_due("Unknown", 5, 2, SPEC, []) == []
    assert Action("set_size_multiplier", 0.5).describe() == "set_size_multiplier(0.5)"


_levels = st.sampled_from(["Unknown", "Excellent", "Good", "Warning", "Critical", "Emergency"])


@settings(max_examples=150, deadline=None)
@given(levels=st.lists(_levels, max_size=20), consecutive=st.integers(1, 3), auto_recover=st.booleans())
def test_replaying_a_run_after_restart_does_nothing_twice(
    levels: list[Level], consecutive: int, auto_recover: bool
) -> None:
    count = 0
    in_force: tuple[Action, ...] = ()
    for lvl in levels:
        count = next_breach_count(count, lvl)
        plan = plan_actions(lvl, count, consecutive, SPEC, in_force, auto_recover=auto_recover)
        replay = plan_actions(lvl, count, consecutive, SPEC, plan.in_force, auto_recover=auto_recover)
        assert replay.due == ()
        assert len(set(plan.in_force)) == len(plan.in_force)
        in_force = plan.in_force
