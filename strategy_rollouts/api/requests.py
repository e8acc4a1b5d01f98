"""Requests: how people and other objects ask an object to act (`status.requests`, `status.handledRequests`).

A writer adds ONE key, its own unique id, with a JSON merge patch on the status subresource, so no
pending request is ever replaced by another writer's. The operator handles pending requests oldest
first (`at`, then id) and, in the same status write that appends the outcome to `handledRequests`,
removes the request from `requests`: each is handled exactly once, across restarts and conflicts.
`by` is pinned to the authenticated user, and each action needs its own RBAC verb on `<kind>/actions`, by the
ValidatingAdmissionPolicies of charts/strategy-rollouts/templates/status-admission-policy.yaml (docs/rbac.md).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategy_rollouts.api.common import StatusModel, Timestamp

HANDLED_LIMIT = 20  # handledRequests keeps the last 20, newest last
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", min_length=1, max_length=128)]
RolloutAction = Literal[
    "promote", "promoteFull", "abort", "retry", "pause", "resume", "approve", "stopTrading", "releaseKey"
]
ParityAction = Literal["run"]
Outcome = Literal["Applied", "Rejected", "Superseded"]
UserName = Annotated[str, Field(min_length=1, max_length=512)]
Reason = Annotated[str, Field(max_length=1024)]


class Request(StatusModel):
    """A pending request, as its writer added it."""

    action: Annotated[str, Field(max_length=32)]
    by: UserName
    reason: Reason | None = None
    # `kind/name` of the object the request is made for (e.g. paritycheck/fib-rsi-parity); None: a person.
    source: Annotated[str, Field(max_length=512)] | None = None
    at: Timestamp


class RolloutRequest(Request):
    action: RolloutAction
    # releaseKey: the quarantined key to return to the canary
    key: Annotated[str, Field(min_length=1, max_length=128)] | None = None


class ParityRequest(Request):
    action: ParityAction


class HandledRequest(StatusModel):
    """What became of a request; written in the same status write that removes it from `requests`."""

    id: RequestId
    action: Annotated[str, Field(max_length=32)]
    by: UserName
    source: Annotated[str, Field(max_length=512)] | None = None
    reason: Reason | None = None
    outcome: Outcome
    message: Annotated[str, Field(max_length=1024)] = ""
    requested_at: Timestamp | None = None
    at: Timestamp
    key: Annotated[str, Field(max_length=128)] | None = None  # releaseKey
