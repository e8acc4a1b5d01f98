"""The sequential judge: an anytime-valid confidence sequence for canary - stable (docs/judge.md).

Method: the asymptotic confidence sequence (AsympCS) of Waudby-Smith, Arbour, Sinha, Kennedy and Ramdas,
"Time-uniform central limit theory and asymptotic confidence sequences" (Annals of Statistics, 2024;
arXiv:2103.06476), with the one-sided normal-mixture boundary of Howard, Ramdas, McAuliffe and Sekhon,
"Time-uniform, nonparametric, nonasymptotic confidence sequences" (Annals of Statistics, 2021). For the
differences d_1..d_t (oriented so that worse is negative) with running mean m_t and running standard
deviation s_t, the upper bound is m_t + s_t * b_t / t and the lower bound m_t - s_t * b_t / t, where b_t
solves M_t(b) = 1 / alpha for the one-sided mixture martingale of a standard Brownian motion

    M_t(b) = 2 / sqrt(t rho^2 + 1) * exp(b^2 rho^2 / (2 (t rho^2 + 1))) * Phi(b rho / sqrt(t rho^2 + 1)).

Without the Phi factor this is the paper's closed form (its two-sided AsympCS at 2 alpha); Phi (close to 1
at the boundary) makes each bound a one-sided guarantee at alpha: P(the upper bound ever falls below the
true difference) <= alpha, asymptotically, however often one looks. Each bound is intersected with its
earlier values (a running max / min from `minSamples` on), so the interval only narrows.

Decision, a function of the samples only: the first prefix (in time order, from `minSamples` on) at which
the upper bound is below 0 is a Fail, the first at which the lower bound is above -margin is a Pass (both
at once: Fail); none yet: Undecided. Evaluating again, or after a restart, scans the same prefixes.

Pure; numpy and scipy are imported inside the functions, so an operator without judge gates never loads them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import JudgeSpec

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]

SequentialResult = Literal["Pass", "Fail", "Undecided", "Inconclusive"]
# One side's samples: (timestamps in unix seconds, values), parallel; several series may repeat a timestamp.
Points = tuple[Sequence[float], Sequence[float]]
FIXED_POINT_ROUNDS = 8  # the Phi factor moves the boundary by < 1 %: a few rounds reach float precision


def log_alpha_target(confidence: float) -> float:
    return math.log(1 - confidence)


def rho_squared(confidence: float, t_star: float) -> float:
    """The paper's choice of rho for the tightest interval at t_star samples (Waudby-Smith et al., eq. (14)),
    for the two-sided boundary at 2 alpha that the one-sided one tracks."""
    two_alpha = 2 * (1 - confidence)
    return (-2 * math.log(two_alpha) + math.log(-2 * math.log(two_alpha) + 1)) / t_star


def tuned_for(spec: JudgeSpec) -> float:
    """t_star: the sample count the boundary is tightest at. `decideWithin / step` when given (the last
    moment a decision matters), else 4 x minSamples; never below minSamples. A function of the spec only,
    fixed before any data is seen, as the guarantee requires."""
    step = parse_duration(spec.step).total_seconds()
    if spec.decide_within is not None and step > 0:
        return max(float(spec.min_samples), parse_duration(spec.decide_within).total_seconds() / step)
    return 4.0 * spec.min_samples


def boundary(n: int, confidence: float, rho2: float) -> Floats:
    """b_t for t = 1..n; memoized (a function of its arguments only), computed in blocks of 1,024."""
    size = -(-n // 1024) * 1024
    return _boundary(size, confidence, rho2)[:n]


@functools.lru_cache(maxsize=64)
def _boundary(n: int, confidence: float, rho2: float) -> Floats:
    """b_t with M_t(b_t) = 1 / alpha (one-sided normal mixture, standardized sum) for t = 1..n."""
    import numpy as np
    from scipy.special import log_ndtr

    t = np.arange(1, n + 1, dtype=float)
    a = t * rho2 + 1.0
    base = 0.5 * np.log(a) - math.log(2 * (1 - confidence))
    b = np.sqrt(2 * a / rho2 * base)
    for _ in range(FIXED_POINT_ROUNDS):
        b = np.sqrt(2 * a / rho2 * (base - log_ndtr(b * math.sqrt(rho2) / np.sqrt(a))))
    out = np.asarray(b, dtype=float)
    out.setflags(write=False)  # shared by every caller of the cache
    return out


def log_mixture(b: Floats, t: Floats, rho2: float) -> Floats:
    """log M_t(b): the e-process against "not worse" (b = the standardized evidence that it is worse)."""
    import numpy as np
    from scipy.special import log_ndtr

    a = t * rho2 + 1.0
    return np.asarray(
        math.log(2) - 0.5 * np.log(a) + b * b * rho2 / (2 * a) + log_ndtr(b * math.sqrt(rho2) / np.sqrt(a)),
        dtype=float,
    )


def per_timestamp(points: Points) -> tuple[Floats, Floats]:
    """(timestamps ascending, the mean of every finite value at each): several series per side are one."""
    import numpy as np

    stamps, values = np.asarray(points[0], dtype=float), np.asarray(points[1], dtype=float)
    keep = np.isfinite(stamps) & np.isfinite(values)
    stamps, values = stamps[keep], values[keep]
    if stamps.size == 0:
        return np.empty(0), np.empty(0)
    times, inverse = np.unique(stamps, return_inverse=True)
    sums = np.bincount(inverse, weights=values, minlength=len(times))
    counts = np.bincount(inverse, minlength=len(times))
    return times, sums / counts


def prefix_mean_var(x: Floats) -> tuple[Floats, Floats]:
    """Running mean and sample variance (ddof 1) of x[:k] for every k, shifted by x[0] for precision; the
    values for a prefix do not depend on what follows it (cumsum runs left to right)."""
    import numpy as np

    k = np.arange(1, len(x) + 1, dtype=float)
    y = x - x[0]
    s1 = np.cumsum(y)
    s2 = np.cumsum(y * y)
    mean = s1 / k
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(k > 1, (s2 - s1 * mean) / (k - 1), 0.0)
    return mean + x[0], np.maximum(var, 0.0)


@dataclass(frozen=True)
class SequentialOutcome:
    result: SequentialResult
    message: str
    canary: int  # timestamps with a finite canary value
    stable: int
    pairs: int = 0  # differences used
    p_value: float | None = None  # anytime-valid, against "the canary is not worse"
    effect: float | None = None  # canary - stable, mean of the differences
    lower: float | None = None  # the confidence sequence for canary - stable, in the query's unit
    upper: float | None = None
    margin: float | None = None  # in the query's unit (marginPercent resolved at the decision, or now)
    decided_at: float | None = None  # timestamp of the sample that decided (Pass / Fail)
    past_deadline: bool = False  # Undecided after decideWithin with onUndecided: hold (reason JudgeUndecided)


def _fmt(v: float) -> str:
    return f"{v:.4g}"


def _overdue(
    spec: JudgeSpec, result: SequentialResult, message: str, elapsed: timedelta | None
) -> tuple[SequentialResult, str, bool]:
    """No decision by decideWithin: onUndecided (hold: Undecided marked past the deadline; rollback: Fail)."""
    if result in ("Pass", "Fail") or spec.decide_within is None or elapsed is None:
        return result, message, False
    if elapsed < parse_duration(spec.decide_within):
        return result, message, False
    tail = f"no decision within decideWithin {spec.decide_within} (onUndecided: {spec.on_undecided}): {message}"
    return ("Fail", tail, False) if spec.on_undecided == "rollback" else ("Undecided", tail, True)


def evaluate(
    spec: JudgeSpec,
    canary: Points,
    stable: Points,
    elapsed: timedelta | None = None,
) -> SequentialOutcome:
    """The decision on every sample since the current step started (`elapsed` ago), in time order."""
    out, _ = _decide(spec, canary, stable)
    result, message, past = _overdue(spec, out.result, out.message, elapsed)
    if (result, message) == (out.result, out.message):
        return out
    return replace(out, result=result, message=message, past_deadline=past)


@dataclass(frozen=True)
class Trace:
    """The confidence sequence over the step, for a chart: one entry per sample from minSamples on (the
    interval as every look from then on saw it), the margin line, and the decision with its time."""

    times: tuple[float, ...]
    lower: tuple[float, ...]
    upper: tuple[float, ...]
    effect: tuple[float, ...]
    margin_line: float | None  # -margin (worseWhen lower) or +margin (higher), in the query's unit
    outcome: SequentialOutcome


def trace(spec: JudgeSpec, canary: Points, stable: Points) -> Trace:
    out, arrays = _decide(spec, canary, stable, with_trace=True)
    times, lower, upper, effect = arrays or ((), (), (), ())
    line = None if out.margin is None else (-out.margin if spec.worse_when == "lower" else out.margin)
    return Trace(times, lower, upper, effect, line, out)


Arrays = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def _decide(
    spec: JudgeSpec, canary: Points, stable: Points, with_trace: bool = False
) -> tuple[SequentialOutcome, Arrays | None]:
    import numpy as np

    tc, vc = per_timestamp(canary)
    ts, vs = per_timestamp(stable)
    nc, ns = len(tc), len(ts)
    missing = [side for side, n in (("canary", nc), ("stable", ns)) if n == 0]
    if missing:
        why = f"no {' and no '.join(missing)} samples since the step started (missing data never passes)"
        return SequentialOutcome("Inconclusive", why, nc, ns), None
    if spec.pairing == "time":
        times, ic, is_ = np.intersect1d(tc, ts, assume_unique=True, return_indices=True)
        if len(times) == 0:
            why = (
                f"sides cannot be aligned by time: canary {nc} and stable {ns} timestamps, none shared"
                " (pairing: time needs both sides' samples at the same step timestamps)"
            )
            return SequentialOutcome("Inconclusive", why, nc, ns), None
        mean, var = prefix_mean_var(vc[ic] - vs[is_])
        level, _ = prefix_mean_var(vs[is_])
    else:  # the k-th canary sample with the k-th stable one, variance as for two independent samples
        k = min(nc, ns)
        times = np.maximum(tc[:k], ts[:k])
        mc, varc = prefix_mean_var(vc[:k])
        level, vars_ = prefix_mean_var(vs[:k])
        mean, var = mc - level, varc + vars_
    n = len(mean)
    effect = float(mean[-1])
    paired = "paired " if spec.pairing == "time" else ""
    counts = f"{n} {paired}samples (canary {nc}, stable {ns})"
    if n < spec.min_samples:
        why = f"{n} of minSamples {spec.min_samples} {paired}samples (canary {nc}, stable {ns}): no decision before"
        return SequentialOutcome("Undecided", why, nc, ns, n, effect=effect), None
    sign = 1.0 if spec.worse_when == "lower" else -1.0  # oriented: worse is negative
    m0 = spec.min_samples - 1
    t = np.arange(1, n + 1, dtype=float)[m0:]
    sd = np.sqrt(var[m0:])
    oriented = sign * mean[m0:]
    rho2 = rho_squared(spec.confidence, tuned_for(spec))
    half = sd * boundary(n, spec.confidence, rho2)[m0:] / t
    lower = np.maximum.accumulate(oriented - half)
    upper = np.minimum.accumulate(oriented + half)
    if spec.margin_percent is not None:
        margins = np.abs(level[m0:]) * spec.margin_percent / 100
    else:
        margins = np.full(len(t), spec.margin or 0.0)
    # No spread: the differences are one constant; worse is then certain (log M = inf), else no evidence.
    spread = sd > 0
    evidence = -oriented * t / np.where(spread, sd, 1.0)
    exact = np.where(oriented < 0, np.inf, -np.inf)
    log_m = np.maximum.accumulate(np.where(spread, log_mixture(evidence, t, rho2), exact))
    fails = np.flatnonzero(upper < 0)
    passes = np.flatnonzero(lower > -margins)
    first_fail = int(fails[0]) if len(fails) else len(t)
    first_pass = int(passes[0]) if len(passes) else len(t)
    decided = min(first_fail, first_pass)
    # After a decision the interval keeps narrowing (reported as of now); the margin is the deciding one.
    margin = float(margins[min(decided, len(t) - 1)])
    p = float(min(1.0, math.exp(-log_m[-1]))) if math.isfinite(log_m[-1]) else 0.0
    lo, hi = (float(lower[-1]), float(upper[-1])) if sign > 0 else (-float(upper[-1]), -float(lower[-1]))
    numbers = SequentialOutcome("Undecided", "", nc, ns, n, p, effect, lo, hi, margin)
    arrays: Arrays | None = None
    if with_trace:
        lows, highs = (lower, upper) if sign > 0 else (-upper, -lower)
        arrays = (tuple(times[m0:].tolist()), tuple(lows.tolist()), tuple(highs.tolist()), tuple(mean[m0:].tolist()))
    shown = f"interval [{_fmt(lo)}, {_fmt(hi)}]"
    if decided == len(t):
        why = (
            f"undecided: effect {effect:+.4g}, {shown} holds 0 or reaches beyond margin {-sign * margin:+.4g}, {counts}"
        )
        return replace(numbers, message=why), arrays
    when = float(times[m0 + decided])
    if first_fail <= first_pass:
        why = (
            f"canary worse ({spec.worse_when} is worse): effect {effect:+.4g}, {shown} entirely"
            f" {'below' if sign > 0 else 'above'} 0 at {spec.confidence:g} confidence, anytime p={p:.3g},"
            f" decided at sample {m0 + decided + 1} of {counts}"
        )
        return replace(numbers, result="Fail", message=why, decided_at=when), arrays
    why = (
        f"canary not worse than margin {margin:.4g}: effect {effect:+.4g}, {shown} clear of {-sign * margin:+.4g}"
        f" at {spec.confidence:g} confidence, decided at sample {m0 + decided + 1} of {counts}"
    )
    return replace(numbers, result="Pass", message=why, decided_at=when), arrays
