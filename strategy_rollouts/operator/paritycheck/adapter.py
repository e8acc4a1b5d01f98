"""ParityCheck adapter: read, parse (fail closed), observe, call `engine.parity_run.reconcile`, write
status, THEN enforce what status records (routing ConfigMaps, the deployment's scale, requests to
the target rollout). Every effect derives from the status just written, so a crash anywhere leads
to the same end state on the next pass.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.engine import notifications, parity, parity_run
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.operator.checks.calendars import market_calendar
from strategy_rollouts.operator.checks.trust import prometheus_refs, secret_errors, trust_errors
from strategy_rollouts.operator.clients import notifier, prometheus
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients.kube import Conflict
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import loop as daemons
from strategy_rollouts.operator.runtime import metrics, status_guard
from strategy_rollouts.operator.runtime import objects as runtime

PLURAL = "paritychecks"
KIND = "paritycheck"
LEVELS = ("Excellent", "Good", "Warning", "Critical", "Emergency", "Unknown")
log = logging.getLogger(__name__)


async def identity(ctx: Context) -> str:
    if ctx.parity.user is None:
        ctx.parity.user = await ctx.kube.who_am_i()
    return ctx.parity.user


def parse_spec(obj: dict[str, Any]) -> tuple[ParityCheckSpec | None, tuple[str, ...]]:
    try:
        return ParityCheckSpec.model_validate(obj.get("spec") or {}), ()
    except ValidationError as exc:
        return None, (validation_message(exc),)


def created_at(obj: dict[str, Any], now: datetime) -> datetime:
    text = obj["metadata"].get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else now
    except ValueError:
        return now


async def measure(ctx: Context, namespace: str, spec: ParityCheckSpec, now: datetime) -> parity_run.Measured:
    conn = await ctx.connection(namespace, spec.prometheus)
    values = parity_run.placeholder_values(spec, namespace)
    start = now - parse_duration(spec.window)
    step_s = parse_duration(spec.step).total_seconds()

    def q(text: str) -> Any:
        return prometheus.range_series(conn, substitute(text, values), start, now, step_s)

    pairs = [(n, getattr(spec.attribution, n)) for n in parity.COMPONENTS if getattr(spec.attribution, n)]
    results = await asyncio.gather(
        q(spec.live.query), q(spec.backtest.query), *(q(p.live) for _, p in pairs), *(q(p.backtest) for _, p in pairs)
    )
    n = len(pairs)
    components = {name: (results[2 + i], results[2 + n + i]) for i, (name, _) in enumerate(pairs)}
    return parity_run.Measured(results[0], results[1], components)


def rollout_obs(obj: dict[str, Any]) -> acts.RolloutObs:
    """The rollout's request bookkeeping, read leniently (another kind's status, not ours to judge)."""
    st = obj.get("status") or {}
    raw = st.get("requests")
    pending: dict[str, Any] = raw if isinstance(raw, dict) else {}
    handled = {
        str(h.get("id")): (str(h.get("outcome") or ""), str(h.get("message") or ""))
        for h in st.get("handledRequests") or []
        if isinstance(h, dict) and h.get("id")
    }
    return acts.RolloutObs(frozenset(pending), handled)


async def observe_target(ctx: Context, namespace: str, spec: ParityCheckSpec) -> acts.Target:
    cms: list[tuple[str, str]]
    seen: acts.RolloutObs | None = None
    replicas: int | None = None
    if spec.target.deployment is not None:
        dep = spec.target.deployment
        cms = [(namespace, spec.target.config_map or f"{dep}-routing")]
        known = ctx.watched.deployment(namespace, dep)
        info = known if known is not None else await ctx.kube.deployment(namespace, dep)
        replicas = None if info is None else info.replicas
        label = f"deployment/{dep}"
    else:
        name = spec.target.rollout or ""
        label = f"strategyrollout/{name}"
        obj = await runtime.read(ctx, "strategyrollouts", namespace, name)
        cms = []
        if obj is not None:
            seen = rollout_obs(obj)
            targets = (obj.get("status") or {}).get("targets") or []
            cms = [(t["namespace"], t["configMap"]) for t in targets if t.get("namespace") and t.get("configMap")]
            routing_spec = (obj.get("spec") or {}).get("routing") or {}
            cms = cms or [(namespace, routing_spec.get("configMap") or f"{name}-routing")]
    routings = await asyncio.gather(*(routing_writer.read(ctx.kube, ns, cm, ctx.watched) for ns, cm in cms))
    routing = tuple(acts.RoutingObs(ns, cm, r.document) for (ns, cm), r in zip(cms, routings, strict=True))
    return acts.Target(namespace, label, spec.target.rollout, spec.target.deployment, routing, seen, replicas)


async def enforce(ctx: Context, effects: acts.Effects) -> None:
    """Apply what the written status still needs; every effect is tried, the first failure re-raised."""
    failures: list[Exception] = []
    for change in effects.routing:
        try:
            await routing_writer.update(
                ctx.kube, change.namespace, change.config_map, change.changes, cache=ctx.watched
            )
        except Exception as exc:  # the next pass derives the same change again
            failures.append(exc)
    for scale in effects.scales:
        try:
            version = await ctx.kube.scale(scale.namespace, scale.deployment, scale.replicas)
            ctx.watched.scaled(scale.namespace, scale.deployment, scale.replicas, version)
        except Exception as exc:
            failures.append(exc)
    for out in effects.requests:
        try:
            patch = {"requests": {out.id: out.request.wire()}}
            written = await ctx.kube.merge_status("strategyrollouts", out.namespace, out.rollout, patch)
            if written:
                ctx.watched.offer(written)  # the next pass sees the id as sent: never sent twice
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


def emit(obj: dict[str, Any], decision: parity_run.Decision) -> None:
    for event in decision.events:
        kopf.event(cast(kopf.Body, obj), type=event.type, reason=event.reason, message=event.message[:1000])


def record_metrics(namespace: str, name: str, spec: ParityCheckSpec, decision: parity_run.Decision) -> None:
    run = decision.status.last_run
    if run is not None and run.tracking_error_bps is not None:
        metrics.parity_tracking_error_bps.labels(namespace, name, spec.strategy).set(run.tracking_error_bps)
    for lvl in LEVELS:
        metrics.parity_level.labels(namespace, name, lvl).set(1 if run is not None and lvl == run.level else 0)
    for action in decision.applied:
        metrics.parity_actions_total.labels(namespace, name, action).inc()


async def hold(ctx: Context, obj: dict[str, Any], error: str, now: datetime) -> None:
    """Unparseable status: InvalidStatus=True, nothing observed, nothing enforced."""
    meta = obj["metadata"]
    try:
        message = await status_guard.hold(ctx.kube, PLURAL, obj, "ParityCheck", error, now)
    except Conflict:
        ctx.watched.drop("ParityCheck", meta["namespace"], meta["name"])
        raise
    if message:
        kopf.event(cast(kopf.Body, obj), type="Warning", reason="InvalidStatus", message=message[:1000])


async def reconcile_once(ctx: Context, namespace: str, name: str) -> datetime | None:
    """One level-based pass; returns when to look again."""
    obj = await runtime.read(ctx, PLURAL, namespace, name)
    if obj is None:
        return None
    now = datetime.now(UTC)
    status, error = status_guard.parse_status(ParityCheckStatus, obj.get("status"))
    if status is None:
        await hold(ctx, obj, error or "status does not parse", now)
        return None
    spec, spec_errors = parse_spec(obj)
    calendar: Calendar | None = None
    if spec is not None and spec.market is not None:
        calendar, problem = await market_calendar(ctx.calendars, "spec.market", spec.market.calendar, None, now)
        if problem is not None:  # reported like a spec that does not parse: InvalidSpec, nothing runs
            spec, spec_errors = None, (problem,)
    problems = await notifier.secret_errors(ctx, namespace, spec.notify) if spec is not None else []
    problems += trust_errors(ctx, spec.prometheus, [], "spec.kpis") if spec is not None else []
    problems += await secret_errors(ctx, namespace, prometheus_refs(spec.prometheus)) if spec is not None else []
    if problems:  # held as an invalid spec: it does not act
        spec, spec_errors = None, tuple(problems)
    created = created_at(obj, now)
    measured = target = None
    if parity_run.wants_measurement(spec, status, created, now, calendar):
        assert spec is not None
        measured = await measure(ctx, namespace, spec, now)
    if spec is not None and (measured is not None or acts.pending(status.actions_taken)):
        target = await observe_target(ctx, namespace, spec)
    obs = parity_run.Observations(
        namespace,
        name,
        await identity(ctx),
        created,
        obj["metadata"].get("generation"),
        spec_errors,
        measured,
        target,
        calendar,
    )
    decision = parity_run.reconcile(spec, status, obs, now)
    new = decision.status
    new.conditions = status_guard.cleared(new.conditions, obs.generation, now)
    occurrences = notifications.parity_occurrences(spec, decision.events, namespace, name)
    new.notifications = notifications.outbox(spec.notify if spec else [], status.notifications, occurrences, now)
    if new.wire() != status.wire():
        await runtime.write_status(ctx, PLURAL, obj, new.wire())
    emit(obj, decision)
    if spec is not None:
        record_metrics(namespace, name, spec, decision)
    if measured is not None and new.last_run is not None:
        log.info("ParityCheck %s/%s run %d: %s", namespace, name, new.run_seq, new.last_run.level)
    await enforce(ctx, decision.effects)  # only after the status that records it is written
    return decision.wake_at


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The object is gone: its metric series go; the actions it took stay (lifting is a decision)."""
    ctx.watched.drop("ParityCheck", namespace, name)
    metrics.forget_object(namespace, name, *metrics.PARITY_FAMILIES)


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One loop per ParityCheck (until the lead's runtime calls reconcile_once directly)."""
    await daemons.run_loop(
        ctx, "ParityCheck", KIND, namespace, name, stopped, lambda: reconcile_once(ctx, namespace, name)
    )
