"""What every kind's adapter does the same way: read its object from the watch cache, write its status,
scale a Deployment.

Bodies come from the watch (or the response to our own last write), newest resourceVersion wins;
a GET only when neither has delivered the object. Status writes are guarded by the resourceVersion
the decision was computed from, scales by the Deployment's as the watch holds it: a Conflict drops
the cached entry so the next pass reads it fresh.
"""

from __future__ import annotations

from typing import Any

from strategy_rollouts.operator.clients.kube import KINDS, Conflict
from strategy_rollouts.operator.context import Context


async def read(ctx: Context, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
    """The object as its watch (or our last write) delivered it; a GET only when neither has."""
    kind = KINDS[plural]
    obj = ctx.watched.body(kind, namespace, name)
    if obj is None:
        obj = await ctx.kube.get(plural, namespace, name)
        if obj is not None:
            ctx.watched.offer(obj)
    return obj


async def write_status(ctx: Context, plural: str, obj: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Replace the object's status, guarded by the resourceVersion `obj` was read with.

    The response (the object as written) feeds the cache, so the next pass sees its own write.
    """
    meta = obj["metadata"]
    try:
        written = await ctx.kube.patch_status(plural, meta["namespace"], meta["name"], status, meta["resourceVersion"])
    except Conflict:
        ctx.watched.drop(KINDS[plural], meta["namespace"], meta["name"])
        raise
    if written:
        ctx.watched.offer(written)
    return written


async def scale(ctx: Context, namespace: str, name: str, replicas: int, resource_version: str | None = None) -> None:
    """Set a Deployment's replicas, conditional on `resource_version`, else on the version the watch
    caches hold (else Kube.scale reads the scale subresource first). Whatever the version came from, it
    was read before the write's fence check, so a write by a newer leader is never overwritten (409).
    A Conflict drops the cached views (unless the watch delivered a newer one meanwhile): the next pass
    reads the Deployment fresh."""
    held = (ctx.watched.deployment_version(namespace, name), ctx.shadow_cache.deployment_version(namespace, name))
    if resource_version is None:
        known = [v for v in held if v is not None]
        resource_version = max(known, key=int) if known else None
    try:
        written = await ctx.kube.scale(namespace, name, replicas, resource_version)
    except Conflict:
        if not_newer(ctx.watched.deployment_version(namespace, name), resource_version):
            ctx.watched.drop_deployment(namespace, name)
        if not_newer(ctx.shadow_cache.deployment_version(namespace, name), resource_version):
            ctx.shadow_cache.drop_deployment(namespace, name)
        raise
    ctx.watched.scaled(namespace, name, replicas, written)
    ctx.shadow_cache.scaled(namespace, name, replicas, written)


def not_newer(held: str | None, used: str | None) -> bool:
    """A cached version no newer than the one a write was refused with (so stale too)."""
    if held is None:
        return False
    try:
        return used is None or int(held) <= int(used)
    except ValueError:
        return True
