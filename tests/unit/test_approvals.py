"""Approvals (two-person rule): the pure module and the rollout engine that calls it, on a fake clock."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.approvals import Approval
from strategy_rollouts.api.requests import RolloutRequest
from strategy_rollouts.api.rollout import Stage
from strategy_rollouts.engine import approvals
from tests.unit.rollout_sim import T0, World, spec_from

TWO = {"count": 2, "message": "risk desk + strategy owner"}


def two_stage_spec(first: dict[str, object] | None = None, second: dict[str, object] | None = None) -> World:
    stages: list[dict[str, object]] = [
        {"name": "staging", "steps": [{"setWeight": 10}, {"pause": {"duration": "1m"}}]},
        {"name": "prod", "steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}, {"setWeight": 100}]},
    ]
    if first is not None:
        stages[0]["approvals"] = first
    if second is not None:
        stages[1]["approvals"] = second
    return World(spec_from(stages=stages))


def req(by: str, reason: str | None = "ok") -> RolloutRequest:
    return RolloutRequest(action="approve", by=by, reason=reason, at=T0)


# ---- the pure module --------------------------------------------------------------------------


def test_distinct_users_count_once_and_the_message_names_them() -> None:
    stage = Stage.model_validate({"name": "prod", "steps": [{"setWeight": 100}], "approvals": TWO})
    given_: list[Approval] = []
    given_, outcome, message = approvals.approve(stage, given_, req("alice"), T0)
    assert outcome == "Applied" and message == "1 of 2 approvals (alice) for stage prod: risk desk + strategy owner"
    given_, outcome, message = approvals.approve(stage, given_, req("alice"), T0 + timedelta(seconds=1))
    assert outcome == "Rejected" and message.startswith("alice already approved stage prod; 1 of 2 approvals")
    assert not approvals.satisfied(stage, given_) and approvals.missing(stage, given_) == 1
    given_, outcome, _ = approvals.approve(stage, given_, req("bob"), T0 + timedelta(seconds=2))
    assert outcome == "Applied" and approvals.satisfied(stage, given_)
    assert approvals.approvers(given_) == ["alice", "bob"]


def test_a_stage_without_approvals_rejects_an_approve_and_is_always_satisfied() -> None:
    stage = Stage.model_validate({"name": "prod", "steps": [{"setWeight": 100}]})
    kept, outcome, message = approvals.approve(stage, [], req("alice"), T0)
    assert (kept, outcome, message) == ([], "Rejected", "stage prod asks for no approvals")
    assert approvals.satisfied(stage, [])
    completing = approvals.approve(None, [], req("alice"), T0)
    assert completing[1:] == ("Rejected", "no stage to approve: the rollout is completing")


def test_approvals_of_another_stage_or_from_before_the_stage_started_are_stale() -> None:
    old = Approval(by="alice", at=T0, stage="prod")
    other = Approval(by="bob", at=T0 + timedelta(minutes=5), stage="staging")
    fresh = Approval(by="carol", at=T0 + timedelta(minutes=5), stage="prod")
    assert approvals.current([old, other, fresh], "prod", T0 + timedelta(minutes=1)) == [fresh]
    assert approvals.current([old, fresh], None, T0) == []
    stage = Stage.model_validate({"name": "prod", "steps": [{"setWeight": 100}], "approvals": {"count": 1}})
    assert not approvals.satisfied(stage, [other])


# ---- the engine ---------------------------------------------------------------------------------


def test_a_stage_waits_paused_awaiting_approval_until_two_distinct_users_approve() -> None:
    world = two_stage_spec(second=TWO)
    world.run(600)
    assert world.status.stage == "prod" and world.status.step_index == 3
    assert (world.status.phase, world.status.reason) == ("Paused", "AwaitingApproval")
    assert world.status.message == "0 of 2 approvals for stage prod: risk desk + strategy owner"
    world.request("a1", "approve", "alice", "risk desk ok")
    world.run(30)
    assert world.status.message == "1 of 2 approvals (alice) for stage prod: risk desk + strategy owner"
    assert [(a.by, a.reason) for a in world.status.approvals] == [("alice", "risk desk ok")]
    world.request("a2", "approve", "alice", "again")
    world.run(30)
    assert world.outcome("a2") == "Rejected" and world.status.reason == "AwaitingApproval"
    world.request("p1", "promote", "alice", "just ship it")
    world.run(30)
    assert world.outcome("p1") == "Rejected" and world.status.reason == "AwaitingApproval"
    world.request("f1", "promoteFull", "alice")
    world.run(30)
    assert world.outcome("f1") == "Rejected" and world.status.reason == "AwaitingApproval"
    world.request("b1", "approve", "bob", "owner ok")
    world.run_until("Succeeded", limit=600)
    assert world.outcome("b1") == "Applied"
    assert [h.by for h in world.status.history if h.outcome == "Approved"] == ["alice", "bob"]
    assert world.status.approvals == []  # completion is a stage change


def test_approvals_given_early_in_the_stage_count_at_its_end() -> None:
    world = two_stage_spec(first={"count": 1})
    world.run(2)
    world.request("a1", "approve", "alice")
    world.run(5)
    assert world.status.stage == "staging" and world.status.phase == "Progressing"
    world.run_until("Succeeded", limit=600)
    assert all(d.status.reason != "AwaitingApproval" for d in world.decisions)
    assert world.status.approvals == []


def test_an_approve_when_the_stage_asks_none_is_rejected_with_why() -> None:
    world = two_stage_spec(second=TWO)
    world.run(3)
    world.request("a1", "approve", "alice")
    world.run(3)
    assert world.outcome("a1") == "Rejected"
    entry = next(h for h in world.status.handled_requests if h.id == "a1")
    assert entry.message == "stage staging asks for no approvals"
    assert world.status.approvals == []


def test_a_retry_resets_the_approvals() -> None:
    world = two_stage_spec(first=TWO)
    world.run(3)
    world.request("a1", "approve", "alice")
    world.run(3)
    assert len(world.status.approvals) == 1
    world.request("x", "abort", "carol", "bad fills")
    world.run(3)
    world.request("r", "retry", "carol")
    world.run(3)
    assert world.status.phase == "Progressing" and world.status.approvals == []


def test_max_duration_promotes_only_with_the_approvals() -> None:
    world = World(
        spec_from(
            stages=[
                {"name": "prod", "steps": [{"setWeight": 10}, {"pause": {}}], "maxDuration": "5m", "approvals": TWO},
            ]
        )
    )
    world.run(400)
    assert (world.status.phase, world.status.reason) == ("Paused", "AwaitingApproval")
    world.request("a", "approve", "alice")
    world.request("b", "approve", "bob")
    world.run_until("Succeeded", limit=120)


@settings(max_examples=50, deadline=None)
@given(
    counts=st.tuples(st.integers(min_value=1, max_value=3), st.integers(min_value=1, max_value=3)),
    approvals_at=st.lists(
        st.tuples(st.integers(min_value=0, max_value=900), st.sampled_from(["alice", "bob", "carol"])),
        max_size=12,
    ),
)
def test_property_no_stage_is_promoted_with_fewer_than_count_distinct_users_and_none_carry_over(
    counts: tuple[int, int], approvals_at: list[tuple[int, str]]
) -> None:
    world = two_stage_spec(first={"count": counts[0]}, second={"count": counts[1]})
    by_time: dict[int, list[str]] = {}
    for second, user in approvals_at:
        by_time.setdefault(second, []).append(user)
    approved: dict[str, set[str]] = {"staging": set(), "prod": set()}
    world.reconcile()
    previous_stage = world.status.stage
    assert previous_stage == "staging"
    for second in range(1000):
        for n, user in enumerate(by_time.get(second, [])):
            world.request(f"r{second}-{n}", "approve", user)
        stage_before = world.status.stage
        world.reconcile()
        world.now += timedelta(seconds=1)
        # What the engine Applied this pass counts toward the stage that was current when it was handled.
        for entry in world.status.handled_requests:
            if entry.outcome == "Applied" and entry.at == world.now - timedelta(seconds=1) and stage_before:
                approved[stage_before].add(entry.by)
        stage = world.status.stage
        if stage != previous_stage:
            left = previous_stage
            assert left is not None
            need = counts[0] if left == "staging" else counts[1]
            assert len(approved[left]) >= need, f"{left} promoted with {approved[left]} (needs {need})"
            # reset on stage change: nothing recorded for the old stage survives
            assert all(a.stage == stage for a in world.status.approvals)
            previous_stage = stage
        assert len({a.by for a in world.status.approvals}) == len(world.status.approvals)
        if world.status.phase == "Succeeded":
            break
