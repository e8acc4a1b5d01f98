"""Market hours and freeze windows: shared spec and status models (API.md "Market hours and freeze windows")."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategy_rollouts.api.common import ApiModel, Duration, StatusModel, Timestamp, with_rules

# An exchange_calendars code (ISO 10383 MIC such as XNYS) or "24/7"; which codes exist is the operator's
# business (InvalidSpec lists a few), so the schema only bounds the text.
CalendarCode = Annotated[str, Field(pattern=r"^[A-Za-z0-9/_-]+$", min_length=1, max_length=32)]
TWENTY_FOUR_SEVEN = "24/7"


class MarketSpec(ApiModel):
    """Which exchange's sessions the object follows, and what that changes."""

    calendar: CalendarCode
    advance: Literal["always", "whenOpen"] = "always"
    avoid_open_close: Duration | None = None
    count_time: Literal["wall", "trading"] = "wall"


class FreezeWindow(ApiModel):
    """Absolute (`start`/`end`) or recurring (`schedule` + `duration` in `timeZone`): no progress inside."""

    model_config = with_rules(
        {
            "rule": "has(self.start) == has(self.end)",
            "message": "start and end go together",
        },
        {
            "rule": "has(self.schedule) == has(self.duration)",
            "message": "schedule and duration go together",
        },
        {
            "rule": "has(self.start) != has(self.schedule)",
            "message": "a window is either start/end or schedule/duration",
        },
    )

    name: Annotated[str, Field(pattern=r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$", max_length=63)]
    start: Timestamp | None = None
    end: Timestamp | None = None
    schedule: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    duration: Duration | None = None
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"


FreezeWindows = Annotated[
    list[FreezeWindow],
    Field(
        max_length=64,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    ),
]


class ShadowMarketSpec(ApiModel):
    """A ShadowRun's market: with `countTime: trading` its `duration` counts session time only."""

    calendar: CalendarCode
    count_time: Literal["wall", "trading"] = "wall"


class ParityMarketSpec(ApiModel):
    """A ParityCheck's market: scheduled runs happen only on the calendar's sessions."""

    calendar: CalendarCode


class MarketStatus(StatusModel):
    open: bool | None = None
    next_open: Timestamp | None = None
    next_close: Timestamp | None = None
    frozen_by: str | None = None
    frozen_until: Timestamp | None = None
    # One line for the printer column: `open`, `closed, opens Mon 14:30Z`, `frozen: fomc`.
    summary: str | None = None
