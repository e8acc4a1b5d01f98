"""Gate bookkeeping: judge one measurement, count failures and inconclusives, decide freshness.

Shared by StrategyRollout gates, risk budgets and ShadowRun KPIs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from strategy_rollouts.api.conditions import parse_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import ConfidenceInterval, GateResult, GateSpec, GateStatus, JudgeSamples
from strategy_rollouts.engine import judge as judgelib
from strategy_rollouts.engine import sequential

Outcome = Literal["ok", "inconclusive", "error"]


@dataclass(frozen=True)
class Measurement:
    """What the Prometheus adapter saw: a value (and baseline in compare mode), or why not."""

    value: float | None
    baseline: float | None = None
    outcome: Outcome = "ok"
    message: str = ""
    # Prometheus answered, with no sample (or NaN): what a closed market looks like (engine/market.py).
    empty: bool = False
    # judge gates: every sample of the canary and of the stable side (the engine runs the test)
    populations: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    # the same with their timestamps, (times, values) per side (a sequential judge pairs by time)
    points: tuple[sequential.Points, sequential.Points] | None = None
    started: datetime | None = None  # where the judge's samples begin (sequential: the current step's start)


def _num(value: float | None) -> str:
    return "none" if value is None else f"{value:.6g}"


def judge(spec: GateSpec, m: Measurement) -> tuple[GateResult, str]:
    """Pass / Fail / Inconclusive / Error for one measurement, with a message naming the numbers."""
    if m.outcome == "error":
        return "Error", m.message or "query error"
    if spec.webhook is not None and m.outcome == "ok" and m.value is not None:
        if 200 <= m.value < 300:
            return "Pass", f"accepted (HTTP {m.value:g})"
        rejected: GateResult = "Fail" if spec.webhook.on_reject == "fail" else "Rejected"
        return rejected, f"rejected (HTTP {m.value:g}): {m.message}"
    if m.outcome == "inconclusive" or m.value is None or not math.isfinite(m.value):
        return "Inconclusive", m.message or f"no usable value ({_num(m.value)})"
    if spec.condition is not None:
        cond = parse_condition(spec.condition)
        ok = cond.holds(m.value)
        return ("Pass" if ok else "Fail"), f"{_num(m.value)} {'' if ok else 'not '}{cond}"
    # Compare mode: relative increase of value over baseline.
    if m.baseline is None or not math.isfinite(m.baseline) or m.baseline <= 0:
        return "Inconclusive", m.message or f"no usable baseline ({_num(m.baseline)})"
    increase = (m.value - m.baseline) / m.baseline * 100
    limit = spec.max_increase_percent or 0.0
    ok = increase <= limit
    verb = "<=" if ok else ">"
    return ("Pass" if ok else "Fail"), (
        f"{_num(m.value)} vs baseline {_num(m.baseline)}: {increase:+.2f}% {verb} +{limit:g}%"
    )


def record(prev: GateStatus | None, spec: GateSpec, m: Measurement, now: datetime) -> GateStatus:
    """`failures` counts every Fail since the counters were last reset (the rollout resets them when a
    step starts); `consecutiveFailures` and `inconclusives` count in a row, so a Pass resets them."""
    extra: dict[str, object] = {}
    result: GateResult
    overdue = None
    if spec.judge is not None and spec.judge.test == "sequential" and m.outcome == "ok" and m.points is not None:
        seq = sequential.evaluate(spec.judge, *m.points, judgelib.elapsed_since(m.started, now))
        result, message = seq.result, seq.message
        m = Measurement(seq.p_value)
        extra = {
            "effect": seq.effect,
            "samples": JudgeSamples(canary=seq.canary, stable=seq.stable, pairs=seq.pairs),
            "confidence_interval": None
            if seq.lower is None
            else ConfidenceInterval(lower=_finite(seq.lower), upper=_finite(seq.upper)),
            "margin": seq.margin,
        }
        overdue = seq.past_deadline or None
    elif spec.judge is not None and m.outcome == "ok" and m.populations is not None:
        out = judgelib.evaluate(spec.judge, *m.populations)
        result, message = out.result, out.message
        m = Measurement(out.p_value)
        extra = {"effect": out.effect, "samples": JudgeSamples(canary=out.canary, stable=out.stable)}
    else:
        result, message = judge(spec, m)
    failures = prev.failures if prev else 0
    consecutive = prev.consecutive_failures if prev else 0
    inconclusives = prev.inconclusives if prev else 0
    if result == "Pass":
        consecutive, inconclusives = 0, 0
    elif result == "Fail":
        failures += 1
        consecutive += 1
    elif result in ("Rejected", "Undecided"):
        inconclusives = 0  # an answer, not missing data: it holds, and is asked again every interval
    else:
        inconclusives += 1
    return GateStatus(
        name=spec.name,
        value=m.value if m.value is not None and math.isfinite(m.value) else None,
        baseline=m.baseline if m.baseline is not None and math.isfinite(m.baseline) else None,
        result=result,
        failures=failures,
        consecutive_failures=consecutive,
        inconclusives=inconclusives,
        evaluated_at=now,
        message=message,
        dry_run=spec.dry_run or None,
        undecided_overdue=overdue,
        **extra,
    )


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def interval(spec: GateSpec) -> timedelta:
    return parse_duration(spec.interval)


def is_due(spec: GateSpec, status: GateStatus | None, now: datetime) -> bool:
    return status is None or status.evaluated_at is None or now >= status.evaluated_at + interval(spec)


def next_due(spec: GateSpec, status: GateStatus | None, now: datetime) -> datetime:
    if status is None or status.evaluated_at is None:
        return now
    return status.evaluated_at + interval(spec)


def is_fresh(spec: GateSpec, status: GateStatus | None, now: datetime) -> bool:
    return status is not None and status.evaluated_at is not None and now - status.evaluated_at <= 2 * interval(spec)


@dataclass(frozen=True)
class GateSummary:
    failed: list[GateStatus]  # failures beyond failureLimit (non-dry-run)
    held: list[GateStatus]  # inconclusive/error beyond inconclusiveLimit (non-dry-run)
    all_pass: bool  # every non-dry-run gate's latest fresh measurement is Pass
    # sequential judges past decideWithin without a decision, onUndecided: hold (reason JudgeUndecided)
    undecided: list[GateStatus] = field(default_factory=list)

    def failure_reason(self) -> str:
        gate = self.failed[0]
        return (
            f"gate {gate.name} failed: {gate.message} (failures {gate.failures} this step,"
            f" {gate.consecutive_failures} in a row)"
        )

    def hold_reason(self) -> str:
        gate = self.held[0]
        return f"gate {gate.name} {gate.result}: {gate.message} ({gate.inconclusives} in a row)"

    def undecided_reason(self) -> str:
        gate = self.undecided[0]
        return f"gate {gate.name} undecided: {gate.message}"


def exceeded(spec: GateSpec, status: GateStatus) -> bool:
    """failureLimit (since the step started) or consecutiveFailureLimit (in a row) exceeded."""
    if status.failures > spec.failure_limit:
        return True
    limit = spec.consecutive_failure_limit
    return limit is not None and status.consecutive_failures > limit


def per_step(specs: list[GateSpec]) -> frozenset[str]:
    """Gates whose evidence starts with each step (sequential judges): a new step starts them afresh."""
    return frozenset(g.name for g in specs if g.judge is not None and g.judge.test == "sequential")


def reset_step_counts(statuses: list[GateStatus], restart: frozenset[str] = frozenset()) -> list[GateStatus]:
    """A new step starts counting failures afresh (failureLimit is per step); the gates in `restart` start
    over (no result, due now): the last step's decision is not this step's."""
    out = []
    for g in statuses:
        if g.name in restart:
            out.append(GateStatus(name=g.name, template=g.template, dry_run=g.dry_run))
        else:
            out.append(g if g.failures == 0 else g.model_copy(update={"failures": 0}))
    return out


def summarize(specs: list[GateSpec], statuses: dict[str, GateStatus], now: datetime) -> GateSummary:
    failed: list[GateStatus] = []
    held: list[GateStatus] = []
    undecided: list[GateStatus] = []
    all_pass = True
    for spec in specs:
        if spec.dry_run:
            continue
        status = statuses.get(spec.name)
        if status is not None and exceeded(spec, status):
            failed.append(status)
        if status is not None and status.inconclusives > spec.inconclusive_limit:
            held.append(status)
        if status is not None and status.result == "Undecided" and status.undecided_overdue:
            undecided.append(status)
        if spec.webhook is not None and spec.webhook.at != "continuous":
            continue  # confirms one transition, checked there (engine/webhook_gates.py)
        if status is None or status.result != "Pass" or not is_fresh(spec, status, now):
            all_pass = False
    return GateSummary(failed, held, all_pass, undecided)
