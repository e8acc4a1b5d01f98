"""A gate's (or KPI's) one measurement: a Prometheus query, a comparison with a baseline, or a judge's
two populations. Shared by every kind that measures gates."""

from __future__ import annotations

from datetime import datetime

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.operator.gates import judge as judge_measure
from strategy_rollouts.read import prometheus


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
) -> dict[str, Measurement]:
    """A `perKey` gate: key -> its measurement (threshold or compare; validated: never a judge or webhook)."""
    assert gate.per_key is not None and gate.query is not None
    values = {**values, "interval": gate.interval}
    baseline = substitute(gate.baseline, values) if gate.baseline is not None else None
    return await prometheus.per_key(conn, substitute(gate.query, values), gate.per_key.label, baseline)
