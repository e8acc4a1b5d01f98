"""Hypothesis properties of the StrategyRollout engine over random specs, crashes and request interleavings.

Each example builds a random spec (stages, steps, keys, handoff, mode, promotion), runs the pure engine
against the simulated world with a fake clock, and at random ticks: adds requests from people and
from a ParityCheck, crashes before the status write (the decision is lost), or crashes after it
(the enforcement is lost). Whatever happens:
- no key goes from one version to the other without `draining` published for at least `handoff`;
- the position never moves backwards within a run, and a timed pause is never cut short unless a
  promote was applied;
- every request gets exactly one outcome, in the same write that removes it from `requests`;
- once a stop is applied nothing but a person's retry moves the rollout again.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine.rollout import reconcile
from strategy_rollouts.engine.routing import DRAINING, NONE
from tests.unit.rollout_sim import World

VERSIONS = ("v1.0.0", "v2.0.0")
ACTIONS = ("promote", "promoteFull", "abort", "retry", "pause", "resume", "stopTrading", "approve")


@st.composite
def specs(draw: st.DrawFn) -> StrategyRolloutSpec:
    stages = []
    for s in range(draw(st.integers(1, 3))):
        weights = sorted(draw(st.lists(st.integers(0, 100), min_size=1, max_size=3)))
        steps: list[dict[str, Any]] = []
        for w in weights:
            steps.append({"setWeight": w})
            if draw(st.booleans()):
                steps.append({"pause": {"duration": f"{draw(st.integers(1, 20))}s"}})
        stage: dict[str, Any] = {"name": f"s{s}", "steps": steps}
        if draw(st.booleans()):
            stage["minDuration"] = f"{draw(st.integers(1, 30))}s"
        stage["promotion"] = draw(st.sampled_from(["auto", "auto", "manual"]))
        if s > 0 and draw(st.integers(0, 3)) == 0:
            stage["namespace"] = f"ns{s}"
        stages.append(stage)
    mode = draw(st.sampled_from(["symbols", "symbols", "replicas"]))
    data = {
        "strategy": "prop",
        "stable": {"deployment": "legacy", "version": VERSIONS[0]},
        "canary": {"deployment": "pipeline", "version": VERSIONS[1], "replicas": draw(st.integers(1, 3))},
        "routing": {
            "mode": mode,
            "keys": [f"K{i}" for i in range(draw(st.integers(1, 25)))],
            "handoff": draw(st.sampled_from(["0s", "1s", "3s", "5s"])),
        },
        "stages": stages,
        "gates": [{"name": "g", "query": "q", "condition": "< 200", "interval": "2s", "failureLimit": 0}],
        "scaleDownDelay": "5s",
    }
    if mode == "replicas":
        data["replicas"] = draw(st.integers(1, 10))
    return StrategyRolloutSpec.model_validate(data)


events = st.lists(
    st.tuples(
        st.integers(0, 400),  # tick
        st.sampled_from(["request", "crash-before-write", "crash-after-write", "gate-fails", "gate-recovers"]),
        st.sampled_from(ACTIONS),
        st.sampled_from(["alice", "bob", "parity"]),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(
    spec=specs(),
    script=events,
    stop=st.one_of(st.none(), st.tuples(st.integers(0, 300), st.integers(1, 60), st.sampled_from(["parity", "alice"]))),
)
def test_property_random_specs_crashes_and_requests_keep_every_invariant(
    spec: StrategyRolloutSpec, script: list[tuple[int, str, str, str]], stop: tuple[int, int, str] | None
) -> None:
    if stop is not None:  # an emergency stop, then a retry by a person or by the ParityCheck itself
        at, later, who = stop
        script = [*script, (at, "request", "stopTrading", "parity"), (at + later, "request", "retry", who)]
    world = World(spec)
    handoff = parse_duration(spec.routing.handoff)
    symbols = spec.routing.mode == "symbols"
    by_tick: dict[int, list[tuple[str, str, str]]] = {}
    for tick, what, action, who in script:
        by_tick.setdefault(tick, []).append((what, action, who))
    added: dict[str, str] = {}  # request id -> action
    outcomes: dict[str, str] = {}
    draining_since: dict[tuple[str, str], Any] = {}  # (namespace, key) -> first published draining
    stopped = False
    seq = 0
    for tick in range(600):
        crash: str | None = None
        for what, action, who in by_tick.get(tick, []):
            if what == "request":
                seq += 1
                source = "paritycheck/p" if who == "parity" else None
                world.request(f"r{seq:03d}", action, who, "prop", source)  # type: ignore[arg-type]
                added[f"r{seq:03d}"] = action
            elif what == "gate-fails":
                world.gate_values["g"] = 900.0
            elif what == "gate-recovers":
                world.gate_values["g"] = 100.0
            else:
                crash = what
        before = world.status
        if crash == "crash-before-write":
            reconcile(world.spec, world.status, world.observe(), world.now)  # decided, never written
            world.now += timedelta(seconds=1)
            continue
        published_before = {ns: dict(a) for ns, a in world.published.items()}
        stop_pending = any(r.action == "stopTrading" for r in before.requests.values())
        decision = world.reconcile(apply=crash != "crash-after-write")
        after = world.status
        # -- a pending stop is applied in this very pass, whatever else is true (gates, holds, requests)
        if stop_pending:
            assert not any(r.action == "stopTrading" for r in after.requests.values()), "a stop waited a pass"
            assert after.trading_stopped and after.reason == "TradingStopped", after.message
            assert all(r.entries_enabled is False for r in decision.routing)
        # -- each request exactly once, removed in the same write that records its outcome
        for entry in after.handled_requests:
            if entry.id in outcomes:
                continue
            outcomes[entry.id] = entry.outcome
            assert entry.id in before.requests and entry.id not in after.requests
        assert set(after.requests) <= set(before.requests) - set(outcomes)
        applied_now = {h.id: h for h in after.handled_requests if h.id not in {x.id for x in before.handled_requests}}
        applied_actions = {h.action for h in applied_now.values() if h.outcome == "Applied"}
        # -- a stop holds until a person's retry
        if "stopTrading" in applied_actions:
            stopped = True
        if stopped and "retry" in applied_actions:
            retry = next(h for h in applied_now.values() if h.action == "retry" and h.outcome == "Applied")
            assert retry.source is None, "only a person may lift a stop"
            stopped = False
        if stopped:
            assert after.phase == "RolledBack" and after.reason == "TradingStopped"
            assert all(r.entries_enabled is False for r in decision.routing)
            if symbols:
                assert all(owner in (NONE, DRAINING) for t in after.targets for owner in t.assignments.values())
        # -- never backwards within a run; a timed pause is not cut short without a promote
        same_run = after.started_at == before.started_at and before.phase in ("Progressing", "Paused")
        if same_run and before.stage_index is not None and after.stage_index is not None:
            pos_before = (before.stage_index, before.step_index or 0)
            pos_after = (after.stage_index, after.step_index or 0)
            if after.phase in ("Progressing", "Paused", "Succeeded"):
                assert pos_after >= pos_before, f"moved back {pos_before} -> {pos_after}"
            promoted = applied_actions & {"promote", "promoteFull"}
            if pos_after > pos_before and not promoted and before.stage_index < len(spec.stages):
                stage = spec.stages[before.stage_index]
                index = before.step_index or 0
                if index < len(stage.steps):
                    step = stage.steps[index]
                    if step.pause is not None and step.pause.duration and before.step_started_at is not None:
                        assert world.now - before.step_started_at >= parse_duration(step.pause.duration)
        # -- exclusivity with a drain of at least handoff, on what reached the ConfigMaps
        for ns, now_assigned in world.published.items():
            old = published_before.get(ns, {})
            for key, owner in now_assigned.items():
                was = old.get(key)
                if owner == DRAINING and was != DRAINING:
                    draining_since[(ns, key)] = world.now
                if owner in VERSIONS:
                    assert not (was in VERSIONS and was != owner), f"{key} went {was} -> {owner} without a drain"
                    if was == DRAINING and (ns, key) in draining_since:
                        assert world.now - draining_since.pop((ns, key)) >= handoff, f"{key} drained too briefly"
        world.now += timedelta(seconds=1)
    # every request that was written got exactly one outcome by the end
    world.reconcile()
    for entry in world.status.handled_requests:
        outcomes.setdefault(entry.id, entry.outcome)
    assert set(added) == set(outcomes), f"requests without an outcome: {set(added) - set(outcomes)}"
    assert not world.status.requests


def test_a_status_the_model_cannot_trust_does_not_parse() -> None:
    """A key draining without a recorded next owner: routing from it could hand the key straight over."""
    world = World(
        World.__dataclass_fields__["spec"].type and __import__("tests.unit.rollout_sim").unit.rollout_sim.spec_from()
    )
    world.run(200)
    wire = world.status.wire()
    target = wire["targets"][0]
    key = next(k for k, v in target["assignments"].items() if v == VERSIONS[0])
    target["assignments"][key] = DRAINING
    try:
        StrategyRolloutStatus.model_validate(wire)
    except ValueError as exc:
        assert "pending owner" in str(exc)
    else:
        raise AssertionError("an inconsistent drain parsed")
