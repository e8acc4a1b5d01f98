"""ShadowRun reconcile: validate, start the isolated shadow, compare decisions, judge, report, clean up.

Same shape as rollouts.py: GET the object -> parse (invalid: phase Invalid, never act) -> observe
(deployment, Redis streams from the cursors stored in status, due KPIs) -> pure engine -> one status
patch if anything changed -> enforce the world (shadow replicas, NetworkPolicy, report).

Counting: decisions with stream ids after `<startedAt ms>-0` and at or before `startedAt + duration`
(ms) count. Cursors and the matcher state live in `status.matcher` and are written in the same patch
as the counts, so a restart resumes from them and never counts an entry twice.
A completed run is final: later spec changes are ignored (create a new ShadowRun to re-run).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from strategy_rollouts.api.common import Condition, GateStatus, set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.placeholders import SHADOW_PLACEHOLDERS, substitute
from strategy_rollouts.api.shadowrun import (
    DecisionStats,
    LatencyProfileSpec,
    Mismatches,
    Percentiles,
    ShadowRunSpec,
    ShadowRunStatus,
)
from strategy_rollouts.api.shadowrun import StageLatency as StageLatencyStatus
from strategy_rollouts.engine import gates
from strategy_rollouts.engine.report import render_report
from strategy_rollouts.engine.shadow import (
    KpiResult,
    MatchCounts,
    MatcherState,
    Quantiles,
    StageLatency,
    Tolerances,
    Verdict,
    finalize,
    ingest,
    judge_stage,
    shadow_verdict,
    validate_match_on,
)
from strategy_rollouts.engine.validation import gate_errors, query_errors
from strategy_rollouts.operator import daemons, decisions, metrics, networkpolicy, prometheus
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.rollouts import measure

PLURAL = "shadowruns"
KIND = "shadowrun"
READ_EVERY_S = 2.0  # decision reads while running
FINAL_GRACE_S = 1.0  # after the end, so every entry with an id <= end has been added
QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}
log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------- pure


def placeholder_values(spec: ShadowRunSpec, namespace: str, interval: str = "") -> dict[str, str]:
    """`{{live.*}}` / `{{shadow.*}}`, and the rollout names `{{stable.*}}` / `{{canary.*}}` for the same."""
    return {
        "strategy": spec.strategy,
        "namespace": namespace,
        "stage": "",
        "interval": interval,
        "live.version": spec.live.version,
        "shadow.version": spec.shadow.version,
        "live.deployment": spec.live.deployment,
        "shadow.deployment": spec.shadow.deployment,
        "stable.version": spec.live.version,
        "canary.version": spec.shadow.version,
        "stable.deployment": spec.live.deployment,
        "canary.deployment": spec.shadow.deployment,
    }


def stream_names(spec: ShadowRunSpec, namespace: str) -> tuple[str, str]:
    assert spec.decisions is not None
    values = placeholder_values(spec, namespace)
    source = spec.decisions.source.redis
    return substitute(source.live_stream, values), substitute(source.shadow_stream, values)


def spec_errors(spec: ShadowRunSpec, namespace: str) -> list[str]:
    """What the CRD schema cannot check; each message names the field."""
    errors: list[str] = []
    if spec.live.deployment == spec.shadow.deployment:
        errors.append("spec.shadow.deployment: must differ from spec.live.deployment")
    if parse_duration(spec.duration).total_seconds() <= 0:
        errors.append("spec.duration: must be > 0")
    if not spec.isolation.env:
        errors.append("spec.isolation.env: must name at least one variable (e.g. SHADOW_MODE: 'true')")
    errors += gate_errors("spec.kpis", spec.kpis, known=SHADOW_PLACEHOLDERS)
    if spec.decisions is not None:
        bad = validate_match_on(spec.decisions.match_on)
        if bad:
            errors.append(f"spec.decisions.{bad}")
        source = spec.decisions.source.redis
        errors += query_errors("spec.decisions.source.redis.liveStream", source.live_stream, SHADOW_PLACEHOLDERS)
        errors += query_errors("spec.decisions.source.redis.shadowStream", source.shadow_stream, SHADOW_PLACEHOLDERS)
        if not errors:
            live, shadow = stream_names(spec, namespace)
            if live == shadow:
                errors.append(f"spec.decisions.source.redis: live and shadow streams are the same ({live!r})")
        if parse_duration(spec.decisions.pairing_window).total_seconds() < 0:
            errors.append("spec.decisions.pairingWindow: must be >= 0")
    return errors


def parse(obj: Mapping[str, Any]) -> tuple[ShadowRunSpec | None, ShadowRunStatus, str | None]:
    """(spec, status, error). A spec that does not parse is reported, never acted on."""
    try:
        status = ShadowRunStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = ShadowRunStatus()
    try:
        return ShadowRunSpec.model_validate(obj.get("spec") or {}), status, None
    except ValidationError as exc:
        return None, status, validation_message(exc)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(at: datetime) -> int:
    """Unix milliseconds, exactly (no float rounding: 1700000000.123 s is 1700000000123 ms)."""
    return (at - _EPOCH) // timedelta(milliseconds=1)


def end_of(spec: ShadowRunSpec, started_at: datetime) -> datetime:
    return started_at + parse_duration(spec.duration)


@dataclass(frozen=True)
class Cursors:
    live: str
    shadow: str


def load_matcher(status: ShadowRunStatus) -> tuple[MatcherState, Cursors | None]:
    """The stored matcher state and stream cursors (None: not started, or unreadable)."""
    raw = status.matcher or {}
    cursors = raw.get("cursors")
    try:
        state = MatcherState.from_dict(raw) if raw.get("version") is not None else MatcherState()
    except ValueError:
        return MatcherState(), None
    if not isinstance(cursors, dict) or not {"live", "shadow"} <= set(cursors):
        return state, None
    return state, Cursors(str(cursors["live"]), str(cursors["shadow"]))


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


def watermark(now_ts: float, reads: Sequence[decisions.StreamRead]) -> float:
    """Expiry time: a side read only partly (batch cap) is complete only up to its last decision."""
    marks = [now_ts]
    for r in reads:
        if r.truncated:
            marks.append(r.decisions[-1].ts if r.decisions else now_ts)
    return min(marks)


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
            result=judge_stage(s).result,
        )
        for s in stages
    }


def verdict_for(
    spec: ShadowRunSpec,
    counts: MatchCounts,
    kpis: Sequence[KpiResult],
    stages: Sequence[StageLatency],
    *,
    finished: bool,
    hold: Sequence[str] = (),
    fail: Sequence[str] = (),
) -> Verdict:
    """The engine's verdict, plus operator-level reasons (unreachable sources, missing budgets, isolation).

    Without `spec.decisions` the decision comparison is not part of the verdict.
    """
    if spec.decisions is not None:
        min_decisions, min_rate = spec.decisions.min_decisions, spec.decisions.min_match_rate
    else:
        counts, min_decisions, min_rate = MatchCounts(matched=1), 0, 0.0
    v = shadow_verdict(
        counts, min_decisions=min_decisions, min_match_rate=min_rate, kpis=kpis, stages=stages, finished=finished
    )
    reasons = list(v.reasons)
    if spec.decisions is None:
        reasons = [r for r in reasons if not r.startswith("match rate")]
    if not finished:
        return Verdict("Fail", tuple([*fail, *reasons])) if fail or v.verdict == "Fail" else Verdict(None, ())
    if fail or v.verdict == "Fail":
        return Verdict("Fail", tuple([*fail, *reasons, *hold]))
    if hold or v.verdict == "Hold":
        return Verdict("Hold", tuple([*hold, *(reasons if v.verdict == "Hold" else [])]))
    return Verdict("Pass", tuple(reasons or ["every KPI and latency budget passed"]))


def conditions_for(
    old: list[Condition], phase: str, verdict: str | None, reason: str, message: str, now: datetime, gen: int
) -> list[Condition]:
    conds = set_condition(
        old,
        "InvalidSpec",
        phase == "Invalid",
        reason if phase == "Invalid" else "Valid",
        message if phase == "Invalid" else "",
        now,
        gen,
    )
    conds = set_condition(conds, "Running", phase == "Running", reason, message if phase == "Running" else "", now, gen)
    conds = set_condition(
        conds, "Completed", phase == "Completed", verdict or reason, message if phase == "Completed" else "", now, gen
    )
    return set_condition(
        conds, "Passed", verdict == "Pass", verdict or "NoVerdict", message if phase == "Completed" else "", now, gen
    )


# ------------------------------------------------------------------------------------------- I/O


@dataclass(frozen=True)
class Result:
    """What one reconcile wants written: the new status, then the world, then events."""

    status: ShadowRunStatus
    events: list[tuple[str, str, str]]
    wake_at: datetime | None = None


async def _kpis(ctx: Context, ns: str, spec: ShadowRunSpec, status: ShadowRunStatus, now: datetime) -> list[GateStatus]:
    by_name = {s.name: s for s in status.kpis}
    due = [k for k in spec.kpis if gates.is_due(k, by_name.get(k.name), now)]
    if due:
        conn = await ctx.connection(ns, spec.prometheus)
        values = placeholder_values(spec, ns)
        measured = await asyncio.gather(*(measure(conn, k, values) for k in due))
        for kpi, m in zip(due, measured, strict=True):
            by_name[kpi.name] = gates.record(by_name.get(kpi.name), kpi, m, now)
            result = "Pass" if m.outcome == "ok" else m.outcome
            metrics.gate_evaluations_total.labels("ShadowRun", kpi.name, result).inc()
    return [by_name[k.name] for k in spec.kpis if k.name in by_name]


async def _latency(
    ctx: Context, ns: str, spec: ShadowRunSpec, started_at: datetime, now: datetime
) -> tuple[list[StageLatency], list[str]]:
    lp = spec.latency_profile
    if lp is None:
        return [], []
    conn = await ctx.connection(ns, spec.prometheus)
    window = profile_window(lp, started_at, now)
    jobs = [
        (side, q, latency_query(lp, spec.strategy, version, quantile, window))
        for side, version in (("live", spec.live.version), ("shadow", spec.shadow.version))
        for q, quantile in QUANTILES.items()
    ]
    vectors = await asyncio.gather(*(prometheus.vector(conn, query, lp.stage_label) for _, _, query in jobs))
    sides: dict[str, dict[str, dict[str, float]]] = {"live": {}, "shadow": {}}
    hold: list[str] = []
    for (side, q, _), vec in zip(jobs, vectors, strict=True):
        sides[side][q] = vec.values
        if vec.error and f"latency profile: {vec.error}" not in hold:
            hold.append(f"latency profile: {vec.error}")
    budgets: dict[str, float] = {}
    if lp.budgets is not None:
        cm = await ctx.kube.config_map(ns, lp.budgets.config_map)
        budgets, problems = parse_budgets(None if cm is None else (cm.data or {}), lp.budgets.config_map)
        hold += problems
    return profile_stages(lp, sides["live"], sides["shadow"], budgets), hold


async def _read_streams(
    spec: ShadowRunSpec, ns: str, cursors: Cursors, end_ms: int
) -> tuple[decisions.StreamRead, decisions.StreamRead]:
    assert spec.decisions is not None
    live, shadow = stream_names(spec, ns)
    address = spec.decisions.source.redis.address
    a, b = await asyncio.gather(
        decisions.read(address, live, cursors.live, end_ms), decisions.read(address, shadow, cursors.shadow, end_ms)
    )
    return a, b


def _ms_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def _invalid(status: ShadowRunStatus, reason: str, message: str, gen: int, now: datetime) -> Result:
    new = status.model_copy(
        update={
            "phase": "Invalid",
            "message": message,
            "reasons": [],
            "observed_generation": gen,
            "conditions": conditions_for(status.conditions, "Invalid", None, reason, message, now, gen),
        }
    )
    events = [] if status.phase == "Invalid" and status.message == message else [("Warning", reason, message)]
    return Result(new, events)


def _pending(status: ShadowRunStatus, reason: str, message: str, gen: int, now: datetime) -> Result:
    new = status.model_copy(
        update={
            "phase": "Pending",
            "message": message,
            "observed_generation": gen,
            "conditions": conditions_for(status.conditions, "Pending", None, reason, message, now, gen),
        }
    )
    return Result(new, [])


async def reconcile_once(ctx: Context, namespace: str, name: str, read_decisions: bool = True) -> datetime | None:
    """One level-based pass. Returns when to look again (None: only on an event)."""
    obj = await ctx.kube.get(PLURAL, namespace, name)
    if obj is None:
        return None
    spec, status, error = parse(obj)
    now = datetime.now(UTC)
    gen = int(obj["metadata"].get("generation", 1))
    if status.phase == "Completed":
        if spec is not None:
            record_metrics(namespace, name, status)
        return None  # final: spec changes after completion are ignored
    if spec is None:
        await write(ctx, obj, status, _invalid(status, "InvalidSpec", error or "spec does not parse", gen, now))
        return None
    ctx.wakers.watch(KIND, (namespace, name), "deployment", [(namespace, spec.shadow.deployment)])
    errors = spec_errors(spec, namespace)
    info = await ctx.kube.deployment(namespace, spec.shadow.deployment)
    isolation = networkpolicy.isolation_errors(spec.shadow.deployment, spec.isolation.env, info.env) if info else []
    if status.started_at is None:
        if errors:
            await write(ctx, obj, status, _invalid(status, "InvalidSpec", "; ".join(errors), gen, now))
            return None
        if info is None:
            msg = f"shadow deployment {spec.shadow.deployment} not found"
            await write(ctx, obj, status, _pending(status, "ShadowDeploymentNotFound", msg, gen, now))
            return None
        if isolation:
            await write(ctx, obj, status, _invalid(status, "IsolationMissing", "; ".join(isolation), gen, now))
            return None
        return await _start(ctx, obj, spec, status, gen)
    problems = [f"isolation: {p}" for p in isolation] + [f"invalid spec change: {e}" for e in errors]
    return await _run(ctx, obj, spec, status, gen, problems, read_decisions)


async def _start(
    ctx: Context, obj: dict[str, Any], spec: ShadowRunSpec, status: ShadowRunStatus, gen: int
) -> datetime | None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    started = _ms_now()
    cursor = decisions.initial_cursor(to_ms(started))
    end = end_of(spec, started)
    message = f"shadow {spec.shadow.deployment} {spec.shadow.version} running until {end.isoformat()}"
    new = status.model_copy(
        update={
            "phase": "Running",
            "verdict": None,
            "reasons": [],
            "message": message,
            "started_at": started,
            "observed_generation": gen,
            "decisions": DecisionStats() if spec.decisions is not None else None,
            "matcher": dump_matcher(MatcherState(), Cursors(cursor, cursor)),
            "conditions": conditions_for(status.conditions, "Running", None, "Started", message, started, gen),
        }
    )
    await write(ctx, obj, status, Result(new, [("Normal", "Started", message)]))
    await _enforce_running(ctx, obj, spec)
    log.info("ShadowRun %s/%s started", ns, name)
    return datetime.now(UTC)


async def _run(
    ctx: Context,
    obj: dict[str, Any],
    spec: ShadowRunSpec,
    status: ShadowRunStatus,
    gen: int,
    problems: list[str],
    read_decisions: bool,
) -> datetime | None:
    ns = obj["metadata"]["namespace"]
    assert status.started_at is not None
    started = status.started_at
    end = end_of(spec, started)
    now = datetime.now(UTC)
    past_end = now >= end + timedelta(seconds=FINAL_GRACE_S)
    state, cursors = load_matcher(status)
    if cursors is None:  # status.matcher lost (edited by hand): restart counting from the start
        first = decisions.initial_cursor(to_ms(started))
        state, cursors = MatcherState(), Cursors(first, first)
    caught_up, source_error, conditions = True, None, status.conditions
    if spec.decisions is not None and (read_decisions or past_end):
        live, shadow = await _read_streams(spec, ns, cursors, to_ms(end))
        source_error = live.error or shadow.error
        conditions = set_condition(
            conditions,
            "DecisionsAvailable",
            source_error is None,
            "SourceUnreachable" if source_error else "Reading",
            source_error or "",
            now,
            gen,
        )
        if source_error is None:
            tol = Tolerances(spec.decisions.tolerances.price_bps, spec.decisions.tolerances.quantity_percent)
            window = parse_duration(spec.decisions.pairing_window).total_seconds()
            state = ingest(
                state,
                live.decisions,
                shadow.decisions,
                spec.decisions.match_on,
                tol,
                watermark(now.timestamp(), (live, shadow)),
                window,
                malformed=live.malformed + shadow.malformed,
            )
            cursors = Cursors(live.cursor, shadow.cursor)
            caught_up = not (live.truncated or shadow.truncated)
            for why in (*live.examples, *shadow.examples):
                log.warning("ShadowRun %s/%s: malformed decision %s", ns, obj["metadata"]["name"], why)
    kpi_statuses = await _kpis(ctx, ns, spec, status, now)
    kpis = kpi_results(spec, kpi_statuses)
    early = verdict_for(spec, state.counts, kpis, [], finished=False, fail=problems)
    if (past_end and caught_up) or early.verdict == "Fail":
        return await _complete(ctx, obj, spec, status, gen, state, cursors, kpi_statuses, kpis, problems, source_error)
    message = (
        f"{state.counts.compared} decisions compared, match rate "
        f"{'n/a' if state.counts.match_rate is None else f'{state.counts.match_rate:.4f}'}; ends {end.isoformat()}"
    )
    if source_error:
        message = f"decisions unavailable: {source_error}"
    new = status.model_copy(
        update={
            "phase": "Running",
            "message": message,
            "observed_generation": gen,
            "decisions": decision_stats(state) if spec.decisions is not None else None,
            "kpis": kpi_statuses,
            "matcher": dump_matcher(state, cursors),
            "conditions": conditions,
        }
    )
    await write(ctx, obj, status, Result(new, []))
    await _enforce_running(ctx, obj, spec)
    record_metrics(ns, obj["metadata"]["name"], new)
    wake = [now + timedelta(seconds=READ_EVERY_S), end + timedelta(seconds=FINAL_GRACE_S)]
    if not caught_up:
        wake.append(now)
    by_name = {s.name: s for s in kpi_statuses}
    wake += [gates.next_due(k, by_name.get(k.name), now) for k in spec.kpis]
    return min(wake)


async def _complete(
    ctx: Context,
    obj: dict[str, Any],
    spec: ShadowRunSpec,
    status: ShadowRunStatus,
    gen: int,
    state: MatcherState,
    cursors: Cursors,
    kpi_statuses: list[GateStatus],
    kpis: list[KpiResult],
    problems: list[str],
    source_error: str | None,
) -> datetime | None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    assert status.started_at is not None
    now = datetime.now(UTC)
    final = finalize(state, spec.decisions.match_on if spec.decisions else ("symbol", "tick"))
    stages, hold = await _latency(ctx, ns, spec, status.started_at, now)
    if source_error:
        hold.insert(0, f"decisions unavailable at the end: {source_error}")
    verdict = verdict_for(spec, final.counts, kpis, stages, finished=True, hold=hold, fail=problems)
    assert verdict.verdict is not None
    report = f"{name}-report"
    message = f"verdict {verdict.verdict}: {'; '.join(verdict.reasons)}"[:1000]
    new = status.model_copy(
        update={
            "phase": "Completed",
            "verdict": verdict.verdict,
            "reasons": list(verdict.reasons),
            "message": message,
            "observed_generation": gen,
            "decisions": decision_stats(final) if spec.decisions is not None else None,
            "kpis": kpi_statuses,
            "latency_profile": profile_status(stages),
            "report": report,
            "completed_at": now,
            "matcher": dump_matcher(final, cursors),
            "conditions": conditions_for(
                status.conditions, "Completed", verdict.verdict, "Completed", message, now, gen
            ),
        }
    )
    report_md, summary_json = render_report(
        name,
        spec.strategy,
        spec.live.version,
        spec.shadow.version,
        final.counts,
        final.worst_examples,
        kpis,
        stages,
        verdict.verdict,
        verdict.reasons,
        status.started_at,
        now,
    )
    docs = {"report.md": report_md, "summary.json": summary_json}
    await _write_report(ctx, obj, report, docs)
    await _stop_shadow(ctx, ns, name, spec)
    event_type = "Normal" if verdict.verdict == "Pass" else "Warning"
    await write(ctx, obj, status, Result(new, [(event_type, f"Shadow{verdict.verdict}", message)]))
    record_metrics(ns, name, new)
    log.info("ShadowRun %s/%s completed: %s", ns, name, message)
    return None


# ------------------------------------------------------------------------------------------ world


async def _write_report(ctx: Context, owner: dict[str, Any], name: str, docs: dict[str, str]) -> None:
    ns = owner["metadata"]["namespace"]
    existing = await ctx.kube.config_map(ns, name)
    if existing is not None and (existing.data or {}) == docs:
        return
    labels = {
        "app.kubernetes.io/managed-by": "strategy-rollouts",
        "strategyrollouts.io/shadowrun": owner["metadata"]["name"],
    }
    version = existing.metadata.resource_version if existing is not None and existing.metadata else None
    await ctx.kube.write_config_map(ns, name, docs, labels=labels, owner=owner, resource_version=version)


async def _enforce_running(ctx: Context, obj: dict[str, Any], spec: ShadowRunSpec) -> None:
    """Shadow at `shadow.replicas` (default 1) and, with denyEgress, the NetworkPolicy in place."""
    ns = obj["metadata"]["namespace"]
    dep = await ctx.kube.maybe(ctx.kube.apps.read_namespaced_deployment, spec.shadow.deployment, ns)
    if dep is None:
        return
    if spec.isolation.deny_egress:
        labels = dict((dep.spec.selector.match_labels or {}) if dep.spec.selector else {})
        await ensure_policy(ctx, networkpolicy.egress_policy(obj, labels, spec.isolation.allow_egress_to))
    else:
        await delete_policy(ctx, ns, networkpolicy.policy_name(obj["metadata"]["name"]))
    want = spec.shadow.replicas if spec.shadow.replicas is not None else 1
    if dep.spec.replicas != want:
        await ctx.kube.scale(ns, spec.shadow.deployment, want)


def _policy_shape(spec: Mapping[str, Any]) -> Any:
    """The parts of a NetworkPolicy spec we set, normalized (server defaults such as protocol ignored)."""
    egress = []
    for rule in spec.get("egress") or []:
        cidrs = sorted(
            (peer.get("ipBlock") or peer.get("ip_block") or {}).get("cidr", "") for peer in rule.get("to") or []
        )
        ports = sorted(int(p.get("port")) for p in rule.get("ports") or [])
        egress.append((cidrs, ports))
    selector = spec.get("podSelector") or spec.get("pod_selector") or {}
    labels = selector.get("matchLabels") or selector.get("match_labels") or {}
    return dict(labels), sorted(egress), sorted(spec.get("policyTypes") or spec.get("policy_types") or [])


async def ensure_policy(ctx: Context, manifest: dict[str, Any]) -> None:
    api = ctx.kube.networking
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    existing = await ctx.kube.maybe(api.read_namespaced_network_policy, name, ns)
    if existing is None:
        try:
            await ctx.kube.call(api.create_namespaced_network_policy, ns, manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
        return
    current = ctx.kube.api.sanitize_for_serialization(existing.spec)  # type: ignore[no-untyped-call]
    if _policy_shape(current) != _policy_shape(manifest["spec"]):
        body = {
            **manifest,
            "metadata": {
                **manifest["metadata"],
                "resourceVersion": existing.metadata.resource_version if existing.metadata else None,
            },
        }
        await ctx.kube.call(api.replace_namespaced_network_policy, name, ns, body)


async def delete_policy(ctx: Context, namespace: str, name: str) -> None:
    await ctx.kube.maybe(ctx.kube.networking.delete_namespaced_network_policy, name, namespace)


async def _stop_shadow(ctx: Context, ns: str, name: str, spec: ShadowRunSpec) -> None:
    info = await ctx.kube.deployment(ns, spec.shadow.deployment)
    if info is not None and info.replicas != 0:
        await ctx.kube.scale(ns, spec.shadow.deployment, 0)
    await delete_policy(ctx, ns, networkpolicy.policy_name(name))


async def on_delete(ctx: Context, body: Mapping[str, Any]) -> None:
    """The ShadowRun is going away: a started, unfinished shadow goes back to 0; the policy is removed."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    spec, status, _ = parse(body)
    if spec is not None and status.started_at is not None and status.phase != "Completed":
        await _stop_shadow(ctx, ns, name, spec)
    else:
        await delete_policy(ctx, ns, networkpolicy.policy_name(name))
    forget_metrics(ns, name)


# -------------------------------------------------------------------------------- status, metrics


async def write(ctx: Context, obj: dict[str, Any], old: ShadowRunStatus, result: Result) -> None:
    new = result.status.wire()
    if new != old.wire():
        meta = obj["metadata"]
        await ctx.kube.patch_status(PLURAL, meta["namespace"], meta["name"], new, meta["resourceVersion"])
    for type_, reason, message in result.events:
        kopf.event(cast(kopf.Body, obj), type=type_, reason=reason, message=message[:1000])


def record_metrics(ns: str, name: str, status: ShadowRunStatus) -> None:
    if status.decisions is not None:
        if status.decisions.match_rate is not None:
            metrics.shadow_match_rate.labels(ns, name).set(status.decisions.match_rate)
        metrics.shadow_decisions_total.labels(ns, name).set(status.decisions.compared)
    for v in ("Pass", "Hold", "Fail"):
        metrics.shadow_verdict.labels(ns, name, v).set(1 if status.verdict == v else 0)


def forget_metrics(ns: str, name: str) -> None:
    metrics.forget_object(ns, name, *metrics.SHADOW_FAMILIES)


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One loop per ShadowRun. Decisions are read at most every READ_EVERY_S / 2, so the wake-ups
    caused by our own status patches do not turn into a read-patch-wake loop."""
    last_read = -math.inf

    async def reconcile() -> datetime | None:
        nonlocal last_read
        started = time.monotonic()
        read = started - last_read >= READ_EVERY_S / 2
        wake_at = await reconcile_once(ctx, namespace, name, read_decisions=read)
        if read:
            last_read = started
        return wake_at

    await daemons.run_loop(ctx, "ShadowRun", KIND, namespace, name, stopped, reconcile)


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The run is gone: drop its metric series."""
    forget_metrics(namespace, name)


async def close(ctx: Context) -> None:
    """Operator shutdown: close the Redis connection pools of the decision sources."""
    await decisions.close_all()
