"""Resolve a spec's `templateRef` gates before the engine runs: templates from the watch, else a GET.

The object watches the templates it uses (Wakers), so an edited template applies from the next pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine.gate_templates import Resolved, Template, TemplateKey, key_of, resolve, template_of
from strategy_rollouts.operator.context import Context, ObjectKey
from strategy_rollouts.operator.gates.cache import WAKER

PLURALS = {"GateTemplate": "gatetemplates", "ClusterGateTemplate": "clustergatetemplates"}


async def lookup(ctx: Context, key: TemplateKey) -> Template | None:
    held = ctx.gate_templates.get(key)
    if held is not None:
        return held
    kind, namespace, name = key
    if kind == "GateTemplate":
        body = await ctx.kube.maybe(
            ctx.kube.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, PLURALS[kind], name
        )
    else:
        body = await ctx.kube.maybe(ctx.kube.custom.get_cluster_custom_object, GROUP, VERSION, PLURALS[kind], name)
    if not isinstance(body, dict):
        return None
    ctx.gate_templates.offer(kind, body)
    return template_of(kind, body)


async def resolved(ctx: Context, watcher_kind: str, watcher: ObjectKey, field: str, gates: list[GateSpec]) -> Resolved:
    namespace = watcher[0]
    keys = [k for k in (key_of(g, namespace) for g in gates) if k is not None]
    if not keys:
        return Resolved(gates=list(gates))
    for kind, ns, name in keys:
        ctx.wakers.watch(watcher_kind, watcher, WAKER[kind], [(ns, name)])
    templates = {k: await lookup(ctx, k) for k in dict.fromkeys(keys)}
    return resolve(field, gates, namespace, templates)


def settled(spec: StrategyRolloutSpec, status: StrategyRolloutStatus) -> bool:
    """A finished run of the spec's versions with no pending request: it measures no gate."""
    return (
        status.phase in ("Succeeded", "RolledBack")
        and status.canary_version == spec.canary.version
        and status.stable_version == spec.stable.version
        and not status.requests
    )


def changed(ctx: Context, kind: str, event: Mapping[str, Any]) -> None:
    """A template watch event: keep (or drop) it and wake every object that uses it."""
    body = event.get("object") or {}
    key = ctx.gate_templates.offer(kind, body)
    if event.get("type") == "DELETED":
        ctx.gate_templates.drop(key)
    ctx.wakers.wake(WAKER[kind], (key[1], key[2]))
