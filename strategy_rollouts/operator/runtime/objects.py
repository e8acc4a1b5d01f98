"""What every kind's adapter does the same way: read its object from the watch cache, write its status.

Bodies come from the watch (or the response to our own last write), newest resourceVersion wins;
a GET only when neither has delivered the object. Status writes are guarded by the resourceVersion
the decision was computed from: a Conflict drops the cached body so the next pass reads it fresh.
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
