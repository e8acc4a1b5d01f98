"""The plugin <-> operator protocol on the status subresource (pure parts and the wait loop).

A request is `status.request` (StrategyRollout) or `status.runRequest` (ParityCheck) with a fresh id;
the operator handles it, clears it and appends the id to `status.handledRequests`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from strategy_rollouts.api.common import rfc3339
from strategy_rollouts.api.paritycheck import ManualRun
from strategy_rollouts.api.rollout import ManualAction, ManualRequest
from strategy_rollouts.cli.errors import EXIT_NOT_HANDLED, CliError


def new_id() -> str:
    return uuid.uuid4().hex


def rollout_request(
    action: ManualAction, by: str | None, reason: str | None, now: datetime, id_: str
) -> dict[str, Any]:
    """Merge patch for a manual action. Every key is explicit (null included), so nothing of an
    older, unhandled request survives the merge."""
    req = ManualRequest(id=id_, action=action, by=by, reason=reason, at=now)
    return {
        "status": {
            "request": {"id": req.id, "action": req.action, "by": req.by, "reason": req.reason, "at": rfc3339(now)}
        }
    }


def parity_run_request(by: str | None, now: datetime, id_: str) -> dict[str, Any]:
    run = ManualRun(id=id_, by=by, at=now)
    return {"status": {"runRequest": {"id": run.id, "by": run.by, "at": rfc3339(now)}}}


def handled(obj: dict[str, Any], id_: str) -> bool:
    return id_ in ((obj.get("status") or {}).get("handledRequests") or [])


def wait_handled(
    fetch: Callable[[], dict[str, Any]],
    id_: str,
    timeout: float,
    what: str,
    interval: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Poll until the operator lists `id_` in status.handledRequests; the object as then read."""
    deadline = clock() + timeout
    while True:
        obj = fetch()
        if handled(obj, id_):
            return obj
        if clock() >= deadline:
            raise CliError(
                f"{what}: the operator did not pick up request {id_} within {timeout:g}s"
                " (is the strategy-rollouts operator running?); the request stays in status until it does",
                EXIT_NOT_HANDLED,
            )
        sleep(interval)
