"""StrategyRollout observation: what the engine needs to decide, gathered with as few API calls as possible.

Deployments come from the watch cache (a GET only for one it has not delivered), routing ConfigMaps are
read once and handed on to the writer, gates are measured only when due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from strategy_rollouts.api import keyhash
from strategy_rollouts.api.placeholders import placeholder_values, substitute
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import webhook_gates
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import DeploymentObs, Observations
from strategy_rollouts.engine.rollout.world import desired_routing
from strategy_rollouts.engine.rollout.world import published as is_published
from strategy_rollouts.engine.types import ObservationPlan
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients import webhook as webhook_client
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates.measure import measure, measure_per_key
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.read import prometheus

KIND = "rollout"  # waker kind
# Waker kind: a Deployment's spec.replicas or status.readyReplicas changed (what a rollout observes).
DEPLOYMENT_COUNTS = "deployment-counts"


async def deployment(ctx: Context, namespace: str, name: str) -> DeploymentObs | None:
    """From the Deployment watch; a GET only for one the watch has not delivered (or that is missing)."""
    known = ctx.watched.deployment(namespace, name)
    if known is not None:
        return known
    info = await ctx.kube.deployment(namespace, name)
    return None if info is None else DeploymentObs(info.replicas, info.ready)


Routings = dict[tuple[str, str], routing_writer.Routing]  # (namespace, config map) -> as read


async def rank(ctx: Context, namespace: str, name: str, spec: StrategyRolloutSpec) -> dict[str, float] | None:
    """spec.routing.order.query: key -> rank value (one series per key, named by order.label); None when
    Prometheus did not answer (the start then holds: never a silent fallback to hash order)."""
    order = spec.routing.order
    assert order is not None and order.query is not None and order.label is not None
    conn = await ctx.connection(namespace, spec.prometheus, ("StrategyRollout", namespace, name))
    stage = spec.stages[0]
    values = placeholder_values(spec, stage.namespace or namespace, stage.name, "")
    answer = await prometheus.vector(conn, substitute(order.query, values), order.label)
    return answer.values if answer.outcome == "ok" else None


def adopted(document: dict[str, Any] | None, assignments: dict[str, str], universe: tuple[str, ...]) -> dict[str, str]:
    """What a routing.json the status has no record of lets apps trade: its named keys, or, segmented, each
    key of the universe by its segment (api/keyhash.py, as an app holding these keys reads it)."""
    if document is None or "segments" not in document:
        return assignments
    return keyhash.owners(document, universe)


async def keys_from(ctx: Context, namespace: str, spec: StrategyRolloutSpec) -> tuple[str, ...] | None:
    """spec.routing.keysFrom's keys, one per line (blank lines and surrounding spaces ignored); None when
    the ConfigMap or its key cannot be read (the engine then holds the rollout InvalidSpec)."""
    ref = spec.routing.keys_from
    assert ref is not None
    cm = await ctx.kube.config_map(namespace, ref.config_map_key_ref.name)  # missing: None; other errors raise
    text = ((cm.data if cm is not None else None) or {}).get(ref.config_map_key_ref.key)
    if text is None:
        return None
    return tuple(line.strip() for line in text.splitlines() if line.strip())


async def observe(
    ctx: Context,
    obj: dict[str, Any],
    spec: StrategyRolloutSpec,
    status: StrategyRolloutStatus,
    plan: ObservationPlan,
    webhooks: Mapping[str, webhook_client.Auth] | None = None,
) -> tuple[Observations, Routings]:
    """Exactly what the engine's plan asks for (engine/rollout/plan.py)."""
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    dep_keys = list(plan.deployments)
    ctx.wakers.watch(KIND, (ns, name), DEPLOYMENT_COUNTS, dep_keys)
    infos = await asyncio.gather(*(deployment(ctx, t, d) for t, d in dep_keys))
    deployments = {k: i for k, i in zip(dep_keys, infos, strict=True) if i is not None}
    cms = list(plan.routings)
    ctx.wakers.watch(KIND, (ns, name), routing_writer.WAKER_KIND, cms)
    reads = await asyncio.gather(*(routing_writer.read(ctx.kube, n, cm, ctx.watched) for n, cm in cms))
    routings: Routings = dict(zip(cms, reads, strict=True))
    recorded = {(t.namespace, t.config_map): t for t in status.targets}
    desired = {(r.namespace, r.config_map): r for r in desired_routing(spec, status)}
    published = {t.namespace: is_published(routings[k].document, spec, desired[k]) for k, t in recorded.items()}
    revisions = {t.namespace: routings[k].revision for k, t in recorded.items()}
    # A target status does not record yet: what its ConfigMap publishes already (adopted at the start).
    shadow_found, verdict = False, None
    for plural, (n, shadow_name) in plan.objects:
        ctx.wakers.watch(KIND, (ns, name), "shadowrun", [(n, shadow_name)])
        shadow = await runtime.read(ctx, plural, n, shadow_name)  # the watch cache
        if shadow is not None:
            shadow_found, verdict = True, (shadow.get("status") or {}).get("verdict")
    measurements: dict[str, Measurement] = {}
    per_key: dict[str, dict[str, Measurement]] = {}
    per_key_stable: dict[str, dict[str, float]] = {}
    due, due_per_key = plan.measure, plan.measure_per_key
    if due or due_per_key:
        conn = await ctx.connection(ns, spec.prometheus, ("StrategyRollout", ns, name))
        index = min(status.stage_index or 0, len(spec.stages) - 1)
        stage = spec.stages[index]
        values = placeholder_values(spec, stage.namespace or ns, stage.name, "")
        body = webhook_gates.payload(spec, status, ns, name)
        auth = webhooks or {}
        results, keyed = await asyncio.gather(
            asyncio.gather(
                *(
                    measure(conn, g, values, status.step_started_at)
                    if g.webhook is None
                    else webhook_client.ask(g, body, auth.get(g.name, webhook_client.Auth()))
                    for g in due
                )
            ),
            asyncio.gather(*(measure_per_key(conn, g, values) for g in due_per_key)),
        )
        measurements = {g.name: m for g, m in zip(due, results, strict=True)}
        per_key = {g.name: k for g, (k, _) in zip(due_per_key, keyed, strict=True)}
        per_key_stable = {g.name: s for g, (_, s) in zip(due_per_key, keyed, strict=True)}
        for gate, m in measurements.items():
            if m.value is not None:
                metrics.gate_value.labels(ns, name, gate).set(m.value)
    listed = await keys_from(ctx, ns, spec) if plan.keys_from else None
    universe = tuple(spec.routing.keys) or listed or ()
    unrecorded = [(n, r) for (n, cm), r in routings.items() if (n, cm) not in recorded]
    routed = {n: owned for n, r in unrecorded if (owned := adopted(r.document, r.assignments, universe))}
    ranks = await rank(ctx, ns, name, spec) if plan.rank else None
    obs = Observations(
        namespace=ns,
        name=name,
        generation=obj["metadata"].get("generation", 1),
        deployments=deployments,
        measurements=measurements,
        published=published,
        revisions=revisions,
        routed=routed,
        per_key=per_key,
        per_key_stable=per_key_stable,
        shadow_found=shadow_found,
        shadow_verdict=verdict,
        listed_keys=listed,
        ranks=ranks,
    )
    return obs, {k: routings[k] for k in recorded}
