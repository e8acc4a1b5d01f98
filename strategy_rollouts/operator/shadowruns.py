"""ShadowRun adapter: read, parse (fail closed), observe, call `engine.shadow_run.reconcile`, write status,
THEN make the world match what status records (shadow replicas, NetworkPolicy, report).

Every side effect follows the status as written: a crash between the write and the scale is undone
by the next pass, which enforces the recorded end state again (a Completed run's shadow stays at 0
with no NetworkPolicy, even if someone scales it up). A status the engine cannot act on is held with
InvalidStatus=True and nothing is touched until it parses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine import notifications, shadow_run
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.networkpolicy import policy_name
from strategy_rollouts.engine.shadow_run import Decision, Observations
from strategy_rollouts.engine.types import Event
from strategy_rollouts.operator import (
    daemons,
    gate_templates,
    metrics,
    notifier,
    runtime,
    shadow_cache,
    shadow_measure,
    shadow_world,
    status_guard,
)
from strategy_rollouts.operator.calendars import market_calendar
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.kube import KINDS, Conflict
from strategy_rollouts.operator.trust import prometheus_refs, secret_errors, trust_errors

PLURAL = "shadowruns"
KIND = "shadowrun"
log = logging.getLogger(__name__)


def parse_spec(obj: Mapping[str, Any]) -> tuple[ShadowRunSpec | None, str | None]:
    """(spec, error). A spec that does not parse is reported, never acted on."""
    try:
        return ShadowRunSpec.model_validate(obj.get("spec") or {}), None
    except ValidationError as exc:
        return None, validation_message(exc)


def parse_status(obj: Mapping[str, Any]) -> tuple[ShadowRunStatus | None, str | None]:
    """(status, None) or (None, why): the model's check, then what the engine cannot act on safely."""
    status, error = status_guard.parse_status(ShadowRunStatus, obj.get("status"))
    if status is not None:
        error = shadow_run.status_error(status)
    return (status, None) if error is None else (None, error)


def _post(obj: Mapping[str, Any], events: tuple[Event, ...] | list[Event]) -> None:
    for e in events:
        kopf.event(cast(kopf.Body, obj), type=e.type, reason=e.reason, message=e.message[:1000])


async def _hold(ctx: Context, obj: dict[str, Any], error: str, now: datetime) -> None:
    meta = obj["metadata"]
    try:
        message = await status_guard.hold(ctx.kube, PLURAL, obj, "ShadowRun", error, now)
    except Conflict:
        ctx.watched.drop(KINDS[PLURAL], meta["namespace"], meta["name"])
        raise
    if message:
        log.warning("ShadowRun %s/%s held: %s", meta["namespace"], meta["name"], message)
        _post(obj, [Event("Warning", "InvalidStatus", message)])


async def observe(
    ctx: Context,
    obj: dict[str, Any],
    spec: ShadowRunSpec | None,
    spec_error: str | None,
    status: ShadowRunStatus,
    now: datetime,
    calendar: Calendar | None = None,
) -> tuple[Observations, shadow_world.World]:
    """Everything the engine needs, as plain data; `now` is the pass's one clock reading."""
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    last = ctx.shadow.last_read.get((ns, name), float("-inf"))
    may_read = time.monotonic() - last >= shadow_run.READ_EVERY_S / 2
    plan = shadow_run.plan(spec, status, ns, now, may_read, calendar)
    if plan.deployment:
        ctx.wakers.watch(KIND, (ns, name), "deployment", [(ns, plan.deployment)])
    ctx.wakers.watch(KIND, (ns, name), shadow_cache.POLICY_WAKER, [(ns, policy_name(name))])
    report = status.report if status.phase == "Completed" else None
    world = await shadow_world.look(ctx, ns, name, plan.deployment, report)
    if plan.streams is not None:
        ctx.shadow.last_read[(ns, name)] = time.monotonic()
    live, shadow = await shadow_measure.streams(ctx, ns, plan)
    for read in (live, shadow):
        for why in read.examples if read else ():
            log.warning("ShadowRun %s/%s: malformed decision %s", ns, name, why)
    kpis = await shadow_measure.kpis(ctx, ns, spec, plan) if spec is not None else {}
    obs = Observations(
        namespace=ns,
        name=name,
        owner={"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": meta},
        generation=int(meta.get("generation", 1)),
        spec_error=spec_error,
        deployment=world.deployment,
        live=live,
        shadow=shadow,
        kpis=kpis,
        policy_exists=world.policy is not None,
        report=(world.report.data or {}) if world.report is not None else None,
        calendar=calendar,
    )
    started = status.started_at
    if spec and spec.latency_profile and started and shadow_run.completing(spec, status, obs, now):
        obs = replace(obs, latency=await shadow_measure.latency(ctx, ns, spec, started, now))
    return obs, world


async def reconcile_once(ctx: Context, namespace: str, name: str) -> datetime | None:
    """One level-based pass. Returns when to look again (None: only on an event)."""
    obj = await runtime.read(ctx, PLURAL, namespace, name)
    if obj is None or obj["metadata"].get("deletionTimestamp"):
        return None  # gone, or going: on_delete gives the shadow back, no pass may scale it up again
    now = datetime.now(UTC)
    persisted, error = parse_status(obj)
    if persisted is None:
        await _hold(ctx, obj, error or "status does not parse", now)
        return None  # fail closed: no scale, no policy change, no report
    gen = int(obj["metadata"].get("generation", 1))
    status = persisted.model_copy(update={"conditions": status_guard.cleared(persisted.conditions, gen, now)})
    spec, spec_error = parse_spec(obj)
    calendar: Calendar | None = None
    if spec is not None and spec.market is not None:
        calendar, problem = await market_calendar(ctx.calendars, "spec.market", spec.market.calendar, None, now)
        if problem is not None:  # reported like a spec that does not parse: InvalidSpec, nothing acts
            spec, spec_error = None, problem
    problems = await notifier.secret_errors(ctx, namespace, spec.notify) if spec is not None else []
    problems += trust_errors(ctx, spec.prometheus, spec.kpis, "spec.kpis") if spec is not None else []
    if spec is not None:
        redis = spec.decisions.source.redis.address_secret_ref if spec.decisions else None
        refs = [*prometheus_refs(spec.prometheus), ("spec.decisions.source.redis.addressSecretRef", redis)]
        problems += await secret_errors(ctx, namespace, refs)
    if problems:  # held as an invalid spec: it does not act
        spec, spec_error = None, "; ".join(problems)
    used = {}
    if spec is not None:  # templateRef KPIs: resolved here; a missing template or arg is InvalidSpec
        templated = await gate_templates.resolved(ctx, KIND, (namespace, name), "spec.kpis", spec.kpis)
        spec, spec_error, used = (
            (None, "; ".join(templated.errors), {})
            if templated.errors
            else (spec.model_copy(update={"kpis": templated.gates}), None, templated.used)
        )
    obs, world = await observe(ctx, obj, spec, spec_error, status, now, calendar)
    decision = shadow_run.reconcile(spec, status, obs, now)
    decision.status.kpis = gate_templates.stamp(decision.status.kpis, used, obs.kpis)
    occurrences = notifications.shadow_occurrences(spec, status, decision.status, namespace, name)
    outbox = notifications.outbox(spec.notify if spec else [], status.notifications, occurrences, now)
    decision = replace(decision, status=decision.status.model_copy(update={"notifications": outbox}))
    await write(ctx, obj, persisted, decision)  # record intent ...
    await shadow_world.enforce(ctx, obs.owner, decision, world)  # ... then act on it
    record_metrics(namespace, name, decision.status)
    if decision.status.phase != persisted.phase:
        log.info("ShadowRun %s/%s: %s", namespace, name, decision.status.message)
    return decision.wake_at


async def write(ctx: Context, obj: dict[str, Any], persisted: ShadowRunStatus, decision: Decision) -> None:
    """One guarded status write when anything changed (409 propagates: retried at once from a fresh
    read; 422 propagates as kube.Rejected: the run loop logs it and backs off)."""
    new = decision.status.wire()
    if new != persisted.wire():
        await runtime.write_status(ctx, PLURAL, obj, new)
    _post(obj, decision.events)


def record_metrics(ns: str, name: str, status: ShadowRunStatus) -> None:
    if status.decisions is not None:
        if status.decisions.match_rate is not None:
            metrics.shadow_match_rate.labels(ns, name).set(status.decisions.match_rate)
        metrics.shadow_decisions_total.labels(ns, name).set(status.decisions.compared)
    for v in ("Pass", "Hold", "Fail"):
        metrics.shadow_verdict.labels(ns, name, v).set(1 if status.verdict == v else 0)


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The ShadowRun is gone: drop what memory holds about it, and its series."""
    ctx.shadow.last_read.pop((namespace, name), None)
    metrics.forget_object(namespace, name, *metrics.SHADOW_FAMILIES)


async def on_delete(ctx: Context, body: Mapping[str, Any]) -> None:
    """Deletion: a started, unfinished shadow goes back to 0; the NetworkPolicy is removed in every case
    (with an unparseable status only the policy: we do not know what the run acts on)."""
    meta = body["metadata"]
    ns, name = meta["namespace"], meta["name"]
    await ctx.loops.stop((KINDS[PLURAL], ns, name))  # no pass in flight may undo what follows
    spec, _ = parse_spec(body)
    status, _ = parse_status(body)
    deployment = shadow_run.on_delete(spec, status)[0] if status is not None else None
    if deployment is not None:
        dep = await ctx.kube.maybe(ctx.kube.apps.read_namespaced_deployment, deployment, ns)
        if dep is not None and dep.spec.replicas != 0:
            await ctx.kube.scale(ns, deployment, 0)
    await shadow_world.delete_policy(ctx, ns, policy_name(name))
    forget(ctx, ns, name)


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One loop per ShadowRun (until the shared runtime drives `reconcile_once` itself)."""
    await daemons.run_loop(
        ctx, "ShadowRun", KIND, namespace, name, stopped, lambda: reconcile_once(ctx, namespace, name)
    )


async def close(ctx: Context) -> None:
    """Operator shutdown: close the Redis connection pools of the decision sources."""
    await ctx.shadow.redis.close()
