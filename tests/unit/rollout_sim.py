"""A tiny deterministic world for the pure engine: deployments follow scales, ConfigMaps follow routing.

No mocks: the engine is pure, so the 'world' is just data that the test advances with a fake clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from strategy_rollouts.api import keyhash
from strategy_rollouts.api.requests import RolloutAction, RolloutRequest
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus, TargetStatus
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import Decision, DeploymentObs, Observations, plan, reconcile
from strategy_rollouts.engine.rollout.model import BucketRouting, RoutingPayload
from strategy_rollouts.engine.rollout.world import desired_routing, routing_changes

T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)

EXAMPLE = """
strategy: fib_rsi
stable: {deployment: fib-rsi-legacy, version: v1.0.0}
canary: {deployment: fib-rsi-pipeline, version: v2.0.0, replicas: 2}
routing:
  keys: [BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT, ADAUSDT, XRPUSDT, DOGEUSDT, AVAXUSDT, DOTUSDT, LINKUSDT]
  handoff: 5s
stages:
- name: staging
  steps: [{setWeight: 10}, {pause: {duration: 1m}}]
  minDuration: 2m
- name: prod
  steps: [{setWeight: 10}, {pause: {duration: 1m}}, {setWeight: 50}, {pause: {duration: 1m}}, {setWeight: 100}]
gates:
- {name: tick-p95-ms, query: 'q{v="{{canary.version}}"}', condition: "< 200", interval: 30s,
   failureLimit: 0, inconclusiveLimit: 2}
scaleDownDelay: 1m
"""


def spec_from(text: str = EXAMPLE, **overrides: Any) -> StrategyRolloutSpec:
    data = yaml.safe_load(text)
    data.update(overrides)
    return StrategyRolloutSpec.model_validate(data)


@dataclass
class World:
    spec: StrategyRolloutSpec
    namespace: str = "trading"
    now: datetime = T0
    status: StrategyRolloutStatus = field(default_factory=StrategyRolloutStatus)
    replicas: dict[tuple[str, str], int] = field(default_factory=dict)
    ready_lag: bool = False
    published: dict[str, dict[str, str]] = field(default_factory=dict)
    revisions: dict[str, int] = field(default_factory=dict)
    gate_values: dict[str, float | None] = field(default_factory=dict)
    # per-key gates: gate -> key -> value (a key not named: 100.0)
    key_values: dict[str, dict[str, float]] = field(default_factory=dict)
    key_values_stable: dict[str, dict[str, float]] = field(default_factory=dict)  # the scoreboard's stable side
    # open universes: what each namespace's routing.json publishes about its buckets
    published_buckets: dict[str, BucketRouting | None] = field(default_factory=dict)
    bucket_snapshots: list[BucketRouting] = field(default_factory=list)
    listed_keys: tuple[str, ...] | None = None  # what spec.routing.keysFrom's ConfigMap lists, once read
    ranks: dict[str, float] | None = None  # what spec.routing.order.query answers (None: no answer)
    rank_queries: int = 0  # how often the plan asked for it
    shadow: tuple[bool, str | None] = (False, None)
    decisions: list[Decision] = field(default_factory=list)
    snapshots: list[dict[str, str]] = field(default_factory=list)
    scale_log: list[tuple[str, str, int]] = field(default_factory=list)
    views: dict[tuple[str, tuple[str, ...]], dict[str, str]] = field(default_factory=dict)  # app_view's last

    def __post_init__(self) -> None:
        for stage in self.spec.stages:
            ns = stage.namespace or self.namespace
            self.replicas.setdefault((ns, self.spec.stable.deployment), 4)
            self.replicas.setdefault((ns, self.spec.canary.deployment), 0)

    def observe(self) -> Observations:
        measurements = {}
        planned = plan(self.spec, self.status, self.namespace, "fib-rsi", self.now)
        per_key = {
            gate.name: {
                k: Measurement(self.key_values.get(gate.name, {}).get(k, 100.0))
                for k in (self.spec.routing.keys or self.listed_keys or ())
            }
            for gate in planned.measure_per_key
        }
        for gate in planned.measure:  # as the operator
            value = self.gate_values.get(gate.name, 100.0)
            measurements[gate.name] = (
                Measurement(value) if value is not None else Measurement(None, outcome="inconclusive", message="empty")
            )
        if planned.rank:
            self.rank_queries += 1
        expected = {p.namespace: self.app_view(p) for p in desired_routing(self.spec, self.status)}
        published = {
            t.namespace: self.published.get(t.namespace) == expected.get(t.namespace)
            and (self.spec.routing.buckets is None or self.published_buckets.get(t.namespace) == self._buckets_of(t))
            for t in self.status.targets
        }
        return Observations(
            namespace=self.namespace,
            name="fib-rsi",
            deployments={k: DeploymentObs(v, v) for k, v in self.replicas.items()},
            measurements=measurements,
            per_key=per_key,
            per_key_stable={g.name: dict(self.key_values_stable.get(g.name, {})) for g in planned.measure_per_key},
            listed_keys=self.listed_keys,
            ranks=dict(self.ranks) if planned.rank and self.ranks is not None else None,
            published=published,
            revisions=dict(self.revisions),
            shadow_found=self.shadow[0],
            shadow_verdict=self.shadow[1],
        )

    def reconcile(self, apply: bool = True) -> Decision:
        decision = reconcile(self.spec, self.status, self.observe(), self.now)
        # Round-trip through JSON, as the API server does, so tests catch anything unserializable.
        self.status = StrategyRolloutStatus.model_validate(decision.status.wire())
        if apply:
            self.apply(decision)
        self.decisions.append(decision)
        return decision

    def _buckets_of(self, t: TargetStatus) -> BucketRouting | None:
        """What status says a namespace should publish about its buckets (as the engine's payload)."""
        payloads = [p for p in desired_routing(self.spec, self.status) if p.namespace == t.namespace]
        return payloads[0].buckets if payloads else None

    def app_view(self, payload: RoutingPayload) -> dict[str, str]:
        """Each key's owner as an app reads the payload's routing.json: named keys, or, for a segmented
        universe, every key of the app's list through api/keyhash.py (the app holds the current list)."""
        if payload.segmented is None:
            return dict(payload.assignments)
        document = routing_changes(self.spec, payload)
        keys = tuple(self.spec.routing.keys or self.listed_keys or ())
        cache_key = (json.dumps(document, sort_keys=True), keys)
        if cache_key not in self.views:  # 100,000 sha256 a view: once per document
            self.views = {cache_key: keyhash.owners(document, keys)}
        return dict(self.views[cache_key])

    def apply(self, decision: Decision) -> None:
        for payload in decision.routing:
            if payload.buckets is not None and self.published_buckets.get(payload.namespace) != payload.buckets:
                self.published_buckets[payload.namespace] = payload.buckets
                self.bucket_snapshots.append(payload.buckets)
            view = self.app_view(payload)
            if self.published.get(payload.namespace) != view:
                self.published[payload.namespace] = view
                self.revisions[payload.namespace] = self.revisions.get(payload.namespace, 0) + 1
                self.snapshots.append(dict(view))
        for scale in decision.scales:
            key = (scale.namespace, scale.deployment)
            if self.replicas.get(key) != scale.replicas:
                self.replicas[key] = scale.replicas
                self.scale_log.append((scale.namespace, scale.deployment, scale.replicas))

    def request(
        self, id_: str, action: RolloutAction, by: str, reason: str | None = None, source: str | None = None
    ) -> None:
        """What a writer's merge patch does: add one pending request under its own id."""
        req = RolloutRequest(action=action, by=by, reason=reason, source=source, at=self.now)
        self.status = self.status.model_copy(update={"requests": {**self.status.requests, id_: req}})

    def release(self, id_: str, key: str, by: str = "alice") -> None:
        req = RolloutRequest(action="releaseKey", by=by, key=key, at=self.now)
        self.status = self.status.model_copy(update={"requests": {**self.status.requests, id_: req}})

    def outcome(self, id_: str) -> str | None:
        return next((h.outcome for h in self.status.handled_requests if h.id == id_), None)

    def run(self, seconds: float, tick: float = 1.0) -> None:
        end = self.now + timedelta(seconds=seconds)
        while self.now < end:
            self.reconcile()
            self.now += timedelta(seconds=tick)

    def run_until(self, phase: str, limit: float = 3 * 86400, tick: float = 1.0) -> None:
        end = self.now + timedelta(seconds=limit)
        while self.status.phase != phase:
            assert self.now < end, (
                f"never reached {phase}: {self.status.phase} {self.status.reason} {self.status.message}"
            )
            self.reconcile()
            if self.status.phase != phase:
                self.now += timedelta(seconds=tick)
