"""Prometheus range queries for the charts, through the adapter the operator measures with (read/prometheus.py).

Gate queries get the same `{{placeholder}}` values the operator measures them with, for the rollout's
current stage, so the line drawn is the number the gate judged; a judge's query is drawn for both
versions, a `templateRef` gate as the gate its template resolves to (the engine's resolution).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.conditions import parse_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateSpec, JudgeSpec
from strategy_rollouts.api.placeholders import placeholder_values, substitute
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.dashboard.views import JSON
from strategy_rollouts.engine import sequential
from strategy_rollouts.engine.allowlist import AllowList, allowed
from strategy_rollouts.engine.gate_templates import Template, TemplateKey, key_of, resolve
from strategy_rollouts.engine.judge import sample_range
from strategy_rollouts.read import prometheus
from strategy_rollouts.read.views import status_of

POINTS = 240  # per chart: the step follows from the window
DEFAULT_WINDOW = timedelta(minutes=30)


def _step(start: datetime, end: datetime) -> float:
    return max(1.0, (end - start).total_seconds() / POINTS)


def connection(default: prometheus.Connection, spec: dict[str, Any]) -> prometheus.Connection:
    """The object's own Prometheus when it names one without credentials (the dashboard reads no
    Secrets), else the dashboard's. Whether it may be queried is `_range`'s check."""
    override = spec.get("prometheus") or {}
    if override.get("address") and not override.get("bearerTokenSecretRef") and not override.get("caSecretRef"):
        return prometheus.Connection(str(override["address"]), default.timeout_s, pool=default.pool)
    return default


def refusal(address: str, allow: AllowList) -> str | None:
    """Why the dashboard does not query `address`, or None when the allow-list admits it."""
    if allowed(address, allow):
        return None
    return f"not queried: {address} is outside the dashboard's allowed Prometheus ({allow.describe()})"


async def _range(
    conn: prometheus.Connection,
    allow: AllowList,
    query: str,
    start: datetime,
    end: datetime,
    step_s: float | None = None,
) -> JSON:
    # The one place the dashboard calls out: an address a spec names is checked before any connection.
    refused = refusal(conn.address, allow)
    if refused is not None:
        return {"points": [], "error": refused}
    series = await prometheus.range_series(conn, query, start, end, step_s or _step(start, end))
    return {"points": series.points, "error": series.error}


def gate_kind(gate: GateSpec) -> str:
    if gate.template_ref is not None:
        return "template"
    if gate.judge is not None:
        return "judge"
    if gate.webhook is not None:
        return "webhook"
    return "compare" if gate.baseline is not None else "threshold"


@dataclass(frozen=True)
class Job:
    """One range query of one gate's chart: its line's name and where its answer goes."""

    gate: str
    line: str
    query: str
    start: datetime
    end: datetime
    step_s: float


def _query_gate(
    gate: GateSpec, values: dict[str, str], start: datetime, now: datetime, step_start: datetime | None = None
) -> tuple[JSON, list[Job]]:
    """Threshold / compare: the query (and baseline) since `start`; judge: both sides over its window
    (sequential: since the current step started, on the operator's own grid, so its sequence is redrawn)."""
    values = {**values, "interval": gate.interval}
    if gate.judge is not None:
        judge = gate.judge
        window_start = now - parse_duration(judge.window)
        step_s = max(parse_duration(judge.step).total_seconds(), _step(window_start, now) / 8)
        entry: JSON = {"worseWhen": judge.worse_when, "window": judge.window, "start": window_start.timestamp()}
        if judge.test == "sequential":
            window_start = sample_range(judge, step_start, now)
            step_s = parse_duration(judge.step).total_seconds()
            entry.update(sequential=True, start=window_start.timestamp(), window="the current step")
        # as the operator measures it (operator/gates/judge.py): `{{version}}` is each side's version
        jobs = [
            Job(
                gate.name,
                side,
                substitute(judge.query, {**values, "version": values[f"{side}.version"]}),
                window_start,
                now,
                step_s,
            )
            for side in ("stable", "canary")
        ]
        return entry, jobs
    assert gate.query is not None  # threshold or compare (validated)
    entry = {"query": substitute(gate.query, values)}
    if gate.condition is not None:
        cond = parse_condition(gate.condition)
        entry.update(threshold=cond.threshold, op=cond.op)
    jobs = [Job(gate.name, "value", entry["query"], start, now, _step(start, now))]
    if gate.baseline is not None:
        entry["maxIncreasePercent"] = gate.max_increase_percent
        jobs.append(Job(gate.name, "baseline", substitute(gate.baseline, values), start, now, _step(start, now)))
    return entry, jobs


def gate_charts(
    spec: StrategyRolloutSpec,
    namespace: str,
    stage: str | None,
    templates: Mapping[TemplateKey, Template | None],
    results: Mapping[str, Sequence[tuple[float, str, float | None]]],
    start: datetime,
    now: datetime,
    template_errors: Mapping[str, str] | None = None,
    step_start: datetime | None = None,
) -> tuple[dict[str, JSON], list[Job]]:
    """Pure: per gate of the spec, what its chart shows and the range queries that fill it.

    `templateRef` gates are resolved by the engine's own resolution (engine/gate_templates.py) with the
    templates the watch holds, then drawn as the gate they resolve to. Webhook gates have no series:
    their results over time as the dashboard saw them (`results`)."""
    values = placeholder_values(spec, namespace, stage, "")
    resolved = resolve("spec.gates", spec.gates, namespace, templates)
    by_name = {g.name: g for g in resolved.gates}
    out: dict[str, JSON] = {}
    jobs: list[Job] = []
    for i, written in enumerate(spec.gates):
        entry: JSON = {"kind": gate_kind(written)}
        if written.template_ref is not None:
            entry["template"] = f"{written.template_ref.kind} {written.template_ref.name}"
        gate = by_name.get(written.name)
        if gate is None:  # a template not found (or not readable by the dashboard), a bad arg...
            why = [e for e in resolved.errors if e.startswith(f"spec.gates[{i}]")]
            unreadable = [f"{k}: {v}" for k, v in (template_errors or {}).items()]
            entry["note"] = "; ".join(
                why + ([f"templates not readable ({', '.join(unreadable)})"] if unreadable else [])
            )
            out[written.name] = entry
            continue
        entry["resolvedKind"] = gate_kind(gate)
        if gate.webhook is not None:
            entry["timeline"] = [list(r) for r in results.get(written.name, ())]
            entry["note"] = "webhook: no series; its results as this dashboard saw them"
        else:
            more, gate_jobs = _query_gate(gate, values, start, now, step_start)
            entry.update(more)
            jobs += gate_jobs
        out[written.name] = entry
    return out, jobs


async def rollout_gates(
    default: prometheus.Connection,
    allow: AllowList,
    obj: JSON,
    now: datetime,
    templates: Callable[[TemplateKey], Template | None] = lambda key: None,
    results: Mapping[str, Sequence[tuple[float, str, float | None]]] | None = None,
    template_errors: Mapping[str, str] | None = None,
) -> JSON:
    """Every gate's chart: threshold/compare values (and baseline) since the rollout started, a judge's
    two sides over its window, a template gate as what it resolves to, a webhook's result timeline."""
    try:
        spec = StrategyRolloutSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        return {"error": f"invalid spec: {exc.error_count()} errors", "gates": {}}
    status = status_of(StrategyRolloutStatus, obj)
    start = min(status.started_at or now - DEFAULT_WINDOW, now - timedelta(minutes=2))
    index = min(status.stage_index or 0, len(spec.stages) - 1)
    stage = spec.stages[index]
    namespace = obj["metadata"]["namespace"]
    keys = [k for k in (key_of(g, namespace) for g in spec.gates) if k is not None]
    held = {k: templates(k) for k in keys}
    out, jobs = gate_charts(
        spec,
        stage.namespace or namespace,
        stage.name,
        held,
        results or {},
        start,
        now,
        template_errors,
        status.step_started_at,
    )
    conn = connection(default, obj.get("spec") or {})
    answers = await asyncio.gather(*(_range(conn, allow, j.query, j.start, j.end, j.step_s) for j in jobs))
    for job, answer in zip(jobs, answers, strict=True):
        out[job.gate][job.line] = answer
    for gate in resolve("spec.gates", spec.gates, namespace, held).gates:
        entry = out.get(gate.name) or {}
        if gate.judge is not None and entry.get("sequential"):
            entry["sequence"] = sequence_chart(gate.judge, entry.get("canary") or {}, entry.get("stable") or {})
    return {"gates": out, "start": start.timestamp(), "end": now.timestamp()}


async def shadow_match_rate(default: prometheus.Connection, allow: AllowList, obj: JSON, now: datetime) -> JSON:
    """The operator's `shadow_match_rate` gauge over the run (empty when Prometheus does not scrape it)."""
    meta = obj["metadata"]
    started = (obj.get("status") or {}).get("startedAt")
    start = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else now - DEFAULT_WINDOW
    start = min(start, now - timedelta(minutes=2))
    query = f'shadow_match_rate{{namespace="{meta["namespace"]}",shadowrun="{meta["name"]}"}}'
    return await _range(connection(default, obj.get("spec") or {}), allow, query, start, now)


def sequence_chart(judge: JudgeSpec, canary: JSON, stable: JSON) -> JSON:
    """A sequential judge's confidence sequence over the step, by the engine's own evaluation on the points
    drawn: lower / upper / effect per sample from minSamples on, the margin line, the decision and when."""
    sides = [tuple(zip(*(side.get("points") or []), strict=False)) or ((), ()) for side in (canary, stable)]
    out = sequential.trace(judge, (sides[0][0], sides[0][1]), (sides[1][0], sides[1][1]))
    decided = out.outcome.result in ("Pass", "Fail") and out.outcome.decided_at is not None
    return {
        "t": list(out.times),
        "lower": list(out.lower),
        "upper": list(out.upper),
        "effect": list(out.effect),
        "margin": out.margin_line,
        "result": out.outcome.result,
        "decidedAt": out.outcome.decided_at if decided else None,
        "message": out.outcome.message,
    }


def now_utc() -> datetime:
    return datetime.now(UTC)
