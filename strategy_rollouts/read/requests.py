"""The request protocol on the status subresource, as the CLI and the dashboard write and read it (pure).

A request is ONE new key, a fresh id, in `status.requests`, written by a JSON merge patch, so it never
replaces anyone else's pending request. The operator handles it once and, in the same status write,
removes it and appends its outcome (Applied | Rejected | Superseded) to `status.handledRequests`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.requests import HandledRequest, ParityRequest, Request, RolloutAction, RolloutRequest


def new_id() -> str:
    return uuid.uuid4().hex


def _patch(id_: str, request: Request) -> dict[str, Any]:
    return {"status": {"requests": {id_: request.wire()}}}


def rollout_request(
    action: RolloutAction, by: str, reason: str | None, now: datetime, id_: str, key: str | None = None
) -> dict[str, Any]:
    """Merge patch adding one StrategyRollout request (validated by the model before it is sent);
    `key`: the key a releaseKey returns."""
    return _patch(id_, RolloutRequest(action=action, by=by, reason=reason, at=now, key=key))


def parity_run_request(by: str, now: datetime, id_: str) -> dict[str, Any]:
    return _patch(id_, ParityRequest(action="run", by=by, at=now))


@dataclass(frozen=True)
class Requests:
    """What an object's status says about requests: pending (oldest first) and the handled log."""

    pending: list[tuple[str, Request]]
    handled: list[HandledRequest]


def requests_of(obj: dict[str, Any]) -> Requests:
    """Read from the raw status (any kind); entries that do not parse are skipped, not fatal."""
    status = obj.get("status") or {}
    pending: list[tuple[str, Request]] = []
    for id_, raw in (status.get("requests") or {}).items():
        try:
            pending.append((id_, Request.model_validate(raw)))
        except ValidationError:
            continue
    handled: list[HandledRequest] = []
    for raw in status.get("handledRequests") or []:
        try:
            handled.append(HandledRequest.model_validate(raw))
        except ValidationError:
            continue
    return Requests(sorted(pending, key=lambda p: (p[1].at, p[0])), handled)
