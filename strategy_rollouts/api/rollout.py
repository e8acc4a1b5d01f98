"""StrategyRollout: spec and status models (the single source of truth for its CRD)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from strategy_rollouts.api.approvals import Approval, Approvals
from strategy_rollouts.api.common import (
    ApiModel,
    CanaryRef,
    Condition,
    DeploymentRef,
    Duration,
    Name,
    PrometheusConnection,
    Query,
    StatusModel,
    Timestamp,
    with_rules,
)
from strategy_rollouts.api.gates import GateSpec, GateStatus
from strategy_rollouts.api.market import FreezeWindows, MarketSpec, MarketStatus
from strategy_rollouts.api.notify import NotificationStatus, NotifyRules
from strategy_rollouts.api.requests import HandledRequest, RolloutRequest

Key = Annotated[str, Field(min_length=1, max_length=128)]
DRAINING = "draining"  # a key owned by nobody while it changes owner (engine/routing.py)


class Routing(ApiModel):
    mode: Literal["symbols", "replicas"] = "symbols"
    keys: Annotated[list[Key], Field(max_length=5000, json_schema_extra={"x-kubernetes-list-type": "set"})] = []
    salt: Annotated[str, Field(max_length=253)] | None = None
    config_map: Name | None = None
    handoff: Duration = "5s"


class Pause(ApiModel):
    duration: Duration | None = None


class Step(ApiModel):
    model_config = with_rules(
        {
            "rule": "has(self.setWeight) != has(self.pause)",
            "message": "a step is either setWeight or pause",
        }
    )

    set_weight: Annotated[int, Field(ge=0, le=100)] | None = None
    pause: Pause | None = None


class RiskBudget(ApiModel):
    query: Query
    max_percent: Annotated[float, Field(ge=0, le=100)]


class Stage(ApiModel):
    model_config = with_rules(
        {
            "rule": "self.steps.filter(s, has(s.setWeight)).map(s, s.setWeight).isSorted()",
            "message": "setWeight must be non-decreasing within a stage",
            "fieldPath": ".steps",
        },
        {
            # CEL's duration() has no `d` unit; those are checked by the operator (InvalidSpec).
            "rule": "!has(self.minDuration) || !has(self.maxDuration) || self.minDuration.contains('d')"
            " || self.maxDuration.contains('d')"
            " || duration(self.maxDuration) >= duration(self.minDuration)",
            "message": "maxDuration must be >= minDuration",
            "fieldPath": ".maxDuration",
        },
    )

    name: Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)]
    namespace: Name | None = None
    steps: Annotated[list[Step], Field(min_length=1, max_length=64)]
    risk_budget: RiskBudget | None = None
    min_duration: Duration | None = None
    max_duration: Duration | None = None
    promotion: Literal["auto", "manual"] = "auto"
    approvals: Approvals | None = None


class StrategyRolloutSpec(ApiModel):
    model_config = with_rules(
        {
            "rule": "self.stable.deployment != self.canary.deployment",
            "message": "stable and canary must be different deployments",
            "fieldPath": ".canary.deployment",
        },
        {
            "rule": "!has(self.routing) || self.routing.mode != 'symbols' || size(self.routing.keys) > 0",
            "message": "symbols mode needs at least one key in routing.keys",
            "fieldPath": ".routing.keys",
        },
    )

    strategy: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=128)]
    stable: DeploymentRef
    canary: CanaryRef
    replicas: Annotated[int, Field(ge=0, le=10_000)] | None = None
    progress_deadline: Duration = "10m"
    routing: Routing = Routing()
    stages: Annotated[
        list[Stage],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ]
    gates: Annotated[
        list[GateSpec],
        Field(
            max_length=32,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    shadow_run: Name | None = None
    parity_check: Name | None = None
    on_failure: Literal["rollback", "pause"] = "rollback"
    scale_down_delay: Duration = "30s"
    paused: bool = False
    prometheus: PrometheusConnection | None = None
    market: MarketSpec | None = None
    freeze_windows: FreezeWindows = []
    notify: NotifyRules = []


RolloutPhase = Literal["Pending", "Progressing", "Paused", "Succeeded", "RolledBack", "Invalid"]
HistoryOutcome = Literal[
    "Succeeded", "RolledBack", "Aborted", "Superseded", "Promoted", "Paused", "Resumed", "Retried", "Approved"
]


class ReplicaStatus(StatusModel):
    stable: int = 0
    canary: int = 0
    stable_ready: int = 0
    canary_ready: int = 0


class RoutingStatus(StatusModel):
    revision: int = 0
    canary_keys: int = 0
    draining: int = 0


class TargetStatus(StatusModel):
    """One stage target (namespace): its routing state. Draining keys finish at `drainingUntil`."""

    namespace: str
    config_map: str
    weight: int = 0
    revision: int = 0
    assignments: dict[str, str] = {}
    # key -> owner it will get once the handoff is over
    pending: dict[str, str] = {}
    draining_until: Timestamp | None = None
    # Desired replicas the operator enforces (None: leave the deployment alone).
    stable_replicas: int | None = None
    canary_replicas: int | None = None
    # The stable deployment's replicas when the rollout started (default canary size / replicas mode total).
    base_replicas: int | None = None
    canary_scaled_at: Timestamp | None = None

    @model_validator(mode="after")
    def _drain_is_consistent(self) -> TargetStatus:
        """Every draining key waits for a recorded owner and only those do: a status that says otherwise
        (a hand edit) cannot be routed from safely, so it does not parse (operator: InvalidStatus)."""
        draining = {k for k, v in self.assignments.items() if v == DRAINING}
        if draining != set(self.pending):
            odd = sorted(draining.symmetric_difference(self.pending))[:5]
            raise ValueError(f"keys {odd} must be draining in assignments exactly when they have a pending owner")
        if self.pending and self.draining_until is None:
            raise ValueError("pending owners without drainingUntil")
        return self


class RiskBudgetStatus(StatusModel):
    used_percent: float | None = None
    max_percent: float | None = None


class HistoryEntry(StatusModel):
    version: str
    outcome: HistoryOutcome
    at: Timestamp
    by: str | None = None
    reason: str | None = None


class ScaleDown(StatusModel):
    namespace: str
    deployment: str
    at: Timestamp


class StrategyRolloutStatus(StatusModel):
    observed_generation: int | None = None
    phase: RolloutPhase | None = None
    reason: str | None = None
    message: str | None = None
    stage: str | None = None
    stage_index: int | None = None
    step_index: int | None = None
    canary_weight: int | None = None
    started_at: Timestamp | None = None
    stage_started_at: Timestamp | None = None
    step_started_at: Timestamp | None = None
    stable_version: str | None = None
    canary_version: str | None = None
    replicas: ReplicaStatus | None = None
    routing: RoutingStatus | None = None
    targets: list[TargetStatus] = []
    gates: list[GateStatus] = []
    risk_budget: RiskBudgetStatus | None = None
    history: list[HistoryEntry] = []
    conditions: list[Condition] = []
    manual_pause: HistoryEntry | None = None
    # Pending requests by id (see api/requests.py): writers add one key each, the operator removes it
    # in the same write that appends the outcome to handledRequests.
    requests: dict[str, RolloutRequest] = {}
    handled_requests: list[HandledRequest] = []
    scale_downs: list[ScaleDown] = []
    trading_stopped: bool = False
    market: MarketStatus | None = None
    approvals: list[Approval] = []
    # Notifications to send (an outbox written with the transition that caused them): api/notify.py.
    notifications: NotificationStatus | None = None
