"""The statistical judge (engine/judge.py) against scipy on known distributions, and its properties."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import mannwhitneyu

from strategy_rollouts.api.gates import GateSpec, JudgeSpec
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine.judge import evaluate, hodges_lehmann, one_sided_p

NOW = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
# Measured by test_false_positive_rate_of_identical_distributions_is_near_one_minus_confidence (and
# quoted in docs/judge.md): 2000 runs of two samples of 50 from one normal distribution, confidence 0.95.
OBSERVED_FALSE_POSITIVE_RATE = 0.051


def judge(**kw: object) -> JudgeSpec:
    return JudgeSpec.model_validate({"query": 'x{version="{{version}}"}', "worseWhen": "lower", **kw})


def test_exact_p_value_of_fully_separated_small_samples() -> None:
    # Every canary value below every stable one: exact one-sided p = 1 / C(6, 3) = 0.05.
    assert one_sided_p([1, 2, 3], [4, 5, 6], "lower") == pytest.approx(0.05)
    assert one_sided_p([1, 2, 3], [4, 5, 6], "higher") == pytest.approx(1.0)
    assert one_sided_p([4, 5, 6], [1, 2, 3], "higher") == pytest.approx(0.05)


def test_p_value_matches_scipy_on_known_distributions() -> None:
    rng = np.random.default_rng(7)
    for canary, stable in [
        (rng.normal(0, 1, 80), rng.normal(0.5, 1, 80)),
        (rng.exponential(2.0, 60), rng.exponential(2.5, 90)),
        (rng.integers(0, 5, 100).astype(float), rng.integers(0, 5, 100).astype(float)),  # ties
    ]:
        ours = one_sided_p(list(canary), list(stable), "lower")
        theirs = mannwhitneyu(canary, stable, alternative="less").pvalue
        assert ours == pytest.approx(theirs)
        assert one_sided_p(list(canary), list(stable), "higher") == pytest.approx(
            mannwhitneyu(canary, stable, alternative="greater").pvalue
        )


def test_hodges_lehmann_recovers_a_pure_shift() -> None:
    rng = np.random.default_rng(3)
    stable = list(rng.normal(10, 1, 200))
    canary = [v - 2.5 for v in stable]
    assert hodges_lehmann(canary, stable) == pytest.approx(-2.5, abs=0.3)
    assert hodges_lehmann([1.0, 2.0], [1.0]) == pytest.approx(0.5)  # median of {0, 1}


def test_too_few_samples_or_missing_data_is_inconclusive_never_a_pass() -> None:
    spec = judge(minSamples=30)
    for canary, stable in [([], []), ([1.0] * 29, [1.0] * 100), ([1.0] * 100, []), ([float("nan")] * 50, [1.0] * 50)]:
        out = evaluate(spec, canary, stable)
        assert out.result == "Inconclusive"
        assert out.p_value is None
        assert "not enough samples" in out.message


def test_all_values_tied_is_a_pass_with_p_one() -> None:
    out = evaluate(judge(minSamples=3), [0.0] * 10, [0.0] * 10)
    assert (out.result, out.p_value, out.effect) == ("Pass", 1.0, 0.0)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shift=st.floats(1.0, 10.0),
    worse_when=st.sampled_from(["lower", "higher"]),
    confidence=st.sampled_from([0.9, 0.95, 0.99]),
)
def test_a_clear_shift_in_the_bad_direction_always_fails(
    seed: int, shift: float, worse_when: str, confidence: float
) -> None:
    rng = np.random.default_rng(seed)
    stable = rng.normal(100, 1, 60)
    bad = -shift if worse_when == "lower" else shift
    canary = rng.normal(100 + bad, 1, 60)
    out = evaluate(judge(worseWhen=worse_when, confidence=confidence), list(canary), list(stable))
    assert out.result == "Fail", out.message
    assert out.effect is not None and (out.effect < 0) == (worse_when == "lower")
    assert (out.canary, out.stable) == (60, 60)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shift=st.floats(1.0, 10.0), worse_when=st.sampled_from(["lower", "higher"]))
def test_a_shift_in_the_good_direction_never_fails(seed: int, shift: float, worse_when: str) -> None:
    rng = np.random.default_rng(seed)
    stable = rng.normal(100, 1, 40)
    good = shift if worse_when == "lower" else -shift
    out = evaluate(judge(worseWhen=worse_when), list(rng.normal(100 + good, 1, 40)), list(stable))
    assert out.result == "Pass"


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e6, 1e6), min_size=30, max_size=200))
def test_the_same_population_on_both_sides_passes(values: list[float]) -> None:
    out = evaluate(judge(), values, list(values))
    assert out.result == "Pass"
    assert out.p_value is not None and out.p_value >= 0.4
    assert out.effect == pytest.approx(0.0, abs=1e-6 * max(1.0, max(abs(v) for v in values)))


def test_false_positive_rate_of_identical_distributions_is_near_one_minus_confidence() -> None:
    """Identical distributions Pass at the configured confidence most of the time: about 1 - confidence
    of the runs Fail, by construction of the test (the rate is stated in docs/judge.md)."""
    rng = np.random.default_rng(20261201)
    spec = judge(confidence=0.95, minSamples=30)
    runs = 2000
    fails = sum(
        evaluate(spec, list(rng.normal(0, 1, 50)), list(rng.normal(0, 1, 50))).result == "Fail" for _ in range(runs)
    )
    rate = fails / runs
    assert rate == pytest.approx(OBSERVED_FALSE_POSITIVE_RATE, abs=1e-9)
    assert rate <= 0.065  # at most 1 - confidence plus sampling noise


def test_a_judge_gate_status_carries_p_effect_and_samples() -> None:
    spec = GateSpec.model_validate(
        {"name": "pnl", "judge": {"query": 'pnl{version="{{version}}"}', "worseWhen": "lower", "minSamples": 5}}
    )
    m = gatelib.Measurement(None, populations=((1.0, 2.0, 3.0, 4.0, 5.0), (11.0, 12.0, 13.0, 14.0, 15.0)))
    status = gatelib.record(None, spec, m, NOW)
    assert status.result == "Fail"
    assert status.value is not None and status.value < 0.05
    assert status.effect == pytest.approx(-10.0)
    assert status.samples is not None and (status.samples.canary, status.samples.stable) == (5, 5)
    assert status.failures == 1
    down = gatelib.Measurement(None, outcome="inconclusive", message="canary: down")
    missing = gatelib.record(status, spec, down, NOW)
    assert (missing.result, missing.inconclusives, missing.failures) == ("Inconclusive", 1, 1)
