"""What a ShadowRun pass observes, as plain values: stream reads, cursors, KPI and latency results.

Pure: the adapter does the reading (Redis, Prometheus, ConfigMaps) and hands the raw results here.
Counting: decisions with stream ids after `<startedAt ms>-0` and at or before `startedAt + duration`
(ms) count. Cursors and the matcher state live in `status.matcher` and are written in the same status
write as the counts, so a restart resumes from them and never counts an entry twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from strategy_rollouts.api.common import SecretKeyRef
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.placeholders import placeholder_values, substitute
from strategy_rollouts.api.shadowrun import (
    DecisionStats,
    LatencyProfileSpec,
    Mismatches,
    Percentiles,
    ShadowRunSpec,
    ShadowRunStatus,
)
from strategy_rollouts.api.shadowrun import StageLatency as StageLatencyStatus
from strategy_rollouts.engine.shadow import (
    Decision,
    KpiResult,
    MatcherState,
    Quantiles,
    StageLatency,
    judge_stage,
    parse_decision,
    stream_id_key,
)

QUANTILES: Final = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(at: datetime) -> int:
    """Unix milliseconds, exactly (no float rounding: 1700000000.123 s is 1700000000123 ms)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def initial_cursor(started_ms: int) -> str:
    """Only entries added after the run started count: ids strictly after `<startedAt ms>-0`."""
    return f"{started_ms}-0"


def stream_names(spec: ShadowRunSpec, namespace: str) -> tuple[str, str]:
    assert spec.decisions is not None
    values = placeholder_values(spec, namespace)
    source = spec.decisions.source.redis
    return substitute(source.live_stream, values), substitute(source.shadow_stream, values)


# ---------------------------------------------------------------------------------- stream reads


@dataclass(frozen=True)
class StreamRead:
    """One side's read: entries strictly after the cursor and at or before the run's end."""

    decisions: list[Decision] = field(default_factory=list)
    malformed: int = 0
    cursor: str = "0-0"  # the last id read, parsed or not (unchanged when nothing was read)
    truncated: bool = False  # the batch was full: there may be more before the bound
    error: str | None = None
    examples: tuple[str, ...] = ()  # why some entries were malformed (a few)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_entries(entries: Sequence[tuple[Any, Mapping[Any, Any] | None]], cursor: str, count: int) -> StreamRead:
    """Parse XRANGE entries, count the malformed ones, advance the cursor past every entry read."""
    decisions: list[Decision] = []
    malformed = 0
    why: list[str] = []
    last = cursor
    for raw_id, fields in entries:
        stream_id = _text(raw_id)
        last = stream_id
        try:
            if fields is None:
                raise ValueError("entry has no fields")
            decisions.append(parse_decision(fields, stream_id))
        except ValueError as exc:
            malformed += 1
            if len(why) < 3:
                why.append(f"{stream_id}: {exc}")
    return StreamRead(decisions, malformed, last, len(entries) >= count, None, tuple(why))


def watermark(now_ts: float, reads: Sequence[StreamRead]) -> float:
    """Expiry time: a side read only partly (batch cap) is complete only up to its last decision."""
    marks = [now_ts]
    for r in reads:
        if r.truncated:
            marks.append(r.decisions[-1].ts if r.decisions else now_ts)
    return min(marks)


# --------------------------------------------------------------------------------- matcher state


@dataclass(frozen=True)
class Cursors:
    live: str
    shadow: str


@dataclass(frozen=True)
class StreamPlan:
    """Where a ShadowRun's decisions are read from, and from which cursors."""

    address: str | None  # None: the URL is in the Secret `address_ref` (read by the operator at use)
    live: str
    shadow: str
    cursors: Cursors
    end_ms: int
    address_ref: SecretKeyRef | None = None


def read_matcher(raw: Mapping[str, Any]) -> tuple[MatcherState, Cursors | None, str | None]:
    """(state, cursors, error). Empty: not started or removed by hand (counting restarts from the
    start, with zero counts: consistent). Anything else that does not load is an error: never guess."""
    if not raw:
        return MatcherState(), None, None
    try:
        state = MatcherState.from_dict(raw)
        cursors = raw["cursors"]
        live, shadow = str(cursors["live"]), str(cursors["shadow"])
        stream_id_key(live)
        stream_id_key(shadow)
    except (ValueError, KeyError, TypeError) as exc:
        return MatcherState(), None, f"status.matcher: unreadable ({exc})"[:400]
    return state, Cursors(live, shadow), None


def load_matcher(status: ShadowRunStatus) -> tuple[MatcherState, Cursors | None]:
    """The stored matcher state and stream cursors (None: not started, or unreadable)."""
    state, cursors, _ = read_matcher(status.matcher)
    return state, cursors


def dump_matcher(state: MatcherState, cursors: Cursors) -> dict[str, Any]:
    return {**state.to_dict(), "cursors": {"live": cursors.live, "shadow": cursors.shadow}}


def decision_stats(state: MatcherState) -> DecisionStats:
    c = state.counts
    return DecisionStats(
        compared=c.compared,
        matched=c.matched,
        match_rate=c.match_rate,
        mismatches=Mismatches(**c.mismatches),
        malformed=state.malformed,
        pending=state.pending,
    )


# ----------------------------------------------------------------------------------- KPIs, latency


def kpi_results(spec: ShadowRunSpec, statuses: Sequence[GateStatus]) -> list[KpiResult]:
    by_name = {s.name: s for s in statuses}
    results: list[KpiResult] = []
    for kpi in spec.kpis:
        if kpi.dry_run:
            continue
        st = by_name.get(kpi.name)
        if st is None or st.result is None:
            results.append(KpiResult(kpi.name, "Inconclusive", None, "never measured"))
            continue
        results.append(
            KpiResult(kpi.name, st.result, st.value, st.message or "", beyond_limit=st.failures > kpi.failure_limit)
        )
    return results


def latency_query(lp: LatencyProfileSpec, strategy: str, version: str, quantile: float, window: str) -> str:
    selector = f'strategy="{strategy}",version="{version}"'
    return (
        f"histogram_quantile({quantile}, sum by (le, {lp.stage_label}) "
        f"(rate({lp.histogram}_bucket{{{selector}}}[{window}]))) * 1000"
    )


def profile_window(lp: LatencyProfileSpec, started_at: datetime, now: datetime) -> str:
    if lp.window:
        return lp.window
    elapsed = (now - started_at).total_seconds()
    return f"{int(min(max(math.ceil(elapsed), 10), 3600))}s"


def parse_budgets(data: Mapping[str, str] | None, name: str) -> tuple[dict[str, float], list[str]]:
    """stage -> p95 ms from the budgets ConfigMap; a bad value is a hold reason naming the key."""
    if data is None:
        return {}, [f"latency budgets ConfigMap {name} not found"]
    budgets: dict[str, float] = {}
    problems: list[str] = []
    for key, value in sorted(data.items()):
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number <= 0:
            problems.append(f"latency budgets ConfigMap {name}: {key}={value!r} is not a positive number of ms")
            continue
        budgets[key] = number
    return budgets, problems


def profile_stages(
    lp: LatencyProfileSpec,
    live: Mapping[str, Mapping[str, float]],
    shadow: Mapping[str, Mapping[str, float]],
    budgets: Mapping[str, float],
) -> list[StageLatency]:
    """`live`/`shadow`: quantile name (p50, p95, p99) -> stage -> ms. Every stage seen or budgeted."""
    names = sorted({s for q in (*live.values(), *shadow.values()) for s in q} | set(budgets))

    def quantiles(side: Mapping[str, Mapping[str, float]], stage: str) -> Quantiles:
        return Quantiles(**{q: side.get(q, {}).get(stage) for q in QUANTILES})

    return [
        StageLatency(
            stage, quantiles(live, stage), quantiles(shadow, stage), budgets.get(stage), lp.max_regression_percent
        )
        for stage in names
    ]


def profile_status(stages: Sequence[StageLatency]) -> dict[str, StageLatencyStatus]:
    def pct(q: Quantiles) -> Percentiles:
        return Percentiles(p50=q.p50, p95=q.p95, p99=q.p99)

    return {
        s.stage: StageLatencyStatus(
            live=pct(s.live),
            shadow=pct(s.shadow),
            budget_p95=s.budget_p95,
            regression_percent=s.regression_percent,
            max_regression_percent=s.max_regression_percent,
            result=judge_stage(s).result,
        )
        for s in stages
    }


def stages_from_status(profile: Mapping[str, StageLatencyStatus]) -> list[StageLatency]:
    """The inverse of profile_status (for a report derived from status alone)."""

    def q(p: Percentiles) -> Quantiles:
        return Quantiles(p.p50, p.p95, p.p99)

    return [
        StageLatency(stage, q(s.live), q(s.shadow), s.budget_p95, s.max_regression_percent or 0.0)
        for stage, s in sorted(profile.items())
    ]
