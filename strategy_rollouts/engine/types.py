"""Types every kind's engine shares (StrategyRollout, ShadowRun, ParityCheck).

Kept small on purpose: only what more than one kind's engine and its adapter both speak. Each kind
keeps its own Decision and Observations, whose fields differ; what a pass observes is asked for in
one shape, `ObservationPlan`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from strategy_rollouts.api.gates import GateSpec
    from strategy_rollouts.engine.shadow_observed import StreamPlan

# The two types of a Kubernetes Event.
EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """An Event a decision asks the operator to post on its object."""

    type: EventType
    reason: str
    message: str


Ref = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class ObservationPlan:
    """What one pass observes, as the kind's engine asks for it (`plan()` of each kind's engine).

    The adapter observes exactly this, then calls the engine's `reconcile` once: no back and forth.
    Empty fields ask for nothing; a field only one kind uses says so.
    """

    deployments: tuple[Ref, ...] = ()  # read from the watch cache (a GET only for one it lacks)
    routings: tuple[Ref, ...] = ()  # routing ConfigMaps
    objects: tuple[tuple[str, Ref], ...] = ()  # our own objects, (plural, ref): a rollout's ShadowRun
    measure: tuple[GateSpec, ...] = ()  # gates (StrategyRollout) or KPIs (ShadowRun) due in this pass
    # StrategyRollout: per-key gates due, each measured `by (perKey.label)`: one value per key
    measure_per_key: tuple[GateSpec, ...] = ()
    keys_from: bool = False  # StrategyRollout: spec.routing.keysFrom's ConfigMap (the listed keys)
    rank: bool = False  # StrategyRollout: spec.routing.order.query (a run may start in this pass)
    streams: StreamPlan | None = None  # ShadowRun: the decision streams, from their cursors
    latency: bool = False  # ShadowRun: the latency profile (the run may end in this pass)
    ranges: bool = False  # ParityCheck: the live and backtest range queries (a run is due)
    target: bool = False  # ParityCheck: what its actions act on (a deployment or a rollout, its routing)


class Decided(Protocol):
    """The base every kind's Decision satisfies (each adds its desired world): the status to record,
    the Events to post, when to look again. Complete when the engine returns it, after
    engine/finish.py `complete`."""

    @property
    def status(self) -> Any: ...

    @property
    def events(self) -> Sequence[Event]: ...

    @property
    def wake_at(self) -> datetime | None: ...
