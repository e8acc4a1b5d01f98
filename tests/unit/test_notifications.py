"""Notifications, pure: occurrences derived from transitions, the outbox, deterministic ids, retry window."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.notify import NotificationStatus, NotifyRule
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine import notifications
from strategy_rollouts.engine.types import Event
from strategy_rollouts.engine.validation import notify_errors
from tests.unit.rollout_sim import T0, World, spec_from


def rule(*events: str, secret: str = "desk-alerts") -> dict[str, object]:
    return {"to": {"secretRef": {"name": secret, "key": "urls"}}, "on": list(events)}


def drive(world: World) -> list[notifications.Occurrence]:
    """One reconcile, and the occurrences a rule asks for (the adapter derives them: old -> new status)."""
    old = world.status
    decision = world.reconcile()
    wanted = {e for r in world.spec.notify for e in r.on}
    occurrences = notifications.rollout_occurrences(world.spec, old, decision.status, "trading", "fib-rsi")
    return [o for o in occurrences if o.event in wanted]


def events_over(world: World, seconds: int) -> list[notifications.Occurrence]:
    out: list[notifications.Occurrence] = []
    for _ in range(seconds):
        out += drive(world)
        world.now += timedelta(seconds=1)
    return out


def test_a_gate_rollback_is_one_rolled_back_occurrence_naming_gate_value_and_threshold() -> None:
    world = World(spec_from(notify=[rule("RolledBack", "GateFailed")]))
    before = events_over(world, 200)
    assert [o.event for o in before].count("RolledBack") == 0
    world.gate_values["tick-p95-ms"] = 412.5
    after = events_over(world, 60)
    rolled = [o for o in after if o.event == "RolledBack"]
    assert len(rolled) == 1, [o.event for o in after]
    text = rolled[0].message
    for piece in ("StrategyRollout trading/fib-rsi", "fib_rsi", "v1.0.0 -> v2.0.0", "tick-p95-ms", "412.5", "< 200"):
        assert piece in text, (piece, text)
    assert "stage prod" in text or "stage staging" in text
    assert "weight 0%" not in text  # the weight it was rolled back from
    assert [o.event for o in after].count("GateFailed") == 1


def test_a_happy_rollout_notifies_steps_stages_and_success_once_each() -> None:
    world = World(spec_from(notify=[rule("StepAdvanced", "StageCompleted", "Succeeded")]))
    seen: list[notifications.Occurrence] = []
    while world.status.phase != "Succeeded":
        seen += drive(world)
        world.now += timedelta(seconds=1)
    seen += events_over(world, 30)
    kinds = [o.event for o in seen]
    assert kinds.count("Succeeded") == 1
    assert kinds.count("StageCompleted") == 2  # staging, then prod (completion)
    assert kinds.count("StepAdvanced") >= 4


def test_awaiting_approval_is_sent_when_it_starts_and_after_each_approval() -> None:
    stages = [{"name": "prod", "steps": [{"setWeight": 20}], "approvals": {"count": 2}}]
    world = World(spec_from(stages=stages, notify=[rule("AwaitingApproval", "Resumed")]))
    first = events_over(world, 60)
    assert [o.event for o in first] == ["AwaitingApproval"]
    assert "0 of 2 approvals" in first[0].message
    world.request("a", "approve", "alice")
    second = events_over(world, 5)
    assert [o.event for o in second] == ["AwaitingApproval"] and "1 of 2 approvals (alice)" in second[0].message
    world.request("b", "approve", "bob")
    assert [o.event for o in events_over(world, 5)] == ["Resumed"]


def test_the_outbox_numbers_occurrences_and_gives_one_entry_per_receiver() -> None:
    rules = [NotifyRule.model_validate(rule("RolledBack")), NotifyRule.model_validate(rule("RolledBack", secret="pd"))]
    occ = notifications.Occurrence("RolledBack", "t", "m")
    state = notifications.outbox(rules, None, [occ], T0)
    assert state is not None and state.occurrence == 1
    assert sorted(state.pending) == ["RolledBack-1-0", "RolledBack-1-1"]
    assert {p.to.name for p in state.pending.values()} == {"desk-alerts", "pd"}
    again = notifications.outbox(rules, state, [occ], T0)
    assert again is not None and sorted(again.pending)[-1] == "RolledBack-2-1"
    assert state.occurrence == 1, "the previous status is never changed in place"


def test_objects_without_a_matching_rule_get_no_notification_status() -> None:
    occ = notifications.Occurrence("Succeeded", "t", "m")
    assert notifications.outbox([], None, [occ], T0) is None
    previous = NotificationStatus(occurrence=3)
    only_rollback = [NotifyRule.model_validate(rule("RolledBack"))]
    assert notifications.outbox(only_rollback, previous, [occ], T0) is previous


@settings(max_examples=100, deadline=None)
@given(events=st.lists(st.sampled_from(["RolledBack", "Succeeded", "Paused"]), max_size=20))
def test_property_recomputing_a_pass_from_the_same_status_gives_the_same_ids(events: list[str]) -> None:
    """A conflict or a crash before the write recomputes the pass: the same occurrences, the same ids."""
    rules = [NotifyRule.model_validate(rule("RolledBack", "Succeeded"))]
    occs = [notifications.Occurrence(e, e, e) for e in events]  # type: ignore[arg-type]
    previous = NotificationStatus(occurrence=7)
    first = notifications.outbox(rules, previous, occs, T0)
    second = notifications.outbox(rules, previous, occs, T0)
    assert (first.wire() if first else None) == (second.wire() if second else None)
    if first is not None and first is not previous:
        ids = list(first.pending)
        assert len(ids) == len(set(ids)) == len([e for e in events if e != "Paused"])


def test_retries_back_off_and_stop_ten_minutes_after_the_entry_was_recorded() -> None:
    assert notifications.retry_at(T0, 1, T0) == T0 + timedelta(seconds=2)
    assert notifications.retry_at(T0, 3, T0 + timedelta(seconds=10)) == T0 + timedelta(seconds=18)
    late = T0 + timedelta(minutes=9, seconds=50)
    assert notifications.retry_at(T0, 12, late) == T0 + timedelta(minutes=10)  # the last try, at the end
    assert notifications.retry_at(T0, 13, T0 + timedelta(minutes=10)) is None


def test_shadow_verdict_and_parity_events_become_occurrences() -> None:
    spec = ShadowRunSpec.model_validate(
        {
            "strategy": "fib_rsi",
            "live": {"deployment": "a", "version": "v1"},
            "shadow": {"deployment": "b", "version": "v2"},
            "duration": "1h",
            "notify": [rule("Verdict")],
        }
    )
    old = ShadowRunStatus(phase="Running")
    new = ShadowRunStatus(phase="Completed", verdict="Fail", reasons=["match rate 0.80 < 0.95"])
    (occ,) = notifications.shadow_occurrences(spec, old, new, "trading", "shr")
    assert occ.event == "Verdict" and "verdict Fail" in occ.message and "match rate 0.80" in occ.message
    assert notifications.shadow_occurrences(spec, new, new, "trading", "shr") == []
    assert notifications.parity_occurrences(None, [Event("Warning", "LevelChanged", "x")], "trading", "p") == []


def test_events_of_another_kind_are_an_invalid_spec_naming_the_field() -> None:
    rules = [NotifyRule.model_validate(rule("RolledBack", "Verdict"))]
    (message,) = notify_errors("StrategyRollout", rules)
    assert message.startswith("spec.notify[0].on: Verdict is not a StrategyRollout event (one of StepAdvanced")
    assert notify_errors("ShadowRun", [NotifyRule.model_validate(rule("Verdict"))]) == []
    world = World(spec_from(notify=[rule("LevelChanged")]))
    world.reconcile()
    assert world.status.phase == "Invalid" and "spec.notify[0].on: LevelChanged" in (world.status.message or "")


def test_notification_status_round_trips_through_the_wire() -> None:
    rules = [NotifyRule.model_validate(rule("RolledBack"))]
    state = notifications.outbox(rules, None, [notifications.Occurrence("RolledBack", "t", "m")], T0)
    status = StrategyRolloutStatus(notifications=state)
    assert StrategyRolloutStatus.model_validate(status.wire()) == status


def test_the_operator_does_not_import_apprise_until_it_sends() -> None:
    """Apprise is heavy: an operator whose objects do not notify never loads it."""
    code = "import sys, strategy_rollouts.operator.handlers, strategy_rollouts.main; print('apprise' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "False"
