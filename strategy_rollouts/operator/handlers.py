"""kopf registrations: one runtime for all three kinds.

Every object gets one loop (loops.Loops): started by its first watch event (the initial listing
included, which covers operator restarts), woken by later events, stopped by its DELETED event or at
shutdown. Loops reconcile at the level (status + observed world), so create, resume and update are
one code path. No kopf daemon (kopf puts a finalizer on every daemon's object, and with the operator
down that blocks deleting the object and its namespace); only ShadowRuns carry a finalizer, because
their deletion does work the garbage collector cannot (scale the shadow back to 0).

All state lives in one Context, handed to every handler by kopf's `memo` (see main.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import kopf

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import templates as gate_templates
from strategy_rollouts.operator.paritycheck import adapter as paritychecks
from strategy_rollouts.operator.runtime import loop as daemons
from strategy_rollouts.operator.shadowrun import adapter as shadowruns
from strategy_rollouts.operator.shadowrun import cache as shadow_cache
from strategy_rollouts.operator.strategyrollout import adapter as rollouts
from strategy_rollouts.operator.strategyrollout import orphans

log = logging.getLogger(__name__)
LoopFn = Callable[[Context, str, str, daemons.Stopped], Coroutine[Any, Any, None]]


def context(memo: kopf.Memo) -> Context:
    ctx = memo.get("ctx")
    if not isinstance(ctx, Context):
        raise RuntimeError("operator context not initialised; run through strategy_rollouts.main")
    return ctx


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP)
    settings.posting.level = logging.WARNING
    # A stalled watch stream recovers instead of silently starving the loops of wake-ups.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.inactivity_timeout = 600
    settings.watching.connect_timeout = 30
    settings.batching.error_delays = [1, 2, 5, 10, 30]
    # Server-side: only our routing ConfigMaps are streamed to this process, not every ConfigMap.
    settings.watching.label_selectors["v1", "configmaps"] = f"{routing_writer.LABEL}=true"
    settings.networking.error_backoffs = [1, 2, 5, 10]
    ctx = context(memo)
    ctx.shadow_cache.policies_watched = True
    if not ctx.leader.enabled:  # with leader election, the leader sweeps when it gains the lease
        await sweep_orphans(ctx)
    ctx.leader.started = True  # /readyz: the watches start now


async def sweep_orphans(ctx: Context) -> None:
    try:  # rollouts deleted while the operator was down leave their stage-namespace ConfigMaps
        removed = await orphans.sweep(ctx.kube, ctx.settings.namespaces)
        if removed:
            log.info("removed %d routing ConfigMaps of rollouts deleted while the operator was down", removed)
    except Exception:  # RBAC or a transient error must not keep the operator from starting
        log.warning("sweep of orphaned routing ConfigMaps failed", exc_info=True)


@kopf.on.cleanup()
async def stop_loops(memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    await ctx.loops.stop_all()
    await ctx.notifier.close()
    await shadowruns.close(ctx)


async def _follow(ctx: Context, kind: str, event: kopf.RawEvent, namespace: str, name: str, run: LoopFn) -> bool:
    """Start the object's loop on any event, stop it on DELETED. True while the object lives."""
    key = (kind, namespace, name)
    if event.get("type") == "DELETED":
        await ctx.loops.stop(key)
        ctx.watched.drop(kind, namespace, name)
        ctx.notifier.forget(str((event["object"].get("metadata") or {}).get("uid", "")))
        return False
    ctx.watched.offer(event["object"])  # before the wake-up: the loop reads this instead of a GET
    ctx.notifier.offer(ctx, kind, event["object"])  # pending notifications (also after a restart)
    ctx.loops.ensure(key, lambda stop: run(ctx, namespace, name, stop))
    return True


# Handlers are `async def`: kopf runs plain functions in a thread pool, and an asyncio.Event set from
# another thread does not wake the loop.


@kopf.on.event(GROUP, VERSION, "strategyrollouts")  # type: ignore[arg-type]
async def strategyrollout_changed(
    event: kopf.RawEvent, namespace: str, name: str, body: kopf.Body, memo: kopf.Memo, **_: Any
) -> None:
    ctx = context(memo)
    if not await _follow(ctx, "StrategyRollout", event, namespace, name, rollouts.ADAPTER.run):
        rollouts.ADAPTER.forget(ctx, namespace, name)
        ctx.wakers.wake(rollouts.KIND, (namespace, name))  # rollouts waiting for its claims (tenancy.py)
        uid = (event["object"].get("metadata") or {}).get("uid")
        try:
            if uid and ctx.leader.acting():  # a standby's delete would be fenced; the leader (or its sweep) does it
                await orphans.remove_owned(ctx.kube, uid, ctx.settings.namespaces)
        except Exception:  # e.g. namespaced RBAC cannot list across namespaces: the startup sweep retries
            log.warning("removing the routing ConfigMaps of %s/%s failed", namespace, name, exc_info=True)
        return
    if rollouts.is_own_write(ctx, namespace, name, body):
        return  # the echo of our own status write: nothing new to reconcile
    ctx.wakers.wake(rollouts.KIND, (namespace, name))


@kopf.on.event("apps", "v1", "deployments")  # type: ignore[arg-type]
async def deployment_changed(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if event.get("type") == "DELETED":
        counts_changed = ctx.watched.drop_deployment(namespace, name)
        ctx.shadow_cache.drop_deployment(namespace, name)
    else:
        counts_changed = ctx.watched.offer_deployment(event["object"])  # rollouts read it here, not by GET
        ctx.shadow_cache.offer_deployment(event["object"])  # kept only for ShadowRuns' Deployments
    ctx.wakers.wake("deployment", (namespace, name))  # shadow runs: any change (pod template, isolation)
    if counts_changed:
        # Rollouts only look at replicas / readyReplicas: most of a scale's ~5 status events change neither.
        ctx.wakers.wake(rollouts.DEPLOYMENT_COUNTS, (namespace, name))


@kopf.on.event("", "v1", "configmaps", labels={routing_writer.LABEL: "true"})  # type: ignore[arg-type]
async def routing_changed(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Routing ConfigMaps feed the cache rollouts and parity checks read instead of a GET; a change that
    is not the echo of our own write (someone edited or deleted it) wakes the objects routing there."""
    ctx = context(memo)
    if event.get("type") == "DELETED":
        changed = ctx.watched.drop_config_map(namespace, name)
    else:
        changed = ctx.watched.offer_config_map(event["object"])
    if changed:
        ctx.wakers.wake(routing_writer.WAKER_KIND, (namespace, name))


@kopf.index("networking.k8s.io", "v1", "networkpolicies")
async def policy_listed(**_: Any) -> None:
    """No value kept: the index makes kopf hold every other handler until our policies are listed, so
    the cache below is complete when a ShadowRun pass reads it (a missing policy is truly missing)."""
    return None


@kopf.on.event("networking.k8s.io", "v1", "networkpolicies")  # type: ignore[arg-type]
async def policy_changed(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if event.get("type") == "DELETED":
        ctx.shadow_cache.drop_policy(namespace, name)
        ctx.wakers.wake(shadow_cache.POLICY_WAKER, (namespace, name))  # a running shadow puts it back at once
    else:
        ctx.shadow_cache.offer_policy(event["object"])  # read by the next pass (the idle recheck at rest)


@kopf.on.event(GROUP, VERSION, "shadowruns")  # type: ignore[arg-type]
async def shadowrun_changed(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if await _follow(ctx, "ShadowRun", event, namespace, name, shadowruns.ADAPTER.run):
        ctx.wakers.wake(shadowruns.KIND, (namespace, name))  # also wakes the rollouts waiting on it
    else:
        shadowruns.ADAPTER.forget(ctx, namespace, name)


@kopf.on.delete(GROUP, VERSION, "shadowruns", retries=5, backoff=2.0)
async def shadowrun_deleted(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A started, unfinished shadow goes back to 0 replicas and its NetworkPolicy is removed (a finalizer
    is right here: this is work the API server's garbage collector cannot do).

    A standby waits (neither failing, which would spend kopf's shared retry count, nor declining, which
    would drop the finalizer) until it leads or the leader has finished and the object is gone."""
    ctx, namespace, name = context(memo), body.metadata.namespace or "", body.metadata.name or ""
    await ctx.leader.until_acting(lambda: ctx.watched.body("ShadowRun", namespace, name) is None)
    if ctx.leader.acting():
        await shadowruns.on_delete(ctx, body)


@kopf.on.event(GROUP, VERSION, "paritychecks")  # type: ignore[arg-type]
async def paritycheck_changed(event: kopf.RawEvent, namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    ctx = context(memo)
    if await _follow(ctx, "ParityCheck", event, namespace, name, paritychecks.ADAPTER.run):
        ctx.wakers.wake(paritychecks.KIND, (namespace, name))
    else:
        # Its series go; the actions it took stay (lifting a stop is a decision, not a side effect of deleting).
        paritychecks.ADAPTER.forget(ctx, namespace, name)


@kopf.on.event(GROUP, VERSION, "gatetemplates")
async def gatetemplate_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    gate_templates.changed(context(memo), "GateTemplate", event)  # wakes the objects using it


@kopf.on.event(GROUP, VERSION, "clustergatetemplates")
async def clustergatetemplate_changed(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    gate_templates.changed(context(memo), "ClusterGateTemplate", event)
