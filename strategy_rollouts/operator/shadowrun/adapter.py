"""ShadowRun in the pipeline (operator/pipeline.py): observe, call `engine.shadow_run.reconcile`, and
after the status write make the world match what status records (shadow replicas, NetworkPolicy, report).

Every side effect follows the status as written: a crash between the write and the scale is undone
by the next pass, which enforces the recorded end state again (a Completed run's shadow stays at 0
with no NetworkPolicy, even if someone scales it up). A status the engine cannot act on is held with
InvalidStatus=True and nothing is touched until it parses.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.common import SecretKeyRef
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine import notifications, shadow_run
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.networkpolicy import policy_name
from strategy_rollouts.engine.shadow_run import Decision, Observations
from strategy_rollouts.engine.types import ObservationPlan
from strategy_rollouts.operator.clients.kube import KINDS
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.pipeline import KindAdapter, Pass
from strategy_rollouts.operator.runtime import metrics, status_guard
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.operator.shadowrun import cache as shadow_cache
from strategy_rollouts.operator.shadowrun import observe as shadow_measure
from strategy_rollouts.operator.shadowrun import world as shadow_world

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


@dataclass(frozen=True)
class Observed:
    obs: Observations
    world: shadow_world.World


ShadowPass = Pass[ShadowRunSpec, ShadowRunStatus]


def plan(ctx: Context, p: ShadowPass) -> ObservationPlan:
    """The engine's plan; decision reads throttled to every READ_EVERY_S / 2 per run (process memory)."""
    last = ctx.shadow.last_read.get((p.namespace, p.name), float("-inf"))
    may_read = time.monotonic() - last >= shadow_run.READ_EVERY_S / 2
    return shadow_run.plan(p.spec if p.valid else None, p.status, p.namespace, p.now, may_read, p.calendar)


async def observe(
    ctx: Context,
    obj: dict[str, Any],
    spec: ShadowRunSpec | None,
    spec_error: str | None,
    status: ShadowRunStatus,
    plan: ObservationPlan,
    now: datetime,
    calendar: Calendar | None = None,
) -> Observed:
    """Exactly what the engine's plan asks for, as plain data; `now` is the pass's one clock reading."""
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    deployment = plan.deployments[0][1] if plan.deployments else None
    if deployment:
        ctx.wakers.watch(KIND, (ns, name), "deployment", list(plan.deployments))
    ctx.wakers.watch(KIND, (ns, name), shadow_cache.POLICY_WAKER, [(ns, policy_name(name))])
    report = status.report if status.phase == "Completed" else None
    world = await shadow_world.look(ctx, ns, name, deployment, report)
    if plan.streams is not None:
        ctx.shadow.last_read[(ns, name)] = time.monotonic()
    live, shadow = await shadow_measure.streams(ctx, ns, plan)
    for read in (live, shadow):
        for why in read.examples if read else ():
            log.warning("ShadowRun %s/%s: malformed decision %s", ns, name, why)
    kpis = await shadow_measure.kpis(ctx, ns, name, spec, plan, status.started_at) if spec is not None else {}
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
    if plan.latency and spec is not None and started is not None:
        obs = replace(obs, latency=await shadow_measure.latency(ctx, ns, name, spec, started, now))
    return Observed(obs, world)


class ShadowAdapter(KindAdapter[ShadowRunSpec, ShadowRunStatus, Observed, Decision]):
    kind = "ShadowRun"
    plural = PLURAL
    waker = KIND
    spec_model = ShadowRunSpec
    status_model = ShadowRunStatus
    gates_field = "spec.kpis"
    status_gates_field = "kpis"
    # A ShadowRun being deleted is given back by on_delete: no pass may scale it up again.
    skip_when_deleting = True

    def parse_status(self, obj: Mapping[str, Any]) -> tuple[ShadowRunStatus | None, str | None]:
        return parse_status(obj)

    def gates(self, spec: ShadowRunSpec) -> list[GateSpec]:
        return list(spec.kpis)

    def with_gates(self, spec: ShadowRunSpec, gates: list[GateSpec]) -> ShadowRunSpec:
        return spec.model_copy(update={"kpis": gates})

    def secret_refs(self, spec: ShadowRunSpec) -> list[tuple[str, SecretKeyRef | None]]:
        redis = spec.decisions.source.redis.address_secret_ref if spec.decisions else None
        return [*super().secret_refs(spec), ("spec.decisions.source.redis.addressSecretRef", redis)]

    def plan(self, ctx: Context, p: ShadowPass) -> ObservationPlan:
        return plan(ctx, p)

    async def observe(self, ctx: Context, p: ShadowPass, plan: ObservationPlan) -> Observed:
        # An invalid spec is still observed as None: a started run keeps its world as status records it.
        spec = p.spec if p.valid else None
        error = None if p.valid else "; ".join(p.errors)
        return await observe(ctx, p.obj, spec, error, p.status, plan, p.now, p.calendar)

    def decide(self, p: ShadowPass, observed: Observed) -> Decision:
        return shadow_run.reconcile(p.spec if p.valid else None, p.status, observed.obs, p.now)

    def measured(self, observed: Observed) -> Collection[str]:
        return observed.obs.kpis.keys()

    def occurrences(self, p: ShadowPass, decision: Decision) -> list[notifications.Occurrence]:
        spec = p.spec if p.valid else None
        return notifications.shadow_occurrences(spec, p.status, decision.status, p.namespace, p.name)

    async def enforce(self, ctx: Context, p: ShadowPass, decision: Decision, observed: Observed) -> None:
        await shadow_world.enforce(ctx, observed.obs.owner, decision, observed.world)
        if decision.status.phase != p.persisted.phase:
            log.info("ShadowRun %s/%s: %s", p.namespace, p.name, decision.status.message)

    def record_metrics(self, p: ShadowPass, decision: Decision, observed: Observed) -> None:
        record_metrics(p.namespace, p.name, decision.status)

    def forget(self, ctx: Context, namespace: str, name: str) -> None:
        forget(ctx, namespace, name)


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
    ctx.prometheus.forget(("ShadowRun", namespace, name))
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
            version = dep.metadata.resource_version if dep.metadata is not None else None
            await runtime.scale(ctx, ns, deployment, 0, version)  # conditional on the Deployment as read
    await shadow_world.delete_policy(ctx, ns, policy_name(name))
    forget(ctx, ns, name)


async def close(ctx: Context) -> None:
    """Operator shutdown: close the Redis connection pools of the decision sources."""
    await ctx.shadow.redis.close()


ADAPTER = ShadowAdapter()
