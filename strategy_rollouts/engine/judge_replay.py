"""A judge gate's own evaluation over recorded or synthetic data: `kubectl strategy judge replay` and
`judge simulate`, and the bench's operating-characteristics table (bench/judge.py).

Pure: the data comes in as arrays (read from a CSV or Prometheus by the CLI), synthetic data from a seeded
generator. Evaluations run at `interval`, 2 x `interval`, ... from the start of the step, each on the samples
the operator would have read then: sequential every sample so far, mannWhitneyU the last `window`.
"""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateSpec, JudgeSpec
from strategy_rollouts.engine import judge as judgelib
from strategy_rollouts.engine import sequential

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    Floats = npt.NDArray[np.float64]

Distribution = Literal["normal", "t3", "market", "ar1"]
DISTRIBUTIONS: tuple[Distribution, ...] = ("normal", "t3", "market", "ar1")
MARKET_SD = 2.0  # the common factor both sides share, in units of each side's own noise
AR1_RHO = 0.5
LEVEL = 100.0  # stable's mean level in `simulate` (what marginPercent is a percent of); noise sd 1


@dataclass(frozen=True)
class Run:
    """One step's samples: t (seconds from the start of the step), canary and stable (NaN: missing)."""

    t: Sequence[float]
    canary: Sequence[float]
    stable: Sequence[float]


@dataclass(frozen=True)
class Evaluation:
    run: str
    t: float
    result: str
    value: float | None
    effect: float | None
    lower: float | None
    upper: float | None
    canary: int
    stable: int
    pairs: int | None
    message: str

    def wire(self) -> dict[str, object]:
        return {
            "run": self.run,
            "t": self.t,
            "result": self.result,
            "value": self.value,
            "effect": self.effect,
            "confidenceInterval": {"lower": self.lower, "upper": self.upper},
            "samples": {"canary": self.canary, "stable": self.stable, "pairs": self.pairs},
            "message": self.message,
        }


def judge_of(gate: GateSpec) -> JudgeSpec:
    if gate.judge is None:
        raise ValueError(f"gate {gate.name}: not a judge gate (no judge:)")
    return gate.judge


def looks(gate: GateSpec, duration_s: float) -> list[float]:
    """The evaluation times of a step lasting `duration_s`: every interval, the last at or before the end."""
    every = parse_duration(gate.interval).total_seconds()
    return [every * k for k in range(1, int(duration_s / every + 1e-9) + 1)]


def evaluate_at(spec: JudgeSpec, data: Run, at: float) -> Evaluation:
    """What the gate decides at `at` seconds into the step, on the samples the operator reads then."""
    import numpy as np

    t = np.asarray(data.t, dtype=float)
    start = 0.0 if spec.test == "sequential" else at - parse_duration(spec.window).total_seconds()
    seen = (t >= start) & (t <= at)
    canary = np.asarray(data.canary, dtype=float)[seen]
    stable = np.asarray(data.stable, dtype=float)[seen]
    if spec.test == "sequential":
        out = sequential.evaluate(
            spec, (tuple(t[seen]), tuple(canary)), (tuple(t[seen]), tuple(stable)), timedelta(seconds=at)
        )
        return Evaluation(
            "", at, out.result, out.p_value, out.effect, out.lower, out.upper, out.canary, out.stable, out.pairs,
            out.message,
        )  # fmt: skip
    mwu = judgelib.evaluate(spec, list(canary), list(stable))
    return Evaluation(
        "", at, mwu.result, mwu.p_value, mwu.effect, None, None, mwu.canary, mwu.stable, None, mwu.message
    )


def replay(gate: GateSpec, runs: Mapping[str, Run]) -> list[Evaluation]:
    """Every evaluation of every run (in order of run, then t), up to the run's last sample."""
    spec = judge_of(gate)
    out: list[Evaluation] = []
    for name in sorted(runs):
        data = runs[name]
        end = max(data.t, default=0.0)
        every = parse_duration(gate.interval).total_seconds()
        times = looks(gate, math.ceil(end / every - 1e-9) * every if end > 0 else 0)
        out += [_named(evaluate_at(spec, data, at), name) for at in times]
    return out


def _named(e: Evaluation, run: str) -> Evaluation:
    return Evaluation(run, e.t, e.result, e.value, e.effect, e.lower, e.upper, e.canary, e.stable, e.pairs, e.message)


# --- synthetic data -------------------------------------------------------------------------------------


def noise(rng: np.random.Generator, dist: Distribution, shape: tuple[int, int]) -> tuple[Floats, Floats]:
    """(canary noise, stable noise), each of unit standard deviation per side apart from the market factor."""
    import numpy as np

    if dist == "normal":
        return rng.normal(0, 1, shape), rng.normal(0, 1, shape)
    if dist == "t3":  # Student t with 3 degrees of freedom has variance 3
        return rng.standard_t(3, shape) / math.sqrt(3), rng.standard_t(3, shape) / math.sqrt(3)
    if dist == "market":
        common = rng.normal(0, MARKET_SD, shape)
        return common + rng.normal(0, 1, shape), common + rng.normal(0, 1, shape)

    def ar1() -> Floats:
        shocks = rng.normal(0, math.sqrt(1 - AR1_RHO**2), shape)
        out = np.empty(shape)
        out[:, 0] = rng.normal(0, 1, shape[0])  # stationary start
        for i in range(1, shape[1]):
            out[:, i] = AR1_RHO * out[:, i - 1] + shocks[:, i]
        return out

    return ar1(), ar1()


@dataclass(frozen=True)
class Characteristics:
    """Shares of runs that Fail (roll back), Pass, or neither by the end of the step; median minutes to each."""

    runs: int
    fail: float
    passed: float
    undecided: float
    minutes_to_fail: float | None
    minutes_to_pass: float | None
    times_fail: list[float] = field(default_factory=list, repr=False)

    def wire(self) -> dict[str, object]:
        return {
            "runs": self.runs,
            "fail": self.fail,
            "pass": self.passed,
            "undecided": self.undecided,
            "medianMinutesToFail": self.minutes_to_fail,
            "medianMinutesToPass": self.minutes_to_pass,
        }


def streams(
    gate: GateSpec, duration_s: float, shift: float, dist: Distribution, runs: int, seed: int
) -> tuple[Floats, Floats, Floats]:
    """(t, canary[runs, n], stable[runs, n]): one sample per `step` per side from the start of the step;
    canary - stable = `shift` standard deviations of each side's own noise (negative: lower)."""
    import numpy as np

    step = parse_duration(judge_of(gate).step).total_seconds()
    t = np.arange(0.0, duration_s + 1e-9, step)
    rng = np.random.default_rng(seed)
    c, s = noise(rng, dist, (runs, len(t)))
    return t, LEVEL + shift + c, LEVEL + s


def simulate(
    gate: GateSpec, duration_s: float, shift: float, dist: Distribution, runs: int, seed: int = 20261207
) -> Characteristics:
    """The gate over `runs` synthetic steps of `duration_s`, evaluated every interval as the operator does.

    A run Fails when its failures exceed failureLimit (or consecutiveFailureLimit), as the rollout counts
    them; it Passes when no Fail came and the gate's result is Pass at the end (sequential: from its
    decision on, which is final); else it is undecided. Sequential runs are evaluated once at the end:
    the decision then is the first any look made (engine/sequential.py), at the first look at or after
    the deciding sample (or decideWithin, for onUndecided: rollback)."""
    spec = judge_of(gate)
    t, canary, stable = streams(gate, duration_s, shift, dist, runs, seed)
    times = looks(gate, duration_s)
    if spec.test == "sequential":
        outcomes = [_sequential_run(gate, t, c, s, times) for c, s in zip(canary, stable, strict=True)]
    else:
        outcomes = _mann_whitney_runs(gate, t, canary, stable, times)
    fails = [at for result, at in outcomes if result == "Fail"]
    passes = [at for result, at in outcomes if result == "Pass"]
    return Characteristics(
        runs=runs,
        fail=len(fails) / runs,
        passed=len(passes) / runs,
        undecided=1 - (len(fails) + len(passes)) / runs,
        minutes_to_fail=statistics.median(fails) / 60 if fails else None,
        minutes_to_pass=statistics.median(passes) / 60 if passes else None,
        times_fail=fails,
    )


WARN_RUNS = 200  # admission's estimate: about +-3 points at a 20 % rate, in well under a second per duration
WARN_SEED = 20261207


@functools.lru_cache(maxsize=256)
def _false_fail_rate(gate_json: str, duration_s: float) -> float:
    gate = GateSpec.model_validate_json(gate_json)
    return simulate(gate, duration_s, 0.0, "normal", WARN_RUNS, WARN_SEED).fail


def repeated_look_warning(gate: GateSpec, durations_s: Sequence[float], where: str) -> str | None:
    """The admission warning for a mannWhitneyU judge: over the longest step of known duration, how often
    `simulate` (identical iid normal sides) rolls back a version that is not worse, when that is more than
    twice 1 - confidence. Memoized per (gate, duration): a function of its arguments only."""
    spec = gate.judge
    if spec is None or spec.test != "mannWhitneyU" or not durations_s:
        return None
    longest = max(durations_s)
    if longest < parse_duration(gate.interval).total_seconds():
        return None
    rate = _false_fail_rate(gate.model_dump_json(), longest)
    alpha = 1 - spec.confidence
    if rate <= 2 * alpha:
        return None
    return (
        f"{where}: a mannWhitneyU judge evaluated every {gate.interval} over a {longest / 60:g}-minute step rolls"
        f" back a version that is not worse in about {rate:.0%} of steps (judge simulate, {WARN_RUNS} runs),"
        f" more than twice 1 - confidence ({alpha:.2g}); consider test: sequential (docs/judge.md)"
    )


def _first_look(times: list[float], at: float) -> float:
    return next((x for x in times if x >= at - 1e-9), times[-1])


def _sequential_run(gate: GateSpec, t: Floats, c: Floats, s: Floats, times: list[float]) -> tuple[str, float]:
    spec = judge_of(gate)
    if not times:
        return "Undecided", 0.0
    end = times[-1]
    seen = t <= end
    stamps = tuple(t[seen])
    out = sequential.evaluate(spec, (stamps, tuple(c[seen])), (stamps, tuple(s[seen])), timedelta(seconds=end))
    if out.decided_at is not None:
        return out.result, _first_look(times, out.decided_at)
    if out.result == "Fail":  # onUndecided: rollback at decideWithin
        deadline = parse_duration(spec.decide_within or "0s").total_seconds()
        return "Fail", _first_look(times, deadline)
    return out.result, end


def _mann_whitney_runs(
    gate: GateSpec, t: Floats, canary: Floats, stable: Floats, times: list[float]
) -> list[tuple[str, float]]:
    """Every look of every run, vectorised over runs (judge.one_sided_p_rows: the same scipy test)."""
    import numpy as np

    spec = judge_of(gate)
    window = parse_duration(spec.window).total_seconds()
    runs = canary.shape[0]
    failures = np.zeros(runs, dtype=int)
    in_a_row = np.zeros(runs, dtype=int)
    failed_at = np.full(runs, np.nan)
    last = np.full(runs, "Undecided", dtype=object)
    for at in times:
        seen = (t >= at - window) & (t <= at)
        n = int(seen.sum())
        if n < spec.min_samples:
            last[:] = "Inconclusive"
            continue
        p = judgelib.one_sided_p_rows(canary[:, seen], stable[:, seen], spec.worse_when)
        fail = p < 1 - spec.confidence
        failures += fail
        in_a_row = np.where(fail, in_a_row + 1, 0)
        over = failures > gate.failure_limit
        if gate.consecutive_failure_limit is not None:
            over |= in_a_row > gate.consecutive_failure_limit
        failed_at = np.where(np.isnan(failed_at) & over, at, failed_at)
        last = np.where(fail, "Fail", "Pass")
    end = times[-1] if times else 0.0
    return [("Fail", float(failed_at[i])) if not np.isnan(failed_at[i]) else (str(last[i]), end) for i in range(runs)]
