"""The statistical judge: is the canary population worse than the stable one? Mann-Whitney U (one-sided)
here; `test: sequential` in engine/sequential.py.

Pure. scipy is imported inside `evaluate`, so an operator whose objects have no judge gate never loads it.
Missing data is never a pass: below `minSamples` on either side the verdict is Inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import JudgeSpec

# Prometheus refuses a range query of more than 11,000 points per series: a sequential judge's range is
# capped there (at step 1m: 7.6 days), the oldest samples of a longer step dropping out.
MAX_POINTS = 11_000


def sample_range(spec: JudgeSpec, step_started: datetime | None, now: datetime) -> datetime:
    """Where the samples begin: mannWhitneyU the last `window`; sequential the start of the current step
    (the range query's grid is anchored there, so every evaluation sees the same timestamps), or the last
    `window` when there is no step (a ShadowRun KPI before its start is known)."""
    step = parse_duration(spec.step)
    if spec.test == "sequential" and step_started is not None:
        return max(step_started, now - step * (MAX_POINTS - 1))
    return now - parse_duration(spec.window)


def elapsed_since(start: datetime | None, now: datetime) -> timedelta | None:
    return None if start is None else now - start


Verdict = Literal["Pass", "Fail", "Inconclusive"]


@dataclass(frozen=True)
class JudgeOutcome:
    result: Verdict
    message: str
    p_value: float | None  # one-sided: small means the canary is worse
    effect: float | None  # Hodges-Lehmann shift, canary - stable
    canary: int
    stable: int


def hodges_lehmann(canary: Sequence[float], stable: Sequence[float]) -> float:
    """Median of every pairwise difference canary_i - stable_j: the shift estimate that goes with U."""
    import numpy as np

    diffs = np.subtract.outer(np.asarray(canary, dtype=float), np.asarray(stable, dtype=float))
    return float(np.median(diffs))


def one_sided_p(canary: Sequence[float], stable: Sequence[float], worse_when: Literal["lower", "higher"]) -> float:
    """p of "the canary is stochastically lower (or higher) than stable"; 1.0 when every value ties."""
    from scipy.stats import mannwhitneyu

    if len(set(canary) | set(stable)) == 1:
        return 1.0  # one value on both sides: no evidence of any difference (scipy would answer NaN)
    alternative = "less" if worse_when == "lower" else "greater"
    return float(mannwhitneyu(canary, stable, alternative=alternative, method="auto").pvalue)


def one_sided_p_rows(canary: Any, stable: Any, worse_when: Literal["lower", "higher"]) -> Any:
    """one_sided_p of every row of two 2-D arrays at once (the same scipy test, vectorised): for simulate."""
    import numpy as np
    from scipy.stats import mannwhitneyu

    alternative = "less" if worse_when == "lower" else "greater"
    with np.errstate(invalid="ignore", divide="ignore"):
        p = mannwhitneyu(canary, stable, alternative=alternative, method="auto", axis=1).pvalue
    tied = np.ptp(np.concatenate([canary, stable], axis=1), axis=1) == 0
    return np.where(tied, 1.0, p)


def evaluate(spec: JudgeSpec, canary: Sequence[float], stable: Sequence[float]) -> JudgeOutcome:
    canary = [v for v in canary if math.isfinite(v)]
    stable = [v for v in stable if math.isfinite(v)]
    n, m = len(canary), len(stable)
    if n < spec.min_samples or m < spec.min_samples:
        return JudgeOutcome(
            "Inconclusive",
            f"not enough samples: canary {n}, stable {m} (minSamples {spec.min_samples})",
            None,
            None,
            n,
            m,
        )
    p = one_sided_p(canary, stable, spec.worse_when)
    effect = hodges_lehmann(canary, stable)
    alpha = 1 - spec.confidence
    worse = p < alpha
    verdict: Verdict = "Fail" if worse else "Pass"
    relation = "<" if worse else ">="
    message = (
        f"canary {'worse' if worse else 'not worse'} ({spec.worse_when} is worse): one-sided p={p:.4g} {relation}"
        f" {alpha:.4g}, effect {effect:+.6g}, samples canary {n} / stable {m}"
    )
    return JudgeOutcome(verdict, message, p, effect, n, m)
