"""Webhook gates: when each one is asked, what it is sent, and which transition its answer confirms.

Pure. `continuous` webhooks are gates like any other. `stepIncrease` ones are asked only while the
rollout stands before a weight increase, `promotion` ones only before a stage is promoted (or the
last stage completes, or maxDuration promotes); their Pass confirms that one transition and is
consumed by it, so the next increase or promotion asks again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateSpec, GateStatus
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus

CONFIRMS = ("stepIncrease", "promotion")


def confirms(gate: GateSpec) -> str | None:
    """The transition a webhook gate confirms (`stepIncrease` / `promotion`), None for any other gate."""
    if gate.webhook is None or gate.webhook.at == "continuous":
        return None
    return gate.webhook.at


def before(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> set[str]:
    """Which transitions the rollout stands before: a weight increase, a stage promotion, both or none."""
    index = status.stage_index or 0
    if index >= len(spec.stages):
        return set()
    stage = spec.stages[index]
    step_index = status.step_index or 0
    found: set[str] = set()
    if step_index >= len(stage.steps):
        found.add("promotion")
    else:
        step = stage.steps[step_index]
        if step.set_weight is not None and step.set_weight > (status.canary_weight or 0):
            found.add("stepIncrease")
    started = status.stage_started_at
    if stage.max_duration and started is not None and now - started >= parse_duration(stage.max_duration):
        found.add("promotion")
    return found


def applies(gate: GateSpec, spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> bool:
    at = confirms(gate)
    return at is None or at in before(spec, status, now)


def confirmed(specs: Iterable[GateSpec], statuses: Iterable[GateStatus], at: str) -> tuple[bool, str]:
    """(every non-dry-run webhook confirming `at` has answered Pass since the last transition, why not)."""
    by_name = {s.name: s for s in statuses}
    for gate in specs:
        if confirms(gate) != at or gate.dry_run:
            continue
        status = by_name.get(gate.name)
        if status is None or status.result is None:
            return False, f"asking webhook {gate.name} before the {at}"
        if status.result != "Pass":
            return False, f"webhook {gate.name} {status.result}: {status.message or ''}"
    return True, ""


def consume(specs: Iterable[GateSpec], statuses: list[GateStatus]) -> list[GateStatus]:
    """A transition happened: confirmations are spent, the next one asks again."""
    confirming = {g.name for g in specs if confirms(g) is not None}
    return [s for s in statuses if s.name not in confirming]


def payload(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, namespace: str, name: str) -> dict[str, Any]:
    """The JSON body POSTed to every webhook gate (API.md "Gates: kinds and templates")."""
    return {
        "kind": "StrategyRollout",
        "namespace": namespace,
        "name": name,
        "strategy": spec.strategy,
        "stage": status.stage,
        "step": status.step_index,
        "weight": status.canary_weight or 0,
        "stable": {"version": spec.stable.version},
        "canary": {"version": spec.canary.version},
        "gates": [{"name": g.name, "result": g.result, "value": g.value} for g in status.gates],
    }
