"""The loop every per-object daemon runs: reconcile, then sleep until due, woken, or stopped."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException

from strategy_rollouts.operator import metrics
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.kube import Conflict

log = logging.getLogger(__name__)


class Stopped(Protocol):
    """kopf.DaemonStopped, or loops.Stop: falsy until the loop must end, awaitable until then."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


async def run_loop(
    ctx: Context,
    kind: str,
    waker_kind: str,
    namespace: str,
    name: str,
    stopped: Stopped,
    reconcile: Callable[[], Awaitable[datetime | None]],
) -> None:
    """`reconcile` returns when to look again (None: only on an event, or the idle safety net)."""
    waker = ctx.wakers.event(waker_kind, (namespace, name))
    try:
        while not stopped:
            waker.clear()
            started = time.monotonic()
            try:
                wake_at = await reconcile()
                delay = ctx.settings.idle_recheck_s
                if wake_at is not None:
                    delay = min(delay, max((wake_at - datetime.now(UTC)).total_seconds(), 0.0) + 0.01)
            except Conflict:
                delay = 0.05  # someone wrote first (the plugin, another check): re-read at once
            except ApiException as exc:  # e.g. namespace terminating, RBAC: one line, no traceback
                log.warning("reconcile of %s %s/%s: API %s %s", kind, namespace, name, exc.status, exc.reason)
                metrics.reconcile_errors_total.labels(kind).inc()
                delay = ctx.settings.error_backoff_s
            except Exception:  # a bad answer must not kill the loop (never a crash-loop)
                log.exception("reconcile of %s %s/%s failed", kind, namespace, name)
                metrics.reconcile_errors_total.labels(kind).inc()
                delay = ctx.settings.error_backoff_s
            finally:
                metrics.reconcile_seconds.labels(kind).observe(time.monotonic() - started)
            await sleep(waker, stopped, delay)
    finally:
        ctx.wakers.forget(waker_kind, (namespace, name))


async def sleep(waker: asyncio.Event, stopped: Stopped, delay: float) -> None:
    """Until `delay` passes, the waker fires, or kopf stops the daemon (deletion, shutdown: no escalation)."""

    async def until_stopped() -> None:
        await stopped.wait()

    tasks = {asyncio.ensure_future(waker.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
