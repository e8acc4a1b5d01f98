"""The StrategyRollout state machine: (spec, status, observations, now) -> (status, desired world, events).

Pure: no I/O, no clock. The status is the only memory; the operator enforces the desired world
(replicas and routing per target) level-based, so a restart resumes exactly where status says.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateSpec, GateStatus
from strategy_rollouts.api.requests import HandledRequest, Outcome, RolloutRequest
from strategy_rollouts.api.rollout import (
    HistoryEntry,
    HistoryOutcome,
    ReplicaStatus,
    RiskBudgetStatus,
    RoutingStatus,
    ScaleDown,
    Stage,
    StrategyRolloutSpec,
    StrategyRolloutStatus,
    TargetStatus,
)
from strategy_rollouts.engine import approvals as approvallib
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine import market, requests, webhook_gates
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.routing import (
    DRAINING,
    NONE,
    RoutingState,
    count_draining,
    count_owned,
    desired_assignments,
    rank_keys,
    settled,
    step_handoff,
)
from strategy_rollouts.engine.validation import rollout_errors

ACTIVE = ("Progressing", "Paused")
# Strength of a request: the strongest pending one is applied first and makes weaker ones moot.
STRENGTH = {"stopTrading": 3, "abort": 2, "pause": 1}
# After a stop in the same pass these are Rejected (not merely Superseded): they would move it again.
AFTER_STOP_REJECTED = ("promote", "promoteFull", "resume", "retry", "approve")
HISTORY_LIMIT = 10
OPERATOR = "strategy-rollouts"


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
    shadow_found: bool = False
    shadow_verdict: str | None = None
    # spec.market's calendar (operator/checks/calendars.py); None: 24/7, or no market.
    calendar: market.Calendar | None = None


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class RoutingPayload:
    namespace: str
    config_map: str
    weight: int
    assignments: dict[str, str]
    # False while trading is stopped; None leaves entriesEnabled to its other writer (a ParityCheck).
    entries_enabled: bool | None = None


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


@functools.lru_cache(maxsize=4096)
def ranked_keys(keys: tuple[str, ...], salt: str) -> tuple[str, ...]:
    """The ranking only changes with the universe or the salt: one sha256 per key, once."""
    return tuple(rank_keys(keys, salt))


def risk_gate(stage: Stage, specs: list[GateSpec]) -> GateSpec | None:
    """The stage's risk budget as a gate, so it shares the bookkeeping (limit: used <= max)."""
    if stage.risk_budget is None:
        return None
    intervals = [gatelib.interval(g) for g in specs]
    every = min(intervals) if intervals else timedelta(seconds=30)
    # model_construct: the `:` keeps it apart from user gate names, which validation forbids.
    return GateSpec.model_construct(
        name=f"risk-budget:{stage.name}",
        query=stage.risk_budget.query,
        condition=f"<= {stage.risk_budget.max_percent}",
        interval=f"{max(every.total_seconds(), 0.001):g}s",
        failure_limit=0,
        inconclusive_limit=2,
        baseline=None,
        max_increase_percent=None,
        dry_run=False,
    )


def active_gates(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> list[GateSpec]:
    """Every gate that applies now: the spec's gates (a confirming webhook only before its transition)
    plus the current stage's risk budget."""
    specs = [g for g in spec.gates if webhook_gates.applies(g, spec, status, now)]
    index = status.stage_index or 0
    if index < len(spec.stages):
        risk = risk_gate(spec.stages[index], spec.gates)
        if risk is not None:
            specs.append(risk)
    return specs


def due_gates(spec: StrategyRolloutSpec, status: StrategyRolloutStatus, now: datetime) -> list[GateSpec]:
    """Which gates the operator should measure before calling `reconcile` (none outside a run)."""
    if status.phase not in ACTIVE:
        return []
    by_name = {g.name: g for g in status.gates}
    return [g for g in active_gates(spec, status, now) if gatelib.is_due(g, by_name.get(g.name), now)]


def target_namespaces(spec: StrategyRolloutSpec, namespace: str) -> list[str]:
    seen: list[str] = []
    for stage in spec.stages:
        ns = stage.namespace or namespace
        if ns not in seen:
            seen.append(ns)
    return seen


def _copy_target(t: TargetStatus) -> TargetStatus:
    """A copy of `t` as independent as a deep copy, at a tenth of the cost.

    Its other fields hold immutable values (str, int, datetime, None); the two dicts are the only
    mutable ones, so they get their own copies (`_Run` replaces them whole, but the caller's must
    never be reachable from the decision).
    """
    copied = t.model_copy()
    copied.__dict__["assignments"] = dict(t.assignments)
    copied.__dict__["pending"] = dict(t.pending)
    return copied


class _Run:
    """One reconcile's working state: a copy of status plus what was decided along the way."""

    def __init__(self, spec: StrategyRolloutSpec, status: StrategyRolloutStatus, obs: Observations, now: datetime):
        self.spec = spec
        # Only targets are changed in place; every other field is replaced whole, so a shallow copy
        # plus copied targets keeps the caller's status untouched (a deep copy was most of the cost).
        self.st = status.model_copy(update={"targets": [_copy_target(t) for t in status.targets]})
        self.obs = obs
        self.now = now
        self.events: list[Event] = []
        self.wakes: list[datetime] = []
        self.ranked = ranked_keys(tuple(spec.routing.keys), spec.routing.salt or spec.strategy)
        self.symbols = spec.routing.mode == "symbols"
        self.unpublished: set[str] = set()
        self._desired_by_weight: dict[int, Mapping[str, str]] = {}
        # Market hours and freeze windows (engine/market.py): what holds progress now, read fresh from
        # the spec every pass, so an edit applies at once (reconcile() made sure a named calendar came).
        self.calendar = market.resolve(spec.market.calendar if spec.market else None, obs.calendar) or (
            market.TwentyFourSeven()
        )
        self.hold = market.advance_allowed(spec.market, spec.freeze_windows, self.calendar, now)
        self.closed = market.closed(spec.market, self.calendar, now)

    # ---- small helpers -------------------------------------------------------------------
    def event(self, type_: Literal["Normal", "Warning"], reason: str, message: str) -> None:
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

    # ---- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Begin a run at the first step of the first stage (targets keep their current routing)."""
        spec = self.spec
        if spec.shadow_run and not self._shadow_passed():
            return
        if self.hold is not None:
            self.set_phase("Pending", self.hold.reason, f"not starting: {self.hold.message}")
            self.wake(self.hold.until)
            return
        known = {t.namespace: t for t in self.st.targets}
        targets: list[TargetStatus] = []
        for ns in target_namespaces(spec, self.obs.namespace):
            t = known.get(ns) or self._unrecorded_target(ns)
            stable = self.deployment(ns, spec.stable.deployment)
            t.weight = 0
            t.base_replicas = stable.replicas if stable else (t.base_replicas or 0)
            t.stable_replicas = self._total(t) if not self.symbols else t.base_replicas
            t.canary_replicas = None if self.symbols else 0
            t.canary_scaled_at = None
            targets.append(t)
        self.st.targets = targets
        self.st.stable_version = spec.stable.version
        self.st.canary_version = spec.canary.version
        self.st.trading_stopped = False
        self.st.manual_pause = None
        self.st.scale_downs = []
        self.st.gates = []
        self.st.started_at = self.st.stage_started_at = self.st.step_started_at = self.now
        self.st.stage_index, self.st.step_index, self.st.canary_weight = 0, 0, 0
        self.st.stage = spec.stages[0].name
        self.set_phase("Progressing", "Started", f"rolling {spec.stable.version} -> {spec.canary.version}")
        self.event("Normal", "RolloutStarted", self.st.message or "")

    def _unrecorded_target(self, ns: str) -> TargetStatus:
        """A target status has no record of starts from what its ConfigMap publishes."""
        t = TargetStatus(namespace=ns, config_map=self.spec.routing.config_map or f"{self.obs.name}-routing")
        published = dict(self.obs.routed.get(ns, {}))
        draining = {k: NONE for k, v in published.items() if v == DRAINING}
        if draining:  # next owner unknown: nobody, until step_handoff retargets them after a full drain
            t.pending, t.draining_until = draining, self.now + parse_duration(self.spec.routing.handoff)
        t.assignments = published
        return t

    def _shadow_passed(self) -> bool:
        name = self.spec.shadow_run
        verdict = self.obs.shadow_verdict
        if not self.obs.shadow_found:
            self.set_phase("Pending", "ShadowRunNotFound", f"waiting for ShadowRun {name} (not found)")
        elif verdict == "Pass":
            return True
        elif verdict is None:
            self.set_phase("Pending", "WaitingForShadowRun", f"waiting for ShadowRun {name} verdict")
        else:
            self.set_phase("Pending", f"ShadowRun{verdict}", f"ShadowRun {name} verdict is {verdict}, not Pass")
        return False

    def _total(self, t: TargetStatus) -> int:
        return self.spec.replicas if self.spec.replicas is not None else (t.base_replicas or 0)

    def _canary_size(self, t: TargetStatus) -> int:
        if self.spec.canary.replicas is not None:
            return self.spec.canary.replicas
        return max(t.base_replicas or 1, 1)

    def fail(self, reason: str, message: str) -> None:
        """onFailure: roll every target back to stable, or freeze where it stands."""
        if self.spec.on_failure == "pause":
            self.st.manual_pause = HistoryEntry(
                version=self.spec.canary.version, outcome="Paused", at=self.now, by=OPERATOR, reason=message
            )
            self.set_phase("Paused", reason, message)
            self.history("Paused", OPERATOR, message)
            self.event("Warning", reason, f"frozen (onFailure: pause): {message}")
            return
        self.rollback(reason, message, "RolledBack", OPERATOR)

    def rollback(self, reason: str, message: str, outcome: HistoryOutcome, by: str | None) -> None:
        delay = max(parse_duration(self.spec.scale_down_delay), parse_duration(self.spec.routing.handoff))
        for t in self.st.targets:
            t.weight = 0
            if t.base_replicas is not None:
                t.stable_replicas = self._total(t) if not self.symbols else t.base_replicas
            self._schedule_scale_down(t.namespace, self.spec.canary.deployment, self.now + delay)
        self.st.canary_weight = 0
        self.set_phase("RolledBack", reason, message)
        self.history(outcome, by, message)
        self.event("Warning", reason, message)

    def stop_trading(self, by: str | None, why: str | None, source: str | None) -> None:
        """Emergency stop: nobody trades any key and entries are off. Both deployments keep their pods,
        which can still cancel working orders and manage positions."""
        for t in self.st.targets:
            t.weight = 0
        self.st.canary_weight = 0
        self.st.trading_stopped = True
        who = f"{by or OPERATOR}" + (f" for {source}" if source else "")
        message = f"trading stopped by {who}: {why or 'emergency'}"
        self.set_phase("RolledBack", "TradingStopped", message)
        self.history("Aborted", by, message)
        self.event("Warning", "TradingStopped", message)

    def _schedule_scale_down(self, ns: str, deployment: str, at: datetime) -> None:
        others = [s for s in self.st.scale_downs if not (s.namespace == ns and s.deployment == deployment)]
        self.st.scale_downs = [*others, ScaleDown(namespace=ns, deployment=deployment, at=at)]

    # ---- requests (status.requests; see api/requests.py) -----------------------------------
    def handle_requests(self) -> None:
        """Every pending request, oldest first, gets exactly one outcome in this pass.

        The strongest pending action (stopTrading > abort > pause) is applied first, whenever it was
        written; the requests it makes moot are Superseded, and after a stop a promote/resume/retry
        of the same pass is Rejected (nothing but a later retry by a person moves the rollout again).
        """
        # An id already in the handled log was re-added (a retried write): its outcome stands, once.
        pending = [
            (rid, req)
            for rid, req in requests.in_order(self.st.requests)
            if requests.outcome_of(self.st.handled_requests, rid) is None
        ]
        if not pending:
            self.st.requests = {}
            return
        strongest = max(STRENGTH.get(req.action, 0) for _, req in pending)
        winner = next((rid for rid, req in pending if strongest and STRENGTH.get(req.action, 0) == strongest), None)
        outcomes: dict[str, HandledRequest] = {}
        if winner is not None:
            outcomes[winner] = self.apply_request(winner, self.st.requests[winner])
        for rid, req in pending:
            if rid == winner:
                continue
            if winner is not None and self._mooted(self.st.requests[winner], req):
                by = self.st.requests[winner]
                what = f"{by.action} {winner} by {by.by}"
                if by.action == "stopTrading" and req.action in AFTER_STOP_REJECTED:
                    outcomes[rid] = requests.handled(
                        rid, req, "Rejected", f"rejected: trading was stopped by {what} in the same pass", self.now
                    )
                else:
                    outcomes[rid] = requests.handled(rid, req, "Superseded", f"superseded by {what}", self.now)
                continue
            outcomes[rid] = self.apply_request(rid, req)
        ordered = [outcomes[rid] for rid, _ in pending]
        for entry in ordered:
            if entry.outcome != "Applied":
                self.event("Warning", f"Request{entry.outcome}", f"{entry.action} by {entry.by}: {entry.message}")
        self.st.handled_requests = requests.log(self.st.handled_requests, ordered)
        self.st.requests = {}

    @staticmethod
    def _mooted(winner: RolloutRequest, other: RolloutRequest) -> bool:
        """Does applying `winner` make `other` (of the same pass) moot?"""
        if winner.action in ("stopTrading", "abort"):
            return True
        return other.action in ("pause", "promote", "promoteFull", "resume")  # winner is a pause

    def apply_request(self, rid: str, req: RolloutRequest) -> HandledRequest:
        outcome, message = self._apply(req)
        return requests.handled(rid, req, outcome, message, self.now)

    def _apply(self, req: RolloutRequest) -> tuple[Outcome, str]:
        by, why, action = req.by, req.reason, req.action
        phase = self.st.phase
        stop = self.st.trading_stopped
        if action == "stopTrading":
            already = stop and phase == "RolledBack"
            self.stop_trading(by, why, req.source)
            return "Applied", "trading was already stopped" if already else "every key to none, entries off"
        if stop and action != "retry":
            return "Rejected", f"trading is stopped ({self.st.message}); only a retry by a person moves it again"
        if action == "retry":
            if phase != "RolledBack":
                return "Rejected", f"retry applies after a rollback, not in phase {phase}"
            if stop and req.source is not None:
                return "Rejected", "after stopTrading only a person may retry (this request names a source)"
            self.history("Retried", by, why)
            self.st.phase = None
            self.event("Normal", "Retried", f"retry by {by}: {why or ''}")
            return "Applied", "restarting from the first step of the first stage"
        if action == "abort":
            if phase not in (*ACTIVE, "Pending"):
                return "Rejected", f"nothing to abort in phase {phase}"
            self.rollback("Aborted", f"aborted by {by}: {why or 'no reason given'}", "Aborted", by)
            return "Applied", "rolling back to stable"
        if phase not in ACTIVE:
            return "Rejected", f"{action} does not apply in phase {phase}"
        if action == "approve":
            return self.approve(req)
        if action == "pause":
            if self.st.manual_pause is not None:
                return "Rejected", f"already paused by {self.st.manual_pause.by}"
            self.st.manual_pause = HistoryEntry(
                version=self.spec.canary.version, outcome="Paused", at=self.now, by=by, reason=why
            )
            self.history("Paused", by, why)
            self.event("Normal", "Paused", f"paused by {by}: {why or ''}")
            return "Applied", "paused"
        if action == "resume":
            if self.st.manual_pause is None:
                return "Rejected", "not paused by a request (spec.paused and failing gates are not lifted by resume)"
            self.st.manual_pause = None
            # A freeze from onFailure: pause is lifted with fresh counts, or it would freeze again at once.
            self.st.gates = [
                g.model_copy(update={"failures": 0, "consecutive_failures": 0, "inconclusives": 0})
                for g in self.st.gates
            ]
            self.history("Resumed", by, why)
            self.event("Normal", "Resumed", f"resumed by {by}: {why or ''}")
            return "Applied", "resumed"
        if action in ("promote", "promoteFull") and self.hold is not None:
            return "Rejected", f"held: {self.hold.message}"
        if action in ("promote", "promoteFull") and (self.st.stage_index or 0) >= len(self.spec.stages):
            return "Rejected", "already completing: every key is being handed to the canary"
        waiting = approvallib.blocks_promotion(
            self.spec.stages, self.st.stage_index or 0, self.st.step_index or 0, self.st.approvals, action != "promote"
        )
        if waiting:
            return "Rejected", waiting
        if action == "promote":
            self.promote_step(by, why)
            return "Applied", f"promoted to stage {self.st.stage or 'completion'} step {self.st.step_index}"
        self.history("Promoted", by, why or "promote --full")
        self.event("Normal", "PromotedFull", f"promoted to 100% everywhere by {by}")
        self.begin_completion()
        return "Applied", "handing every key to the canary"

    def approve(self, req: RolloutRequest) -> tuple[Outcome, str]:
        index = self.st.stage_index or 0
        stage = self.spec.stages[index] if index < len(self.spec.stages) else None
        given = approvallib.current(self.st.approvals, self.st.stage, self.st.stage_started_at)
        self.st.approvals, outcome, message = approvallib.approve(stage, given, req, self.now)
        if outcome == "Applied":
            self.history("Approved", req.by, req.reason)
            self.event("Normal", "Approved", f"approved by {req.by}: {message}")
        return outcome, message

    def awaiting_approval(self, stage: Stage) -> bool:
        """Phase Paused, reason AwaitingApproval, while the stage lacks approvals (True: it must wait)."""
        if approvallib.satisfied(stage, self.st.approvals):
            return False
        self.set_phase("Paused", "AwaitingApproval", approvallib.waiting_message(stage, self.st.approvals))
        return True

    def promote_step(self, by: str | None, why: str | None) -> None:
        stage = self.spec.stages[self.st.stage_index or 0]
        index = self.st.step_index or 0
        self.history("Promoted", by, why or "promote")
        self.event("Normal", "Promoted", f"promoted by {by} from {stage.name} step {index}")
        if index >= len(stage.steps):
            self.next_stage()
            return
        step = stage.steps[index]
        if step.set_weight is not None:
            # A human override: the weight applies even before the canary reports Ready.
            t = self.target(self.stage_ns(self.st.stage_index or 0))
            self._want_canary(t, step.set_weight)
            t.weight = step.set_weight
            self.st.canary_weight = step.set_weight
        self.next_step()

    # ---- progression -----------------------------------------------------------------------
    def next_step(self) -> None:
        self.st.step_index = (self.st.step_index or 0) + 1
        self.st.step_started_at = self.now
        self.st.gates = webhook_gates.consume(self.spec.gates, gatelib.reset_step_counts(self.st.gates))

    def next_stage(self) -> None:
        index = (self.st.stage_index or 0) + 1
        if index >= len(self.spec.stages):
            self.begin_completion()
            return
        self.event(
            "Normal",
            "StagePromoted",
            f"stage {self.spec.stages[index - 1].name} done; starting {self.spec.stages[index].name}",
        )
        self.st.stage_index, self.st.step_index = index, 0
        self.st.stage = self.spec.stages[index].name
        self.st.stage_started_at = self.st.step_started_at = self.now
        self.st.gates = webhook_gates.consume(self.spec.gates, gatelib.reset_step_counts(self.st.gates))
        self.st.canary_weight = self.target(self.stage_ns(index)).weight

    def begin_completion(self) -> None:
        self.st.stage_index = len(self.spec.stages)
        self.st.step_index = 0
        self.st.stage = None
        for t in self.st.targets:
            self._want_canary(t, 100)
        self.st.canary_weight = 100
        self.set_phase("Progressing", "Completing", "handing every key to the canary")

    def _want_canary(self, t: TargetStatus, weight: int) -> bool:
        """Scale the canary for `weight`; True once it is Ready to be given keys (or pods)."""
        if self.symbols:
            wanted = self._canary_size(t) if weight > 0 else (t.canary_replicas or 0)
        else:
            wanted = math.ceil(self._total(t) * weight / 100)
        if (t.canary_replicas or 0) < wanted:
            t.canary_scaled_at = self.now
        t.canary_replicas = max(wanted, t.canary_replicas or 0) if self.symbols else wanted
        dep = self.deployment(t.namespace, self.spec.canary.deployment)
        ready = dep is not None and dep.ready >= wanted and dep.replicas == t.canary_replicas
        if ready:
            t.canary_scaled_at = None
            if not self.symbols:
                t.stable_replicas = self._total(t) - wanted
            t.weight = weight
        return ready

    def progress_deadline_exceeded(self) -> str | None:
        deadline = parse_duration(self.spec.progress_deadline)
        for t in self.st.targets:
            if t.canary_scaled_at is not None:
                if self.now - t.canary_scaled_at > deadline:
                    dep = self.deployment(t.namespace, self.spec.canary.deployment)
                    ready = dep.ready if dep else 0
                    return (
                        f"canary {t.namespace}/{self.spec.canary.deployment} has {ready}/{t.canary_replicas} Ready"
                        f" pods {self.spec.progress_deadline} after scale-up"
                    )
                self.wake(t.canary_scaled_at + deadline)
        return None

    def advance(self, summary: gatelib.GateSummary) -> bool:
        """Try to move one step; True when something moved (the caller loops)."""
        spec, st = self.spec, self.st
        if (st.stage_index or 0) >= len(spec.stages):
            return False
        stage = spec.stages[st.stage_index or 0]
        t = self.target(self.stage_ns(st.stage_index or 0))
        serving = any(x.weight > 0 for x in st.targets)
        gates_ok = summary.all_pass or not serving
        max_ends = self.ends(st.stage_started_at, stage.max_duration)
        if max_ends is not None and max_ends > self.now:
            self.wake(max_ends)
        if max_ends is not None and self.now >= max_ends:
            if any(g.result == "Fail" and not g.dry_run for g in st.gates):
                self.fail("MaxDurationFailed", f"stage {stage.name} reached maxDuration with a failing gate")
                return False
            if gates_ok and self.awaiting_approval(stage):
                return False
            if gates_ok and self.confirm("promotion"):
                self.event(
                    "Normal",
                    "MaxDurationPromoted",
                    f"stage {stage.name} reached maxDuration with gates passing",
                )
                self.next_stage()
                return True
            if gates_ok:
                return False  # waiting for a promotion webhook (confirm set the phase)
            self.set_phase(
                "Progressing", "WaitingForGates", f"stage {stage.name} at maxDuration; gates not all passing"
            )
            return False
        if (st.step_index or 0) >= len(stage.steps):
            return self._leave_stage(stage, gates_ok)
        step = stage.steps[st.step_index or 0]
        if step.set_weight is not None:
            if step.set_weight > t.weight and not self.confirm("stepIncrease"):
                return False
            if not self._want_canary(t, step.set_weight):
                self.set_phase("Progressing", "WaitingForCanary", f"waiting for canary pods in {t.namespace}")
                return False
            st.canary_weight = t.weight
            if not self._routing_settled(t):
                self.set_phase("Progressing", "Handoff", f"setting weight {step.set_weight} in {t.namespace}")
                return False
            if not gates_ok:
                self.waiting_for_gates()
                return False
            self.set_phase("Progressing", "WeightSet", f"{stage.name}: weight {step.set_weight}")
            self.next_step()
            return True
        # pause step
        if step.pause is None or step.pause.duration is None:
            self.set_phase("Paused", "AwaitingPromotion", f"{stage.name}: step {st.step_index} waits for promote")
            return False
        ends = self.ends(st.step_started_at, step.pause.duration)
        if ends is None or self.now < ends:
            self.wake(ends)
            until = ends.isoformat() if ends else "the calendar's end (trading time)"
            self.set_phase("Progressing", "Pausing", f"{stage.name}: pause until {until}")
            return False
        if not gates_ok:
            self.waiting_for_gates()
            return False
        self.next_step()
        return True

    def ends(self, start: datetime | None, duration: str | None) -> datetime | None:
        """When `duration` from `start` is over, in wall or trading time (spec.market.countTime)."""
        if duration is None:
            return None
        count = self.spec.market.count_time if self.spec.market else "wall"
        return market.deadline(count, self.calendar, start or self.now, parse_duration(duration))

    def waiting_for_gates(self) -> None:
        if self.closed:
            opens = self.calendar.next_open(self.now)
            self.set_phase(
                "Progressing",
                "MarketClosed",
                f"waiting for gates: {self.calendar.name} closed, opens {market.stamp(opens)}",
            )
            return
        self.set_phase("Progressing", "WaitingForGates", "waiting for every gate to pass")

    def _leave_stage(self, stage: Stage, gates_ok: bool) -> bool:
        ends = self.ends(self.st.stage_started_at, stage.min_duration)
        if stage.min_duration and (ends is None or self.now < ends):
            self.wake(ends)
            until = ends.isoformat() if ends else "the calendar's end (trading time)"
            self.set_phase("Progressing", "MinDuration", f"stage {stage.name} runs until {until}")
            return False
        if not gates_ok:
            self.waiting_for_gates()
            return False
        if self.awaiting_approval(stage):
            return False
        if stage.promotion == "manual":
            self.set_phase("Paused", "AwaitingPromotion", f"stage {stage.name} done; promotion is manual")
            return False
        if not self.confirm("promotion"):
            return False
        self.next_stage()
        return True

    def confirm(self, at: str) -> bool:
        """Webhook gates with `at` (stepIncrease / promotion) have said yes to this transition."""
        ok, why = webhook_gates.confirmed(self.spec.gates, self.st.gates, at)
        if not ok:
            self.set_phase("Progressing", "WaitingForWebhook", why)
            asked = {g.name for g in self.st.gates}
            if any(webhook_gates.confirms(g) == at and g.name not in asked for g in self.spec.gates):
                self.wake(self.now)  # not asked yet (it applies from this pass on): the next pass asks
        return ok

    def _routing_settled(self, t: TargetStatus) -> bool:
        if not self.symbols:
            return True
        return settled(RoutingState(t.assignments, t.pending, t.draining_until), self._desired(t.weight))

    def _desired(self, weight: int) -> Mapping[str, str]:
        """desired_assignments for `weight`, once per reconcile (read-only: shared between callers)."""
        desired = self._desired_by_weight.get(weight)
        if desired is None:
            desired = desired_assignments(self.ranked, weight, self.spec.stable.version, self.spec.canary.version)
            self._desired_by_weight[weight] = desired
        return desired

    # ---- routing and replicas --------------------------------------------------------------
    def route(self) -> None:
        """Move every target's published assignments one handoff step toward its weight."""
        handoff = parse_duration(self.spec.routing.handoff)
        for t in self.st.targets:
            # step_handoff returns new dicts and never changes these, so no copies are needed.
            before = (t.assignments, t.pending)
            desired: Mapping[str, str]
            if self.st.trading_stopped or not self.symbols:
                desired = {k: NONE for k in self.ranked} if self.st.trading_stopped and self.symbols else {}
            else:
                desired = self._desired(t.weight)
            # What this reconcile changed is not in the ConfigMap yet: its drain must not end here.
            published = (self.obs.published.get(t.namespace, False) or not t.assignments) and (
                t.namespace not in self.unpublished
            )
            state = step_handoff(
                RoutingState(t.assignments, t.pending, t.draining_until),
                desired,
                self.now,
                handoff,
                published,
            )
            t.assignments, t.pending, t.draining_until = (
                state.assignments,
                state.pending,
                state.draining_until,
            )
            if before != (t.assignments, t.pending):
                self.unpublished.add(t.namespace)
            self.wake(t.draining_until)

    def scale_downs(self) -> None:
        keep: list[ScaleDown] = []
        for item in self.st.scale_downs:
            if item.at > self.now:
                keep.append(item)
                self.wake(item.at)
                continue
            for t in self.st.targets:
                if t.namespace != item.namespace:
                    continue
                if item.deployment == self.spec.canary.deployment:
                    t.canary_replicas = 0
                elif item.deployment == self.spec.stable.deployment:
                    t.stable_replicas = 0
            self.event("Normal", "ScaledDown", f"{item.namespace}/{item.deployment} scaled to 0")
        self.st.scale_downs = keep

    def finish_if_complete(self) -> None:
        if self.st.phase != "Progressing" or (self.st.stage_index or 0) < len(self.spec.stages):
            return
        if not all(self._want_canary(t, 100) and self._routing_settled(t) for t in self.st.targets):
            return
        delay = max(parse_duration(self.spec.scale_down_delay), parse_duration(self.spec.routing.handoff))
        for t in self.st.targets:
            self._schedule_scale_down(t.namespace, self.spec.stable.deployment, self.now + delay)
        self.set_phase("Succeeded", "Completed", f"{self.spec.canary.version} owns every key")
        self.history("Succeeded", OPERATOR, "all stages completed")
        self.event("Normal", "RolloutSucceeded", f"{self.spec.canary.version} rolled out")

    # ---- gates -----------------------------------------------------------------------------
    def record_gates(self) -> gatelib.GateSummary:
        specs = active_gates(self.spec, self.st, self.now)
        by_name = {g.name: g for g in self.st.gates}
        for gate in specs:
            m = self.obs.measurements.get(gate.name)
            if m is not None:
                prev = by_name.get(gate.name)
                by_name[gate.name] = gatelib.record(prev, gate, m, self.now)
                if self.closed:
                    by_name[gate.name] = market.closed_result(prev, by_name[gate.name], m, self.calendar.name)
            self.wake(gatelib.next_due(gate, by_name.get(gate.name), self.now))
        self.st.gates = [by_name[g.name] for g in specs if g.name in by_name]
        stage = self.spec.stages[min(self.st.stage_index or 0, len(self.spec.stages) - 1)]
        if stage.risk_budget is not None:
            risk = by_name.get(f"risk-budget:{stage.name}")
            self.st.risk_budget = RiskBudgetStatus(
                used_percent=risk.value if risk else None, max_percent=stage.risk_budget.max_percent
            )
        return gatelib.summarize(specs, by_name, self.now)

    # ---- the whole reconcile -----------------------------------------------------------------
    def run(self) -> None:
        spec = self.spec
        st = self.st
        if st.canary_version is not None and (
            st.canary_version != spec.canary.version or st.stable_version != spec.stable.version
        ):
            if st.phase in (*ACTIVE, "Pending"):
                self.history("Superseded", None, f"canary changed to {spec.canary.version}", version=st.canary_version)
                self.event("Normal", "Superseded", f"{st.canary_version} superseded by {spec.canary.version}")
            st.phase = None
        self.handle_requests()
        if st.phase in (None, "Pending", "Invalid"):
            self.start()
        self.route()
        if st.phase in ACTIVE:
            summary = self.record_gates()
            deadline = self.progress_deadline_exceeded()
            frozen = st.manual_pause is not None and st.manual_pause.by == OPERATOR
            if frozen:
                assert st.manual_pause is not None
                self.set_phase("Paused", "GateFailed", f"frozen (onFailure: pause): {st.manual_pause.reason}")
            elif summary.failed:
                gate = summary.failed[0]
                reason = "RiskBudgetExceeded" if gate.name.startswith("risk-budget:") else "GateFailed"
                self.fail(reason, summary.failure_reason())
            elif deadline:
                self.fail("ProgressDeadlineExceeded", deadline)
            elif summary.held:
                self.set_phase("Paused", "Inconclusive", f"holding: {summary.hold_reason()}")
            elif spec.paused or st.manual_pause is not None:
                who = st.manual_pause
                why = f"paused by {who.by}: {who.reason or ''}" if who else "spec.paused is true"
                self.set_phase("Paused", "Paused", why)
            elif self.hold is not None:
                self.set_phase("Paused", self.hold.reason, self.hold.message)
                self.wake(self.hold.until)
            else:
                if st.phase == "Paused":
                    self.set_phase("Progressing", "Resumed", "continuing")
                for _ in range(4 * sum(len(s.steps) + 1 for s in spec.stages) + 4):
                    if not self.advance(summary) or st.phase not in ACTIVE:
                        break
        self.route()
        self.finish_if_complete()
        self.scale_downs()
        st.approvals = approvallib.current(st.approvals, st.stage, st.stage_started_at)
        self._summarize_status()

    def _summarize_status(self) -> None:
        st, spec = self.st, self.spec
        if st.targets:
            index = min(st.stage_index or 0, len(spec.stages) - 1)
            t = self.target(self.stage_ns(index))
            stable = self.deployment(t.namespace, spec.stable.deployment)
            canary = self.deployment(t.namespace, spec.canary.deployment)
            st.replicas = ReplicaStatus(
                stable=stable.replicas if stable else 0,
                canary=canary.replicas if canary else 0,
                stable_ready=stable.ready if stable else 0,
                canary_ready=canary.ready if canary else 0,
            )
            st.routing = RoutingStatus(
                revision=self.obs.revisions.get(t.namespace, st.routing.revision if st.routing else 0),
                canary_keys=count_owned(t.assignments, spec.canary.version),
                draining=count_draining(t.assignments),
            )
        gen = self.obs.generation
        phase = st.phase
        conds = st.conditions
        conds = set_condition(conds, "InvalidSpec", False, "Valid", "", self.now, gen)
        conds = set_condition(
            conds, "Progressing", phase == "Progressing", st.reason or "", st.message or "", self.now, gen
        )
        conds = set_condition(conds, "Paused", phase == "Paused", st.reason or "", st.message or "", self.now, gen)
        conds = set_condition(
            conds, "Completed", phase == "Succeeded", st.reason or "", st.message or "", self.now, gen
        )
        conds = set_condition(
            conds, "Degraded", phase == "RolledBack", st.reason or "", st.message or "", self.now, gen
        )
        conds = self._market_summary(conds)
        st.conditions = conds
        st.observed_generation = gen

    def _market_summary(self, conds: list[Condition]) -> list[Condition]:
        """status.market and condition Frozen, only for a rollout that has a market or freeze windows."""
        st, spec = self.st, self.spec
        live = st.phase in (*ACTIVE, "Pending")
        st.market = market.status(spec.market, spec.freeze_windows, self.calendar, self.now) if live else None
        if st.market is not None:
            self.wake(market.next_boundary(spec.market, spec.freeze_windows, self.calendar, self.now))
        held = st.reason in ("Frozen", "MarketClosed") and st.phase in ("Paused", "Pending")
        if st.market is None and not held and not any(c.type == "Frozen" for c in conds):
            return conds
        return set_condition(
            conds,
            "Frozen",
            held,
            (st.reason or "") if held else "NotFrozen",
            (st.message or "") if held else "",
            self.now,
            self.obs.generation,
        )


def reconcile(
    spec: StrategyRolloutSpec,
    status: StrategyRolloutStatus,
    obs: Observations,
    now: datetime,
) -> Decision:
    """Decide everything for one reconcile. Deterministic in its arguments."""
    errors = cached_rollout_errors(spec)
    if spec.market is not None and market.resolve(spec.market.calendar, obs.calendar) is None:
        errors = [*errors, f"spec.market.calendar: calendar {spec.market.calendar} is not available"]
    if errors:
        return invalid(status, errors, obs.generation, now)
    run = _Run(spec, status, obs, now)
    run.run()
    return Decision(
        status=run.st,
        routing=desired_routing(spec, run.st),
        scales=desired_scales(spec, run.st),
        events=run.events,
        wake_at=min(run.wakes) if run.wakes else None,
    )


def cached_rollout_errors(spec: StrategyRolloutSpec) -> list[str]:
    """Validation depends on the spec alone; specs change rarely, reconciles are frequent."""
    return list(_errors_of(spec.model_dump_json()))


@functools.lru_cache(maxsize=4096)
def _errors_of(spec_json: str) -> tuple[str, ...]:
    # Pure memoization (same input, same output), like ranked_keys: no state a reconcile can observe.
    return tuple(rollout_errors(StrategyRolloutSpec.model_validate_json(spec_json)))


def invalid(status: StrategyRolloutStatus, errors: list[str], generation: int, now: datetime) -> Decision:
    """Never act on what cannot be trusted: report, change nothing else."""
    st = status.model_copy(deep=True)
    message = "; ".join(errors)
    st.phase, st.reason, st.message = "Invalid", "InvalidSpec", message
    st.conditions = set_condition(st.conditions, "InvalidSpec", True, "InvalidSpec", message, now, generation)
    st.observed_generation = generation
    events = [] if status.message == message else [Event("Warning", "InvalidSpec", message)]
    return Decision(st, [], [], events, None)


def desired_routing(spec: StrategyRolloutSpec, st: StrategyRolloutStatus) -> list[RoutingPayload]:
    entries = False if st.trading_stopped else None
    return [RoutingPayload(t.namespace, t.config_map, t.weight, dict(t.assignments), entries) for t in st.targets]


def desired_scales(spec: StrategyRolloutSpec, st: StrategyRolloutStatus) -> list[Scale]:
    scales: list[Scale] = []
    for t in st.targets:
        if t.stable_replicas is not None:
            scales.append(Scale(t.namespace, spec.stable.deployment, t.stable_replicas))
        if t.canary_replicas is not None:
            scales.append(Scale(t.namespace, spec.canary.deployment, t.canary_replicas))
    return scales


def routing_document(
    spec: StrategyRolloutSpec,
    payload: RoutingPayload,
    revision: int,
    size_multiplier: float,
    entries_enabled: bool,
) -> dict[str, object]:
    """The `routing.json` the strategy apps read."""
    return {
        "strategy": spec.strategy,
        "stableVersion": spec.stable.version,
        "canaryVersion": spec.canary.version,
        "weight": payload.weight,
        "assignments": dict(sorted(payload.assignments.items())),
        "sizeMultiplier": size_multiplier,
        "entriesEnabled": entries_enabled,
        "revision": revision,
    }


__all__ = [
    "DRAINING",
    "Decision",
    "DeploymentObs",
    "Event",
    "GateStatus",
    "Measurement",
    "Observations",
    "RoutingPayload",
    "Scale",
    "due_gates",
    "reconcile",
    "routing_document",
]
