"""A gate's (or KPI's) one measurement: a Prometheus query, a comparison with a baseline, or a judge's
two populations. Shared by every kind that measures gates."""

from __future__ import annotations

import asyncio
from datetime import datetime

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.operator.gates import judge as judge_measure
from strategy_rollouts.read import prometheus

CANARY_VERSION = "{{canary.version}}"


async def measure(
    conn: prometheus.Connection, gate: GateSpec, values: dict[str, str], step_started: datetime | None = None
) -> Measurement:
    """One gate's observation; `step_started`: where a sequential judge's samples begin."""
    values = {**values, "interval": gate.interval}
    if gate.judge is not None:
        return await judge_measure.populations(conn, gate.judge, values, step_started)
    assert gate.query is not None  # threshold or compare (validated)
    query = substitute(gate.query, values)
    if gate.baseline is not None:
        return await prometheus.compare(conn, query, substitute(gate.baseline, values))
    return await prometheus.instant(conn, query)


async def measure_per_key(
    conn: prometheus.Connection, gate: GateSpec, values: dict[str, str]
) -> tuple[dict[str, Measurement], dict[str, float]]:
    """A `perKey` gate (threshold or compare; validated: never a judge or webhook): key -> its measurement,
    and key -> the same query for the stable version (the scoreboard's other column; {} when the query
    does not name {{canary.version}}, so there is no stable side to ask)."""
    assert gate.per_key is not None and gate.query is not None
    values = {**values, "interval": gate.interval}
    label = gate.per_key.label
    baseline = substitute(gate.baseline, values) if gate.baseline is not None else None
    canary = prometheus.per_key(conn, substitute(gate.query, values), label, baseline)
    if CANARY_VERSION not in gate.query:
        return await canary, {}
    as_stable = substitute(gate.query, {**values, "canary.version": values.get("stable.version", "")})
    keyed, stable = await asyncio.gather(canary, prometheus.per_key(conn, as_stable, label))
    return keyed, {k: m.value for k, m in stable.items() if m.value is not None}
