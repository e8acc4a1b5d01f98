"""`engine.rollout.reconcile` is pure: the caller's status is never changed, during or after a decision,
and the shortcuts that make it fast (cached durations, kept conditions) give what the slow way gave."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.engine.rollout import Observations, reconcile
from tests.unit.rollout_sim import T0, World, spec_from


def _snapshot(status: StrategyRolloutStatus) -> tuple[dict[str, Any], dict[str, Any]]:
    return status.wire(), status.model_dump()


def _states(world: World, phase: str, limit: int = 2000) -> Iterator[tuple[StrategyRolloutStatus, Observations]]:
    """Every (status, observations) a world goes through until `phase`, as reconcile saw them."""
    for _ in range(limit):
        if world.status.phase == phase:
            return
        yield world.status, world.observe()
        world.reconcile()
        world.now += timedelta(seconds=1)
    raise AssertionError(f"never reached {phase}")


def _check_pure(world: World, phase: str) -> int:
    count = 0
    for status, obs in _states(world, phase):
        before = _snapshot(status)
        decision = reconcile(world.spec, status, obs, world.now)
        assert _snapshot(status) == before
        # Nothing of the caller's may be reachable from the decision: scribble over it and look again.
        for target in decision.status.targets:
            target.assignments["SCRIBBLE"] = "x"
            target.pending["SCRIBBLE"] = "x"
            target.weight = -1
        decision.status.conditions.clear()
        decision.status.gates.clear()
        for payload in decision.routing:
            payload.assignments.clear()
        assert _snapshot(status) == before
        count += 1
    return count


def test_reconcile_never_changes_the_callers_status_over_a_whole_rollout() -> None:
    assert _check_pure(World(spec_from()), "Succeeded") > 100


def test_reconcile_never_changes_the_callers_status_through_a_rollback() -> None:
    world = World(spec_from())
    world.run(200)
    assert world.status.phase == "Progressing"
    world.gate_values["tick-p95-ms"] = 900.0
    assert _check_pure(world, "RolledBack") > 0


def test_reconcile_never_changes_the_callers_status_on_requests() -> None:
    world = World(spec_from())
    world.run(30)
    for i, action in enumerate(["pause", "resume", "promote", "abort"]):
        world.request(f"r{i}", action, "me", "test")  # type: ignore[arg-type]
        before = _snapshot(world.status)
        reconcile(world.spec, world.status, world.observe(), world.now)
        assert _snapshot(world.status) == before
        world.reconcile()


def test_parse_duration_is_cached_and_still_rejects_bad_input() -> None:
    assert parse_duration("1h30m") == timedelta(hours=1, minutes=30)
    assert parse_duration("1h30m") is parse_duration("1h30m")
    assert parse_duration("500ms") == timedelta(milliseconds=500)
    for _ in range(2):  # errors are not cached away
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration("10 minutes")
    for bad in (None, 30, ["30s"]):
        with pytest.raises(ValueError, match="not a duration"):
            parse_duration(bad)  # type: ignore[arg-type]


def test_set_condition_keeps_an_unchanged_condition_and_rebuilds_a_changed_one() -> None:
    later = T0 + timedelta(minutes=5)
    conds = set_condition([], "Ready", True, "Up", "all good", T0, 1)
    assert conds == [
        Condition(
            type="Ready", status="True", reason="Up", message="all good", last_transition_time=T0, observed_generation=1
        )
    ]
    same = set_condition(conds, "Ready", True, "Up", "all good", later, 1)
    assert same == conds and same is not conds and same[0] is conds[0]
    message = set_condition(conds, "Ready", True, "Up", "still good", later, 1)
    assert message[0].message == "still good" and message[0].last_transition_time == T0
    generation = set_condition(conds, "Ready", True, "Up", "all good", later, 2)
    assert generation[0].observed_generation == 2 and generation[0].last_transition_time == T0
    flipped = set_condition(conds, "Ready", False, "Down", "gone", later, 1)
    assert flipped[0].status == "False" and flipped[0].last_transition_time == later
    untimed = [Condition(type="Ready", status="True", reason="Up", message="all good", observed_generation=1)]
    assert set_condition(untimed, "Ready", True, "Up", "all good", later, 1)[0].last_transition_time == later
    assert conds[0].message == "all good"  # the input list's condition was never changed
