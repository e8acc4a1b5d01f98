"""Keys are earned: a version gets a key only once its own run has started (issue: a superseding
version took the old run's keys while its start was held). And a stop lands while the spec is invalid.

Each scenario failed on the engine before the fix (all 10 keys published to v3 during a freeze, or
while waiting for a ShadowRun; half of them at once mid-rollout; the stop left both versions trading).
"""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.engine.rollout import invalid
from strategy_rollouts.engine.routing import NONE
from tests.unit.rollout_sim import World, spec_from
from tests.unit.test_market_rollout import MONDAY_OPEN, freeze, world

V1, V2, V3 = "v1.0.0", "v2.0.0", "v3.0.0"


def keys_of(w: World, version: str) -> set[str]:
    """Every key any published revision ever gave `version`."""
    return {k for snap in w.snapshots for k, v in snap.items() if v == version}


def bump(w: World, **overrides: object) -> None:
    data = w.spec.model_dump(by_alias=True, exclude_none=True)
    data["canary"] = {**data["canary"], "version": V3}
    data.update(overrides)
    w.spec = type(w.spec).model_validate(data)


def to_weight(w: World, weight: int) -> None:
    end = w.now + timedelta(hours=2)
    while (w.status.canary_weight or 0) < weight:
        assert w.now < end, (w.status.phase, w.status.message)
        w.reconcile()
        w.now += timedelta(seconds=1)


def test_supersede_while_waiting_for_a_shadowrun_mid_rollout_drains_to_stable_and_gives_v3_nothing() -> None:
    w = World(spec_from())
    to_weight(w, 50)
    assert keys_of(w, V2)
    before = len(w.snapshots)
    bump(w, shadowRun="fib-rsi-v3-shadow")  # not found: the start of v3 is held
    w.run(120)
    assert w.status.phase == "Pending", w.status.message
    assert not keys_of(w, V3), "a key went to a version whose start is held"
    assert w.published["trading"] and set(w.published["trading"].values()) == {V1}
    # drained, never handed over directly: every key that left v2 was draining first
    after = w.snapshots[before:]
    assert any("draining" in snap.values() for snap in after)


def test_supersede_after_success_during_a_freeze_keeps_the_keys_with_the_version_that_earned_them() -> None:
    w = world(spec_from(), MONDAY_OPEN)
    w.run_until("Succeeded")
    assert set(w.published["trading"].values()) == {V2}
    before = len(w.snapshots)
    bump(w, freezeWindows=freeze(w.now - timedelta(minutes=1), 60))
    w.run(300)
    assert w.status.phase == "Pending" and "not starting" in (w.status.message or ""), w.status.message
    assert not keys_of(w, V3)
    assert w.snapshots[before:] == [] or all(set(s.values()) == {V2} for s in w.snapshots[before:])
    assert set(w.published["trading"].values()) == {V2}


def test_a_superseding_version_that_starts_takes_no_key_from_the_old_canary_without_a_drain() -> None:
    w = World(spec_from())
    to_weight(w, 50)
    bump(w)
    w.reconcile()
    assert w.status.phase == "Progressing" and w.status.canary_version == V3
    assert not any(v == V3 for v in w.published["trading"].values())


def test_a_stop_lands_while_the_spec_is_invalid() -> None:
    w = World(spec_from())
    to_weight(w, 50)
    w.request("stop-1", "stopTrading", "risk-officer", "venue incident")
    decision = invalid(w.status, ["spec.stages[0].namespace: not allowed"], 2, w.now)
    assert w.status.trading_stopped is not True  # the caller's status is untouched
    st_ = decision.status
    assert st_.trading_stopped and st_.phase == "Invalid"
    assert [h.outcome for h in st_.handled_requests if h.id == "stop-1"] == ["Applied"]
    assert "stop-1" not in st_.requests
    [payload] = decision.routing
    assert payload.entries_enabled is False and payload.weight == 0
    assert payload.assignments and set(payload.assignments.values()) == {NONE}
    # recorded: the next invalid pass keeps publishing the stop, and applies nothing twice
    again = invalid(st_, ["still invalid"], 2, w.now)
    assert again.routing == decision.routing and len(again.status.handled_requests) == len(st_.handled_requests)


def test_an_invalid_spec_without_a_stop_publishes_nothing() -> None:
    w = World(spec_from())
    to_weight(w, 10)
    w.request("p", "pause", "alice")
    decision = invalid(w.status, ["bad"], 2, w.now)
    assert decision.routing == [] and decision.scales == [] and "p" in decision.status.requests


@settings(max_examples=25, deadline=None)
@given(
    weight=st.sampled_from([0, 10, 50, 100]),
    hold=st.sampled_from(["shadow", "freeze", "none"]),
    wait=st.integers(min_value=1, max_value=200),
)
def test_property_no_key_ever_goes_to_a_version_that_has_not_started(weight: int, hold: str, wait: int) -> None:
    w = world(spec_from(), MONDAY_OPEN)
    if weight == 100:
        w.run_until("Succeeded")
    elif weight:
        to_weight(w, weight)
    started_at: int | None = None
    overrides: dict[str, object] = {}
    if hold == "shadow":
        overrides["shadowRun"] = "missing"
    elif hold == "freeze":
        overrides["freezeWindows"] = freeze(w.now - timedelta(minutes=1), 30)
    before = len(w.snapshots)
    bump(w, **overrides)
    for _ in range(wait):
        w.reconcile()
        if started_at is None and w.status.canary_version == V3 and w.status.phase not in (None, "Pending"):
            started_at = len(w.snapshots)
        w.now += timedelta(seconds=1)
    unearned = w.snapshots[before : started_at if started_at is not None else len(w.snapshots)]
    assert not any(v == V3 for snap in unearned for v in snap.values())
    # exclusivity across consecutive revisions: a key never goes straight from one version to another
    for prev, nxt in zip(w.snapshots, w.snapshots[1:], strict=False):
        for key, owner in nxt.items():
            old = prev.get(key)
            if old and old not in ("draining", NONE) and owner not in ("draining", NONE):
                assert old == owner, (key, old, owner)
