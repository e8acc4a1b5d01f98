"""The statistical judge: is the canary population worse than the stable one? (Mann-Whitney U, one-sided).

Pure. scipy is imported inside `evaluate`, so an operator whose objects have no judge gate never loads it.
Missing data is never a pass: below `minSamples` on either side the verdict is Inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from strategy_rollouts.api.gates import JudgeSpec

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
