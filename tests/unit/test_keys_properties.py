"""Hypothesis properties of keys as first-class (issue 33), in the style of test_rollout_properties.py:
random specs with tiers, per-key gates (keys going bad and recovering, releaseKey requests) or an open
universe of buckets with fractional weights, run against the simulated world with crashes and requests.
Whatever happens:
- exclusivity: no key (or bucket) goes from one version to the other between consecutive published
  revisions without `draining` published in between, for at least `handoff`;
- monotonicity: within a run, what the canary is meant to own only grows, except a key quarantined
  (which goes back to stable alone);
- a quarantined key is never the canary's in status; more than maxQuarantined fails the rollout in the
  same pass (reason KeysQuarantined), and status.keys.quarantined never exceeds the limit by more than one.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import (
    MAX_SEGMENTS,
    SEGMENTED_ABOVE,
    StrategyRolloutSpec,
    StrategyRolloutStatus,
    TargetStatus,
)
from strategy_rollouts.engine.keys import expand_segments, hash_order, quarantine_limit
from strategy_rollouts.engine.rollout import reconcile
from strategy_rollouts.engine.routing import DRAINING
from tests.unit.rollout_sim import World
from tests.unit.test_keys_engine import bucket_owner

V1, V2 = "v1.0.0", "v2.0.0"
VERSIONS = (V1, V2)
ACTIONS = ("promote", "promoteFull", "abort", "retry", "pause", "resume", "stopTrading", "releaseKey")


@st.composite
def specs(draw: st.DrawFn) -> StrategyRolloutSpec:
    open_universe = draw(st.booleans())
    buckets = draw(st.sampled_from([1, 8, 100, 1000])) if open_universe else None
    keys = [f"K{i}" for i in range(draw(st.integers(1, 20)))]
    stages = []
    floor = 0  # weights never decrease across stages either: stages may share a namespace (one target)
    for s in range(draw(st.integers(1, 2))):
        if buckets:  # fractional weights of whole buckets
            weights = sorted(draw(st.lists(st.integers(floor, buckets), min_size=1, max_size=3)))
            floor = weights[-1]
            values: list[float] = [int(w * 100 / buckets) if (w * 100) % buckets == 0 else w * 100 / buckets
                                   for w in weights]  # fmt: skip
        else:
            values = sorted(draw(st.lists(st.integers(floor, 100), min_size=1, max_size=3)))
            floor = int(values[-1])
        steps: list[dict[str, Any]] = []
        for w in values:
            steps.append({"setWeight": w})
            if draw(st.booleans()):
                steps.append({"pause": {"duration": f"{draw(st.integers(1, 15))}s"}})
        stage: dict[str, Any] = {"name": f"s{s}", "steps": steps}
        if s > 0 and draw(st.integers(0, 2)) == 0:
            stage["namespace"] = f"ns{s}"
        stages.append(stage)
    routing: dict[str, Any] = {"handoff": draw(st.sampled_from(["0s", "1s", "3s"]))}
    gates: list[dict[str, Any]] = [{"name": "g", "query": "q", "condition": "< 200", "interval": "2s"}]
    if buckets:
        routing |= {"buckets": buckets, "salt": "prop"}
    else:
        routing["keys"] = keys
        if draw(st.booleans()):
            tiers = draw(st.lists(st.lists(st.sampled_from(keys), min_size=1, max_size=4, unique=True), max_size=3))
            seen: set[str] = set()
            unique = [[k for k in t if k not in seen and not seen.add(k)] for t in tiers]  # type: ignore[func-returns-value]
            if any(unique):
                routing["order"] = {"tiers": [t for t in unique if t]}
        routing["maxQuarantined"] = draw(st.sampled_from([0, 1, 2, "20%"]))
        gates.append({"name": "net", "query": "q", "condition": "> -5", "interval": "3s", "perKey": {"label": "s"}})
    data = {
        "strategy": "prop",
        "stable": {"deployment": "legacy", "version": V1},
        "canary": {"deployment": "pipeline", "version": V2, "replicas": 1},
        "routing": routing,
        "stages": stages,
        "gates": gates,
        "scaleDownDelay": "5s",
        "onFailure": draw(st.sampled_from(["rollback", "rollback", "pause"])),
    }
    return StrategyRolloutSpec.model_validate(data)


events = st.lists(
    st.tuples(
        st.integers(0, 250),  # tick
        st.sampled_from(["request", "key-bad", "key-good", "crash-before-write", "crash-after-write"]),
        st.sampled_from(ACTIONS),
        st.integers(0, 19),  # the key of key-bad / key-good / releaseKey
    ),
    max_size=14,
)


def maps(spec: StrategyRolloutSpec, t: TargetStatus) -> tuple[dict[str, str], dict[str, str]]:
    """A target's assignments and pending owners, its segments expanded (over the spec's keys)."""
    if t.segmented is None:
        return t.assignments, t.pending
    ranked, digests, _ = hash_order(tuple(spec.routing.keys), spec.routing.salt or spec.strategy)
    return expand_segments(ranked, digests, t.segmented.segments)


def meant_for_canary(spec: StrategyRolloutSpec, status: StrategyRolloutStatus) -> dict[str, set[str] | int]:
    """Per namespace: the keys the canary owns or will own once their drain ends (listed), or the buckets
    it will own (open universe)."""
    out: dict[str, set[str] | int] = {}
    for t in status.targets:
        if t.canary_buckets is not None:
            out[t.namespace] = t.next_buckets if t.draining_buckets is not None else t.canary_buckets
        else:
            assignments, pending = maps(spec, t)
            out[t.namespace] = {k for k, v in assignments.items() if v == V2} | {
                k for k, v in pending.items() if v == V2
            }
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs(), script=events)
def test_property_exclusivity_and_monotonicity_hold_with_quarantines_tiers_and_buckets(
    spec: StrategyRolloutSpec, script: list[tuple[int, str, str, int]]
) -> None:
    check(spec, script, spec.routing.keys)


@st.composite
def segmented_specs(draw: st.DrawFn) -> StrategyRolloutSpec:
    """A listed universe just above SEGMENTED_ABOVE keys, so status and routing.json hold segments."""
    data = draw(specs()).model_dump(by_alias=True, exclude_none=True)
    keys = [f"K{i}" for i in range(SEGMENTED_ABOVE + draw(st.integers(1, 30)))]
    routing = {k: v for k, v in data["routing"].items() if k not in ("buckets", "salt", "order")}
    routing |= {"keys": keys, "maxQuarantined": draw(st.sampled_from([0, 2, 5]))}
    gates = [*data["gates"][:1], {"name": "net", "query": "q", "condition": "> -5", "interval": "3s",
                                  "perKey": {"label": "s"}}]  # fmt: skip
    stages = [
        {
            **stage,
            "steps": [x if "setWeight" not in x else {"setWeight": round(x["setWeight"])} for x in stage["steps"]],
        }
        for stage in data["stages"]
    ]
    return StrategyRolloutSpec.model_validate({**data, "routing": routing, "gates": gates, "stages": stages})


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=segmented_specs(), script=events)
def test_property_exclusivity_and_monotonicity_hold_in_a_segmented_universe(
    spec: StrategyRolloutSpec, script: list[tuple[int, str, str, int]]
) -> None:
    # Bad keys and releases among the canary's first keys (hash order), so quarantines happen.
    first = list(hash_order(tuple(spec.routing.keys), spec.routing.salt or spec.strategy)[0][:20])
    check(spec, script, first)
    world = World(spec)
    world.run(3)
    assert world.status.targets and all(t.segmented is not None for t in world.status.targets)


def check(spec: StrategyRolloutSpec, script: list[tuple[int, str, str, int]], keys: list[str]) -> None:
    world = World(spec)
    handoff = parse_duration(spec.routing.handoff)
    limit = quarantine_limit(spec.routing.max_quarantined, len(spec.routing.keys))
    by_tick: dict[int, list[tuple[str, str, int]]] = {}
    for tick, what, action, key in script:
        by_tick.setdefault(tick, []).append((what, action, key))
    draining_since: dict[tuple[str, str], Any] = {}
    seq = 0
    for _tick in range(320):
        crash: str | None = None
        for what, action, key_index in by_tick.get(_tick, []):
            key = keys[key_index % len(keys)] if keys else "K0"
            if what == "request":
                seq += 1
                if action == "releaseKey":
                    world.release(f"r{seq:03d}", key)
                else:
                    world.request(f"r{seq:03d}", action, "alice", "prop")  # type: ignore[arg-type]
            elif what == "key-bad":
                world.key_values.setdefault("net", {})[key] = -50.0
            elif what == "key-good":
                world.key_values.setdefault("net", {}).pop(key, None)
            else:
                crash = what
        before = world.status
        if crash == "crash-before-write":
            reconcile(world.spec, world.status, world.observe(), world.now)  # decided, never written
            world.now += timedelta(seconds=1)
            continue
        published_before = {ns: dict(a) for ns, a in world.published.items()}
        buckets_before = len(world.bucket_snapshots)
        world.reconcile(apply=crash != "crash-after-write")
        after = world.status
        quarantined = {q.key for q in after.keys.quarantined} if after.keys else set()
        # -- a quarantined key is never the canary's; beyond the limit the rollout fails in this pass
        for t in after.targets:
            assignments, pending = maps(spec, t)
            assert not any(assignments.get(k) == V2 or pending.get(k) == V2 for k in quarantined), quarantined
            assert t.segmented is None or len(t.segmented.segments) <= MAX_SEGMENTS
        assert len(quarantined) <= limit + 1
        was_quarantined = len(before.keys.quarantined) if before.keys else 0
        handled = {h.id for h in before.handled_requests}
        stronger = any(h.action in ("abort", "stopTrading") for h in after.handled_requests if h.id not in handled)
        if was_quarantined <= limit < len(quarantined) and before.phase in ("Progressing", "Paused") and not stronger:
            assert after.reason == "KeysQuarantined", (after.phase, after.reason, after.message)
            assert after.phase in ("RolledBack", "Paused")
        # -- monotonic within a run: only a quarantine takes a key from the canary
        same_run = after.started_at == before.started_at and before.phase in ("Progressing", "Paused")
        if same_run and after.phase in ("Progressing", "Paused", "Succeeded") and not after.trading_stopped:
            was, now = meant_for_canary(spec, before), meant_for_canary(spec, after)
            for ns, owned in now.items():
                if ns not in was:
                    continue
                if isinstance(owned, int):
                    assert owned >= was[ns], f"{ns}: canary buckets {was[ns]} -> {owned}"
                else:
                    lost = (was[ns] - owned) - quarantined  # type: ignore[operator]
                    assert not lost, f"{ns}: the canary lost {lost} within a run"
        # -- exclusivity with a drain of at least handoff, on what reached the ConfigMaps
        for ns, now_assigned in world.published.items():
            old = published_before.get(ns, {})
            for key, owner in now_assigned.items():
                was_owner = old.get(key)
                if owner == DRAINING and was_owner != DRAINING:
                    draining_since[(ns, key)] = world.now
                if owner in VERSIONS:
                    assert not (was_owner in VERSIONS and was_owner != owner), f"{key}: {was_owner} -> {owner}"
                    if was_owner == DRAINING and (ns, key) in draining_since:
                        assert world.now - draining_since.pop((ns, key)) >= handoff, f"{key} drained too briefly"
        for a, b in itertools.pairwise(world.bucket_snapshots[max(0, buckets_before - 1) :]):
            if a.buckets != b.buckets:
                continue
            for bucket in range(a.buckets):
                x, y = bucket_owner(a, bucket, V1, V2), bucket_owner(b, bucket, V1, V2)
                assert not (x in VERSIONS and y in VERSIONS and x != y), (bucket, a, b)
        world.now += timedelta(seconds=1)
