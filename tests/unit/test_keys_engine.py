"""Keys as first-class (issue 33), the engine half: tiers, buckets, quarantine, the compact form.

Scenarios run the pure engine in the simulated world (rollout_sim.py); the routing hash is checked
against an independent computation, and the compact form against its expansion.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from datetime import timedelta
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api import keyhash
from strategy_rollouts.api.gates import SCOREBOARD, GateSpec
from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.keys import (
    BucketState,
    boundary,
    expand_segments,
    hash_order,
    near_collisions,
    published_segments,
    quarantine_limit,
    segments_of,
    step_buckets,
    tiered_rank,
    tiers_from_ranks,
)
from strategy_rollouts.engine.rollout import routing_document
from strategy_rollouts.engine.rollout.model import BucketRouting
from strategy_rollouts.engine.rollout.quarantine import scoreboard
from strategy_rollouts.engine.routing import DRAINING, NONE, desired_assignments, rank_keys
from tests.unit.rollout_sim import EXAMPLE, T0, World

V1, V2 = "v1.0.0", "v2.0.0"
KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]
NET_BPS = {"name": "net-bps", "query": "q", "condition": "> -5", "interval": "10s", "perKey": {"label": "symbol"}}


def spec(routing: dict[str, Any] | None = None, **extra: Any) -> StrategyRolloutSpec:
    data = yaml.safe_load(EXAMPLE)
    data["routing"] = {**data["routing"], **(routing or {})}
    data.update(extra)
    return StrategyRolloutSpec.model_validate(data)


def canary_keys(w: World) -> set[str]:
    return {k for k, v in w.published["trading"].items() if v == V2}


# ---- the routing hash, shared with the apps -----------------------------------------------------


def test_bucket_of_is_sha256_of_salt_and_id_mod_buckets() -> None:
    for i in range(200):
        uid = f"user-{i}"
        independent = int(hashlib.sha256(f"copy:{uid}".encode()).hexdigest(), 16) % 10_000
        assert keyhash.bucket_of("copy", uid, 10_000) == independent


def test_weights_are_exact_decimals() -> None:
    assert keyhash.share(0.5, 10_000) == 50
    assert keyhash.share(0.29, 10_000) == 29  # 0.29 * 10_000 / 100 is 28.999... in floats
    assert keyhash.share(10, 10) == 1 and keyhash.share(10, 5) == 1 and keyhash.share(0, 7) == 0


def test_owner_reads_both_universes_from_routing_json() -> None:
    doc: dict[str, object] = {
        "stableVersion": V1,
        "canaryVersion": V2,
        "assignments": {},
        "buckets": 100,
        "salt": "s",
        "canaryBuckets": 10,
        "drainingBuckets": [10, 20],
    }
    for i in range(300):
        uid = str(i)
        bucket = keyhash.bucket_of("s", uid, 100)
        expected = V2 if bucket < 10 else DRAINING if bucket < 20 else V1
        assert keyhash.owner(doc, uid) == expected
        assert keyhash.owns(doc, uid, V2) == (bucket < 10)
    assert keyhash.owner({**doc, "stopped": True}, "7") == NONE
    assert keyhash.owner({"stopped": True, "assignments": {}}, "7") == NONE  # even without the bucket fields
    assert keyhash.owner({"assignments": {"BTCUSDT": V2}}, "BTCUSDT") == V2
    assert keyhash.owner({"assignments": {"BTCUSDT": V2}}, "ETHUSDT") is None


# ---- tiers ---------------------------------------------------------------------------------------


def test_tiers_come_first_and_keep_hash_order_within() -> None:
    tiers = [["DOTUSDT", "LINKUSDT", "ADAUSDT"], ["XRPUSDT"]]
    ranked = tiered_rank(KEYS, "fib_rsi", tiers)
    assert ranked[:3] == rank_keys(tiers[0], "fib_rsi") and ranked[3] == "XRPUSDT"
    assert ranked[4:] == rank_keys(set(KEYS) - {"DOTUSDT", "LINKUSDT", "ADAUSDT", "XRPUSDT"}, "fib_rsi")
    assert tiers_from_ranks({"A": 3.0, "B": 1.0, "C": 3.0, "D": float("nan")}) == [["B"], ["A", "C"]]
    assert tiers_from_ranks({"A": 3.0, "B": 1.0}, ascending=False) == [["A"], ["B"]]


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 40),
    tiers=st.lists(st.lists(st.integers(0, 45), max_size=6), max_size=4),
    weights=st.lists(st.integers(0, 100), min_size=2, max_size=5),
)
def test_property_tiered_assignments_are_deterministic_and_monotonic(
    n: int, tiers: list[list[int]], weights: list[int]
) -> None:
    keys = [f"K{i}" for i in range(n)]
    named = [[f"K{i}" for i in tier] for tier in tiers]
    ranked = tiered_rank(keys, "salt", named)
    assert sorted(ranked) == sorted(keys) and ranked == tiered_rank(list(reversed(keys)), "salt", named)
    previous: set[str] = set()
    for w in sorted(weights):
        owned = {k for k, v in desired_assignments(ranked, w, V1, V2).items() if v == V2}
        assert previous <= owned and len(owned) == keyhash.share(w, n)
        previous = owned
    # a key of an earlier tier always goes before every key of a later tier
    position = {k: i for i, k in enumerate(ranked)}
    placed: set[str] = set()
    for earlier, later in itertools.pairwise(named):
        placed |= {k for k in earlier if k in position}
        for k in later:
            if k in position and k not in placed:
                assert all(position[e] < position[k] for e in placed)


def test_a_rollout_with_tiers_gives_the_first_tier_first() -> None:
    w = World(spec({"order": {"tiers": [["DOTUSDT", "LINKUSDT"]]}}))
    w.run(30)
    assert w.status.canary_weight == 10 and canary_keys(w) <= {"DOTUSDT", "LINKUSDT"} and len(canary_keys(w)) == 1


def ranked_world(ranks: dict[str, float] | None) -> World:
    order = {"query": 'sum by (symbol) (volume{strategy="{{strategy}}"})', "label": "symbol", "ascending": True}
    w = World(spec({"order": order}))
    w.ranks = ranks
    return w


def test_a_rank_query_that_ranks_nothing_holds_the_start_and_publishes_no_key() -> None:
    w = ranked_world(None)
    w.run(30)
    assert w.status.phase == "Pending" and w.status.reason == "RankUnmeasured", w.status.message
    assert "spec.routing.order.query ranks no key" in (w.status.message or "")
    assert not w.published.get("trading") and not w.status.targets
    w.ranks = {"NOTAKEY": 1.0}  # answers, but for none of the keys: still held
    w.run(15)
    assert w.status.phase == "Pending" and w.status.reason == "RankUnmeasured"


def test_a_rank_query_orders_low_volume_first_and_the_order_is_frozen_for_the_run() -> None:
    volume = {k: float(i) for i, k in enumerate(reversed(KEYS))}  # the last key has the lowest volume
    w = ranked_world(volume)
    w.run(30)
    assert w.status.canary_weight == 10 and canary_keys(w) == {KEYS[-1]}
    assert w.status.keys is not None and w.status.keys.order is not None
    assert w.status.keys.order[0] == [KEYS[-1]] and w.status.keys.ordered_at is not None
    asked = w.rank_queries
    w.ranks = {k: -v for k, v in volume.items()}  # the market moves: the run keeps its order
    w.run(120)
    assert w.rank_queries == asked, "mid-run the rank is not asked again"
    assert KEYS[-1] in canary_keys(w) or w.status.phase == "Succeeded"


# ---- quarantine ----------------------------------------------------------------------------------


def quarantine_world(max_quarantined: int | str, bad: dict[str, float]) -> World:
    w = World(spec({"maxQuarantined": max_quarantined}, gates=[NET_BPS]))
    w.key_values["net-bps"] = dict(bad)
    return w


def test_a_failing_key_goes_back_to_stable_alone_and_the_others_reach_100_percent() -> None:
    w = quarantine_world(1, {"SOLUSDT": -12.0})
    w.run_until("Paused", limit=3600)
    while not (w.status.reason == "KeysQuarantined" and (w.status.stage_index or 0) >= 2):
        assert w.now < T0 + timedelta(hours=2), (w.status.phase, w.status.reason, w.status.message)
        w.reconcile()
        w.now += timedelta(seconds=1)
    assert w.status.keys is not None
    [q] = w.status.keys.quarantined
    assert (q.key, q.gate, q.value) == ("SOLUSDT", "net-bps", -12.0)
    assert w.published["trading"]["SOLUSDT"] == V1
    assert canary_keys(w) == set(KEYS) - {"SOLUSDT"}
    assert "quarantined keys still trade on v1.0.0" in (w.status.message or "")
    # the stable deployment is not scaled down under the key it still trades
    assert (w.replicas[("trading", "fib-rsi-legacy")]) > 0
    # SOLUSDT was drained, never handed from v2 to v1 directly
    owners = [snap.get("SOLUSDT") for snap in w.snapshots]
    for a, b in itertools.pairwise(owners):
        assert not (a == V2 and b == V1)
    # released (its metric recovered): it returns to the canary and the rollout completes
    w.key_values["net-bps"] = {}
    w.release("rel-1", "SOLUSDT")
    w.run_until("Succeeded", limit=600)
    assert w.outcome("rel-1") == "Applied" and w.status.keys is None
    assert canary_keys(w) == set(KEYS)


def test_more_bad_keys_than_max_quarantined_roll_back_the_whole_rollout() -> None:
    w = quarantine_world("10%", {"SOLUSDT": -12.0, "ETHUSDT": -30.0, "BTCUSDT": -9.0})
    # let enough keys reach the canary for the bad ones to be judged
    w.run_until("RolledBack", limit=3600)
    assert w.status.reason == "KeysQuarantined", w.status.message
    assert "more than spec.routing.maxQuarantined allows (1)" in (w.status.message or "")
    w.run(30)
    assert set(w.published["trading"].values()) == {V1}


def test_the_scoreboard_shows_the_keys_nearest_to_failing_first_with_both_versions() -> None:
    w = quarantine_world(3, {"SOLUSDT": -12.0, "ETHUSDT": -3.0, "BTCUSDT": 40.0})
    w.key_values_stable["net-bps"] = {"SOLUSDT": 1.5, "ETHUSDT": 2.0}
    while not any(g.keys and {s.key for s in g.keys} >= {"ETHUSDT", "BTCUSDT"} for g in w.status.gates):
        assert w.now < T0 + timedelta(hours=2), (w.status.phase, w.status.message)
        w.reconcile()
        w.now += timedelta(seconds=1)
    board = next(g for g in w.status.gates if g.name == "net-bps").keys
    assert board is not None
    order = [s.key for s in board]
    assert [k for k in order if k != "SOLUSDT"][:2] == ["ETHUSDT", "BTCUSDT"]  # least headroom over "> -5" first
    assert "SOLUSDT" not in order or order[0] == "SOLUSDT"  # failing first (when judged in this very pass)
    eth = next(s for s in board if s.key == "ETHUSDT")
    assert (eth.canary, eth.stable, eth.result) == (-3.0, 2.0, "Pass")
    assert all(s.stable is None for s in board if s.key not in ("SOLUSDT", "ETHUSDT"))


def test_scoreboard_order_and_cap() -> None:
    gate = GateSpec.model_validate(NET_BPS)
    measured = {f"K{i:03d}": Measurement(float(i)) for i in range(100)} | {"BAD": Measurement(-9.0)}
    board = scoreboard(gate, measured, {"K000": 7.0})
    assert len(board) == SCOREBOARD and board[0].key == "BAD" and board[0].result == "Fail"
    assert [s.key for s in board[1:4]] == ["K000", "K001", "K002"] and board[1].stable == 7.0
    compare = GateSpec.model_validate({**NET_BPS, "condition": None, "baseline": "b", "maxIncreasePercent": 10})
    near = scoreboard(compare, {"A": Measurement(10.9, 10.0), "B": Measurement(10.1, 10.0)}, {})
    assert [s.key for s in near] == ["A", "B"]  # +9 % is nearer to +10 % than +1 %


def test_release_key_of_a_key_not_quarantined_is_rejected() -> None:
    w = quarantine_world(1, {})
    w.run(20)
    w.release("rel-1", "SOLUSDT")
    w.reconcile()
    assert w.outcome("rel-1") == "Rejected"
    assert "not quarantined" in w.status.handled_requests[-1].message


def test_quarantine_limit_counts_or_rounds_the_percent_down() -> None:
    assert quarantine_limit(2, 100) == 2
    assert quarantine_limit("10%", 15) == 1 and quarantine_limit("0.05%", 100_000) == 50
    assert quarantine_limit("10%", 100_000) == 100 and quarantine_limit(500, 10) == 100  # capped: status stays small
    assert quarantine_limit("0.5%", 1000) == 5


# ---- open universes ------------------------------------------------------------------------------


def bucket_spec() -> StrategyRolloutSpec:
    return spec(
        {"keys": [], "buckets": 10_000, "salt": "copy"},
        stages=[{"name": "prod", "steps": [{"setWeight": 0.5}, {"pause": {"duration": "1m"}}, {"setWeight": 100}]}],
    )


def test_a_bucket_rollout_at_half_a_percent_routes_the_expected_users_in_constant_size() -> None:
    w = World(bucket_spec())
    sizes = []
    w.run(20)
    assert w.status.canary_weight == 0.5 and w.status.step_index == 1, (w.status.phase, w.status.message)
    payload = next(p for p in w.decisions[-1].routing)
    document = routing_document(w.spec, payload, 1, 1.0, True)
    assert document["canaryBuckets"] == 50 and "drainingBuckets" not in document
    users = [f"user-{i}" for i in range(10_000)]
    expected = {u for u in users if int(hashlib.sha256(f"copy:{u}".encode()).hexdigest(), 16) % 10_000 < 50}
    assert {u for u in users if keyhash.owns(document, u, V2)} == expected
    sizes.append(len(json.dumps(w.status.wire())))
    w.run_until("Succeeded", limit=600)
    sizes.append(len(json.dumps(w.status.wire())))
    assert max(sizes) < 8192 and w.status.targets[0].assignments == {}
    # every bucket went stable -> draining -> canary: no published revision gave one straight to the other
    assert_buckets_exclusive(w.bucket_snapshots, V1, V2)


def bucket_owner(r: BucketRouting, bucket: int, stable: str, canary: str) -> str:
    if r.stopped:
        return NONE
    if r.draining is not None and r.draining[0] <= bucket < r.draining[1]:
        return DRAINING
    return canary if bucket < r.canary else stable


def assert_buckets_exclusive(snapshots: list[BucketRouting], stable: str, canary: str) -> None:
    """No bucket goes from one version to the other between consecutive published revisions."""
    for a, b in itertools.pairwise(snapshots):
        for bucket in range(a.buckets):
            was, now = bucket_owner(a, bucket, stable, canary), bucket_owner(b, bucket, stable, canary)
            assert not (was in (stable, canary) and now in (stable, canary) and was != now), (bucket, a, b)


def test_step_buckets_drains_every_change_of_owner() -> None:
    hand = timedelta(seconds=5)
    s = step_buckets(BucketState(), 50, T0, hand, True)
    assert (s.canary, s.draining, s.next) == (0, (0, 50), 50)
    s = step_buckets(s, 80, T0 + timedelta(seconds=1), hand, True)  # more buckets join the drain
    assert s.draining == (0, 80) and s.until == T0 + timedelta(seconds=6)
    s = step_buckets(s, 80, T0 + timedelta(seconds=6), hand, True)
    assert (s.canary, s.draining) == (80, None)
    s = step_buckets(s, 0, T0 + timedelta(seconds=7), hand, False)  # a rollback drains them back
    assert (s.canary, s.draining, s.next) == (0, (0, 80), 0)
    s = step_buckets(s, 0, T0 + timedelta(seconds=30), hand, False)  # not published: the clock waits
    assert s.draining == (0, 80)


# ---- segmented form (large listed universes) ------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    owners=st.lists(
        st.sampled_from([(V1, None), (V2, None), (DRAINING, V1), (DRAINING, V2), (DRAINING, NONE), (NONE, None)]),
        max_size=40,
    ),
    unassigned=st.sets(st.integers(0, 39), max_size=5),
)
def test_property_segments_expand_back_and_route_every_key_as_recorded(
    owners: list[tuple[str, str | None]], unassigned: set[int]
) -> None:
    ranked, digests, sha256 = hash_order(tuple(f"K{i}" for i in range(len(owners))), "seg")
    assignments = {k: o for i, (k, (o, _)) in enumerate(zip(ranked, owners, strict=True)) if i not in unassigned}
    pending = {k: n for k, (o, n) in zip(ranked, owners, strict=True) if n is not None and k in assignments}
    segments = segments_of(ranked, digests, assignments, pending)
    assert expand_segments(ranked, digests, segments) == (assignments, pending)
    assert len(segments) <= len(owners) + 1
    # An app holding the same keys routes each exactly as recorded (an independent sha256 per key).
    document = {"salt": "seg", "universe": {"keys": len(ranked), "sha256": sha256},
                "segments": published_segments(segments)}  # fmt: skip
    for key in ranked:
        assert keyhash.owner(document, key, keyhash.universe_digest(ranked)) == (assignments.get(key) or None)
    # Another list of keys (one more, or one fewer) routes nothing: the boundaries are not its own.
    assert {keyhash.owner(document, k, keyhash.universe_digest([*ranked, "NEW"])) for k in ranked} <= {None}
    assert keyhash.universe_digest(ranked) == hashlib.sha256("\n".join(sorted(ranked)).encode()).hexdigest()


def test_a_segment_starts_at_the_shortest_prefix_after_the_last_key_before_it() -> None:
    assert boundary(None, "ab") == ""
    assert boundary("3f00", "3f10") == "3f1"
    assert boundary("3f00", "4000") == "4"


def test_keys_too_close_in_hash_order_to_segment_are_found_and_refused_naming_the_salt() -> None:
    keys = tuple(f"K{i}" for i in range(2_000))
    close = near_collisions(keys, "fib_rsi", width=4)  # 23 digits in earnest: 4 make some among 2,000
    ranked, digests, _ = hash_order(keys, "fib_rsi")
    where = {k: i for i, k in enumerate(ranked)}
    assert close and all(digests[where[a]][:4] == digests[where[b]][:4] and where[b] == where[a] + 1 for a, b in close)
    assert near_collisions(keys, "fib_rsi") == []


def segmented_world(keys: int, **routing: Any) -> World:
    ref = {"configMapKeyRef": {"name": "symbols", "key": "list"}}
    w = World(spec({"keys": [], "keysFrom": ref, **routing}))
    w.listed_keys = tuple(f"SYM{i:06d}" for i in range(keys))
    return w


def wire_bytes(status: Any) -> int:
    return len(json.dumps(status.wire(), separators=(",", ":")))


def test_a_large_universe_is_recorded_and_published_as_a_few_segments_and_routed_as_listed() -> None:
    w = segmented_world(1_001)  # the first size above SEGMENTED_ABOVE
    w.run(60)
    t = w.status.targets[0]
    assert t.assignments == {} and t.pending == {} and t.segmented is not None
    assert t.segmented.keys == 1_001 and len(t.segmented.segments) <= 3
    routed = w.published["trading"]
    owned = {k for k, v in routed.items() if v == V2}
    ranked = rank_keys(w.listed_keys or (), "fib_rsi")
    assert owned == set(ranked[: len(owned)]) and len(owned) == 101  # 10 % of 1,001, rounded up
    assert w.status.routing is not None and w.status.routing.canary_keys == 101


def test_a_100000_key_rollout_aborts_in_status_and_routing_json_of_a_few_hundred_bytes() -> None:
    w = segmented_world(100_000, maxQuarantined=3)
    bad = hash_order(w.listed_keys or (), "fib_rsi")[0][0]  # the canary's first key
    w.key_values["net-bps"] = {bad: -50.0}
    w.spec = w.spec.model_copy(update={"gates": [*w.spec.gates, GateSpec.model_validate(NET_BPS)]})
    while not (w.status.targets and w.status.targets[0].weight == 50):  # staging at 10 %, prod at 10 %, 50 %
        w.run(10, tick=5)
        assert w.now - T0 < timedelta(minutes=10), w.status.message
    w.run(10, tick=5)  # the keys' handoff
    t = w.status.targets[0]
    assert t.segmented is not None
    assert [q.key for q in w.status.keys.quarantined] == [bad]  # type: ignore[union-attr]
    at_half = wire_bytes(w.status)
    w.request("a1", "abort", "alice", "aborting")
    w.reconcile()
    t = w.status.targets[0]
    assert w.status.phase == "RolledBack" and w.status.history[-1].outcome == "Aborted"
    assert t.segmented is not None and {s.owner for s in t.segmented.segments} <= {DRAINING, V1}
    draining = sum(1 for v in w.published["trading"].values() if v == DRAINING)
    assert draining == 50_000 - 1  # every canary key, each drained back at once (the quarantined one is stable)
    document = routing_document(w.spec, w.decisions[-1].routing[0], 9, 1.0, True)
    sizes = (at_half, wire_bytes(w.status), len(json.dumps(document, separators=(",", ":"))))
    assert max(sizes) < 8_000, sizes  # status and routing.json: O(segments), not O(keys)
    w.run(10, tick=5)
    assert set(w.published["trading"].values()) == {V1}


# ---- keys from a ConfigMap -----------------------------------------------------------------------


def keys_from_spec(**routing: Any) -> StrategyRolloutSpec:
    ref = {"configMapKeyRef": {"name": "symbols", "key": "list"}}
    return spec({"keys": [], "keysFrom": ref, **routing})


def test_keys_from_a_configmap_not_read_act_on_nothing() -> None:
    w = World(keys_from_spec())
    decision = w.reconcile()
    assert w.status.phase == "Invalid" and decision.routing == [] and decision.scales == []
    assert "spec.routing.keysFrom: the keys in ConfigMap symbols, key list, were not read" in (w.status.message or "")


def test_keys_from_a_configmap_are_routed_like_listed_keys() -> None:
    w = World(keys_from_spec(order={"tiers": [["LINKUSDT"]]}))
    w.listed_keys = tuple(KEYS)
    w.run(30)
    assert w.status.canary_weight == 10 and canary_keys(w) == {"LINKUSDT"}


def test_keys_from_a_configmap_are_checked_when_read() -> None:
    w = World(keys_from_spec(order={"tiers": [["PEPEUSDT"]]}, maxQuarantined="50%"))
    w.listed_keys = (*KEYS, "BTCUSDT")
    w.reconcile()
    message = w.status.message or ""
    assert "spec.routing.keysFrom: duplicate key 'BTCUSDT' in ConfigMap symbols" in message
    assert "spec.routing.order.tiers[0][0]: key 'PEPEUSDT' is not in ConfigMap symbols" in message
    w = World(keys_from_spec(maxQuarantined="50%"))
    w.listed_keys = tuple(f"S{i:05d}" for i in range(300))
    w.reconcile()
    assert "spec.routing.maxQuarantined: 50% of 300 keys allows 150 quarantined keys, at most 100" in (
        w.status.message or ""
    )
    w = World(keys_from_spec())
    w.listed_keys = tuple(f"S{i:07d}" for i in range(100_001))
    w.reconcile()
    assert w.status.phase == "Invalid"
    assert "spec.routing.keysFrom: ConfigMap symbols lists 100001 keys, at most 100,000" in (w.status.message or "")
    # An order scatters the canary's keys over a segmented universe: refused above 1,000 keys.
    w = World(keys_from_spec(order={"tiers": [["S0000001"]]}))
    w.listed_keys = tuple(f"S{i:07d}" for i in range(1_001))
    w.reconcile()
    assert "spec.routing.order: ConfigMap symbols has 1,001 keys, routed as segments of their hash order" in (
        w.status.message or ""
    )
