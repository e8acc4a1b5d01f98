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
from strategy_rollouts.operator.clients.kube import Conflict, classify
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import objects as runtime

LABELS = {"app.kubernetes.io/managed-by": "strategy-rollouts"}


@dataclass(frozen=True)
class World:
    deployment: ShadowDeployment | None
    policy: dict[str, Any] | None  # JSON body
    report: client.V1ConfigMap | None


async def _deployment(ctx: Context, namespace: str, name: str) -> ShadowDeployment | None:
    """From the Deployment watch (shadow_cache); a GET the first time, or for one the watch has not delivered."""
    held = ctx.shadow_cache.deployment(namespace, name)
    if held is not None:
        return held
    dep = await ctx.kube.maybe(ctx.kube.apps.read_namespaced_deployment, name, namespace)
    if dep is None:
        return None
    ctx.shadow_cache.offer_deployment(ctx.kube.body(dep), wanted=True)  # the watch keeps it fresh from now on
    return ctx.shadow_cache.deployment(namespace, name)


async def _policy(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    """From the NetworkPolicy watch, complete once listed (shadow_cache); else a GET."""
    if ctx.shadow_cache.policies_watched:
        return ctx.shadow_cache.policy(namespace, name)
    got = await ctx.kube.maybe(ctx.kube.networking.read_namespaced_network_policy, name, namespace)
    return None if got is None else ctx.kube.body(got)


async def look(ctx: Context, namespace: str, name: str, deployment: str | None, report: str | None) -> World:
    dep = await _deployment(ctx, namespace, deployment) if deployment else None
    policy = await _policy(ctx, namespace, policy_name(name))
    cm = await ctx.kube.config_map(namespace, report) if report else None
    return World(dep, policy, cm)


async def enforce(ctx: Context, owner: Mapping[str, Any], decision: Decision, world: World) -> None:
    ns, name = owner["metadata"]["namespace"], owner["metadata"]["name"]
    if decision.report is not None:
        await write_report(ctx, owner, decision.report, world.report)
    if isinstance(decision.policy, dict):
        await ensure_policy(ctx, decision.policy, world.policy)
    dep = world.deployment
    if decision.deployment and decision.scale is not None and dep is not None and dep.replicas != decision.scale:
        # never creates a workload we do not own; conditional on the version the watch holds
        await runtime.scale(ctx, ns, decision.deployment, decision.scale)
    if decision.policy == ABSENT and world.policy is not None:
        await delete_policy(ctx, ns, policy_name(name), world.policy)


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


async def ensure_policy(ctx: Context, manifest: dict[str, Any], existing: dict[str, Any] | None) -> None:
    api = ctx.kube.networking
    ns, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
    try:
        if existing is None:
            made = await ctx.kube.call(api.create_namespaced_network_policy, ns, manifest)
            ctx.shadow_cache.offer_policy(ctx.kube.body(made))  # the next pass sees it before its watch echo
            return
        if policy_shape(existing.get("spec") or {}) != policy_shape(manifest["spec"]):
            version = (existing.get("metadata") or {}).get("resourceVersion")
            body = {**manifest, "metadata": {**manifest["metadata"], "resourceVersion": version}}
            made = await ctx.kube.call(api.replace_namespaced_network_policy, name, ns, body)
            ctx.shadow_cache.offer_policy(ctx.kube.body(made))
    except client.exceptions.ApiException as exc:
        raise classify(exc, f"networkpolicy {ns}/{name}") from exc


async def delete_policy(ctx: Context, namespace: str, name: str, existing: dict[str, Any] | None = None) -> None:
    """Delete the policy as read (`existing`, else the watch's or a GET's copy): its resourceVersion
    is the delete's precondition, so one put back since (a new run) is never removed by a late delete."""
    if existing is None:
        existing = await _policy(ctx, namespace, name)
    if existing is not None:
        version = (existing.get("metadata") or {}).get("resourceVersion")
        api = ctx.kube.networking
        try:
            await ctx.kube.delete(api.delete_namespaced_network_policy, namespace, name, version)
        except Conflict:
            ctx.shadow_cache.drop_policy(namespace, name)
            raise
    ctx.shadow_cache.drop_policy(namespace, name)
