"""ShadowRun: spec and status models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from strategy_rollouts.api.common import (
    ApiModel,
    CanaryRef,
    Condition,
    DeploymentRef,
    Duration,
    Name,
    PrometheusConnection,
    SecretKeyRef,
    StatusModel,
    Timestamp,
)
from strategy_rollouts.api.gates import GateSpec, GateStatus
from strategy_rollouts.api.market import ShadowMarketSpec
from strategy_rollouts.api.notify import NotificationStatus, NotifyRules


class EgressRule(ApiModel):
    cidr: Annotated[str, Field(pattern=r"^[0-9a-fA-F:.]+/[0-9]{1,3}$", max_length=64)]
    ports: Annotated[list[Annotated[int, Field(ge=1, le=65535)]], Field(max_length=64)] = []


class Isolation(ApiModel):
    env: Annotated[dict[str, str], Field(max_length=32)] = {"SHADOW_MODE": "true"}
    deny_egress: bool = False
    allow_egress_to: Annotated[list[EgressRule], Field(max_length=64)] = []


class RedisSource(ApiModel):
    # A URL with a password belongs in a labelled Secret (API.md "Credentials and trust"): exactly one of the two.
    address: Annotated[str, Field(pattern=r"^rediss?://.+", max_length=2048)] | None = None
    address_secret_ref: SecretKeyRef | None = None
    live_stream: Annotated[str, Field(min_length=1, max_length=512)] = "decisions:{{strategy}}:{{live.version}}"
    shadow_stream: Annotated[str, Field(min_length=1, max_length=512)] = "decisions:{{strategy}}:{{shadow.version}}"


class DecisionSource(ApiModel):
    redis: RedisSource


class Tolerances(ApiModel):
    price_bps: Annotated[float, Field(ge=0, le=10_000)] = 0.5
    quantity_percent: Annotated[float, Field(ge=0, le=100)] = 1.0


class DecisionComparison(ApiModel):
    source: DecisionSource
    match_on: Annotated[
        list[Literal["symbol", "tick", "type", "side"]],
        Field(min_length=1, max_length=4, json_schema_extra={"x-kubernetes-list-type": "set"}),
    ] = ["symbol", "tick"]
    tolerances: Tolerances = Tolerances()
    min_decisions: Annotated[int, Field(ge=0, le=100_000_000)] = 500
    min_match_rate: Annotated[float, Field(ge=0, le=1)] = 0.95
    # How long a decision waits for its counterpart before it counts as missing on the other side.
    pairing_window: Duration = "30s"


class BudgetsRef(ApiModel):
    config_map: Name


class LatencyProfileSpec(ApiModel):
    histogram: Annotated[str, Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$", max_length=256)]
    stage_label: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=128)] = "stage"
    budgets: BudgetsRef | None = None
    max_regression_percent: Annotated[float, Field(ge=0, le=10_000)] = 3.0
    # Range of the rate() window; default: the whole run so far, capped at 1h.
    window: Duration | None = None


class ShadowRunSpec(ApiModel):
    strategy: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$", min_length=1, max_length=128)]
    live: DeploymentRef
    shadow: CanaryRef
    duration: Duration
    isolation: Isolation = Isolation()
    decisions: DecisionComparison | None = None
    kpis: Annotated[
        list[GateSpec],
        Field(
            max_length=32,
            json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
        ),
    ] = []
    latency_profile: LatencyProfileSpec | None = None
    prometheus: PrometheusConnection | None = None
    market: ShadowMarketSpec | None = None
    notify: NotifyRules = []


ShadowPhase = Literal["Pending", "Running", "Completed", "Invalid"]
Verdict = Literal["Pass", "Hold", "Fail"]


class Mismatches(StatusModel):
    price: int = 0
    quantity: int = 0
    side: int = 0
    type: int = 0
    # The contract names these kinds in snake_case, like the mismatch kinds in reports and events.
    missing_live: int = Field(0, alias="missing_live")
    missing_shadow: int = Field(0, alias="missing_shadow")


class DecisionStats(StatusModel):
    compared: int = 0
    matched: int = 0
    match_rate: float | None = None
    mismatches: Mismatches = Mismatches()
    malformed: int = 0
    pending: int = 0


class Percentiles(StatusModel):
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None


class StageLatency(StatusModel):
    live: Percentiles = Percentiles()
    shadow: Percentiles = Percentiles()
    budget_p95: float | None = None
    regression_percent: float | None = None
    max_regression_percent: float | None = None  # the threshold it was judged against
    result: Literal["Pass", "Fail", "Inconclusive"] | None = None


class ShadowTarget(StatusModel):
    """What the run acts on, recorded when it starts: every side effect follows status, never a later
    spec edit (a Completed run keeps its own shadow at 0 even if spec.shadow now names another)."""

    strategy: str
    live_version: str
    shadow_deployment: str
    shadow_version: str
    replicas: int  # the shadow's replicas while Running


class ShadowRunStatus(StatusModel):
    observed_generation: int | None = None
    phase: ShadowPhase | None = None
    verdict: Verdict | None = None
    reasons: list[str] = []
    message: str | None = None
    decisions: DecisionStats | None = None
    kpis: list[GateStatus] = []
    latency_profile: dict[str, StageLatency] = {}
    report: str | None = None
    target: ShadowTarget | None = None
    started_at: Timestamp | None = None
    completed_at: Timestamp | None = None
    conditions: list[Condition] = []
    # Matcher bookkeeping (stream offsets, unpaired decisions) so a restart never recounts.
    matcher: Annotated[dict[str, Any], Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})] = {}
    # Notifications to send (an outbox written with the transition that caused them): api/notify.py.
    notifications: NotificationStatus | None = None
