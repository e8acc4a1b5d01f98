"""What a ShadowRun pass measures: decision streams (Redis), due KPIs and the latency profile (Prometheus)."""

from __future__ import annotations

import asyncio
from datetime import datetime

from strategy_rollouts.api.placeholders import placeholder_values
from strategy_rollouts.api.shadowrun import ShadowRunSpec
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.shadow_observed import (
    QUANTILES,
    StreamRead,
    latency_query,
    profile_window,
)
from strategy_rollouts.engine.shadow_run import Latency
from strategy_rollouts.engine.types import ObservationPlan
from strategy_rollouts.operator.clients import redis_streams as decisions
from strategy_rollouts.operator.clients.credentials import CredentialsError
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates.measure import measure
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.read import prometheus


async def streams(ctx: Context, namespace: str, plan: ObservationPlan) -> tuple[StreamRead | None, StreamRead | None]:
    if plan.streams is None:
        return None, None
    s = plan.streams
    address = s.address
    if address is None and s.address_ref is not None:
        try:  # the URL carries a password: read at use, never stored, logged or put in status
            address = (await ctx.secret(namespace, s.address_ref)).strip()
        except CredentialsError as exc:  # removed since the spec was checked: a reason, never a Pass
            failed = StreamRead(error=f"Redis address: {exc}")
            return failed, failed
    assert address is not None  # spec_errors: exactly one of address and addressSecretRef
    live, shadow = await asyncio.gather(
        decisions.read(ctx.shadow.redis, address, s.live, s.cursors.live, s.end_ms),
        decisions.read(ctx.shadow.redis, address, s.shadow, s.cursors.shadow, s.end_ms),
    )
    return live, shadow


async def kpis(
    ctx: Context,
    namespace: str,
    name: str,
    spec: ShadowRunSpec,
    plan: ObservationPlan,
    started_at: datetime | None = None,
) -> dict[str, Measurement]:
    """Every due KPI; a sequential judge reads (and pairs by timestamp) from the start of the run."""
    if not plan.measure:
        return {}
    conn = await ctx.connection(namespace, spec.prometheus, ("ShadowRun", namespace, name))
    values = placeholder_values(spec, namespace)
    measured = await asyncio.gather(*(measure(conn, k, values, started_at) for k in plan.measure))
    for kpi, m in zip(plan.measure, measured, strict=True):
        metrics.gate_evaluations_total.labels("ShadowRun", kpi.name, "Pass" if m.outcome == "ok" else m.outcome).inc()
    return {k.name: m for k, m in zip(plan.measure, measured, strict=True)}


async def latency(
    ctx: Context, namespace: str, name: str, spec: ShadowRunSpec, started_at: datetime, now: datetime
) -> Latency:
    lp = spec.latency_profile
    assert lp is not None
    conn = await ctx.connection(namespace, spec.prometheus, ("ShadowRun", namespace, name))
    window = profile_window(lp, started_at, now)
    jobs = [
        (side, q, latency_query(lp, spec.strategy, version, quantile, window))
        for side, version in (("live", spec.live.version), ("shadow", spec.shadow.version))
        for q, quantile in QUANTILES.items()
    ]
    vectors = await asyncio.gather(*(prometheus.vector(conn, query, lp.stage_label) for _, _, query in jobs))
    sides: dict[str, dict[str, dict[str, float]]] = {"live": {}, "shadow": {}}
    errors: list[str] = []
    for (side, q, _), vec in zip(jobs, vectors, strict=True):
        sides[side][q] = vec.values
        if vec.error:
            errors.append(vec.error)
    budgets = None
    if lp.budgets is not None:
        cm = await ctx.kube.config_map(namespace, lp.budgets.config_map)
        budgets = None if cm is None else dict(cm.data or {})
    return Latency(sides["live"], sides["shadow"], tuple(errors), budgets)
