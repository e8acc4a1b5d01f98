"""StrategyRollout reconcile: read, observe, call the pure engine, write status once, enforce the world."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from strategy_rollouts.api.common import GateSpec
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.placeholders import substitute
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import (
    Decision,
    DeploymentObs,
    Observations,
    due_gates,
    invalid,
    reconcile,
    routing_document,
    target_namespaces,
)
from strategy_rollouts.operator import daemons, metrics, prometheus, routing_writer, runtime, status_guard
from strategy_rollouts.operator.context import Context

PLURAL = "strategyrollouts"
KIND = "rollout"
# Waker kind: a Deployment's spec.replicas or status.readyReplicas changed (what a rollout observes).
DEPLOYMENT_COUNTS = "deployment-counts"
log = logging.getLogger(__name__)


def placeholder_values(spec: StrategyRolloutSpec, namespace: str, stage: str | None, interval: str) -> dict[str, str]:
    return {
        "strategy": spec.strategy,
        "namespace": namespace,
        "stage": stage or "",
        "stable.version": spec.stable.version,
        "canary.version": spec.canary.version,
        "stable.deployment": spec.stable.deployment,
        "canary.deployment": spec.canary.deployment,
        "interval": interval,
    }


async def measure(conn: prometheus.Connection, gate: GateSpec, values: dict[str, str]) -> Measurement:
    values = {**values, "interval": gate.interval}
    query = substitute(gate.query, values)
    if gate.baseline is not None:
        return await prometheus.compare(conn, query, substitute(gate.baseline, values))
    return await prometheus.instant(conn, query)


async def deployment(ctx: Context, namespace: str, name: str) -> DeploymentObs | None:
    """From the Deployment watch; a GET only for one the watch has not delivered (or that is missing)."""
    known = ctx.watched.deployment(namespace, name)
    if known is not None:
        return known
    info = await ctx.kube.deployment(namespace, name)
    return None if info is None else DeploymentObs(info.replicas, info.ready)


Routings = dict[tuple[str, str], routing_writer.Routing]  # (namespace, config map) -> as read


async def observe(
    ctx: Context, obj: dict[str, Any], spec: StrategyRolloutSpec, status: StrategyRolloutStatus
) -> tuple[Observations, Routings]:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    now = datetime.now(UTC)
    targets = target_namespaces(spec, ns)
    dep_keys = [(t, d) for t in targets for d in (spec.stable.deployment, spec.canary.deployment)]
    ctx.wakers.watch(KIND, (ns, name), DEPLOYMENT_COUNTS, dep_keys)
    infos = await asyncio.gather(*(deployment(ctx, t, d) for t, d in dep_keys))
    deployments = {k: i for k, i in zip(dep_keys, infos, strict=True) if i is not None}
    routings = await asyncio.gather(*(routing_writer.read(ctx.kube, t.namespace, t.config_map) for t in status.targets))
    routed = await unrecorded_routing(ctx, spec, name, targets, status)
    published = {
        t.namespace: r.document is not None and r.assignments == t.assignments
        for t, r in zip(status.targets, routings, strict=True)
    }
    revisions = {t.namespace: r.revision for t, r in zip(status.targets, routings, strict=True)}
    shadow_found, verdict = False, None
    if spec.shadow_run:
        ctx.wakers.watch(KIND, (ns, name), "shadowrun", [(ns, spec.shadow_run)])
        shadow = await ctx.kube.get("shadowruns", ns, spec.shadow_run)
        if shadow is not None:
            shadow_found, verdict = True, (shadow.get("status") or {}).get("verdict")
    measurements: dict[str, Measurement] = {}
    due = due_gates(spec, status, now)
    if due:
        conn = await ctx.connection(ns, spec.prometheus)
        index = min(status.stage_index or 0, len(spec.stages) - 1)
        stage = spec.stages[index]
        values = placeholder_values(spec, stage.namespace or ns, stage.name, "")
        results = await asyncio.gather(*(measure(conn, g, values) for g in due))
        measurements = {g.name: m for g, m in zip(due, results, strict=True)}
        for gate, m in measurements.items():
            if m.value is not None:
                metrics.gate_value.labels(ns, name, gate).set(m.value)
    obs = Observations(
        namespace=ns,
        name=name,
        generation=obj["metadata"].get("generation", 1),
        deployments=deployments,
        measurements=measurements,
        published=published,
        revisions=revisions,
        routed=routed,
        shadow_found=shadow_found,
        shadow_verdict=verdict,
    )
    return obs, {(t.namespace, t.config_map): r for t, r in zip(status.targets, routings, strict=True)}


async def unrecorded_routing(
    ctx: Context, spec: StrategyRolloutSpec, name: str, targets: list[str], status: StrategyRolloutStatus
) -> dict[str, dict[str, str]]:
    """What the ConfigMaps of targets without a status record publish (a read only in that case)."""
    recorded = {t.namespace for t in status.targets}
    missing = [ns for ns in targets if ns not in recorded]
    config_map = spec.routing.config_map or f"{name}-routing"
    reads = await asyncio.gather(*(routing_writer.read(ctx.kube, ns, config_map) for ns in missing))
    return {ns: r.assignments for ns, r in zip(missing, reads, strict=True) if r.assignments}


def parse(
    obj: dict[str, Any],
) -> tuple[StrategyRolloutSpec | None, StrategyRolloutStatus | None, str | None, str | None]:
    """(spec, status, spec error, status error). What does not parse is reported, never acted on."""
    status, status_error = status_guard.parse_status(StrategyRolloutStatus, obj.get("status"))
    try:
        return StrategyRolloutSpec.model_validate(obj.get("spec") or {}), status, None, status_error
    except ValidationError as exc:
        return None, status, validation_message(exc), status_error


async def enforce(
    ctx: Context,
    obj: dict[str, Any],
    spec: StrategyRolloutSpec,
    decision: Decision,
    obs: Observations,
    routings: Routings,
) -> None:
    """Make the world match status: routing ConfigMaps and replica counts, writing only differences."""
    for payload in decision.routing:
        doc = routing_document(spec, payload, 0, 1.0, True)
        changes = {k: doc[k] for k in ("strategy", "stableVersion", "canaryVersion", "weight", "assignments")}
        if payload.entries_enabled is not None:
            changes["entriesEnabled"] = payload.entries_enabled
        read = routings.get((payload.namespace, payload.config_map))
        await routing_writer.update(ctx.kube, payload.namespace, payload.config_map, changes, owner=obj, current=read)
    for scale in decision.scales:
        current = obs.deployments.get((scale.namespace, scale.deployment))
        if current is None:
            continue  # reported through readiness; never create a workload we do not own
        if current.replicas != scale.replicas:
            version = await ctx.kube.scale(scale.namespace, scale.deployment, scale.replicas)
            ctx.watched.scaled(scale.namespace, scale.deployment, scale.replicas, version)


def record_metrics(
    obj: dict[str, Any], spec: StrategyRolloutSpec, old: StrategyRolloutStatus, new: StrategyRolloutStatus
) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    metrics.set_rollout_phase(ns, name, spec.strategy, new.phase)
    metrics.canary_traffic_percent.labels(ns, name, spec.strategy, spec.canary.version).set(new.canary_weight or 0)
    if new.phase != old.phase:
        if new.phase == "Succeeded":
            metrics.version_activations_total.labels(spec.strategy, spec.canary.version).inc()
        if new.phase == "RolledBack":
            metrics.rollbacks_total.labels(spec.strategy, new.reason or "").inc()


async def reconcile_once(ctx: Context, namespace: str, name: str) -> datetime | None:
    """One level-based pass. Returns when to look again (None: only on an event)."""
    obj = await runtime.read(ctx, PLURAL, namespace, name)
    if obj is None:
        return None
    spec, persisted, error, status_error = parse(obj)
    now = datetime.now(UTC)
    if persisted is None:
        # Fail closed: no scale, no routing change until the status parses (it is never read as empty).
        message = await status_guard.hold(ctx.kube, PLURAL, obj, "StrategyRollout", status_error or "", now)
        if message:
            kopf.event(cast(kopf.Body, obj), type="Warning", reason="InvalidStatus", message=message[:1000])
        return None
    status = working_status(ctx, obj, persisted)
    if spec is None:
        decision = invalid(status, [error or "spec does not parse"], obj["metadata"].get("generation", 1), now)
        await write_status(ctx, obj, persisted, decision)
        return None
    obs, routings = await observe(ctx, obj, spec, status)
    decision = reconcile(spec, status, obs, datetime.now(UTC))
    decision.status.conditions = status_guard.cleared(decision.status.conditions, obs.generation, now)
    await write_status(ctx, obj, persisted, decision)
    # Only what the status now records is enforced (the write above succeeded, or we did not get here).
    await enforce(ctx, obj, spec, decision, obs, routings)
    record_metrics(obj, spec, status, decision.status)
    for gate in decision.status.gates:
        if gate.name in obs.measurements:
            metrics.gate_evaluations_total.labels("StrategyRollout", gate.name, gate.result or "").inc()
    return decision.wake_at


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The rollout is gone: drop what memory holds about it."""
    ctx.rollouts.forget((namespace, name))
    metrics.forget_object(namespace, name, *metrics.ROLLOUT_FAMILIES)


def working_status(ctx: Context, obj: dict[str, Any], persisted: StrategyRolloutStatus) -> StrategyRolloutStatus:
    """Our in-memory status if nobody wrote the object since we decided on it, else what it says.

    After a restart (or anyone's write) the persisted gate evaluations are the memory: older
    evaluations are simply due again, so missing data still never promotes.
    """
    meta = obj["metadata"]
    working = ctx.rollouts.working.get((meta["namespace"], meta["name"]))
    if working is not None and working[0] == meta.get("resourceVersion"):
        return cast(StrategyRolloutStatus, working[1])
    return persisted


def is_own_write(ctx: Context, namespace: str, name: str, body: Mapping[str, Any]) -> bool:
    """True for the watch event our own status write caused (same generation, the status we wrote)."""
    own = ctx.rollouts.own_writes.get((namespace, name))
    if own is None:
        return False
    generation = (body.get("metadata") or {}).get("generation")
    return own == (generation, dict(body.get("status") or {}))


_VOLATILE_GATE_FIELDS = ("value", "baseline", "evaluatedAt", "message")


def _settled_view(wire: dict[str, Any]) -> dict[str, Any]:
    """Status without what changes on every gate evaluation (values, clocks, messages)."""
    view = dict(wire)
    view["gates"] = [{k: v for k, v in g.items() if k not in _VOLATILE_GATE_FIELDS} for g in wire.get("gates", [])]
    if "riskBudget" in view:
        view["riskBudget"] = {k: v for k, v in view["riskBudget"].items() if k != "usedPercent"}
    return view


def must_persist(old: dict[str, Any], new: dict[str, Any], refresh_s: float) -> bool:
    """Write when anything but a gate's latest value changed, or the persisted values are older than
    `refresh_s`. At N = 1,000 rollouts, writing every evaluation was half the operator's API traffic."""
    if old == new:
        return False
    if _settled_view(old) != _settled_view(new):
        return True
    before = {g["name"]: g.get("evaluatedAt") for g in old.get("gates", [])}
    for gate in new.get("gates", []):
        then, now = before.get(gate["name"]), gate.get("evaluatedAt")
        if now is not None and (then is None or _seconds_between(then, now) >= refresh_s):
            return True
    return False


def _seconds_between(earlier: str, later: str) -> float:
    return (datetime.fromisoformat(later) - datetime.fromisoformat(earlier)).total_seconds()


async def write_status(ctx: Context, obj: dict[str, Any], persisted: StrategyRolloutStatus, decision: Decision) -> None:
    meta = obj["metadata"]
    key = (meta["namespace"], meta["name"])
    new = decision.status.wire()
    if must_persist(persisted.wire(), new, ctx.settings.gate_status_refresh_s):
        # Recorded before the write: its watch event can arrive before the response does.
        ctx.rollouts.own_writes[key] = (meta.get("generation"), new)
        written = await runtime.write_status(ctx, PLURAL, obj, new)
        ctx.rollouts.working[key] = ((written.get("metadata") or {}).get("resourceVersion", ""), decision.status)
    else:
        ctx.rollouts.working[key] = (meta.get("resourceVersion", ""), decision.status)
    for event in decision.events:
        kopf.event(cast(kopf.Body, obj), type=event.type, reason=event.reason, message=event.message[:1000])


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One long-lived loop per rollout: reconcile, then sleep until the engine's next due time or an event."""
    await daemons.run_loop(
        ctx, "StrategyRollout", KIND, namespace, name, stopped, lambda: reconcile_once(ctx, namespace, name)
    )
