"""Notifications (all three kinds): `spec.notify` and `status.notifications`, the outbox of what to send.

Apprise URLs live in labelled Secrets, never in the spec or status. Each pending entry is one
(occurrence, receiver) pair with a deterministic id; the operator sends it, then removes it from
`pending` and records it as `lastDelivered` (see operator/clients/notifier.py).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import Field

from strategy_rollouts.api.common import ApiModel, SecretKeyRef, StatusModel, Timestamp

NotifyEvent = Literal[
    # StrategyRollout
    "StepAdvanced",
    "StageCompleted",
    "Paused",
    "Resumed",
    "AwaitingApproval",
    "Frozen",
    "GateFailed",
    "Inconclusive",
    "RolledBack",
    "Aborted",
    "TradingStopped",
    "Succeeded",
    # ShadowRun
    "Verdict",
    # ParityCheck
    "LevelChanged",
    "ActionTaken",
]
_ALL: tuple[str, ...] = get_args(NotifyEvent)
EVENTS_BY_KIND: dict[str, tuple[str, ...]] = {
    "StrategyRollout": _ALL[: _ALL.index("Verdict")],
    "ShadowRun": ("Verdict",),
    "ParityCheck": ("LevelChanged", "ActionTaken"),
}
NotificationId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=128)]


class NotifyTo(ApiModel):
    # One or more Apprise URLs, one a line, in a Secret labelled strategyrollouts.io/credentials=true.
    secret_ref: SecretKeyRef


class NotifyRule(ApiModel):
    to: NotifyTo
    on: Annotated[
        list[NotifyEvent], Field(min_length=1, max_length=16, json_schema_extra={"x-kubernetes-list-type": "set"})
    ]


NotifyRules = Annotated[list[NotifyRule], Field(max_length=8)]


class PendingNotification(StatusModel):
    event: NotifyEvent
    occurrence: int  # the object's n-th notified occurrence: (object uid, event, occurrence) is sent once
    title: Annotated[str, Field(max_length=256)]
    message: Annotated[str, Field(max_length=2048)]
    to: SecretKeyRef
    at: Timestamp  # recorded; retries stop (NotificationFailed) 10 minutes after this


class SentNotification(StatusModel):
    id: NotificationId
    event: NotifyEvent
    occurrence: int
    at: Timestamp
    outcome: Literal["Delivered", "Failed"]
    message: Annotated[str, Field(max_length=512)] = ""


class NotificationStatus(StatusModel):
    # Occurrences numbered so far; the next one is occurrence + 1 (ids never repeat for this object).
    occurrence: int = 0
    pending: dict[str, PendingNotification] = {}  # by id: <event>-<occurrence>-<receiver index>
    last_delivered: SentNotification | None = None
    last_failed: SentNotification | None = None
