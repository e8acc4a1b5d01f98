"""Every kind's engine says what a pass observes, in one shape (engine/types.py ObservationPlan), and
`engine/finish.complete` finishes every kind's Decision the same way."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from strategy_rollouts.api.common import Condition
from strategy_rollouts.api.gates import GateStatus, TemplateUse
from strategy_rollouts.api.notify import NotifyRule
from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.requests import Request
from strategy_rollouts.api.rollout import StrategyRolloutStatus, TargetStatus
from strategy_rollouts.engine import finish, notifications, parity_run
from strategy_rollouts.engine.rollout import held_stop, plan, urgent
from tests.unit.rollout_sim import World, spec_from

T = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)


def started() -> World:
    w = World(spec_from(stages=[{"name": "prod", "namespace": "prod", "steps": [{"setWeight": 10}]}]))
    w.reconcile()
    return w


def test_a_rollout_plans_both_deployments_per_target_its_routing_and_the_due_gates() -> None:
    w = started()
    p = plan(w.spec, w.status, "trading", "fib-rsi", w.now)
    assert p.deployments == (("prod", "fib-rsi-legacy"), ("prod", "fib-rsi-pipeline"))
    assert p.routings == tuple((t.namespace, t.config_map) for t in w.status.targets)
    assert [g.name for g in p.measure] == ["tick-p95-ms"] and p.objects == ()
    assert not (p.streams or p.latency or p.ranges or p.target)


def test_a_target_not_yet_recorded_plans_the_config_map_the_spec_names() -> None:
    spec = spec_from(routing={"keys": ["A", "B"], "configMap": "rt"})
    p = plan(spec, StrategyRolloutStatus(), "trading", "fib-rsi", T)
    assert p.routings == (("trading", "rt"),)
    recorded = StrategyRolloutStatus(targets=[TargetStatus(namespace="trading", configMap="rt")])
    assert plan(spec, recorded, "trading", "fib-rsi", T).routings == (("trading", "rt"),)


def test_a_pending_stop_plans_no_gate_and_a_shadow_run_is_planned_as_an_object() -> None:
    w = started()
    w.status.requests["r1"] = Request(action="stopTrading", by="alice", at=T)
    assert urgent(w.status) and plan(w.spec, w.status, "trading", "fib-rsi", w.now).measure == ()
    spec = spec_from(shadowRun="fib-shadow")
    assert plan(spec, StrategyRolloutStatus(), "trading", "x", T).objects == (
        ("shadowruns", ("trading", "fib-shadow")),
    )


def test_a_parity_check_plans_its_ranges_when_due_and_its_target_then() -> None:
    spec = ParityCheckSpec.model_validate(
        {
            "strategy": "s",
            "schedule": "*/5 * * * *",
            "live": {"query": "a"},
            "backtest": {"query": "b"},
            "target": {"deployment": "d"},
        }
    )
    due = parity_run.plan(spec, ParityCheckStatus(), "ns", T - timedelta(minutes=10), T)
    assert due.ranges and due.target and not due.measure
    assert parity_run.plan(None, ParityCheckStatus(), "ns", T, T) == parity_run.ObservationPlan()


def test_complete_stamps_measured_gates_fills_the_outbox_and_clears_invalid_status() -> None:
    new = StrategyRolloutStatus(
        gates=[GateStatus(name="a"), GateStatus(name="b")],
        conditions=[Condition(type="InvalidStatus", status="True", reason="x", message="m")],
    )
    used = {
        "a": TemplateUse(kind="GateTemplate", name="t", resourceVersion="7"),
        "b": TemplateUse(kind="GateTemplate", name="u"),
    }
    rule = NotifyRule.model_validate({"on": ["RolledBack"], "to": {"secretRef": {"name": "s", "key": "k"}}})
    occ = [notifications.Occurrence("RolledBack", "rolled back", "fib")]
    finish.complete(
        new,
        StrategyRolloutStatus(),
        gates_field="gates",
        templates_used=used,
        measured=["a"],
        rules=[rule],
        occurrences=occ,
        generation=3,
        now=T,
    )
    assert new.gates[0].template == used["a"] and new.gates[1].template is None  # b was not measured
    assert new.notifications is not None and new.notifications.pending
    (cond,) = new.conditions
    assert (cond.type, cond.status, cond.reason) == ("InvalidStatus", "False", "StatusParses")


def test_a_held_status_with_a_pending_stop_names_the_routing_to_stop_read_leniently() -> None:
    raw = {
        "requests": {"s": {"action": "stopTrading", "by": "alice"}, "bad": "not a request"},
        "targets": [{"namespace": "a", "configMap": "a-rt", "assignments": {"K": "draining"}}, {"namespace": 3}, "x"],
        "stageIndex": "not a number",
    }
    assert held_stop(raw) == (("a", "a-rt"),)
    assert held_stop({**raw, "requests": {"p": {"action": "promote"}}}) == ()
    assert held_stop(None) == () and held_stop({"requests": [], "targets": None}) == ()
