"""Leader election's timing and fencing (operator/runtime/leader.py) on a fake monotonic clock.

The Lease store below is the API server's optimistic concurrency in miniature (a record and a
resourceVersion); candidates use the real `decide` and `Leadership` logic.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
import urllib3
from hypothesis import given, settings
from hypothesis import strategies as st
from kubernetes import client
from urllib3.util.retry import Retry

from strategy_rollouts.operator.clients.kube import READ_TIMEOUT_S, Kube, Unanswered, writes
from strategy_rollouts.operator.runtime.leader import Leadership, NotLeader, Record, Timing, decide

T = Timing()


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_defaults_are_client_go_s_and_checked() -> None:
    assert (T.lease_s, T.renew_deadline_s, T.retry_s) == (15.0, 10.0, 2.0)
    assert T.request_timeout_s == 5.0  # min(renew deadline / 2, lease - renew deadline)
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


def test_kube_fences_writes_only_and_bounds_every_request() -> None:
    assert writes(client.CoreV1Api.replace_namespaced_config_map)
    assert writes(client.AppsV1Api.replace_namespaced_deployment_scale)
    assert not writes(client.CoreV1Api.read_namespaced_config_map)
    assert not writes(client.AuthenticationV1Api.create_self_subject_review)
    timeouts: list[tuple[str, float]] = []

    def create_thing(*, _request_timeout: float) -> str:
        timeouts.append(("create", _request_timeout))
        return "written"

    def read_thing(*, _request_timeout: float) -> str:
        timeouts.append(("read", _request_timeout))
        return "read"

    kube = Kube(client.ApiClient())  # opens no connection: the calls below are local functions
    me = Leadership(enabled=True, identity="a")
    kube.fence = me.check
    kube.write_timeout_s = T.request_timeout_s

    async def main() -> None:
        assert await kube.call(read_thing) == "read"
        with pytest.raises(NotLeader):
            await kube.call(create_thing)
        me.renewed(me.clock(), Record("a", "t", 0))
        assert await kube.call(create_thing) == "written"

    asyncio.run(main())
    assert timeouts == [("read", READ_TIMEOUT_S), ("create", 5.0)]  # the fenced write never reached the call


def test_the_transport_sends_each_request_once() -> None:
    """urllib3's default Retry(3) re-sends a timed-out PUT or DELETE, and any request whose connection
    failed, on a new connection: after the fence check and past the request timeout. Not ours."""
    kube = Kube()
    assert kube.api.configuration.retries is False
    policy = Retry.from_int(kube.api.rest_client.pool_manager.connection_pool_kw["retries"])
    timed_out = urllib3.exceptions.ReadTimeoutError(None, "/apis/apps/v1/x", "read timed out")  # type: ignore[arg-type]
    refused = urllib3.exceptions.NewConnectionError(None, "connection refused")  # type: ignore[arg-type]
    # urllib3's default would re-send a PUT or DELETE that timed out, and any request not connected
    assert Retry.DEFAULT.increment("PUT", "/x", error=timed_out).total == 2
    assert Retry.DEFAULT.increment("POST", "/x", error=refused).total == 2
    for method in ("PUT", "PATCH", "POST", "DELETE", "GET"):
        for error in (timed_out, refused):
            with pytest.raises(type(error)):  # ours raises at once: sent once, whatever the method
                policy.increment(method, "/x", error=error)


def test_a_transport_error_is_unanswered_not_a_crash() -> None:
    def replace_thing(*, _request_timeout: float) -> None:
        raise urllib3.exceptions.ReadTimeoutError(None, "/apis/apps/v1/x", "read timed out")  # type: ignore[arg-type]

    async def main() -> None:
        with pytest.raises(Unanswered, match=r"replace_thing: no answer within 5\.0s"):
            await Kube(client.ApiClient()).call(replace_thing)

    asyncio.run(main())


@given(
    lease=st.floats(1.5, 120),
    renew=st.floats(1, 119),
    retry=st.floats(0.1, 10),
    checked=st.floats(0, 1),  # when the write's fence check passed, as a fraction of the leader's window
    up=st.floats(0, 3),
    down=st.floats(0, 3),
)
@settings(max_examples=300, deadline=None)
def test_a_write_answered_to_the_old_leader_landed_before_the_lease_could_move(
    lease: float, renew: float, retry: float, checked: float, up: float, down: float
) -> None:
    """The last renewal was sent at t0; a write passes the fence at t0 + checked * renew deadline (the
    leader still acting) and its client waits at most request_timeout_s. A standby reading that renewal
    up + down later takes the lease at t0 + up + down + lease at the earliest: after the client's wait ended.
    So a write the old leader saw answered landed before anyone else could act; one that lands later
    is one its client gave up on (Unanswered), and it is conditional (docs/high-availability.md)."""
    timing = Timing(lease, renew, retry)
    if timing.errors():
        return
    assert 0 < timing.request_timeout_s < timing.renew_deadline_s
    t0 = 1000.0
    fence_passed = t0 + checked * timing.renew_deadline_s * 0.999
    old = Leadership(enabled=True, identity="a", timing=timing, clock=lambda: fence_passed)
    old.renewed(t0, Record("a", "t0", 0))
    assert old.acting()
    client_gave_up = fence_passed + timing.request_timeout_s
    earliest_take = t0 + up + down + timing.lease_s
    assert client_gave_up <= earliest_take


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
