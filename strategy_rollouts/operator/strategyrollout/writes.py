"""StrategyRollout status writes: only what is worth a write, guarded, and recognised when it echoes back.

Gate evaluations that change nothing but a latest value stay in memory (Context.rollouts.working,
keyed by the resourceVersion they were decided on) and reach status at most every
--gate-status-refresh seconds: at N = 1,000 rollouts writing every evaluation was half the API traffic.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, cast

from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.engine.rollout import Decision
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import objects as runtime

PLURAL = "strategyrollouts"


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
