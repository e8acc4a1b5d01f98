"""Gates of a run: which apply and are due, and what this pass' measurements make of them."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.rollout import RiskBudgetStatus, Stage, StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine import market, webhook_gates
from strategy_rollouts.engine.rollout.quarantine import judge_keys, over_limit
from strategy_rollouts.engine.rollout.state import ACTIVE, Run


def risk_gate(stage: Stage, specs: list[GateSpec]) -> GateSpec | None:
    """The stage's risk budget as a gate, so it shares the bookkeeping (limit: used <= max)."""
    if stage.risk_budget is None:
        return None
    intervals = [gatelib.interval(g) for g in specs]
    every = min(intervals) if intervals else timedelta(seconds=30)
    # model_construct: the `:` keeps it apart from user gate names, which validation forbids.
    return GateSpec.model_construct(
        name=f"risk-budget:{stage.name}",
        query=stage.risk_budget.query,
        condition=f"<= {stage.risk_budget.max_percent}",
        interval=f"{max(every.total_seconds(), 0.001):g}s",
        failure_limit=0,
        inconclusive_limit=2,
        baseline=None,
        max_increase_percent=None,
        dry_run=False,
    )


def active_gates(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> list[GateSpec]:
    """Every gate that applies now: the spec's gates (a confirming webhook only before its transition)
    plus the current stage's risk budget."""
    specs = [g for g in spec.gates if webhook_gates.applies(g, spec, status, now)]
    index = status.stage_index or 0
    if index < len(spec.stages):
        risk = risk_gate(spec.stages[index], spec.gates)
        if risk is not None:
            specs.append(risk)
    return specs


def due_gates(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> list[GateSpec]:
    """Which gates the operator should measure before calling `reconcile` (none outside a run)."""
    if status.phase not in ACTIVE:
        return []
    by_name = {g.name: g for g in status.gates}
    return [
        g for g in active_gates(spec, status, now) if g.per_key is None and gatelib.is_due(g, by_name.get(g.name), now)
    ]


def due_per_key_gates(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> list[GateSpec]:
    """Per-key gates due now: measured `by (label)`, one value per key (engine/rollout/quarantine.py)."""
    if status.phase not in ACTIVE:
        return []
    by_name = {g.name: g for g in status.gates}
    return [g for g in spec.gates if g.per_key is not None and gatelib.is_due(g, by_name.get(g.name), now)]


# Status timestamps are written with millisecond precision: a start read back may be up to 1 ms earlier.
STAMP_SLACK = timedelta(milliseconds=1)


def read_an_earlier_step(gate: GateSpec, m: gatelib.Measurement, step_started: datetime | None) -> bool:
    """A sequential judge measured from an earlier start than the current step's (the observation read a
    status from before the step changed): its decision would count samples of the last step."""
    if gate.judge is None or gate.judge.test != "sequential" or m.started is None or step_started is None:
        return False
    return m.started < step_started - STAMP_SLACK


def record_gates(run: Run) -> gatelib.GateSummary:
    specs = active_gates(run.spec, run.st, run.now)
    by_name = {g.name: g for g in run.st.gates}
    for gate in specs:
        if gate.per_key is not None:
            judged = judge_keys(run, gate, by_name.get(gate.name))
            if judged is not None:
                by_name[gate.name] = judged
            run.wake(gatelib.next_due(gate, by_name.get(gate.name), run.now))
            continue
        m = run.obs.measurements.get(gate.name)
        if m is not None and read_an_earlier_step(gate, m, run.st.step_started_at):
            m = None  # a sequential judge's samples from before this step: not this step's; measured again
            run.wake(run.now)
        if m is not None:
            prev = by_name.get(gate.name)
            by_name[gate.name] = gatelib.record(prev, gate, m, run.now)
            if run.closed:
                by_name[gate.name] = market.closed_result(prev, by_name[gate.name], m, run.calendar.name)
        run.wake(gatelib.next_due(gate, by_name.get(gate.name), run.now))
    run.st.gates = [by_name[g.name] for g in specs if g.name in by_name]
    stage = run.spec.stages[min(run.st.stage_index or 0, len(run.spec.stages) - 1)]
    if stage.risk_budget is not None:
        risk = by_name.get(f"risk-budget:{stage.name}")
        run.st.risk_budget = RiskBudgetStatus(
            used_percent=risk.value if risk else None, max_percent=stage.risk_budget.max_percent
        )
    summary = gatelib.summarize(specs, by_name, run.now)
    if over_limit(run):  # more quarantined keys than allowed: onFailure at once, whatever failureLimit
        over = [by_name[g.name] for g in specs if g.per_key is not None and g.name in by_name]
        failed = [s for s in over if s.result == "Fail"] or over
        summary = dataclasses.replace(summary, failed=[*failed[:1], *summary.failed], all_pass=False)
    return summary
