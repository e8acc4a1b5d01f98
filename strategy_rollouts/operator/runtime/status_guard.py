"""Fail closed on a status the operator cannot parse: hold the object, act on nothing, say how to recover.

A status that fails model validation (a hand edit, an older or newer operator) is never read as an
empty status: that would restart a rollout from step 0 with no record of its keys and hand them to a
new owner without a drain. Instead the object keeps its status as it is, gets condition
`InvalidStatus=True` naming the field, and nothing is scaled or routed until the status parses.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.engine.finish import INVALID_STATUS
from strategy_rollouts.operator.clients.kube import Kube

M = TypeVar("M", bound=BaseModel)
CONDITION = INVALID_STATUS


def parse_status(model: type[M], raw: Mapping[str, Any] | None) -> tuple[M | None, str | None]:
    """(status, None), or (None, message naming every bad field)."""
    try:
        return model.model_validate(dict(raw or {})), None
    except ValidationError as exc:
        return None, validation_message(exc, prefix="status")


def recovery_message(kind: str, name: str, error: str, stopping: bool = False) -> str:
    nothing = "changes nothing (no scale, no routing change)"
    if stopping:  # a stop is always safe to apply: it is the one exception
        nothing = "changes nothing but the pending stopTrading (every key to none, entries off; no scale)"
    return (
        f"{error}. The operator holds this {kind} and {nothing} until its"
        f" status parses: restore the field, or remove it with `kubectl patch {kind.lower()} {name}"
        ' --subresource=status --type=json -p \'[{"op":"remove","path":"/status/FIELD"}]\'`'
        " as the operator's identity (docs/rbac.md)"
    )


def held_conditions(
    raw: Mapping[str, Any], message: str, generation: int | None, now: datetime
) -> list[dict[str, Any]]:
    """The object's conditions with InvalidStatus=True (unparseable conditions are replaced)."""
    current: list[Condition] = []
    for item in raw.get("conditions") or []:
        try:
            current.append(Condition.model_validate(item))
        except ValidationError:
            continue
    updated = set_condition(current, CONDITION, True, "StatusDoesNotParse", message, now, generation)
    return [c.model_dump(by_alias=True, exclude_none=True, mode="json") for c in updated]


async def hold(
    kube: Kube, plural: str, obj: Mapping[str, Any], kind: str, error: str, now: datetime, stopping: bool = False
) -> str | None:
    """Write InvalidStatus=True into the object's status (everything else kept byte for byte).

    Returns the message when a write was made (the caller posts a Warning Event), None when the
    condition already says so (no write at rest).
    """
    meta = obj.get("metadata") or {}
    raw = dict(obj.get("status") or {})
    message = recovery_message(kind, str(meta.get("name")), error, stopping)
    conditions = held_conditions(raw, message, meta.get("generation"), now)
    if raw.get("conditions") == conditions:
        return None
    await kube.patch_status(
        plural,
        str(meta.get("namespace")),
        str(meta.get("name")),
        {**raw, "conditions": conditions},
        str(meta.get("resourceVersion")),
    )
    return message


__all__ = ["CONDITION", "held_conditions", "hold", "parse_status", "recovery_message"]
