"""The plugin <-> operator request protocol on the status subresource (pure parts and the wait loop).

A request is ONE new key, a fresh id, in `status.requests`, written by a JSON merge patch, so it never
replaces anyone else's pending request. The operator handles it once and, in the same status write,
removes it and appends its outcome (Applied | Rejected | Superseded) to `status.handledRequests`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.requests import HandledRequest, ParityRequest, Request, RolloutAction, RolloutRequest
from strategy_rollouts.cli.errors import EXIT_ERROR, EXIT_NOT_HANDLED, CliError


def new_id() -> str:
    return uuid.uuid4().hex


def _patch(id_: str, request: Request) -> dict[str, Any]:
    return {"status": {"requests": {id_: request.wire()}}}


def rollout_request(action: RolloutAction, by: str, reason: str | None, now: datetime, id_: str) -> dict[str, Any]:
    """Merge patch adding one StrategyRollout request (validated by the model before it is sent)."""
    return _patch(id_, RolloutRequest(action=action, by=by, reason=reason, at=now))


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


def outcome(obj: dict[str, Any], id_: str) -> HandledRequest | None:
    """The recorded outcome of request `id_`; None while it is pending. A request that is neither
    pending nor in the log was handled and then rotated out of the last-20 log."""
    reqs = requests_of(obj)
    for entry in reversed(reqs.handled):
        if entry.id == id_:
            return entry
    if id_ in ((obj.get("status") or {}).get("requests") or {}):
        return None
    raise CliError(
        f"request {id_} was handled, but its outcome is no longer in status.handledRequests (the last 20)",
        EXIT_ERROR,
    )


def wait_handled(
    fetch: Callable[[], dict[str, Any]],
    id_: str,
    timeout: float,
    what: str,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[dict[str, Any], HandledRequest]:
    """Poll until status.handledRequests records `id_`; the object as then read and the outcome."""
    deadline = clock() + timeout
    while True:
        obj = fetch()
        entry = outcome(obj, id_)
        if entry is not None:
            return obj, entry
        if clock() >= deadline:
            raise CliError(
                f"{what}: the operator did not pick up request {id_} within {timeout:g}s"
                " (is the strategy-rollouts operator running?); the request stays in status until it does",
                EXIT_NOT_HANDLED,
            )
        sleep(interval)


def check_outcome(entry: HandledRequest, what: str) -> None:
    """Rejected or Superseded: the action did not happen, so the command fails with the operator's why."""
    if entry.outcome != "Applied":
        raise CliError(f"{what}: {entry.action} {entry.outcome}: {entry.message or 'no reason given'}", EXIT_ERROR)
