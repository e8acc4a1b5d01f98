"""Leader election's timing and fencing (operator/runtime/leader.py) on a fake monotonic clock.

The Lease store below is the API server's optimistic concurrency in miniature (a record and a
resourceVersion); candidates use the real `decide` and `Leadership` logic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client

from strategy_rollouts.operator.clients.kube import Kube, writes
from strategy_rollouts.operator.runtime.leader import Leadership, NotLeader, Record, Timing, decide

T = Timing()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_defaults_are_client_go_s_and_checked() -> None:
    assert (T.lease_s, T.renew_deadline_s, T.retry_s) == (15.0, 10.0, 2.0)
    assert T.errors() == []
    assert Timing(10, 10, 2).errors() and Timing(15, 10, 0).errors() and Timing(15, 1, 2).errors()


def test_decide() -> None:
    other = Record("b", "t1", 0)
    assert decide(None, "a", None, 0, T) == "create"
    assert decide(Record("a", "t1", 0), "a", None, 0, T) == "renew"
    assert decide(Record("", "t1", 0), "a", None, 0, T) == "take"  # released on a clean shutdown
    assert decide(other, "a", None, 100, T) == "wait"  # never seen before: the clock starts now
    assert decide(other, "a", 100, 114.9, T) == "wait"
    assert decide(other, "a", 100, 115, T) == "take"


def test_a_leader_stops_acting_at_the_renew_deadline() -> None:
    clock = Clock()
    me = Leadership(enabled=True, identity="a", clock=clock)
    assert not me.acting() and me.role() == "standby"
    with pytest.raises(NotLeader):
        me.check()
    me.renewed(clock(), Record("a", "t1", 0))
    assert me.acting() and me.role() == "leader"
    clock.t += 9.99
    assert me.acting()
    clock.t += 0.01
    assert not me.acting()
    with pytest.raises(NotLeader):
        me.check()


def test_disabled_always_acts() -> None:
    me = Leadership()
    assert me.acting() and me.role() == "leader"
    me.check()


def test_observe_restarts_the_clock_on_every_change() -> None:
    clock = Clock()
    me = Leadership(enabled=True, identity="a", clock=clock)
    assert me.observe(Record("b", "t1", 0)) is None
    clock.t += 5
    assert me.observe(Record("b", "t1", 0)) == 1000.0
    assert me.observe(Record("b", "t2", 0)) is None  # a renewal: unchanged-since starts again


@given(
    up=st.floats(0, 3),  # request latency to the API server
    down=st.floats(0, 3),  # until the candidate reads what was written
    frozen=st.floats(0, 60),
)
@settings(max_examples=300, deadline=None)
def test_fencing_a_taker_can_never_act_while_the_old_leader_still_may(up: float, down: float, frozen: float) -> None:
    """The leader sends its last renewal at t0 and freezes; the candidate reads that record at
    t0 + up + down and takes the lease a lease duration later at the earliest. The old leader's
    window closed at t0 + renew deadline: before, by at least lease - renew deadline."""
    clock = Clock()
    old, new = Leadership(enabled=True, identity="a", clock=clock), Leadership(enabled=True, identity="b", clock=clock)
    t0 = clock()
    written = Record("a", "t0", 0)
    clock.t = t0 + up  # the server writes it, the response is lost in the freeze
    clock.t += down
    new.observe(written)
    first_take = None
    while clock.t < t0 + 60:
        since = new.observe(written)
        if decide(written, "b", since, clock(), T) == "take":
            first_take = clock.t
            break
        clock.t += T.retry_s
    assert first_take is not None
    old.renewed(t0, written)  # the response arrives after the freeze: the send time counts
    clock.t = t0 + frozen
    if clock.t >= first_take:
        assert not old.acting()
    assert first_take - (t0 + T.renew_deadline_s) >= T.lease_s - T.renew_deadline_s


@dataclass
class Store:
    """One Lease, replaced only with the resourceVersion it was read at."""

    record: Record | None = None
    version: int = 0

    def write(self, record: Record, read_at: int) -> bool:
        if read_at != self.version:
            return False  # 409
        self.record, self.version = record, self.version + 1
        return True


def step(me: Leadership, store: Store, clock: Clock, n: int) -> None:
    record, version = store.record, store.version
    action = decide(record, me.identity, me.observe(record), clock(), me.timing)
    if action == "wait":
        return
    sent = clock()
    holder_transitions = 0 if record is None else record.transitions + (action == "take")
    new = Record(me.identity, f"{me.identity}-{n}", holder_transitions)
    if store.write(new, version):
        me.renewed(sent, new)


@given(st.lists(st.tuples(st.sampled_from("ab"), st.floats(0, 30)), min_size=1, max_size=8))
@settings(max_examples=80, deadline=None)
def test_two_candidates_never_act_at_once(freezes: list[tuple[str, float]]) -> None:
    """Two replicas on one clock, each frozen at times for up to 30 s: at no instant do both act."""
    clock, store = Clock(), Store()
    replicas = {i: Leadership(enabled=True, identity=i, clock=clock) for i in "ab"}
    frozen_until = {"a": 0.0, "b": 0.0}
    plan = list(freezes)
    n = 0
    while clock.t < 1000.0 + 200:
        n += 1
        if plan and n % 10 == 0:
            who, seconds = plan.pop(0)
            frozen_until[who] = clock.t + seconds
        for who, me in replicas.items():
            if clock.t >= frozen_until[who]:
                step(me, store, clock, n)
        assert not (replicas["a"].acting() and replicas["b"].acting()), clock.t
        clock.t += 0.5
    assert any(me.acting() for me in replicas.values())  # unfrozen at the end: someone leads


def test_kube_fences_writes_only() -> None:
    assert writes(client.CoreV1Api.replace_namespaced_config_map)
    assert writes(client.AppsV1Api.patch_namespaced_deployment_scale)
    assert not writes(client.CoreV1Api.read_namespaced_config_map)
    assert not writes(client.AuthenticationV1Api.create_self_subject_review)

    def create_thing() -> str:
        return "written"

    def read_thing() -> str:
        return "read"

    kube = Kube(client.ApiClient())  # opens no connection: the calls below are local functions
    me = Leadership(enabled=True, identity="a")
    kube.fence = me.check

    async def main() -> None:
        assert await kube.call(read_thing) == "read"
        with pytest.raises(NotLeader):
            await kube.call(create_thing)
        me.renewed(me.clock(), Record("a", "t", 0))
        assert await kube.call(create_thing) == "written"

    asyncio.run(main())


def test_a_standby_tries_the_moment_the_lease_becomes_takeable() -> None:
    clock = Clock()
    me = Leadership(enabled=True, identity="a", clock=clock)
    assert me.next_attempt_in() == 2.0
    me.observe(Record("b", "t1", 0))
    clock.t += 14.0
    assert me.next_attempt_in() == pytest.approx(1.0)
    clock.t += 5.0
    assert me.next_attempt_in() == 0.05
    me.renewed(clock(), Record("a", "t2", 1))
    assert me.next_attempt_in() == 2.0
