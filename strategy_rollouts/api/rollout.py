"""StrategyRollout: spec and status models (the single source of truth for its CRD)."""

from __future__ import annotations

import itertools
from typing import Annotated, Literal

from pydantic import Field, WithJsonSchema, model_validator

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
from strategy_rollouts.api.keyhash import DRAINING as DRAINING
from strategy_rollouts.api.market import FreezeWindows, MarketSpec, MarketStatus
from strategy_rollouts.api.notify import NotificationStatus, NotifyRules
from strategy_rollouts.api.requests import HandledRequest, RolloutRequest

Key = Annotated[str, Field(min_length=1, max_length=128)]


MAX_LISTED_KEYS = 100_000  # spec.routing.keysFrom: the largest listed universe (issue 33)
MAX_BUCKETS = 1_000_000
# A canary share in percent. Whole in listed mode; fractional (0.5) in buckets mode, where it must name a
# whole number of buckets (engine/validation.py). An int stays an int, so 10 is written back as 10, not 10.0.
Weight = Annotated[int | float, Field(ge=0, le=100), WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100})]
PERCENT = r"^(100|[1-9]?[0-9])(\.[0-9]+)?%$"
# A count of keys, or a percent of the universe ("10%"): Kubernetes' int-or-string, as maxUnavailable.
CountOrPercent = Annotated[
    Annotated[int, Field(ge=0, strict=True)] | Annotated[str, Field(pattern=PERCENT, max_length=16)],
    # A structural schema allows int-or-string only as bare types; the bounds are a CEL rule.
    WithJsonSchema(
        {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                {
                    "rule": f"type(self) == int ? self >= 0 : self.matches(r'{PERCENT}')",
                    "message": "a count >= 0 or a percent such as 10%",
                }
            ],
        }
    ),
]


class KeyOrder(ApiModel):
    """Which keys go to the canary first: explicit tiers, or a query ranking them (hash order within a tier)."""

    model_config = with_rules(
        {"rule": "has(self.tiers) != has(self.query)", "message": "set tiers or query, not both"},
        {
            "rule": "has(self.query) == has(self.label)",
            "message": "a rank query needs label (and label a query)",
            "fieldPath": ".label",
        },
    )

    tiers: (
        Annotated[
            list[Annotated[list[Key], Field(min_length=1, max_length=5000)]],
            Field(min_length=1, max_length=64),
        ]
        | None
    ) = None
    # One series per key, its value the rank (e.g. traded volume); `label` names the key in each series.
    query: Query | None = None
    label: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$", max_length=128)] | None = None
    ascending: bool = True


class ConfigMapKeyRef(ApiModel):
    name: Name
    key: Annotated[str, Field(pattern=r"^[-._a-zA-Z0-9]+$", min_length=1, max_length=253)]


class KeysFrom(ApiModel):
    """Keys read from a ConfigMap (one per line) for lists too long for a spec."""

    config_map_key_ref: ConfigMapKeyRef


class Routing(ApiModel):
    model_config = with_rules(
        {
            # has() first: an absent list has no size (list defaults are not in the schema)
            "rule": "[has(self.buckets), has(self.keys) && size(self.keys) > 0, has(self.keysFrom)]"
            ".filter(x, x).size() <= 1",
            "message": "set one of keys, keysFrom or buckets",
            "fieldPath": ".buckets",
        },
    )

    mode: Literal["symbols", "replicas"] = "symbols"
    keys: Annotated[list[Key], Field(max_length=5000, json_schema_extra={"x-kubernetes-list-type": "set"})] = []
    keys_from: KeysFrom | None = None
    # An open universe: ids never listed, routed by sha256(salt:id) mod buckets (api/keyhash.py).
    buckets: Annotated[int, Field(ge=1, le=MAX_BUCKETS)] | None = None
    order: KeyOrder | None = None
    # Keys a per-key gate may quarantine before the whole rollout fails (onFailure). Default 0: the first
    # quarantine is already one too many, so per-key gates never act alone unless this is set.
    max_quarantined: CountOrPercent = 0
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

    set_weight: Weight | None = None
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
            "rule": "!has(self.routing) || self.routing.mode != 'symbols'"
            " || has(self.routing.keys) && size(self.routing.keys) > 0"
            " || has(self.routing.keysFrom) || has(self.routing.buckets)",
            "message": "symbols mode needs routing.keys, routing.keysFrom or routing.buckets",
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


# Listed universes larger than this are recorded (status) and published (routing.json) as segments of the
# hash order rather than key by key (docs/keys.md "Large listed universes"), and take no `order`.
SEGMENTED_ABOVE = 1000


class KeySegment(StatusModel):
    """The keys whose sha256(salt:key) hex digest is >= `start`, up to the next segment's start: their
    owner and, while they drain, the owner they get once the handoff is over."""

    start: str
    owner: str
    next: str | None = None


class SegmentedKeys(StatusModel):
    """A large listed universe's routing state in O(segments): the run-lengths of its hash order. `keys`
    and `sha256` (api/keyhash.py universe_digest) name the universe the boundaries were drawn between."""

    keys: int
    sha256: str
    segments: list[KeySegment]

    @model_validator(mode="after")
    def _ordered(self) -> SegmentedKeys:
        starts = [s.start for s in self.segments]
        if not starts or starts[0] != "" or any(a >= b for a, b in itertools.pairwise(starts)):
            raise ValueError("segments must start at '' and be in strictly increasing order of start")
        odd = [s.start for s in self.segments if (s.owner == DRAINING) != (s.next is not None)]
        if odd:
            raise ValueError(f"segments {odd[:5]} must be draining exactly when they have a next owner")
        return self


class TargetStatus(StatusModel):
    """One stage target (namespace): its routing state. Draining keys finish at `drainingUntil`."""

    namespace: str
    config_map: str
    weight: Weight = 0
    revision: int = 0
    assignments: dict[str, str] = {}
    # key -> owner it will get once the handoff is over
    pending: dict[str, str] = {}
    draining_until: Timestamp | None = None
    # Open universes (spec.routing.buckets), in O(1): buckets below canaryBuckets are the canary's; while
    # buckets change owner, [canaryBuckets, drainingBuckets) are owned by nobody and nextBuckets is the
    # canary's share once drainingUntil has passed (engine/keys.py BucketState).
    canary_buckets: int | None = None
    draining_buckets: int | None = None
    next_buckets: int | None = None
    # A listed universe of more than SEGMENTED_ABOVE keys: its assignments and pending, segmented
    # (both maps are then empty in status; the engine expands them for a pass: engine/keys.py).
    segmented: SegmentedKeys | None = None
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
        if self.segmented is not None:
            if self.assignments or self.pending:
                raise ValueError("segmented keys and assignments/pending cannot both be recorded")
            if any(s.next is not None for s in self.segmented.segments) and self.draining_until is None:
                raise ValueError("draining segments without drainingUntil")
        if self.draining_buckets is not None:
            lo, hi, nxt = self.canary_buckets, self.draining_buckets, self.next_buckets
            if lo is None or nxt is None or not lo <= nxt <= hi or self.draining_until is None:
                raise ValueError(
                    "drainingBuckets needs canaryBuckets <= nextBuckets <= drainingBuckets and drainingUntil"
                )
        return self


class QuarantinedKey(StatusModel):
    """A key a per-key gate failed: back on stable alone until a `releaseKey` request returns it. Why: the
    gate and its value for the key (its condition is in the spec; the Event says it in words)."""

    key: str
    gate: str
    value: float | None = None
    at: Timestamp


# maxQuarantined may allow at most this many keys, so status.keys.quarantined stays small (engine/size.py):
# the engine stops quarantining at one key beyond the limit, and fails the rollout then.
MAX_QUARANTINED = 100
QUARANTINE_LIMIT = MAX_QUARANTINED + 1
# Segments a target of a segmented universe can hold: the weight's regions (owned, draining to either
# side, the rest) and each quarantined key on its own between two boundaries (test_keys_properties.py).
MAX_SEGMENTS = 2 * QUARANTINE_LIMIT + 8
# A segment's start is the shortest digest prefix after the key before it: validation refuses two keys
# whose digests share BOUNDARY_DIGITS - 1 leading hex digits (another salt separates them).
BOUNDARY_DIGITS = 24


class KeysStatus(StatusModel):
    quarantined: Annotated[list[QuarantinedKey], Field(max_length=QUARANTINE_LIMIT)] = []
    # spec.routing.order.query as measured at the run's start: tiers of equal rank, first tier first (keys
    # it did not rank form a last tier). Frozen for the run, so an assignment never moves with the market.
    order: list[list[str]] | None = None
    ordered_at: Timestamp | None = None


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
    canary_weight: Weight | None = None
    started_at: Timestamp | None = None
    stage_started_at: Timestamp | None = None
    step_started_at: Timestamp | None = None
    stable_version: str | None = None
    canary_version: str | None = None
    replicas: ReplicaStatus | None = None
    routing: RoutingStatus | None = None
    targets: list[TargetStatus] = []
    keys: KeysStatus | None = None
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
