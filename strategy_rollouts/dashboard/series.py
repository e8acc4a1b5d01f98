"""Prometheus range queries for the charts, through the operator's own adapter (operator/prometheus.py).

Gate queries get the same `{{placeholder}}` values the operator measures them with, for the rollout's
current stage, so the line drawn is the number the gate judged.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.cli.fmt import status_of
from strategy_rollouts.dashboard.views import JSON
from strategy_rollouts.operator import prometheus
from strategy_rollouts.operator.rollout_observe import placeholder_values

POINTS = 240  # per chart: the step follows from the window
DEFAULT_WINDOW = timedelta(minutes=30)


def _step(start: datetime, end: datetime) -> float:
    return max(1.0, (end - start).total_seconds() / POINTS)


def connection(default: prometheus.Connection, spec: dict[str, Any]) -> prometheus.Connection:
    """The object's own Prometheus when it names one without credentials (the dashboard reads no
    Secrets), else the dashboard's."""
    override = spec.get("prometheus") or {}
    if override.get("address") and not override.get("bearerTokenSecretRef") and not override.get("caSecretRef"):
        return prometheus.Connection(str(override["address"]), default.timeout_s, pool=default.pool)
    return default


async def _range(conn: prometheus.Connection, query: str, start: datetime, end: datetime) -> JSON:
    series = await prometheus.range_series(conn, query, start, end, _step(start, end))
    return {"points": series.points, "error": series.error}


async def rollout_gates(default: prometheus.Connection, obj: JSON, now: datetime) -> JSON:
    """Per threshold/compare gate: its values (and baseline) since the rollout started."""
    try:
        spec = StrategyRolloutSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        return {"error": f"invalid spec: {exc.error_count()} errors", "gates": {}}
    status = status_of(StrategyRolloutStatus, obj)
    start = min(status.started_at or now - DEFAULT_WINDOW, now - timedelta(minutes=2))
    index = min(status.stage_index or 0, len(spec.stages) - 1)
    stage = spec.stages[index]
    values = placeholder_values(spec, stage.namespace or obj["metadata"]["namespace"], stage.name, "")
    conn = connection(default, obj.get("spec") or {})
    gates = [g for g in spec.gates if g.query is not None]
    jobs = []
    for gate in gates:
        gate_values = {**values, "interval": gate.interval}
        jobs.append(_range(conn, substitute(gate.query or "", gate_values), start, now))
        if gate.baseline is not None:
            jobs.append(_range(conn, substitute(gate.baseline, gate_values), start, now))
    results = iter(await asyncio.gather(*jobs))
    out: dict[str, JSON] = {}
    for gate in gates:
        out[gate.name] = {"value": next(results)}
        if gate.baseline is not None:
            out[gate.name]["baseline"] = next(results)
    return {"gates": out, "start": start.timestamp(), "end": now.timestamp()}


async def shadow_match_rate(default: prometheus.Connection, obj: JSON, now: datetime) -> JSON:
    """The operator's `shadow_match_rate` gauge over the run (empty when Prometheus does not scrape it)."""
    meta = obj["metadata"]
    started = (obj.get("status") or {}).get("startedAt")
    start = datetime.fromisoformat(started.replace("Z", "+00:00")) if started else now - DEFAULT_WINDOW
    start = min(start, now - timedelta(minutes=2))
    query = f'shadow_match_rate{{namespace="{meta["namespace"]}",shadowrun="{meta["name"]}"}}'
    return await _range(connection(default, obj.get("spec") or {}), query, start, now)


def now_utc() -> datetime:
    return datetime.now(UTC)
