"""A judge gate's observation: its range query run once per side (`{{version}}` = canary, then stable)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import JudgeSpec
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.engine.gates import Measurement, Outcome
from strategy_rollouts.engine.judge import sample_range
from strategy_rollouts.read import prometheus


async def populations(
    conn: prometheus.Connection, judge: JudgeSpec, values: dict[str, str], step_started: datetime | None = None
) -> Measurement:
    """Both sides over the same range ending now (mannWhitneyU: the last window; sequential: since the step
    started, on a grid anchored there so every evaluation sees the same timestamps); the engine decides."""
    end = datetime.now(UTC)
    start = sample_range(judge, step_started, end)
    step_s = parse_duration(judge.step).total_seconds()
    sides = ("canary.version", "stable.version")
    queries = [substitute(judge.query, {**values, "version": values[side]}) for side in sides]
    canary, stable = await asyncio.gather(*(prometheus.range_samples(conn, q, start, end, step_s) for q in queries))
    for side, got in (("canary", canary), ("stable", stable)):
        if got.outcome != "ok":
            outcome: Outcome = "error" if got.outcome == "error" else "inconclusive"
            return Measurement(None, outcome=outcome, message=f"{side}: {got.error}")
    return Measurement(
        None,
        populations=(canary.values, stable.values),
        points=((canary.times, canary.values), (stable.times, stable.values)),
        started=start,
    )
