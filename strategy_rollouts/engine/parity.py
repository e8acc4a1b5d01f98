"""ParityCheck engine: series alignment, tracking error, attribution, levels, breach counting, actions.

Pure: the operator runs the Prometheus range queries and applies the returned actions.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

Level: TypeAlias = Literal["Unknown", "Excellent", "Good", "Warning", "Critical", "Emergency"]
ActionKind: TypeAlias = Literal[
    "event_only",
    "set_size_multiplier",
    "set_entries_enabled",
    "pause_rollout",
    "resume_rollout",
    "abort_rollout",
    "stop_trading",
]

COMPONENTS: Final = ("fees", "slippage", "timing", "sizing")
BREACH_LEVELS: Final[tuple[Level, ...]] = ("Warning", "Critical", "Emergency")
RECOVERED_LEVELS: Final[tuple[Level, ...]] = ("Excellent", "Good")
EXCELLENT_BELOW_BPS: Final = 10.0
DEFAULT_MIN_SAMPLES: Final = 10


# -------------------------------------------------------------------------------------- alignment


@dataclass(frozen=True)
class Series:
    """One range query's answer: (timestamp, value) points by timestamp, or why there are none."""

    points: list[tuple[float, float]]
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Aligned:
    pairs: tuple[tuple[float, float, float], ...]  # (timestamp, live, backtest), by timestamp
    unmatched_live: int
    unmatched_backtest: int

    @property
    def diffs(self) -> tuple[float, ...]:
        return tuple(live - backtest for _, live, backtest in self.pairs)


def _grid(series: Sequence[tuple[float, float]], step_s: float | None) -> tuple[dict[int, tuple[float, float]], int]:
    """Points keyed by grid slot; non-finite values and later duplicates of a slot are dropped."""
    unit = step_s if step_s else 0.001  # without a step, Prometheus' millisecond resolution
    points: dict[int, tuple[float, float]] = {}
    dropped = 0
    for ts, value in series:
        slot = round(ts / unit)
        if not (math.isfinite(ts) and math.isfinite(value)) or slot in points:
            dropped += 1
            continue
        points[slot] = (ts, value)
    return points, dropped


def align(
    live: Sequence[tuple[float, float]],
    backtest: Sequence[tuple[float, float]],
    step_s: float | None = None,
) -> Aligned:
    """Pair (timestamp, value) points whose timestamps fall on the same step slot.

    Range queries with the same start and step return the same grid, so rounding to the step is
    exact matching in practice. Unpaired, non-finite or duplicate points are counted as unmatched.
    """
    if step_s is not None and not (math.isfinite(step_s) and step_s > 0):
        raise ValueError(f"step must be a positive number of seconds, got {step_s}")
    live_points, live_dropped = _grid(live, step_s)
    back_points, back_dropped = _grid(backtest, step_s)
    common = sorted(live_points.keys() & back_points.keys())
    pairs = tuple((live_points[k][0], live_points[k][1], back_points[k][1]) for k in common)
    return Aligned(
        pairs=pairs,
        unmatched_live=live_dropped + len(live_points) - len(common),
        unmatched_backtest=back_dropped + len(back_points) - len(common),
    )


# ------------------------------------------------------------------------------- tracking error


def tracking_error_bps(diffs: Sequence[float], periods_per_year: float) -> float | None:
    """Sample stdev (n-1) of per-period return differences x sqrt(periods per year) x 1e4.

    None with fewer than 2 samples (the sample stdev is undefined).
    """
    if periods_per_year <= 0:
        raise ValueError(f"periodsPerYear must be > 0, got {periods_per_year}")
    if len(diffs) < 2:
        return None
    return statistics.stdev(diffs) * math.sqrt(periods_per_year) * 1e4


@dataclass(frozen=True, slots=True)
class Attribution:
    """Per-period means in bps (not annualized); alpha is what the four components do not explain."""

    alpha: float | None
    fees: float
    slippage: float
    timing: float
    sizing: float
    missing: tuple[str, ...]  # components without data, counted as 0

    def as_dict(self) -> dict[str, float | None]:
        return {
            "alpha": self.alpha,
            "fees": self.fees,
            "slippage": self.slippage,
            "timing": self.timing,
            "sizing": self.sizing,
        }


def attribute(return_diffs: Sequence[float], component_diffs: Mapping[str, Sequence[float]]) -> Attribution:
    """component = mean(live - backtest) of its aligned series (already bps);
    alpha = mean(live - backtest returns) x 1e4 - sum(components). A component absent from the
    mapping or with no aligned samples counts as 0 and is listed in `missing`.
    """
    values: dict[str, float] = {}
    missing: list[str] = []
    for name in COMPONENTS:
        series = component_diffs.get(name)
        if series:
            values[name] = statistics.fmean(series)
        else:
            values[name] = 0.0
            missing.append(name)
    alpha = statistics.fmean(return_diffs) * 1e4 - sum(values.values()) if return_diffs else None
    return Attribution(alpha=alpha, missing=tuple(missing), **values)


# ------------------------------------------------------------------------------------------ level


@dataclass(frozen=True, slots=True)
class Thresholds:
    warning: float
    critical: float
    emergency: float

    def __post_init__(self) -> None:
        if not (0 < self.warning <= self.critical <= self.emergency):
            raise ValueError(
                "thresholdsBps must satisfy 0 < warning <= critical <= emergency, got "
                f"{self.warning}, {self.critical}, {self.emergency}"
            )


def level(
    te_bps: float | None,
    thresholds: Thresholds,
    *,
    samples: int,
    min_samples: int = DEFAULT_MIN_SAMPLES,
) -> Level:
    """Band of a tracking error; Unknown with too few aligned samples or no value (no data)."""
    if te_bps is None or not math.isfinite(te_bps) or samples < min_samples:
        return "Unknown"
    # Checked from the top so a warning threshold below 10 bps still wins over Excellent.
    if te_bps >= thresholds.emergency:
        return "Emergency"
    if te_bps >= thresholds.critical:
        return "Critical"
    if te_bps >= thresholds.warning:
        return "Warning"
    return "Excellent" if te_bps < EXCELLENT_BELOW_BPS else "Good"


def next_breach_count(prev: int, lvl: Level) -> int:
    """Breaching runs in a row. Unknown (no data) neither increments nor resets: missing data must
    not hide a drift that was already building up, nor push it over the edge on its own."""
    if lvl == "Unknown":
        return prev
    return prev + 1 if lvl in BREACH_LEVELS else 0


# ---------------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class LevelActions:
    """`spec.actions.<level>`."""

    size_multiplier: float | None = None
    entries_enabled: bool | None = None
    pause_rollout: bool = False
    abort_rollout: bool = False
    stop_trading: bool = False


@dataclass(frozen=True, slots=True)
class ActionsSpec:
    warning: LevelActions = LevelActions()
    critical: LevelActions = LevelActions()
    emergency: LevelActions = LevelActions()

    def for_level(self, lvl: Level) -> LevelActions | None:
        return {"Warning": self.warning, "Critical": self.critical, "Emergency": self.emergency}.get(lvl)


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do. `lift` marks a recovery action that undoes an earlier one."""

    kind: ActionKind
    value: float | bool | None = None
    lift: bool = False

    def describe(self) -> str:
        text = self.kind if self.value is None else f"{self.kind}({self.value})"
        return f"lift: {text}" if self.lift else text


@dataclass(frozen=True, slots=True)
class ActionPlan:
    due: tuple[Action, ...]  # apply these, record each in status and as an Event
    in_force: tuple[Action, ...]  # what this ParityCheck has applied and not lifted, after `due`


def _strongest_multiplier(in_force: Sequence[Action]) -> float | None:
    values = [float(a.value) for a in in_force if a.kind == "set_size_multiplier" and a.value is not None]
    return min(values) if values else None


def _has(in_force: Sequence[Action], *kinds: ActionKind) -> bool:
    return any(a.kind in kinds for a in in_force)


def _escalation(spec: LevelActions, in_force: Sequence[Action]) -> list[Action]:
    """Actions of a breach level not already in force. Breach actions only ever tighten: a lower
    level after a higher one never raises the size multiplier or re-enables entries."""
    due: list[Action] = []
    current = _strongest_multiplier(in_force)
    limit = 1.0 if current is None else current  # 1.0 is the routing default: nothing to do
    if spec.size_multiplier is not None and spec.size_multiplier < limit:
        due.append(Action("set_size_multiplier", spec.size_multiplier))
    entries_off = spec.entries_enabled is False or spec.stop_trading
    if entries_off and not _has(in_force, "stop_trading") and Action("set_entries_enabled", False) not in in_force:
        due.append(Action("set_entries_enabled", False))
    if spec.pause_rollout and not _has(in_force, "pause_rollout", "abort_rollout", "stop_trading"):
        due.append(Action("pause_rollout"))
    if (spec.abort_rollout or spec.stop_trading) and not _has(in_force, "abort_rollout", "stop_trading"):
        due.append(Action("abort_rollout"))
    if spec.stop_trading and not _has(in_force, "stop_trading"):
        due.append(Action("stop_trading"))
    return due


def _recovery(in_force: Sequence[Action], auto_recover: bool) -> tuple[list[Action], list[Action]]:
    """(lifts due, still in force). Abort and stopTrading are never lifted automatically: a human
    retries the rollout / restarts trading with the plugin. Nothing is lifted under stopTrading."""
    kept = [a for a in in_force if a.kind != "event_only"]  # the next breach episode warns again
    if not auto_recover or _has(kept, "stop_trading"):
        return [], kept
    lifts: list[Action] = []
    if _has(kept, "set_size_multiplier"):
        lifts.append(Action("set_size_multiplier", 1.0, lift=True))
    if _has(kept, "set_entries_enabled"):
        lifts.append(Action("set_entries_enabled", True, lift=True))
    if _has(kept, "pause_rollout") and not _has(kept, "abort_rollout"):
        lifts.append(Action("resume_rollout", lift=True))
    lifted = {"set_size_multiplier", "set_entries_enabled", "pause_rollout"}
    if _has(kept, "abort_rollout"):
        lifted.discard("pause_rollout")
    return lifts, [a for a in kept if a.kind not in lifted]


def plan_actions(
    lvl: Level,
    breach_count: int,
    consecutive_breaches: int,
    spec: ActionsSpec,
    in_force: Sequence[Action],
    *,
    auto_recover: bool = False,
) -> ActionPlan:
    """What to do after a run at `lvl` (with `breach_count` from `next_breach_count`).

    Idempotent: an action already in force (same kind and value, or a stronger one) is not due
    again, so re-running the same decision after a restart does nothing twice.
    """
    current = tuple(in_force)
    if lvl in RECOVERED_LEVELS:
        lifts, kept = _recovery(current, auto_recover)
        return ActionPlan(tuple(lifts), tuple(kept))
    level_spec = spec.for_level(lvl)
    if level_spec is None or breach_count < max(1, consecutive_breaches):
        return ActionPlan((), current)  # Unknown, or not enough breaching runs in a row yet
    due = _escalation(level_spec, current)
    observe_only = not _escalation(level_spec, ())
    if observe_only and not _has(current, "event_only"):
        due = [Action("event_only")]  # observe: an Event and the metric, once per breach episode
    return ActionPlan(tuple(due), current + tuple(due))


def actions_due(
    lvl: Level,
    breach_count: int,
    consecutive_breaches: int,
    actions_spec: ActionsSpec,
    already_applied: Sequence[Action],
    *,
    auto_recover: bool = False,
) -> list[Action]:
    """The due part of `plan_actions`."""
    plan = plan_actions(
        lvl, breach_count, consecutive_breaches, actions_spec, already_applied, auto_recover=auto_recover
    )
    return list(plan.due)
