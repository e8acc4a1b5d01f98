"""The working state every section of a pass reads and changes (one `Run` per reconcile)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from datetime import datetime

from strategy_rollouts.api.rollout import (
    HistoryEntry,
    HistoryOutcome,
    SegmentedKeys,
    StrategyRolloutSpec,
    StrategyRolloutStatus,
    TargetStatus,
)
from strategy_rollouts.engine import market
from strategy_rollouts.engine.keys import expand_segments, hash_order, segments_of, tiered_rank
from strategy_rollouts.engine.rollout.model import DeploymentObs, Observations
from strategy_rollouts.engine.routing import rank_keys
from strategy_rollouts.engine.size import segmented
from strategy_rollouts.engine.types import Event, EventType

ACTIVE = ("Progressing", "Paused")
HISTORY_LIMIT = 10
OPERATOR = "strategy-rollouts"


@functools.lru_cache(maxsize=4096)
def ranked_keys(keys: tuple[str, ...], salt: str, tiers: tuple[tuple[str, ...], ...] = ()) -> tuple[str, ...]:
    """The ranking only changes with the universe, the salt or the tiers: one sha256 per key, once."""
    return tuple(tiered_rank(keys, salt, tiers) if tiers else rank_keys(keys, salt))


class Run:
    """One reconcile's working state: a copy of status plus what was decided along the way."""

    def __init__(self, spec: StrategyRolloutSpec, status: StrategyRolloutStatus, obs: Observations, now: datetime):
        self.spec = spec
        self.obs = obs
        self.now = now
        self.events: list[Event] = []
        self.wakes: list[datetime] = []
        self.desired_by_weight: dict[float, Mapping[str, str]] = {}
        self.salt = spec.routing.salt or spec.strategy
        listed = obs.listed_keys if spec.routing.keys_from is not None and obs.listed_keys is not None else ()
        self.universe = tuple(spec.routing.keys) or listed
        self.rank(status.keys.order if status.keys is not None else None)
        self.symbols = spec.routing.mode == "symbols"
        # An open universe: routed by bucket ranges, no keys in status (engine/keys.py).
        self.buckets = spec.routing.buckets if self.symbols else None
        # A large listed universe: status and routing.json hold segments of the hash order (engine/keys.py);
        # a pass works on the expanded maps and segments them again at its end (segment_targets).
        self.segmented = self.symbols and self.buckets is None and segmented(spec, self.universe)
        # namespace -> the maps a target's segments expanded to this pass, and the segments
        self.expanded: dict[str, tuple[dict[str, str], dict[str, str], SegmentedKeys]] = {}
        # Only targets are changed in place; every other field is replaced whole, so a shallow copy
        # plus copied targets keeps the caller's status untouched (a deep copy was most of the cost).
        self.st = status.model_copy(update={"targets": [self._copy_target(t) for t in status.targets]})
        self.quarantined = frozenset(q.key for q in status.keys.quarantined) if status.keys else frozenset()
        self.unpublished: set[str] = set()
        # Market hours and freeze windows (engine/market.py): what holds progress now, read fresh from
        # the spec every pass, so an edit applies at once (reconcile() made sure a named calendar came).
        self.calendar = market.resolve(spec.market.calendar if spec.market else None, obs.calendar) or (
            market.TwentyFourSeven()
        )
        self.hold = market.advance_allowed(spec.market, spec.freeze_windows, self.calendar, now)
        self.closed = market.closed(spec.market, self.calendar, now)

    def _copy_target(self, t: TargetStatus) -> TargetStatus:
        """A copy of `t` as independent as a deep copy, at a tenth of the cost, its segments expanded.

        Its other fields hold immutable values (str, int, datetime, None); the two dicts are the only
        mutable ones, so they get their own copies (the pass replaces them whole, but the caller's must
        never be reachable from the decision).
        """
        copied = t.model_copy()
        if t.segmented is not None:
            ranked, digests, _ = hash_order(self.universe, self.salt)
            assignments, pending = expand_segments(ranked, digests, t.segmented.segments)
            copied.__dict__.update(assignments=assignments, pending=pending, segmented=None)
            self.expanded[t.namespace] = (assignments, pending, t.segmented)
            return copied
        copied.__dict__["assignments"] = dict(t.assignments)
        copied.__dict__["pending"] = dict(t.pending)
        return copied

    def segment_targets(self) -> None:
        """The pass's end for a large listed universe: each target's maps back to segments."""
        if not self.segmented:
            return
        ranked, digests, sha256 = hash_order(self.universe, self.salt)
        for t in self.st.targets:
            was = self.expanded.get(t.namespace)
            if was is not None and was[0] is t.assignments and was[1] is t.pending and was[2].sha256 == sha256:
                t.segmented, t.assignments, t.pending = was[2], {}, {}  # the pass moved none of its keys
                continue
            segments = segments_of(ranked, digests, t.assignments, t.pending)
            t.segmented = SegmentedKeys(keys=len(ranked), sha256=sha256, segments=segments)
            t.assignments, t.pending = {}, {}

    def rank(self, measured: list[list[str]] | None) -> None:
        """The ranked order: the spec's tiers, or a rank query's tiers as frozen at the run's start."""
        order = self.spec.routing.order
        tiers = order.tiers if order is not None and order.tiers else measured if order is not None else None
        frozen = tuple(tuple(tier) for tier in tiers or ())
        self.ranked = ranked_keys(self.universe, self.salt, frozen)
        self.desired_by_weight.clear()

    # ---- small helpers -------------------------------------------------------------------
    def event(self, type_: EventType, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def wake(self, at: datetime | None) -> None:
        if at is not None:
            self.wakes.append(at)

    def history(self, outcome: HistoryOutcome, by: str | None, reason: str | None, version: str | None = None) -> None:
        entry = HistoryEntry(
            version=version or self.spec.canary.version, outcome=outcome, at=self.now, by=by, reason=reason
        )
        self.st.history = [*self.st.history, entry][-HISTORY_LIMIT:]

    def stage_ns(self, index: int) -> str:
        stage = self.spec.stages[min(index, len(self.spec.stages) - 1)]
        return stage.namespace or self.obs.namespace

    def target(self, ns: str) -> TargetStatus:
        for t in self.st.targets:
            if t.namespace == ns:
                return t
        raise KeyError(ns)

    def deployment(self, ns: str, name: str) -> DeploymentObs | None:
        return self.obs.deployments.get((ns, name))

    def set_phase(self, phase: str, reason: str, message: str) -> None:
        self.st.phase = phase  # type: ignore[assignment]
        self.st.reason = reason
        self.st.message = message
