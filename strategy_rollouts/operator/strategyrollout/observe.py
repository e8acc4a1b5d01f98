"""StrategyRollout observation: what the engine needs to decide, gathered with as few API calls as possible.

Deployments come from the watch cache (a GET only for one it has not delivered), routing ConfigMaps are
read once and handed on to the writer, gates are measured only when due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.placeholders import placeholder_values, substitute
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import webhook_gates
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import DeploymentObs, Observations, due_gates, target_namespaces
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients import webhook as webhook_client
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import judge as judge_measure
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.read import prometheus

KIND = "rollout"  # waker kind
# Waker kind: a Deployment's spec.replicas or status.readyReplicas changed (what a rollout observes).
DEPLOYMENT_COUNTS = "deployment-counts"


async def measure(
    conn: prometheus.Connection, gate: GateSpec, values: dict[str, str], step_started: datetime | None = None
) -> Measurement:
    """One gate's observation; `step_started`: where a sequential judge's samples begin."""
    values = {**values, "interval": gate.interval}
    if gate.judge is not None:
        return await judge_measure.populations(conn, gate.judge, values, step_started)
    assert gate.query is not None  # threshold or compare (validated)
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
    ctx: Context,
    obj: dict[str, Any],
    spec: StrategyRolloutSpec,
    status: StrategyRolloutStatus,
    webhooks: Mapping[str, webhook_client.Auth] | None = None,
) -> tuple[Observations, Routings]:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    now = datetime.now(UTC)
    targets = target_namespaces(spec, ns)
    dep_keys = [(t, d) for t in targets for d in (spec.stable.deployment, spec.canary.deployment)]
    ctx.wakers.watch(KIND, (ns, name), DEPLOYMENT_COUNTS, dep_keys)
    infos = await asyncio.gather(*(deployment(ctx, t, d) for t, d in dep_keys))
    deployments = {k: i for k, i in zip(dep_keys, infos, strict=True) if i is not None}
    cms = [(t.namespace, t.config_map) for t in status.targets]
    ctx.wakers.watch(KIND, (ns, name), routing_writer.WAKER_KIND, cms)
    routings = await asyncio.gather(*(routing_writer.read(ctx.kube, n, cm, ctx.watched) for n, cm in cms))
    routed = await unrecorded_routing(ctx, spec, name, targets, status)
    published = {
        t.namespace: r.document is not None and r.assignments == t.assignments
        for t, r in zip(status.targets, routings, strict=True)
    }
    revisions = {t.namespace: r.revision for t, r in zip(status.targets, routings, strict=True)}
    shadow_found, verdict = False, None
    if spec.shadow_run:
        ctx.wakers.watch(KIND, (ns, name), "shadowrun", [(ns, spec.shadow_run)])
        shadow = await runtime.read(ctx, "shadowruns", ns, spec.shadow_run)  # the watch cache
        if shadow is not None:
            shadow_found, verdict = True, (shadow.get("status") or {}).get("verdict")
    measurements: dict[str, Measurement] = {}
    # A stop, abort or pause waits for no gate: the pass that handles it does no gate I/O at all.
    due = [] if urgent(status) else due_gates(spec, status, now)
    if due:
        conn = await ctx.connection(ns, spec.prometheus)
        index = min(status.stage_index or 0, len(spec.stages) - 1)
        stage = spec.stages[index]
        values = placeholder_values(spec, stage.namespace or ns, stage.name, "")
        body = webhook_gates.payload(spec, status, ns, name)
        auth = webhooks or {}
        results = await asyncio.gather(
            *(
                measure(conn, g, values, status.step_started_at)
                if g.webhook is None
                else webhook_client.ask(g, body, auth.get(g.name, webhook_client.Auth()))
                for g in due
            )
        )
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


URGENT = frozenset({"stopTrading", "abort", "pause"})


def urgent(status: StrategyRolloutStatus) -> bool:
    """A pending request that must not wait behind a slow or hung gate endpoint."""
    return any(r.action in URGENT for r in status.requests.values())


async def unrecorded_routing(
    ctx: Context, spec: StrategyRolloutSpec, name: str, targets: list[str], status: StrategyRolloutStatus
) -> dict[str, dict[str, str]]:
    """What the ConfigMaps of targets without a status record publish (a read only in that case)."""
    recorded = {t.namespace for t in status.targets}
    missing = [ns for ns in targets if ns not in recorded]
    config_map = spec.routing.config_map or f"{name}-routing"
    reads = await asyncio.gather(*(routing_writer.read(ctx.kube, ns, config_map, ctx.watched) for ns in missing))
    return {ns: r.assignments for ns, r in zip(missing, reads, strict=True) if r.assignments}
