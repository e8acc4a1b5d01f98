"""The sequential judge (engine/sequential.py): its boundary against the published closed form and a
numerical integral, its properties (hypothesis), and its error rates over fixed-seed null runs."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from strategy_rollouts.api.gates import GateSpec, JudgeSpec
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine.sequential import (
    Points,
    boundary,
    evaluate,
    log_mixture,
    rho_squared,
    tuned_for,
)

NOW = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
STEP_S = 60.0


def seq(**kw: Any) -> JudgeSpec:
    return JudgeSpec.model_validate(
        {"query": 'x{version="{{version}}"}', "worseWhen": "lower", "test": "sequential", **kw}
    )


def side(values: Any, start: int = 0) -> Points:
    vals = [float(v) for v in values]
    return tuple(STEP_S * (start + i) for i in range(len(vals))), tuple(vals)


def run(spec: JudgeSpec, canary: Any, stable: Any, elapsed: timedelta | None = None) -> Any:
    return evaluate(spec, side(canary), side(stable), elapsed)


# --- the boundary -------------------------------------------------------------------------------------


def test_boundary_is_the_papers_closed_form_up_to_the_one_sided_factor() -> None:
    """Waudby-Smith et al. (2023), eq. (12)-(14): two-sided AsympCS half-width, standardized, at level a:
    sqrt(2 (t rho^2 + 1) / rho^2 * log(sqrt(t rho^2 + 1) / a)). Ours at alpha equals theirs at 2 alpha
    times a factor slightly above 1 (the Phi of the one-sided mixture), never below."""
    confidence = 0.95
    alpha = 1 - confidence
    rho2 = rho_squared(confidence, 120)
    t = np.arange(1, 2001, dtype=float)
    paper = np.sqrt(2 * (t * rho2 + 1) / rho2 * np.log(np.sqrt(t * rho2 + 1) / (2 * alpha)))
    ours = boundary(2000, confidence, rho2)
    assert np.all(ours >= paper)
    assert np.all(ours <= paper * 1.02)
    # the paper's closed-form rho (eq. (14)) is the width-minimizing one at t*, within 0.1 % of the width
    width = lambda r2: math.sqrt(2 * (120 * r2 + 1) / r2 * math.log(math.sqrt(120 * r2 + 1) / (2 * alpha)))  # noqa: E731
    best = optimize.minimize_scalar(lambda lr: width(math.exp(lr)), bounds=(-10, 2), method="bounded")
    assert width(rho2) == pytest.approx(float(best.fun), rel=1e-3)


@pytest.mark.parametrize(("t", "confidence"), [(30, 0.95), (240, 0.95), (1000, 0.99), (60, 0.9)])
def test_boundary_solves_the_one_sided_mixture_integral(t: int, confidence: float) -> None:
    """M_t(b) = E over lambda ~ half-normal(rho) of exp(lambda b - lambda^2 t / 2), integrated by scipy,
    equals 1 / alpha at our boundary (Howard et al. 2021, one-sided normal mixture)."""
    rho2 = rho_squared(confidence, 4 * 30)
    b = float(boundary(t, confidence, rho2)[-1])
    rho = math.sqrt(rho2)

    def integrand(lam: float) -> float:
        return math.exp(lam * b - lam * lam * t / 2) * 2 * stats.norm.pdf(lam, scale=rho)

    value, _ = integrate.quad(integrand, 0, np.inf, limit=200)
    assert value == pytest.approx(1 / (1 - confidence), rel=1e-6)
    closed = math.exp(float(log_mixture(np.array([b]), np.array([float(t)]), rho2)[0]))
    assert closed == pytest.approx(value, rel=1e-9)


def test_rho_is_tuned_from_the_spec_alone() -> None:
    assert tuned_for(seq(minSamples=30)) == 120
    assert tuned_for(seq(minSamples=30, decideWithin="4h", step="1m")) == 240
    assert tuned_for(seq(minSamples=50, decideWithin="50m", step="1m")) == 50


# --- decisions ----------------------------------------------------------------------------------------


def test_a_clearly_worse_canary_fails_with_the_interval_below_zero() -> None:
    rng = np.random.default_rng(1)
    stable = rng.normal(100, 1, 60)
    out = run(seq(minSamples=30), stable - 2 + rng.normal(0, 0.5, 60), stable)
    assert out.result == "Fail", out.message
    assert out.upper is not None and out.upper < 0 and out.lower is not None and out.lower < out.upper
    assert out.p_value is not None and out.p_value < 0.05
    assert out.pairs == 60 and "entirely below 0" in out.message
    assert out.decided_at == 29 * STEP_S  # the first look allowed: sample minSamples


def test_worse_when_higher_is_the_mirror_image() -> None:
    rng = np.random.default_rng(2)
    stable = rng.normal(10, 1, 80)
    canary = stable + 3 + rng.normal(0, 0.3, 80)
    out = run(seq(worseWhen="higher"), canary, stable)
    assert out.result == "Fail" and out.lower is not None and out.lower > 0
    assert out.effect == pytest.approx(3, abs=0.2)
    better = run(seq(worseWhen="higher", margin=0.5), stable - 3, stable)
    assert better.result == "Pass" and better.upper is not None and better.upper < 0.5


def test_identical_data_passes_only_at_min_samples_with_a_margin() -> None:
    values = np.random.default_rng(3).normal(0, 1, 100)
    spec = seq(minSamples=40, margin=0.1)
    assert run(spec, values[:39], values[:39]).result == "Undecided"
    out = run(spec, values[:40], values[:40])
    assert (out.result, out.lower, out.upper, out.effect) == ("Pass", 0.0, 0.0, 0.0)
    assert run(seq(minSamples=40), values, values).result == "Undecided"  # margin 0: no evidence of "better"


def test_pairing_time_cancels_what_both_sides_saw() -> None:
    """A market-wide factor (sd 5) both versions see: paired by timestamp it cancels; as two samples it
    swamps a 0.5 sd regression."""
    rng = np.random.default_rng(4)
    market = rng.normal(0, 5, 120)
    stable = market + rng.normal(0, 1, 120)
    canary = market - 0.5 + rng.normal(0, 1, 120)
    assert run(seq(pairing="time"), canary, stable).result == "Fail"
    assert run(seq(pairing="none"), canary, stable).result == "Undecided"


def test_several_series_per_side_are_averaged_per_timestamp() -> None:
    times = tuple(STEP_S * i for i in range(40))
    canary = (times + times, tuple([1.0] * 40 + [3.0] * 40))  # two series: mean 2 at every timestamp
    stable = (times, tuple([2.0] * 40))
    out = evaluate(seq(margin=0.1), canary, stable)
    assert (out.result, out.effect, out.canary, out.stable, out.pairs) == ("Pass", 0.0, 40, 40, 40)


def test_margin_percent_is_of_stables_level() -> None:
    rng = np.random.default_rng(5)
    stable = rng.normal(200, 1, 200)
    canary = stable - 2 + rng.normal(0, 0.2, 200)  # 1 % worse
    assert run(seq(marginPercent=5), canary, stable).result == "Fail"  # worse (if within the margin)
    out = run(seq(marginPercent=5, minSamples=30), stable + rng.normal(0, 0.2, 200), stable)
    assert out.result == "Pass" and out.margin == pytest.approx(10, rel=0.01)


def test_missing_data_is_inconclusive_and_never_passes() -> None:
    spec = seq(minSamples=5, margin=100.0)
    ok = [1.0] * 10
    for canary, stable in [([], ok), (ok, []), ([math.nan] * 10, ok), (ok, [math.inf] * 10)]:
        out = run(spec, canary, stable)
        assert out.result == "Inconclusive" and "missing data never passes" in out.message
    apart = evaluate(spec, side(ok), side(ok, start=100))  # no shared timestamp
    assert apart.result == "Inconclusive" and "cannot be aligned by time" in apart.message
    # NaN points are dropped, not counted: 4 finite pairs stay below minSamples
    assert run(spec, [1.0, math.nan, 1.0, 1.0, 1.0, math.nan], [1.0] * 6).result == "Undecided"


def test_decide_within_hold_or_rollback_never_promote() -> None:
    rng = np.random.default_rng(6)
    stable = rng.normal(0, 1, 60)
    canary = stable + rng.normal(0, 1, 60)  # not worse, no margin: stays undecided
    late = timedelta(hours=2)
    hold = run(seq(decideWithin="1h"), canary, stable, late)
    assert (hold.result, hold.past_deadline) == ("Undecided", True)
    assert "no decision within decideWithin 1h (onUndecided: hold)" in hold.message
    assert run(seq(decideWithin="1h"), canary, stable, timedelta(minutes=59)).past_deadline is False
    back = run(seq(decideWithin="1h", onUndecided="rollback"), canary, stable, late)
    assert back.result == "Fail" and "onUndecided: rollback" in back.message
    # no data at all past decideWithin: the same, never a pass
    assert run(seq(decideWithin="1h", onUndecided="rollback"), [], stable, late).result == "Fail"
    assert run(seq(decideWithin="1h"), [], stable, late).result == "Undecided"


# --- properties ---------------------------------------------------------------------------------------

streams = st.tuples(
    st.integers(0, 2**32 - 1),  # seed
    st.integers(3, 60),  # minSamples
    st.integers(1, 200),  # samples
    st.floats(-2, 2),  # shift in sd
    st.sampled_from(["lower", "higher"]),
    st.sampled_from(["time", "none"]),
    st.floats(0, 1),  # margin
)


def draw(params: tuple[int, int, int, float, str, str, float]) -> tuple[JudgeSpec, Points, Points]:
    seed, min_samples, n, shift, worse_when, pairing, margin = params
    rng = np.random.default_rng(seed)
    stable = rng.normal(10, 1, n)
    canary = stable + shift + rng.normal(0, 1, n)
    spec = seq(minSamples=min_samples, worseWhen=worse_when, pairing=pairing, margin=margin)
    return spec, side(canary), side(stable)


def prefix(points: Points, k: int) -> Points:
    return points[0][:k], points[1][:k]


@settings(max_examples=80, deadline=None)
@given(params=streams, looks=st.lists(st.integers(1, 200), max_size=12), data=st.randoms(use_true_random=False))
def test_the_decision_depends_on_the_samples_not_on_the_looks(params: Any, looks: list[int], data: Any) -> None:
    """Whatever evaluations came before, in whatever order, and however the points arrive (shuffled):
    the decision at n samples is the same, and once a look sees a decision every later look sees it."""
    spec, canary, stable = draw(params)
    n = len(canary[0])
    final = evaluate(spec, canary, stable)
    order = list(range(n))
    data.shuffle(order)
    shuffled = tuple(canary[0][i] for i in order), tuple(canary[1][i] for i in order)
    assert evaluate(spec, shuffled, stable) == final
    assert evaluate(spec, canary, stable) == final
    decided_at = None
    for k in sorted({min(k, n) for k in looks}):
        out = evaluate(spec, prefix(canary, k), prefix(stable, k))
        if out.result in ("Pass", "Fail"):
            assert (out.result, out.decided_at) == (final.result, final.decided_at)
            decided_at = decided_at or out.decided_at
        elif final.decided_at is not None:
            assert (k - 1) * STEP_S < final.decided_at  # undecided only before the deciding sample
    if decided_at is not None:
        assert decided_at == final.decided_at


@settings(max_examples=80, deadline=None)
@given(params=streams)
def test_no_decision_before_min_samples(params: Any) -> None:
    spec, canary, stable = draw(params)
    for k in range(1, min(spec.min_samples, len(canary[0]) + 1)):
        out = evaluate(spec, prefix(canary, k), prefix(stable, k))
        assert out.result == "Undecided" and out.lower is None


@settings(max_examples=120, deadline=None)
@given(params=streams)
def test_pass_never_while_the_interval_reaches_beyond_the_margin(params: Any) -> None:
    spec, canary, stable = draw(params)
    out = evaluate(spec, canary, stable)
    if out.result == "Pass":
        assert out.lower is not None and out.upper is not None and out.margin is not None
        if spec.worse_when == "lower":
            assert out.lower > -out.margin
        else:
            assert out.upper < out.margin
    if out.result == "Fail":
        assert (out.upper < 0) if spec.worse_when == "lower" else (out.lower > 0)  # type: ignore[operator]


@settings(max_examples=60, deadline=None)
@given(
    params=streams,
    holes=st.lists(st.integers(0, 199), max_size=50),
    missing=st.sampled_from(["canary", "stable", "both", "none"]),
)
def test_missing_data_never_passes(params: Any, holes: list[int], missing: str) -> None:
    """NaN holes on either side, or a side with nothing at all: never a Pass without its samples."""
    spec, canary, stable = draw(params)
    n = len(canary[0])
    punched = tuple(math.nan if i in set(holes) else v for i, v in enumerate(canary[1]))
    empty: Points = ((), ())
    sides = {
        "canary": (empty, stable),
        "stable": (canary, empty),
        "both": (empty, empty),
        "none": ((canary[0], punched), stable),
    }[missing]
    out = evaluate(spec, *sides, timedelta(days=1))
    if missing != "none":
        assert out.result in ("Inconclusive", "Undecided", "Fail")
    finite = n - len({h for h in holes if h < n})
    if finite < spec.min_samples:
        assert out.result != "Pass"


# --- error rates: a statistical test that cannot pass by luck (fixed seed) -----------------------------

RUNS = 1000
EVALUATIONS = 240


def error_share(shift: float, margin: float, outcome: str, confidence: float = 0.95) -> float:
    """Share of RUNS runs of EVALUATIONS one-minute looks (one paired sample each, iid normal sd 1 per
    side) that ever reach `outcome`. The decision at the last look is the first decision any look made
    (test_the_decision_depends_on_the_samples_not_on_the_looks), so one evaluation per run is every look."""
    rng = np.random.default_rng(20261207)
    spec = seq(minSamples=30, confidence=confidence, margin=margin)
    stable = rng.normal(0, 1, (RUNS, EVALUATIONS))
    canary = rng.normal(shift, 1, (RUNS, EVALUATIONS))
    hits = sum(evaluate(spec, side(c), side(s)).result == outcome for c, s in zip(canary, stable, strict=True))
    return hits / RUNS


def ceiling(confidence: float) -> float:
    alpha = 1 - confidence
    return alpha + 3 * math.sqrt(alpha * (1 - alpha) / RUNS)


@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_false_fail_share_of_a_not_worse_canary_is_within_one_minus_confidence(confidence: float) -> None:
    assert error_share(0.0, 0.25, "Fail", confidence) <= ceiling(confidence)


@pytest.mark.parametrize("confidence", [0.95, 0.99])
def test_false_pass_share_of_a_canary_worse_by_the_margin_is_within_one_minus_confidence(confidence: float) -> None:
    assert error_share(-0.25, 0.25, "Pass", confidence) <= ceiling(confidence)


def test_power_a_one_sd_regression_is_caught_and_a_not_worse_canary_passes() -> None:
    assert error_share(-1.0, 0.25, "Fail") >= 0.95
    assert error_share(0.0, 0.25, "Pass") >= 0.40


# --- the gate's bookkeeping -----------------------------------------------------------------------------


def test_a_sequential_gate_status_carries_interval_margin_samples_and_holds_when_undecided() -> None:
    spec = GateSpec.model_validate(
        {"name": "pnl", "judge": {**seq(minSamples=5, margin=1.0).wire(), "decideWithin": "10m"}}
    )
    worse = gatelib.Measurement(
        None, points=(side([1.0, 2, 3, 4, 5, 6]), side([11.0, 12, 13, 14, 15, 16])), started=NOW
    )
    status = gatelib.record(None, spec, worse, NOW + timedelta(minutes=6))
    assert status.result == "Fail" and status.failures == 1
    assert status.confidence_interval is not None and status.confidence_interval.upper is not None
    assert status.confidence_interval.upper < 0 and status.effect == pytest.approx(-10)
    assert status.samples is not None and (status.samples.canary, status.samples.pairs) == (6, 6)
    assert status.margin == 1.0
    swings = [5.0, -5.0, 5.0, -5.0, 5.0, -5.0]  # mean 0, sd 5.5: no decision at 6 samples
    noisy = gatelib.Measurement(None, points=(side(swings), side([0.0] * 6)), started=NOW)
    early = gatelib.record(status, spec, noisy, NOW + timedelta(minutes=6))
    assert (early.result, early.undecided_overdue, early.inconclusives) == ("Undecided", None, 0)
    late = gatelib.record(early, spec, noisy, NOW + timedelta(minutes=11))
    assert (late.result, late.undecided_overdue) == ("Undecided", True)
    summary = gatelib.summarize([spec], {"pnl": late}, NOW + timedelta(minutes=11))
    assert summary.undecided == [late] and not summary.all_pass
    assert summary.undecided_reason().startswith("gate pnl undecided: no decision within decideWithin 10m")
    restarted = gatelib.reset_step_counts([late], gatelib.per_step([spec]))
    assert restarted[0].result is None and restarted[0].evaluated_at is None
