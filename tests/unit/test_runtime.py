"""The one runtime every kind runs on (operator/runtime/loops.py + operator/runtime/loop.py), in loop time.

`looptime` fast-forwards the event loop's clock, so idle rechecks of minutes and backoffs take no
wall time, and the figures asserted are the loop's own time (deterministic, not a timing test).
Each test runs on its own looptime loop, closed afterwards (looptime's pytest plugin is disabled in
pyproject.toml: with pytest-asyncio's auto mode it leaves an implicit event loop unclosed per test).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import looptime
from kubernetes import client

from strategy_rollouts.operator.clients.kube import Conflict, Kube, Rejected, Unanswered
from strategy_rollouts.operator.context import Context, Settings
from strategy_rollouts.operator.runtime import loop as daemons
from strategy_rollouts.operator.runtime.loops import Stop

KEY = ("rollout", "ns", "r")


def context() -> Context:
    # ApiClient() opens no connection: these loops never reach a server.
    return Context(kube=Kube(client.ApiClient()), settings=Settings(idle_recheck_s=300.0, error_backoff_s=5.0))


class Recorder:
    """A reconcile that records the loop time of each call and runs a scripted behaviour."""

    def __init__(self, behaviour: Callable[[int], Awaitable[datetime | None]] | None = None) -> None:
        self.calls: list[float] = []
        self.behaviour = behaviour

    async def __call__(self) -> datetime | None:
        self.calls.append(asyncio.get_running_loop().time())
        if self.behaviour is not None:
            return await self.behaviour(len(self.calls))
        return None


def start(ctx: Context, reconcile: Recorder) -> None:
    ctx.loops.ensure(KEY, lambda stop: daemons.run_loop(ctx, "StrategyRollout", "rollout", "ns", "r", stop, reconcile))


async def settle(seconds: float) -> None:
    await asyncio.sleep(seconds)


def in_loop_time(main: Callable[[], Awaitable[None]]) -> None:
    loop = looptime.new_event_loop(start=0.0)  # looptime enabled: sleeps advance the loop's clock only
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()


def test_idle_loop_rechecks_at_the_safety_net_and_an_event_wakes_it_at_once() -> None:
    in_loop_time(_test_idle_loop_rechecks_at_the_safety_net_and_an_event_wakes_it_at_once)


async def _test_idle_loop_rechecks_at_the_safety_net_and_an_event_wakes_it_at_once() -> None:
    ctx, rec = context(), Recorder()
    start(ctx, rec)
    await settle(1)
    assert len(rec.calls) == 1
    await settle(300)
    assert len(rec.calls) == 2  # the idle safety net
    t0 = asyncio.get_running_loop().time()
    ctx.wakers.wake("rollout", ("ns", "r"))
    await settle(0.1)
    assert len(rec.calls) == 3 and rec.calls[-1] - t0 < 0.05
    await ctx.loops.stop_all()


def test_a_wake_up_during_a_reconcile_is_not_lost() -> None:
    in_loop_time(_test_a_wake_up_during_a_reconcile_is_not_lost)


async def _test_a_wake_up_during_a_reconcile_is_not_lost() -> None:
    ctx = context()

    async def wake_during_first(n: int) -> datetime | None:
        if n == 1:
            ctx.wakers.wake("rollout", ("ns", "r"))  # e.g. a watch event while we were reading
        return None

    rec = Recorder(wake_during_first)
    start(ctx, rec)
    await settle(1)
    assert len(rec.calls) == 2, "the event that arrived mid-reconcile must cause another pass"
    await ctx.loops.stop_all()


def test_wake_at_from_the_engine_is_honoured() -> None:
    in_loop_time(_test_wake_at_from_the_engine_is_honoured)


async def _test_wake_at_from_the_engine_is_honoured() -> None:
    ctx = context()

    async def due_in_7s(n: int) -> datetime | None:
        return datetime.now(UTC) + timedelta(seconds=7) if n == 1 else None

    rec = Recorder(due_in_7s)
    start(ctx, rec)
    await settle(10)
    assert len(rec.calls) == 2
    assert 6.9 <= rec.calls[1] - rec.calls[0] <= 7.5
    await ctx.loops.stop_all()


def test_conflict_is_retried_at_once_rejected_backs_off_doubling_errors_back_off() -> None:
    in_loop_time(_test_conflict_is_retried_at_once_rejected_backs_off_doubling_errors_back_off)


async def _test_conflict_is_retried_at_once_rejected_backs_off_doubling_errors_back_off() -> None:
    ctx = context()

    async def script(n: int) -> datetime | None:
        if n == 1:
            raise Conflict("someone wrote first")
        if n in (2, 3, 4):
            raise Rejected("strategyrollouts ns/r status", "status.x: Invalid value")
        if n == 5:
            raise RuntimeError("a bad answer")
        return None

    rec = Recorder(script)
    start(ctx, rec)
    await settle(100)
    gaps = [round(b - a, 1) for a, b in zip(rec.calls, rec.calls[1:], strict=False)]
    assert gaps[0] <= 0.1  # 409: at once
    assert gaps[1:4] == [5.0, 10.0, 20.0]  # 422: 5 s, doubling
    assert gaps[4] == 5.0  # an unexpected error: the error backoff, and the loop lives on
    await ctx.loops.stop_all()


def test_a_write_without_an_answer_in_time_backs_off_and_the_next_pass_rereads() -> None:
    in_loop_time(_test_a_write_without_an_answer_in_time_backs_off_and_the_next_pass_rereads)


async def _test_a_write_without_an_answer_in_time_backs_off_and_the_next_pass_rereads() -> None:
    ctx = context()

    async def script(n: int) -> datetime | None:
        if n == 1:
            raise Unanswered("replace_namespaced_deployment_scale: no answer within 5.0s")
        return None

    rec = Recorder(script)
    start(ctx, rec)
    await settle(30)
    assert len(rec.calls) == 2 and round(rec.calls[1] - rec.calls[0], 1) == 5.0  # the error backoff, no crash
    await ctx.loops.stop_all()


def test_stop_ends_the_loop_and_forgets_its_waker_and_ensure_restarts_a_finished_loop() -> None:
    in_loop_time(_test_stop_ends_the_loop_and_forgets_its_waker_and_ensure_restarts_a_finished_loop)


async def _test_stop_ends_the_loop_and_forgets_its_waker_and_ensure_restarts_a_finished_loop() -> None:
    ctx, rec = context(), Recorder()
    start(ctx, rec)
    start(ctx, rec)  # a second event for a running loop starts nothing new
    await settle(1)
    assert len(rec.calls) == 1 and len(ctx.loops) == 1
    await ctx.loops.stop(KEY)
    assert len(ctx.loops) == 0
    assert ("rollout", ("ns", "r")) not in ctx.wakers.events
    calls = len(rec.calls)
    await settle(600)
    assert len(rec.calls) == calls  # stopped means stopped
    start(ctx, rec)  # the object's next event (e.g. after a restart of the operator) starts it again
    await settle(1)
    assert len(rec.calls) == calls + 1
    await ctx.loops.stop_all()


def test_a_stop_during_a_long_sleep_ends_promptly() -> None:
    in_loop_time(_test_a_stop_during_a_long_sleep_ends_promptly)


async def _test_a_stop_during_a_long_sleep_ends_promptly() -> None:
    stop = Stop()
    waker = asyncio.Event()
    sleeper = asyncio.create_task(daemons.sleep(waker, stop, 300.0))
    await settle(1)
    t0 = asyncio.get_running_loop().time()
    stop.set()
    await sleeper
    assert asyncio.get_running_loop().time() - t0 < 0.05


def test_backoff_doubles_and_is_capped() -> None:
    assert [daemons.backoff(5.0, n) for n in (1, 2, 3, 4)] == [5.0, 10.0, 20.0, 40.0]
    assert daemons.backoff(5.0, 50) == daemons.MAX_BACKOFF_S
