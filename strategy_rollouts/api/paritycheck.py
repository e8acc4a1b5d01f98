"""ParityCheck: spec and status models."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from strategy_rollouts.api.common import (
    ApiModel,
    Condition,
    Duration,
    Name,
    PrometheusConnection,
    Query,
    StatusModel,
    Timestamp,
    with_rules,
)
from strategy_rollouts.api.market import ParityMarketSpec
from strategy_rollouts.api.notify import NotificationStatus, NotifyRules
from strategy_rollouts.api.requests import HandledRequest, ParityRequest, RequestId


class ParityTarget(ApiModel):
    model_config = with_rules(
        {
            "rule": "has(self.rollout) != has(self.deployment)",
            "message": "set exactly one of rollout, deployment",
        }
    )

    rollout: Name | None = None
    deployment: Name | None = None
    # deployment targets: the routing ConfigMap to write sizeMultiplier/entriesEnabled into.
    config_map: Name | None = None


class SeriesQuery(ApiModel):
    query: Query


class QueryPair(ApiModel):
    live: Query
    backtest: Query


class Attribution(ApiModel):
    fees: QueryPair | None = None
    slippage: QueryPair | None = None
    timing: QueryPair | None = None
    sizing: QueryPair | None = None


class Thresholds(ApiModel):
    model_config = with_rules(
        {
            "rule": "self.warning < self.critical && self.critical < self.emergency",
            "message": "thresholds must increase: warning < critical < emergency",
        }
    )

    warning: Annotated[float, Field(gt=0)] = 20
    critical: Annotated[float, Field(gt=0)] = 50
    emergency: Annotated[float, Field(gt=0)] = 100


class ParityAction(ApiModel):
    size_multiplier: Annotated[float, Field(ge=0, le=10)] | None = None
    entries_enabled: bool | None = None
    pause_rollout: bool = False
    abort_rollout: bool = False
    stop_trading: bool = False


class ParityActions(ApiModel):
    warning: ParityAction = ParityAction()
    critical: ParityAction = ParityAction(size_multiplier=0.5, entries_enabled=False, pause_rollout=True)
    emergency: ParityAction = ParityAction(stop_trading=True)


class ParityCheckSpec(ApiModel):
    strategy: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=128)]
    target: ParityTarget
    schedule: Annotated[str, Field(min_length=1, max_length=128)] = "0 6,18 * * *"
    time_zone: Annotated[str, Field(min_length=1, max_length=64)] = "UTC"
    window: Duration = "24h"
    step: Duration = "1h"
    live: SeriesQuery
    backtest: SeriesQuery
    periods_per_year: Annotated[float, Field(gt=0, le=1e9)] = 8760
    attribution: Attribution = Attribution()
    thresholds_bps: Thresholds = Thresholds()
    consecutive_breaches: Annotated[int, Field(ge=1, le=1000)] = 1
    min_samples: Annotated[int, Field(ge=2, le=1_000_000)] = 10
    auto_recover: bool = False
    suspend: bool = False
    actions: ParityActions = ParityActions()
    prometheus: PrometheusConnection | None = None
    market: ParityMarketSpec | None = None
    notify: NotifyRules = []


ParityLevel = Literal["Excellent", "Good", "Warning", "Critical", "Emergency", "Unknown"]


class AttributionStatus(StatusModel):
    alpha: float | None = None
    fees: float | None = None
    slippage: float | None = None
    timing: float | None = None
    sizing: float | None = None


class ParityRun(StatusModel):
    at: Timestamp
    # The run's sequence number (status.runSeq after it); part of the ids of the actions it planned.
    seq: int = 0
    tracking_error_bps: float | None = None
    level: ParityLevel
    attribution: AttributionStatus | None = None
    samples: int = 0
    unmatched: int = 0
    trigger: Literal["scheduled", "catch-up", "manual"] = "scheduled"
    by: str | None = None
    message: str | None = None


ActionState = Literal["Pending", "Applied", "Rejected", "Superseded"]


class ActionTaken(StatusModel):
    """One planned action, recorded (Pending) before anything is applied; enforced until settled."""

    id: RequestId  # pck-<check>-<runSeq>-<action>: stable across crashes and resends
    action: str  # status form: sizeMultiplier=0.5, entriesEnabled=false, pauseRollout, stopTrading, event
    level: ParityLevel
    run: int = 0
    at: Timestamp
    target: str | None = None
    state: ActionState = "Pending"
    # Rollout targets: the id of the request in the rollout's status.requests that carries this action.
    request: RequestId | None = None
    # The request was seen in the rollout's status.requests: never sent again.
    delivered: bool = False
    # stopTrading on a deployment target: its replicas before the stop (to restore by hand).
    replicas: int | None = None
    reason: str | None = None
    message: str | None = None
    settled_at: Timestamp | None = None


class ParitySkip(StatusModel):
    """The last scheduled run not made because its day is not a session of spec.market.calendar."""

    at: Timestamp
    message: str


class ParityCheckStatus(StatusModel):
    observed_generation: int | None = None
    phase: Literal["Scheduled", "Running", "Suspended", "Invalid"] | None = None
    message: str | None = None
    last_run: ParityRun | None = None
    next_run_at: Timestamp | None = None
    run_seq: int = 0
    consecutive_breaches: int = 0
    actions_taken: list[ActionTaken] = []
    # Actions currently in force (kind=value), so they are applied once and lifted on recovery.
    active_actions: list[str] = []
    history: list[ParityRun] = []
    skipped: ParitySkip | None = None
    conditions: list[Condition] = []
    # Pending manual runs (`kubectl strategy parity run`): one key per request, added by merge patch.
    requests: dict[str, ParityRequest] = {}
    handled_requests: list[HandledRequest] = []
    # Notifications to send (an outbox written with the transition that caused them): api/notify.py.
    notifications: NotificationStatus | None = None
