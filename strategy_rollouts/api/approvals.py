"""Approvals (two-person rule): `spec.stages[].approvals` and `status.approvals`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from strategy_rollouts.api.common import ApiModel, StatusModel, Timestamp
from strategy_rollouts.api.requests import Reason, UserName


class Approvals(ApiModel):
    """The stage is promoted (to the next stage or to completion) only after `count` distinct users approve."""

    count: Annotated[int, Field(ge=1, le=10)]
    message: Annotated[str, Field(max_length=256)] | None = None


class Approval(StatusModel):
    """One user's approval of the current stage (status.approvals; reset when the stage changes)."""

    by: UserName
    at: Timestamp
    reason: Reason | None = None
    # The stage it was given for: an approval never carries over to another stage.
    stage: Annotated[str, Field(max_length=63)]
