"""Waiting for the operator to handle a request the plugin wrote (read/requests.py builds and reads them).

The operator handles a request once and records its outcome in `status.handledRequests`; the plugin polls
for it and fails, with the operator's why, unless it was Applied.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from strategy_rollouts.api.requests import HandledRequest
from strategy_rollouts.cli.errors import EXIT_ERROR, EXIT_NOT_HANDLED, CliError
from strategy_rollouts.read.requests import requests_of


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
