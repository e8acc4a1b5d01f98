"""The ShadowRun's world: its shadow Deployment, egress NetworkPolicy and report ConfigMap.

`look` reads what a pass needs; `enforce` makes it match a decision, writing only differences.
Order matters for safety: the policy is in place before a scale-up, and removed only after the
scale-down, so a shadow pod never runs without its egress limits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from strategy_rollouts.engine.networkpolicy import policy_name, policy_shape
from strategy_rollouts.engine.shadow_run import ABSENT, Decision, Report, ShadowDeployment
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.kube import classify

LABELS = {"app.kubernetes.io/managed-by": "strategy-rollouts"}


@dataclass(frozen=True)
class World:
    deployment: ShadowDeployment | None
    policy: client.V1NetworkPolicy | None
    report: client.V1ConfigMap | None


def shadow_deployment(dep: client.V1Deployment) -> ShadowDeployment:
    env: dict[str, str] = {}
    pod = dep.spec.template.spec
    for container in (pod.containers if pod is not None else None) or []:
        for var in container.env or []:
            if var.value is not None:
                env[var.name] = var.value
    labels = (dep.spec.selector.match_labels or {}) if dep.spec.selector else {}
    replicas = dep.spec.replicas if dep.spec.replicas is not None else 1
    return ShadowDeployment(replicas, env, dict(labels))


async def look(ctx: Context, namespace: str, name: str, deployment: str | None, report: str | None) -> World:
    kube = ctx.kube
    dep = await kube.maybe(kube.apps.read_namespaced_deployment, deployment, namespace) if deployment else None
    policy = await kube.maybe(kube.networking.read_namespaced_network_policy, policy_name(name), namespace)
    cm = await kube.config_map(namespace, report) if report else None
    return World(shadow_deployment(dep) if dep is not None else None, policy, cm)


async def enforce(ctx: Context, owner: Mapping[str, Any], decision: Decision, world: World) -> None:
    ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    if decision.report is not None:
        await write_report(ctx, owner, decision.report, world.report)
    if isinstance(decision.policy, dict):
        await ensure_policy(ctx, decision.policy, world.policy)
    dep = world.deployment
    if decision.deployment and decision.scale is not None and dep is not None and dep.replicas != decision.scale:
        await ctx.kube.scale(ns, decision.deployment, decision.scale)  # never creates a workload we do not own
    if decision.policy == ABSENT and world.policy is not None:
        await delete_policy(ctx, ns, policy_name(name))


async def write_report(
    ctx: Context, owner: Mapping[str, Any], report: Report, current: client.V1ConfigMap | None
) -> None:
    if current is not None and (current.data or {}) == report.data:
        return
    ns = owner["metadata"]["namespace"]
    labels = {**LABELS, "strategyrollouts.io/shadowrun": owner["metadata"]["name"]}
    version = current.metadata.resource_version if current is not None and current.metadata else None
    await ctx.kube.write_config_map(
        ns, report.name, report.data, labels=labels, owner=dict(owner), resource_version=version
    )


async def ensure_policy(ctx: Context, manifest: dict[str, Any], existing: client.V1NetworkPolicy | None) -> None:
    api = ctx.kube.networking
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        if existing is None:
            await ctx.kube.call(api.create_namespaced_network_policy, ns, manifest)
            return
        current = ctx.kube.api.sanitize_for_serialization(existing.spec)  # type: ignore[no-untyped-call]
        if policy_shape(current) != policy_shape(manifest["spec"]):
            version = existing.metadata.resource_version if existing.metadata else None
            body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
            await ctx.kube.call(api.replace_namespaced_network_policy, name, ns, body)
    except client.exceptions.ApiException as exc:
        raise classify(exc, f"networkpolicy {ns}/{name}") from exc


async def delete_policy(ctx: Context, namespace: str, name: str) -> None:
    await ctx.kube.maybe(ctx.kube.networking.delete_namespaced_network_policy, name, namespace)
