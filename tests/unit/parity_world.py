"""A simulated world for `engine.parity_run.reconcile`: one routing ConfigMap, a deployment and a
rollout that answers requests as the real one does (stopTrading strongest). It plays the adapter
(measure when asked, observe, write status, then enforce) with crash points, and records every
effect so tests can check that nothing is applied twice and nothing overrides a stop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.requests import ParityRequest, RolloutRequest
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine import parity_run
from strategy_rollouts.engine.parity import Level, Series

T0 = datetime(2026, 3, 2, 12, tzinfo=UTC)
USER = "system:serviceaccount:strategy-rollouts:strategy-rollouts"
NAME, NS, CM = "pc", "trading", "fib-rsi-routing"
KEYS = ("BTC", "ETH", "SOL")
THRESHOLDS = {"warning": 20, "critical": 50, "emergency": 100}
TE_FOR: dict[Level, float] = {"Excellent": 5, "Good": 15, "Warning": 30, "Critical": 70, "Emergency": 200}
Crash = Literal["none", "before_write", "after_write", "partial"]
Answer = Literal["apply", "reject", "wait"]


def make_spec(target: dict[str, str] | None = None, **overrides: Any) -> ParityCheckSpec:
    raw: dict[str, Any] = {
        "strategy": "fib_rsi",
        "target": target or {"rollout": "fib-rsi"},
        "schedule": "0 0 1 1 *",
        "window": "30s",
        "step": "1s",
        "periodsPerYear": 1,
        "minSamples": 3,
        "live": {"query": "live"},
        "backtest": {"query": "backtest"},
        "thresholdsBps": THRESHOLDS,
    }
    raw.update(overrides)
    return ParityCheckSpec.model_validate(raw)


def measured_at(level: Level) -> parity_run.Measured:
    """Series whose tracking error (periodsPerYear 1) lands inside `level`'s band; Unknown: Prometheus down."""
    if level == "Unknown":
        return parity_run.Measured(Series([], "Prometheus unreachable"), Series([], "Prometheus unreachable"))
    n = 10
    x = TE_FOR[level] / 1e4 / math.sqrt(n / (n - 1))  # alternating +x, -x: sample stdev x * sqrt(n / (n - 1))
    live = [(1000.0 + i, x if i % 2 == 0 else -x) for i in range(n)]
    return parity_run.Measured(Series(live), Series([(1000.0 + i, 0.0) for i in range(n)]))


@dataclass
class World:
    spec: ParityCheckSpec
    status: ParityCheckStatus = field(default_factory=ParityCheckStatus)
    now: datetime = T0
    level: Level = "Good"  # what a measurement now would show
    routing: dict[str, Any] = field(
        default_factory=lambda: {
            "assignments": dict.fromkeys(KEYS, "v1"),
            "sizeMultiplier": 1.0,
            "entriesEnabled": True,
            "revision": 1,
        }
    )
    replicas: int = 3
    rollout_exists: bool = True
    rollout_requests: dict[str, RolloutRequest] = field(default_factory=dict)
    rollout_handled: list[tuple[str, str, str]] = field(default_factory=list)  # (id, outcome, message)
    rollout_paused: bool = False
    rollout_stopped: bool = False
    # What happened, for the properties.
    sends: list[str] = field(default_factory=list)
    scale_calls: int = 0
    measurements: int = 0
    runs_written: int = 0
    pc_stop_applied: bool = False  # a stop this check asked for is in force in the world
    violations: list[str] = field(default_factory=list)
    records_seen: dict[str, tuple[str, int]] = field(default_factory=dict)  # id -> (action, run)
    request_seq: int = 0

    @property
    def rollout_target(self) -> bool:
        return self.spec.target.rollout is not None

    # ---- what the adapter observes ------------------------------------------------------------
    def target(self) -> acts.Target:
        cm = acts.RoutingObs(NS, CM, dict(self.routing))
        if self.rollout_target:
            seen = None
            if self.rollout_exists:
                handled = {rid: (outcome, msg) for rid, outcome, msg in self.rollout_handled[-20:]}
                seen = acts.RolloutObs(frozenset(self.rollout_requests), handled)
            return acts.Target(NS, "strategyrollout/fib-rsi", rollout="fib-rsi", routing=(cm,), rollout_obs=seen)
        return acts.Target(NS, "deployment/legacy", deployment="legacy", routing=(cm,), replicas=self.replicas)

    def request_run(self, by: str = "alice") -> str:
        self.request_seq += 1
        rid = f"r{self.request_seq}"
        self.status = self.status.model_copy(
            update={"requests": {**self.status.requests, rid: ParityRequest(action="run", by=by, at=self.now)}}
        )
        return rid

    # ---- one adapter pass ---------------------------------------------------------------------
    def step(self, crash: Crash = "none", keep: list[bool] | None = None) -> parity_run.Decision:
        created = T0 - timedelta(days=1)
        measured = None
        if parity_run.plan(self.spec, self.status, NS, created, self.now).ranges:
            measured = measured_at(self.level)
            self.measurements += 1
        target = self.target() if measured is not None or acts.pending(self.status.actions_taken) else None
        obs = parity_run.Observations(NS, NAME, USER, created, 1, (), measured, target)
        before = self.status
        decision = parity_run.reconcile(self.spec, before, obs, self.now)
        if crash != "before_write":
            if decision.status.run_seq != before.run_seq:
                self.runs_written += 1
            self.status = decision.status
            for r in decision.status.actions_taken:
                if self.records_seen.setdefault(r.id, (r.action, r.run)) != (r.action, r.run):
                    self.violations.append(f"id {r.id} recorded twice with different content")
            if crash == "none":
                self.enforce(decision.effects, None)
            elif crash == "partial":
                self.enforce(decision.effects, keep or [])
        self.now += timedelta(seconds=1)
        return decision

    def enforce(self, effects: acts.Effects, keep: list[bool] | None) -> None:
        """Apply the effects (with `keep`, only those whose flag is True: a crash half-way)."""
        todo: list[Any] = [*effects.routing, *effects.scales, *effects.requests]
        for i, effect in enumerate(todo):
            if keep is not None and not (keep[i] if i < len(keep) else False):
                continue
            if isinstance(effect, acts.RoutingChange):
                self.write_routing(effect.changes)
            elif isinstance(effect, acts.Scale):
                self.scale(effect.replicas)
            else:
                self.send(effect)

    def write_routing(self, changes: dict[str, Any]) -> None:
        merged = {**self.routing, **changes}
        if merged == self.routing:
            self.violations.append(f"routing write that changes nothing: {changes}")
        if self.pc_stop_applied and (
            changes.get("entriesEnabled") is True or changes.get("sizeMultiplier", 0) > self.routing["sizeMultiplier"]
        ):
            self.violations.append(f"routing write {changes} after the stop")
        merged["revision"] = self.routing["revision"] + 1
        self.routing = merged

    def scale(self, replicas: int) -> None:
        self.scale_calls += 1
        if replicas == self.replicas:
            self.violations.append(f"scale to {replicas} twice")
        if self.pc_stop_applied and replicas > 0:
            self.violations.append("scaled up after the stop")
        self.replicas = replicas
        self.check_deployment_stop()

    def send(self, out: acts.OutgoingRequest) -> None:
        self.sends.append(out.id)
        if out.request.by != USER or out.request.source != f"paritycheck/{NAME}":
            self.violations.append(f"request {out.id} not by the operator for this check")
        if out.id in self.rollout_requests or any(h[0] == out.id for h in self.rollout_handled):
            self.violations.append(f"request {out.id} sent again")
        if self.pc_stop_applied and out.request.action != "stopTrading":
            self.violations.append(f"{out.request.action} sent after the stop")
        if self.rollout_exists:
            self.rollout_requests[out.id] = out.request

    def check_deployment_stop(self) -> None:
        """A deployment target is stopped when it is at 0 and the routing frees every key (by this check)."""
        stopped = self.replicas == 0 and all(v == "none" for v in self.routing["assignments"].values())
        if not self.rollout_target and stopped and not self.routing["entriesEnabled"]:
            self.pc_stop_applied = True

    # ---- the rollout's side ----------------------------------------------------------------------
    def rollout_answers(self, answers: list[Answer]) -> None:
        """Handle pending requests oldest first, each as told (wait: it and all after it stay)."""
        for i, (rid, request) in enumerate(sorted(self.rollout_requests.items(), key=lambda kv: (kv[1].at, kv[0]))):
            answer = answers[i] if i < len(answers) else "wait"
            if answer == "wait":
                break
            del self.rollout_requests[rid]
            outcome, message = self.handle(request.action, answer)
            self.rollout_handled.append((rid, outcome, message))

    def handle(self, action: str, answer: Answer) -> tuple[str, str]:
        if self.rollout_stopped and action != "stopTrading":
            return "Rejected", "trading stopped: only retry by a person moves the rollout"
        if answer == "reject":
            return "Rejected", "refused by the rollout"
        if action == "stopTrading":
            self.rollout_stopped = True
            self.pc_stop_applied = True
            self.routing = {
                **self.routing,
                "assignments": dict.fromkeys(KEYS, "none"),
                "entriesEnabled": False,
                "revision": self.routing["revision"] + 1,
            }
        elif action == "pause":
            self.rollout_paused = True
        elif action == "resume":
            if not self.rollout_paused:
                return "Rejected", "not paused"
            self.rollout_paused = False
        return "Applied", f"{action} applied"
