"""The loop every object of every kind runs: reconcile, then sleep until due, woken, or stopped.

409 (someone wrote first) is retried at once from a fresh read. 422 (the API server refuses what we
wrote) is logged with the server's message, posted as a Warning Event and retried with a growing
backoff: repeating it at once would only hammer the API server with the same invalid write. A request
without an answer within its timeout (Unanswered: the transport never re-sends it) is logged and backed
off; the next pass re-reads, and its write is conditional again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import kopf
from kubernetes.client.exceptions import ApiException

from strategy_rollouts.operator.clients.kube import Conflict, Rejected, Unanswered
from strategy_rollouts.operator.clients.routing import NotOwned
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.operator.runtime.leader import NotLeader

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 300.0


class Stopped(Protocol):
    """kopf.DaemonStopped, or loops.Stop: falsy until the loop must end, awaitable until then."""

    def __bool__(self) -> bool: ...

    def wait(self) -> Awaitable[Any]: ...


def backoff(base_s: float, failures: int) -> float:
    """base, 2 x base, 4 x base, ... capped at MAX_BACKOFF_S."""
    return float(min(base_s * 2 ** max(failures - 1, 0), MAX_BACKOFF_S))


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
    rejected = 0
    try:
        while not stopped:
            await ctx.leader.until_acting(lambda: bool(stopped))  # a standby's loops wait, warm
            if stopped:
                break
            waker.clear()
            started = time.monotonic()
            try:
                wake_at = await reconcile()
                rejected = 0
                delay = ctx.settings.idle_recheck_s
                if wake_at is not None:
                    delay = min(delay, max((wake_at - datetime.now(UTC)).total_seconds(), 0.0) + 0.01)
            except Conflict:
                delay = 0.05  # someone wrote first (the plugin, another check): re-read at once
            except NotLeader:  # fenced before a write: wait for the leadership, then start over
                log.info("%s %s/%s: not the leader any more, nothing written", kind, namespace, name)
                delay = 0.0
            except Unanswered as exc:  # a request's deadline passed (never re-sent): back off, then re-read
                log.warning("reconcile of %s %s/%s: %s", kind, namespace, name, exc)
                metrics.reconcile_errors_total.labels(kind).inc()
                delay = ctx.settings.error_backoff_s
            except NotOwned as exc:  # the next pass's tenancy check reports it (InvalidSpec); nothing written
                log.warning("%s %s/%s: %s", kind, namespace, name, exc)
                metrics.reconcile_errors_total.labels(kind).inc()
                delay = ctx.settings.error_backoff_s
            except Rejected as exc:
                rejected += 1
                delay = backoff(ctx.settings.error_backoff_s, rejected)
                log.warning("%s %s/%s: the API server rejected our write: %s", kind, namespace, name, exc.message)
                metrics.reconcile_errors_total.labels(kind).inc()
                warn(ctx, kind, namespace, name, f"write rejected by the API server (retry in {delay:.0f}s): {exc}")
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


def warn(ctx: Context, kind: str, namespace: str, name: str, message: str) -> None:
    """A Warning Event on the object as last seen by its watch (nothing to attach it to otherwise)."""
    body = ctx.watched.body(kind, namespace, name)
    if body is not None and ctx.leader.acting():
        kopf.event(cast(kopf.Body, body), type="Warning", reason="WriteRejected", message=message[:1000])


async def sleep(waker: asyncio.Event, stopped: Stopped, delay: float) -> None:
    """Until `delay` passes, the waker fires, or the loop is stopped (deletion, shutdown: no escalation)."""

    async def until_stopped() -> None:
        await stopped.wait()

    tasks = {asyncio.ensure_future(waker.wait()), asyncio.ensure_future(until_stopped())}
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
