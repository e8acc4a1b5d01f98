"""ParityCheck in the pipeline (operator/pipeline.py): measure, call `engine.parity_run.reconcile`, and
after the status write enforce what status records (routing ConfigMaps, the deployment's scale, requests to
the target rollout). Every effect derives from the status just written, so a crash anywhere leads
to the same end state on the next pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.placeholders import placeholder_values, substitute
from strategy_rollouts.engine import notifications, parity, parity_run
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine.types import ObservationPlan
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients.kube import Conflict
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.pipeline import KindAdapter, Pass
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.read import prometheus

PLURAL = "paritychecks"
KIND = "paritycheck"
LEVELS = ("Excellent", "Good", "Warning", "Critical", "Emergency", "Unknown")
log = logging.getLogger(__name__)


async def identity(ctx: Context) -> str:
    if ctx.identity is None:
        ctx.identity = await ctx.kube.who_am_i()
    return ctx.identity


def created_at(obj: dict[str, Any], now: datetime) -> datetime:
    text = obj["metadata"].get("creationTimestamp")
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else now
    except ValueError:
        return now


async def measure(ctx: Context, namespace: str, name: str, spec: ParityCheckSpec, now: datetime) -> parity_run.Measured:
    conn = await ctx.connection(namespace, spec.prometheus, ("ParityCheck", namespace, name))
    values = placeholder_values(spec, namespace)
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


async def enforce(ctx: Context, effects: acts.Effects, owner: dict[str, Any] | None = None) -> None:
    """Apply what the written status still needs; every effect is tried, the first failure re-raised.

    `owner`: the target rollout. Its routing ConfigMaps are written only as created for it (a missing
    one is created for it, one made for another rollout or none is refused: routing_writer.NotOwned)."""
    failures: list[Exception] = []
    for change in effects.routing:
        try:
            await routing_writer.update(
                ctx.kube, change.namespace, change.config_map, change.changes, owner=owner, cache=ctx.watched
            )
        except Exception as exc:  # the next pass derives the same change again
            failures.append(exc)
    for scale in effects.scales:
        try:
            await runtime.scale(ctx, scale.namespace, scale.deployment, scale.replicas)
        except Exception as exc:
            failures.append(exc)
    for out in effects.requests:
        try:
            await send_request(ctx, out)
        except Exception as exc:
            failures.append(exc)
    if failures:
        raise failures[0]


async def send_request(ctx: Context, out: acts.OutgoingRequest) -> None:
    """Add the request to the rollout's status.requests, conditional on the rollout as just read (the
    cache, else a GET): sent only if that version lists it neither pending nor handled, and only if
    nobody wrote the rollout since (409 Conflict: the cached body is dropped, the next pass re-reads).
    A late duplicate of an old leader's request therefore never lands after the rollout moved on."""
    obj = await runtime.read(ctx, "strategyrollouts", out.namespace, out.rollout)
    if obj is None:
        return  # gone: the next pass observes no target rollout and sends nothing
    seen = rollout_obs(obj)
    if out.id in seen.pending or out.id in seen.handled:
        return
    patch = {"requests": {out.id: out.request.wire()}}
    meta = obj["metadata"]
    try:
        written = await ctx.kube.merge_status(
            "strategyrollouts", out.namespace, out.rollout, patch, resource_version=meta["resourceVersion"]
        )
    except Conflict:
        ctx.watched.drop("StrategyRollout", out.namespace, out.rollout)
        raise
    if written:
        ctx.watched.offer(written)  # the next pass sees the id as sent: never sent twice


def record_metrics(namespace: str, name: str, spec: ParityCheckSpec, decision: parity_run.Decision) -> None:
    run = decision.status.last_run
    if run is not None and run.tracking_error_bps is not None:
        metrics.parity_tracking_error_bps.labels(namespace, name, spec.strategy).set(run.tracking_error_bps)
    for lvl in LEVELS:
        metrics.parity_level.labels(namespace, name, lvl).set(1 if run is not None and lvl == run.level else 0)
    for action in decision.applied:
        metrics.parity_actions_total.labels(namespace, name, action).inc()


@dataclass(frozen=True)
class Observed:
    obs: parity_run.Observations


ParityPass = Pass[ParityCheckSpec, ParityCheckStatus]


class ParityAdapter(KindAdapter[ParityCheckSpec, ParityCheckStatus, Observed, parity_run.Decision]):
    kind = "ParityCheck"
    plural = PLURAL
    waker = KIND
    spec_model = ParityCheckSpec
    status_model = ParityCheckStatus

    def plan(self, ctx: Context, p: ParityPass) -> ObservationPlan:
        spec = p.spec if p.valid else None
        return parity_run.plan(spec, p.status, p.namespace, created_at(p.obj, p.now), p.now, p.calendar)

    async def observe(self, ctx: Context, p: ParityPass, plan: ObservationPlan) -> Observed:
        spec = p.spec if p.valid else None
        created = created_at(p.obj, p.now)
        measured = target = None
        if plan.ranges and spec is not None:
            measured = await measure(ctx, p.namespace, p.name, spec, p.now)
        if plan.target and spec is not None:
            target = await observe_target(ctx, p.namespace, spec)
        return Observed(
            parity_run.Observations(
                p.namespace,
                p.name,
                await identity(ctx),
                created,
                p.obj["metadata"].get("generation"),
                tuple(p.errors),
                measured,
                target,
                p.calendar,
            )
        )

    def decide(self, p: ParityPass, observed: Observed) -> parity_run.Decision:
        return parity_run.reconcile(p.spec if p.valid else None, p.status, observed.obs, p.now)

    def occurrences(self, p: ParityPass, decision: parity_run.Decision) -> list[notifications.Occurrence]:
        return notifications.parity_occurrences(p.spec if p.valid else None, decision.events, p.namespace, p.name)

    async def enforce(self, ctx: Context, p: ParityPass, decision: parity_run.Decision, observed: Observed) -> None:
        new = decision.status
        if observed.obs.measured is not None and new.last_run is not None:
            log.info("ParityCheck %s/%s run %d: %s", p.namespace, p.name, new.run_seq, new.last_run.level)
        effects, owner = decision.effects, None
        target = (p.obj.get("spec") or {}).get("target") or {}
        if target.get("rollout") and effects.routing:
            owner = await runtime.read(ctx, "strategyrollouts", p.namespace, str(target["rollout"]))
            if owner is None:  # gone since observed: its ConfigMaps go with it; never create one for nobody
                effects = dataclasses.replace(effects, routing=())
        await enforce(ctx, effects, owner)

    def record_metrics(self, p: ParityPass, decision: parity_run.Decision, observed: Observed) -> None:
        if p.spec is not None:
            record_metrics(p.namespace, p.name, p.spec, decision)

    def forget(self, ctx: Context, namespace: str, name: str) -> None:
        forget(ctx, namespace, name)


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The object is gone: its metric series go; the actions it took stay (lifting is a decision)."""
    ctx.watched.drop("ParityCheck", namespace, name)
    ctx.prometheus.forget(("ParityCheck", namespace, name))
    metrics.forget_object(namespace, name, *metrics.PARITY_FAMILIES)


ADAPTER = ParityAdapter()
