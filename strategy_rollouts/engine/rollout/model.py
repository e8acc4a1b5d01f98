"""What goes into a StrategyRollout decision and what comes out of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.engine import market
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.types import Event


@dataclass(frozen=True)
class DeploymentObs:
    replicas: int
    ready: int


@dataclass(frozen=True)
class Observations:
    namespace: str
    name: str
    generation: int = 1
    # (namespace, deployment) -> observed; absent = not found
    deployments: Mapping[tuple[str, str], DeploymentObs] = field(default_factory=dict)
    # gate name -> measurement taken for this reconcile (only gates that were due)
    measurements: Mapping[str, Measurement] = field(default_factory=dict)
    # target namespace -> does its routing ConfigMap show exactly status' assignments?
    published: Mapping[str, bool] = field(default_factory=dict)
    # target namespace -> revision read from its ConfigMap
    revisions: Mapping[str, int] = field(default_factory=dict)
    # target namespace -> assignments its ConfigMap shows, for targets status has no record of (a
    # status lost or reset): the apps may be trading those keys, so they are drained, never handed over.
    routed: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    # per-key gate name -> key -> the key's measurement (canary side), for gates with perKey
    per_key: Mapping[str, Mapping[str, Measurement]] = field(default_factory=dict)
    # the same gates' query for the stable version, key -> value (the scoreboard's other column)
    per_key_stable: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    shadow_found: bool = False
    shadow_verdict: str | None = None
    # spec.market's calendar (operator/checks/calendars.py); None: 24/7, or no market.
    calendar: market.Calendar | None = None
    # spec.routing.keysFrom: the keys its ConfigMap lists, as read this pass; None: not read (the rollout
    # acts on nothing then: an empty universe would route nothing and still complete).
    listed_keys: tuple[str, ...] | None = None
    # spec.routing.order.query's answer this pass (key -> rank value); None: not measured, or it failed.
    ranks: Mapping[str, float] | None = None


@dataclass(frozen=True)
class BucketRouting:
    """An open universe's routing (api/keyhash.py `owner`): O(1) whatever the number of ids."""

    buckets: int
    salt: str
    canary: int
    draining: tuple[int, int] | None = None
    stopped: bool = False  # trading stopped: every bucket to none


@dataclass(frozen=True)
class SegmentedRouting:
    """A large listed universe's routing (api/keyhash.py `owner`): [start, owner] segments of the hash
    order, for the apps whose keys are the universe named by `keys` and `sha256`."""

    keys: int
    sha256: str
    segments: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class RoutingPayload:
    namespace: str
    config_map: str
    weight: float
    assignments: dict[str, str]
    # False while trading is stopped; None leaves entriesEnabled to its other writer (a ParityCheck).
    entries_enabled: bool | None = None
    buckets: BucketRouting | None = None
    segmented: SegmentedRouting | None = None


@dataclass(frozen=True)
class Scale:
    namespace: str
    deployment: str
    replicas: int


@dataclass
class Decision:
    status: StrategyRolloutStatus
    routing: list[RoutingPayload]
    scales: list[Scale]
    events: list[Event]
    wake_at: datetime | None
