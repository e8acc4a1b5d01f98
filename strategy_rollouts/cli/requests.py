"""The plugin <-> operator protocol on the status subresource (pure parts and the wait loop).

A StrategyRollout request is one new key (a fresh id) in `status.requests`, added by a JSON merge patch
so it never replaces anyone else's; the operator removes it in the same write that appends its outcome
to `status.handledRequests` (see api/requests.py). ParityCheck runs still use `status.runRequest`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from strategy_rollouts.api.common import rfc3339
from strategy_rollouts.api.paritycheck import ManualRun
from strategy_rollouts.api.requests import RolloutAction, RolloutRequest
from strategy_rollouts.cli.errors import EXIT_NOT_HANDLED, CliError


def new_id() -> str:
    return uuid.uuid4().hex


def rollout_request(action: RolloutAction, by: str, reason: str | None, now: datetime, id_: str) -> dict[str, Any]:
    """Merge patch adding one pending request under its own id."""
    req = RolloutRequest(action=action, by=by, reason=reason, at=now)
    return {"status": {"requests": {id_: req.wire()}}}


def parity_run_request(by: str | None, now: datetime, id_: str) -> dict[str, Any]:
    run = ManualRun(id=id_, by=by, at=now)
    return {"status": {"runRequest": {"id": run.id, "by": run.by, "at": rfc3339(now)}}}


def handled(obj: dict[str, Any], id_: str) -> bool:
    """Listed in handledRequests: as an id (ParityCheck) or an outcome entry (StrategyRollout)."""
    for entry in (obj.get("status") or {}).get("handledRequests") or []:
        if entry == id_ or (isinstance(entry, dict) and entry.get("id") == id_):
            return True
    return False


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
