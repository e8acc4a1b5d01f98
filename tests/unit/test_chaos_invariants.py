"""The chaos run's checks catch what they claim to (each is shown a good and a bad history)."""

from __future__ import annotations

from typing import Any

from strategy_rollouts.testing.invariants import (
    drain_violations,
    exclusivity_violations,
    handled_violations,
    outcome_violations,
    replica_violations,
    step_violations,
)

V1, V2 = "v1", "v2"


def at(*positions: tuple[int, int]) -> list[tuple[float, dict[str, Any]]]:
    return [(float(i), {"stageIndex": s, "stepIndex": k}) for i, (s, k) in enumerate(positions)]


def doc(revision: int, **assignments: str) -> dict[str, Any]:
    return {"revision": revision, "assignments": assignments}


def test_steps_forward_by_one_or_to_the_next_stage() -> None:
    steps = [2, 3]  # staging: 2 steps, prod: 3 steps; stage 2 is the completion
    good = at((0, 0), (0, 1), (1, 0), (1, 1), (1, 1), (1, 2), (1, 3), (2, 0))
    assert step_violations("r", [(0.0, {}), *good], steps) == []
    assert step_violations("r", at((0, 0), (0, 1), (0, 2), (1, 0)), steps) == []  # stage end held at (0,2)
    assert step_violations("r", at((0, 0), (1, 0)), steps) == ["r: position (0,0) at 0.0s -> (1,0) at 1.0s"]
    assert step_violations("r", at((1, 0), (1, 2)), steps)  # skipped (1,1)
    assert step_violations("r", at((1, 1), (1, 0)), steps)  # went back
    assert step_violations("r", at((1, 2), (1, 1), (1, 2)), steps)  # repeated
    # across a relist (the watch could not resume) a forward move is not judged; a move back still is
    assert step_violations("r", at((1, 0), (1, 2)), steps, relisted=[0.5]) == []
    assert step_violations("r", at((1, 0), (1, 2)), steps, relisted=[1.5])  # the relist came after
    assert step_violations("r", at((1, 2), (1, 1)), steps, relisted=[0.5])


def test_outcomes_exactly_once() -> None:
    status = {"history": [{"version": V2, "outcome": "Paused"}, {"version": V2, "outcome": "Succeeded"}]}
    assert outcome_violations("r", status, V2, {"Succeeded": 1, "RolledBack": 0, "Paused": 1}) == []
    twice = {"history": status["history"] * 2}
    assert outcome_violations("r", twice, V2, {"Succeeded": 1}) == ["r: history has 2 x Succeeded for v2, expected 1"]
    assert outcome_violations("r", status, "v3", {"Succeeded": 1})


def test_requests_handled_once_and_removed() -> None:
    assert handled_violations("r", {"handledRequests": [{"id": "a"}, {"id": "b"}], "requests": {"c": {}}}) == []
    assert handled_violations("r", {"handledRequests": [{"id": "a"}, {"id": "a"}]}) == ["r: request a handled 2 times"]
    assert handled_violations("r", {"handledRequests": [{"id": "a"}], "requests": {"a": {}}})


def test_no_key_moves_between_versions_without_draining() -> None:
    good = [(0.0, doc(1, A=V1, B=V1)), (1.0, doc(2, A="draining", B=V1)), (3.0, doc(3, A=V2, B=V1))]
    assert exclusivity_violations("cm", good, (V1, V2), contiguous=True) == []
    assert drain_violations("cm", good, (V1, V2), minimum=1.5) == []
    jump = [good[0], (1.0, doc(2, A=V2, B=V1))]
    assert exclusivity_violations("cm", jump, (V1, V2), contiguous=True) == [
        "cm: A v1 -> v2 without draining (revision 1 -> 2, 1.0s)"
    ]
    # a watch that misses a revision is a violation too; a sampler may skip revisions
    skipped = [good[0], good[2]]
    assert len(exclusivity_violations("cm", skipped, (V1, V2), contiguous=True)) == 2
    assert len(exclusivity_violations("cm", [good[0], good[1], good[2]], (V1, V2), contiguous=False)) == 0
    # across a relist a watch may miss revisions (still never a direct move)
    missed = [good[0], (3.0, doc(3, A="draining", B=V1))]
    assert exclusivity_violations("cm", missed, (V1, V2), True, relisted=[2.0]) == []
    assert exclusivity_violations("cm", missed, (V1, V2), True, relisted=[]) == [
        "cm: revision 1 at 0.0s followed by 3 at 3.0s"
    ]
    assert drain_violations("cm", [good[1], (1.2, doc(3, A=V2))], (V1, V2), minimum=1.5) == [
        "cm: A draining 0.20s (< 1.5s) until v2 at 1.2s"
    ]
    # to `none` (an emergency stop) needs no drain
    assert exclusivity_violations("cm", [good[0], (1.0, doc(2, A="none", B="none"))], (V1, V2), True) == []


def test_replicas_go_exactly_through_the_expected_values() -> None:
    assert replica_violations("d", [(0.0, 0), (1.0, 0), (2.0, 2), (5.0, 0)], [0, 2, 0]) == []
    assert replica_violations("d", [(0.0, 0), (2.0, 2), (3.0, 0), (4.0, 2)], [0, 2]) == [
        "d: spec.replicas went [0, 2, 0, 2], expected [0, 2]"
    ]
