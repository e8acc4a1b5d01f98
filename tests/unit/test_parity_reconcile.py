"""`engine.parity_run.reconcile`: actions recorded (Pending, stable ids) before anything is applied,
settled from what the target shows, effects derived from status alone; and a property over random
specs, levels, crash points and rollout answers."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.requests import ParityRequest
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine import parity_run
from strategy_rollouts.engine.parity import Level
from tests.unit.parity_world import CM, NAME, NS, T0, USER, Answer, Crash, World, make_spec

CRITICAL = {"thresholdsBps": {"warning": 20, "critical": 50, "emergency": 100}}


def states(world: World) -> dict[str, str]:
    return {r.id: r.state for r in world.status.actions_taken}


def run_at(world: World, level: Level, crash: Crash = "none") -> parity_run.Decision:
    world.level = level
    world.request_run()
    return world.step(crash)


# ---- recording before acting ----------------------------------------------------------------------------


def test_critical_records_pending_actions_with_stable_ids_before_any_effect() -> None:
    w = World(make_spec())
    d = run_at(w, "Critical", crash="after_write")  # status written, nothing applied
    assert w.status.run_seq == 1 and w.status.last_run is not None and w.status.last_run.level == "Critical"
    assert states(w) == {
        "pck-pc-1-sizeMultiplier": "Pending",
        "pck-pc-1-entriesEnabled": "Pending",
        "pck-pc-1-pause": "Pending",
    }
    pause = next(r for r in w.status.actions_taken if r.id == "pck-pc-1-pause")
    assert (
        pause.request == pause.id
        and pause.reason == "TE 70 bps (critical)"
        and pause.target == "strategyrollout/fib-rsi"
    )
    assert d.effects.routing == (acts.RoutingChange(NS, CM, {"sizeMultiplier": 0.5, "entriesEnabled": False}),)
    (out,) = d.effects.requests
    assert (out.id, out.rollout, out.request.action, out.request.by) == ("pck-pc-1-pause", "fib-rsi", "pause", USER)
    assert out.request.source == "paritycheck/pc" and out.request.at == T0
    assert w.routing["sizeMultiplier"] == 1.0 and not w.rollout_requests  # the crash lost every effect
    assert w.status.requests == {} and [h.outcome for h in w.status.handled_requests] == ["Applied"]
    # The next pass does not measure again: it derives the same effects from the status.
    d2 = w.step()
    assert w.measurements == 1 and d2.effects.routing == d.effects.routing
    assert [o.id for o in d2.effects.requests] == ["pck-pc-1-pause"]
    assert w.routing["sizeMultiplier"] == 0.5 and "pck-pc-1-pause" in w.rollout_requests


def test_actions_settle_from_what_the_target_shows_then_rest() -> None:
    w = World(make_spec())
    run_at(w, "Critical")
    d = w.step()  # routing now shows the values; the pause request waits in the rollout
    assert states(w)["pck-pc-1-sizeMultiplier"] == "Applied" and states(w)["pck-pc-1-pause"] == "Pending"
    pause = next(r for r in w.status.actions_taken if r.id == "pck-pc-1-pause")
    assert pause.delivered and d.effects.requests == ()  # never sent again while it waits
    assert {e.reason for e in d.events} == {"ActionApplied"} and d.applied == (
        "sizeMultiplier=0.5",
        "entriesEnabled=false",
    )
    w.rollout_answers(["apply"])
    w.step()
    assert set(states(w).values()) == {"Applied"} and w.rollout_paused
    assert w.status.message is None
    cond = next(c for c in w.status.conditions if c.type == "ActionsPending")
    assert cond.status == "False"
    at_rest = w.status
    d = w.step()
    assert d.status.wire() == at_rest.wire() and d.effects == acts.Effects() and d.wake_at == w.status.next_run_at


def test_a_rejected_request_is_out_of_force_and_planned_again_by_the_next_breach() -> None:
    w = World(make_spec())
    run_at(w, "Critical")
    w.rollout_answers(["reject"])
    d = w.step()
    assert states(w)["pck-pc-1-pause"] == "Rejected" and "pauseRollout" not in w.status.active_actions
    assert any(e.reason == "ActionRejected" and "refused" in e.message for e in d.events)
    run_at(w, "Critical")
    assert states(w)["pck-pc-2-pause"] == "Pending" and len(w.status.actions_taken) == 4


def test_a_request_that_vanishes_after_delivery_is_rejected_not_resent() -> None:
    w = World(make_spec())
    run_at(w, "Critical")
    w.step()  # delivered
    w.rollout_requests.clear()  # gone without an outcome (e.g. hand-edited away)
    d = w.step()
    assert states(w)["pck-pc-1-pause"] == "Rejected" and d.effects.requests == ()


def test_missing_rollout_keeps_requests_pending_and_says_so() -> None:
    w = World(make_spec())
    w.rollout_exists = False
    run_at(w, "Critical")
    pause = next(r for r in w.status.actions_taken if r.id == "pck-pc-1-pause")
    assert pause.state == "Pending" and pause.message == "strategyrollout/fib-rsi not found"
    assert "pck-pc-1-pause" in (w.status.message or "")


def test_emergency_on_a_rollout_is_one_stop_request_carrying_abort_and_entries() -> None:
    w = World(make_spec())
    d = run_at(w, "Emergency")
    assert [o.request.action for o in d.effects.requests] == ["stopTrading"]
    assert d.effects.routing == () and d.effects.scales == ()  # the rollout does both
    carried = {r.action: r.request for r in w.status.actions_taken}
    assert carried == {
        "entriesEnabled=false": "pck-pc-1-stopTrading",
        "abortRollout": "pck-pc-1-stopTrading",
        "stopTrading": "pck-pc-1-stopTrading",
    }
    w.rollout_answers(["apply"])
    w.step()
    assert set(states(w).values()) == {"Applied"} and w.rollout_stopped


def test_emergency_on_a_deployment_frees_every_key_and_scales_to_zero_recording_the_replicas() -> None:
    w = World(make_spec({"deployment": "legacy", "configMap": CM}))
    d = run_at(w, "Emergency", crash="after_write")
    stop = next(r for r in w.status.actions_taken if r.action == "stopTrading")
    assert stop.replicas == 3 and stop.target == "deployment/legacy" and stop.request is None
    (change,) = d.effects.routing
    # `stopped`: every id of an open or compact universe to none too (api/keyhash.py owner)
    none = {"BTC": "none", "ETH": "none", "SOL": "none"}
    assert change.changes == {"entriesEnabled": False, "assignments": none, "stopped": True}
    assert d.effects.scales == (acts.Scale(NS, "legacy", 0),) and d.effects.requests == ()
    w.step()
    w.step()
    assert set(states(w).values()) == {"Applied"} and w.replicas == 0 and w.scale_calls == 1


def test_recovery_lifts_and_resumes_and_a_lift_lost_in_a_crash_is_still_applied() -> None:
    w = World(make_spec(autoRecover=True))
    run_at(w, "Critical")
    w.rollout_answers(["apply"])
    w.step()
    d = run_at(w, "Good", crash="after_write")
    lifts = {r.id: r.action for r in w.status.actions_taken if r.run == 2}
    assert lifts == {
        "pck-pc-2-sizeMultiplier": "sizeMultiplier=1",
        "pck-pc-2-entriesEnabled": "entriesEnabled=true",
        "pck-pc-2-resume": "resumeRollout",
    }
    assert w.status.active_actions == [] and w.routing["sizeMultiplier"] == 0.5  # recorded, not yet applied
    assert {e.type for e in d.events if e.reason == "ActionTaken"} == {"Normal"}
    w.step()
    w.rollout_answers(["apply"])
    w.step()
    assert w.routing["sizeMultiplier"] == 1.0 and w.routing["entriesEnabled"] is True and not w.rollout_paused
    assert set(states(w).values()) == {"Applied"}


def test_a_newer_action_on_the_same_field_supersedes_a_pending_one() -> None:
    w = World(make_spec({"deployment": "legacy", "configMap": CM}, autoRecover=True))
    run_at(w, "Critical")
    w.step()
    run_at(w, "Good", crash="after_write")  # lifts Pending, never applied
    run_at(w, "Critical", crash="after_write")
    by_id = {r.id: (r.state, r.message) for r in w.status.actions_taken}
    assert by_id["pck-pc-2-sizeMultiplier"] == ("Superseded", "superseded by pck-pc-3-sizeMultiplier")
    w.step()
    assert w.routing["sizeMultiplier"] == 0.5 and w.routing["entriesEnabled"] is False


def test_a_stop_supersedes_pending_lifts() -> None:
    w = World(make_spec(autoRecover=True))
    run_at(w, "Critical")
    w.rollout_answers(["apply"])
    w.step()
    run_at(w, "Good", crash="after_write")
    d = run_at(w, "Emergency", crash="after_write")
    lifted = [r for r in w.status.actions_taken if r.run == 2]
    assert {r.state for r in lifted} == {"Superseded"}
    assert [o.request.action for o in d.effects.requests] == ["stopTrading"] and d.effects.routing == ()


def test_two_pending_run_requests_are_one_run_both_handled_and_removed() -> None:
    w = World(make_spec())
    w.level = "Good"
    first, second = w.request_run("alice"), w.request_run("bob")
    w.step()
    assert w.measurements == 1 and w.status.requests == {}
    handled = {h.id: (h.outcome, h.message, h.by) for h in w.status.handled_requests}
    assert handled == {
        first: ("Applied", "run 1: Good", "alice"),
        second: ("Applied", f"run 1: Good (with {first})", "bob"),
    }
    assert w.status.last_run is not None and w.status.last_run.by == "alice"
    # A resend of a handled id is dropped without a run.
    w.status = w.status.model_copy(update={"requests": {first: ParityRequest(action="run", by="alice", at=T0)}})
    w.step()
    assert w.measurements == 1 and w.status.requests == {} and len(w.status.handled_requests) == 2


def test_an_invalid_spec_rejects_pending_requests_and_acts_on_nothing() -> None:
    w = World(make_spec(schedule="61 * * * *"))
    rid = w.request_run()
    d = w.step()
    assert w.status.phase == "Invalid" and "spec.schedule" in (w.status.message or "")
    assert [(h.id, h.outcome) for h in w.status.handled_requests] == [(rid, "Rejected")]
    assert w.status.requests == {} and d.effects == acts.Effects() and w.measurements == 0 and d.wake_at is None
    assert [e.reason for e in d.events] == ["InvalidSpec"]
    assert w.step().events == ()  # reported once


def test_reconcile_never_changes_the_callers_status() -> None:
    w = World(make_spec())
    run_at(w, "Critical", crash="after_write")
    before = w.status.model_dump()
    obs = parity_run.Observations(NS, NAME, USER, T0, 1, (), None, w.target())
    d = parity_run.reconcile(w.spec, w.status, obs, w.now + timedelta(seconds=5))
    d.status.actions_taken[0].state = "Rejected"
    assert w.status.model_dump() == before


# ---- the property --------------------------------------------------------------------------------------

_levels = st.sampled_from(["Unknown", "Excellent", "Good", "Warning", "Critical", "Emergency"])
_crash = st.sampled_from(["none", "before_write", "after_write", "partial"])
_answer = st.sampled_from(["apply", "apply", "reject", "wait"])


@st.composite
def level_actions(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    size = draw(st.sampled_from([None, 0.25, 0.5, 1.0]))
    if size is not None:
        out["sizeMultiplier"] = size
    entries = draw(st.sampled_from([None, False]))
    if entries is not None:
        out["entriesEnabled"] = entries
    for flag in ("pauseRollout", "abortRollout", "stopTrading"):
        if draw(st.integers(0, 3)) == 0:
            out[flag] = True
    return out


@st.composite
def specs(draw: st.DrawFn) -> Any:
    target = draw(st.sampled_from([{"rollout": "fib-rsi"}, {"deployment": "legacy", "configMap": CM}]))
    return make_spec(
        target,
        consecutiveBreaches=draw(st.integers(1, 3)),
        autoRecover=draw(st.booleans()),
        actions={
            "warning": draw(level_actions()),
            "critical": draw(level_actions()),
            "emergency": draw(level_actions()),
        },
    )


@st.composite
def passes(draw: st.DrawFn) -> tuple[Crash, list[bool], list[Answer]]:
    return draw(_crash), draw(st.lists(st.booleans(), max_size=4)), draw(st.lists(_answer, max_size=4))


@settings(max_examples=300, deadline=None)
@given(spec=specs(), script=st.lists(st.tuples(_levels, st.lists(passes(), min_size=1, max_size=4)), max_size=8))
def test_crashes_and_late_answers_never_lose_repeat_or_revert_an_action(
    spec: Any, script: list[tuple[Level, list[tuple[Crash, list[bool], list[Answer]]]]]
) -> None:
    w = World(spec)
    for level, steps in script:
        w.level = level
        w.request_run()
        for crash, keep, answers in steps:
            w.step(crash, keep)
            w.rollout_answers(answers)
    # Quiet end: no crash, the rollout answers everything, until nothing is Pending.
    for _ in range(6):
        w.step()
        w.rollout_answers(["apply"] * 20)
    w.step()
    final = w.status
    assert w.violations == []
    assert acts.pending(final.actions_taken) == [], [(r.id, r.message) for r in acts.pending(final.actions_taken)]
    # Every run recorded once, in order; every planned action once (ids unique, never rewritten).
    assert [r.seq for r in final.history] == list(range(1, final.run_seq + 1))[-30:]
    assert final.run_seq == w.runs_written <= len(script)  # two requests pending together: one run
    assert len(final.handled_requests) == len(script)
    assert len({r.id for r in final.actions_taken}) == len(final.actions_taken)
    assert final.requests == {} and len({h.id for h in final.handled_requests}) == len(final.handled_requests)
    assert w.measurements >= final.run_seq
    # Nothing applied twice: each request id reached the rollout once.
    assert len(w.sends) == len(set(w.sends))
    # What status says applied is what the world shows: a lift lifted, a stop stopped.
    last: dict[str, Any] = {}
    for r in final.actions_taken:
        action = acts.decode_action(r.action)
        if r.state == "Applied" and action is not None and action.kind in acts.ROUTING_FIELDS and not r.request:
            last[acts.ROUTING_FIELDS[action.kind]] = action.value
    if w.pc_stop_applied:
        assert w.routing["entriesEnabled"] is False and set(w.routing["assignments"].values()) == {"none"}
        if not w.rollout_target:
            assert w.replicas == 0
    else:
        for name, value in last.items():
            assert w.routing[name] == value, (name, final.actions_taken)
    if "sizeMultiplier" in last:
        assert w.routing["sizeMultiplier"] == last["sizeMultiplier"]
