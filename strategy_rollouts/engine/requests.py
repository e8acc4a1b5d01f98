"""Pure request bookkeeping shared by every kind: order, exactly-once, the handled log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TypeVar

from strategy_rollouts.api.requests import HANDLED_LIMIT, HandledRequest, Outcome, Request

R = TypeVar("R", bound=Request)


def in_order(requests: Mapping[str, R]) -> list[tuple[str, R]]:
    """Pending requests oldest first: by `at`, then by id (ids break ties deterministically)."""
    return sorted(requests.items(), key=lambda item: (item[1].at, item[0]))


def handled(request_id: str, request: Request, outcome: Outcome, message: str, now: datetime) -> HandledRequest:
    return HandledRequest(
        id=request_id,
        action=request.action,
        by=request.by,
        source=request.source,
        reason=request.reason,
        outcome=outcome,
        message=message[:1024],
        requested_at=request.at,
        key=getattr(request, "key", None),
        at=now,
    )


def log(previous: Sequence[HandledRequest], new: Sequence[HandledRequest]) -> list[HandledRequest]:
    """The handled log with `new` appended, the last HANDLED_LIMIT kept (newest last)."""
    return [*previous, *new][-HANDLED_LIMIT:]


def outcome_of(handled_log: Sequence[HandledRequest], request_id: str) -> HandledRequest | None:
    """The recorded outcome of `request_id`, if it is still in the log."""
    for entry in reversed(handled_log):
        if entry.id == request_id:
            return entry
    return None
