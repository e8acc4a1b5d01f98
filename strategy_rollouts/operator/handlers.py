"""kopf registrations: one loop per object, event handlers that start and wake them, startup settings.

Loops reconcile at the level (status + observed world), so create, resume after a restart and
update are the same code path; nothing here stores progress in annotations. StrategyRollouts and
ParityChecks get no finalizer (see loops.py); ShadowRuns do, because their deletion needs work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

import kopf

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.operator import daemons, metrics, paritychecks, rollouts, shadowruns
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.loops import Loops

LoopFn = Callable[[Context, str, str, daemons.Stopped], Coroutine[Any, Any, None]]

CTX: Context | None = None


def context() -> Context:
    if CTX is None:
        raise RuntimeError("operator context not initialised; run through strategy_rollouts.main")
    return CTX


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # A stalled watch stream recovers instead of silently starving the daemons of wake-ups.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.watching.connect_timeout = 30
    settings.batching.error_delays = [1, 2, 5, 10, 30]
    settings.networking.error_backoffs = [1, 2, 5, 10]


LOOPS = Loops()


@kopf.on.cleanup()
async def stop_loops(**_: Any) -> None:
    await LOOPS.stop_all()


async def _follow(kind: str, event: kopf.RawEvent, namespace: str, name: str, run: LoopFn) -> bool:
    """Start the object's loop on any event, stop it on DELETED. True while the object lives."""
    key = (kind, namespace, name)
    if event.get("type") == "DELETED":
        await LOOPS.stop(key)
        return False
    ctx = context()
    LOOPS.ensure(key, lambda stop: run(ctx, namespace, name, stop))
    return True


# Wake-up handlers are `async def`: kopf runs plain functions in a thread pool, and an asyncio.Event
# set from another thread does not wake the loop.


@kopf.on.event(GROUP, VERSION, "strategyrollouts")  # type: ignore[arg-type]
async def strategyrollout_changed(event: kopf.RawEvent, namespace: str, name: str, body: kopf.Body, **_: Any) -> None:
    ctx = context()
    if not await _follow(rollouts.KIND, event, namespace, name, rollouts.run_daemon):
        ctx.watched.drop("StrategyRollout", namespace, name)
        rollouts.forget(namespace, name)
        return
    ctx.watched.offer(event["object"])  # before the wake-up: the loop reads this instead of a GET
    if rollouts.is_own_write(namespace, name, body):
        return  # the echo of our own status patch: nothing new to reconcile
    ctx.wakers.wake(rollouts.KIND, (namespace, name))


@kopf.on.event("apps", "v1", "deployments")  # type: ignore[arg-type]
async def deployment_changed(event: kopf.RawEvent, namespace: str, name: str, **_: Any) -> None:
    ctx = context()
    if event.get("type") == "DELETED":
        counts_changed = ctx.watched.drop_deployment(namespace, name)
    else:
        counts_changed = ctx.watched.offer_deployment(event["object"])  # rollouts read it here, not by GET
    ctx.wakers.wake("deployment", (namespace, name))  # shadow runs: any change (pod template, isolation)
    if counts_changed:
        # Rollouts only look at replicas / readyReplicas: most of a scale's ~5 status events change neither.
        ctx.wakers.wake(rollouts.DEPLOYMENT_COUNTS, (namespace, name))


@kopf.on.event(GROUP, VERSION, "shadowruns")  # type: ignore[arg-type]
async def shadowrun_changed(namespace: str, name: str, **_: Any) -> None:
    context().wakers.wake("shadowrun", (namespace, name))


# ---- ParityCheck ---------------------------------------------------------------------------------


@kopf.on.event(GROUP, VERSION, "paritychecks")  # type: ignore[arg-type]
async def paritycheck_changed(event: kopf.RawEvent, namespace: str, name: str, **_: Any) -> None:
    if await _follow(paritychecks.KIND, event, namespace, name, paritychecks.run_daemon):
        context().wakers.wake(paritychecks.KIND, (namespace, name))
    else:
        # Its series go; the actions it took stay (lifting a stop is a decision, not a side effect of deleting).
        metrics.forget_object(namespace, name, *metrics.PARITY_FAMILIES)


# ---- ShadowRun ------------------------------------------------------------------------------------
# shadowrun_changed (above) already wakes this daemon: it registers its waker under kind "shadowrun".


@kopf.daemon(GROUP, VERSION, "shadowruns", cancellation_timeout=2.0)  # type: ignore[arg-type]
async def shadowrun_daemon(namespace: str, name: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
    await shadowruns.run_daemon(context(), namespace, name, cast(daemons.Stopped, stopped))


@kopf.on.delete(GROUP, VERSION, "shadowruns", retries=5, backoff=2.0)
async def shadowrun_deleted(body: kopf.Body, **_: Any) -> None:
    """A started, unfinished shadow goes back to 0 replicas and its NetworkPolicy is removed (a finalizer
    is right here: this is work the API server's garbage collector cannot do)."""
    await shadowruns.on_delete(context(), body)


@kopf.on.cleanup()
async def shadowrun_sources_closed(**_: Any) -> None:
    await shadowruns.close(context())
