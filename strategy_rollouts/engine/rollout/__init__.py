"""The StrategyRollout state machine: (spec, status, observations, now) -> (status, desired world, events).

Pure: no I/O, no clock. The status is the only memory; the operator enforces the desired world
(replicas and routing per target) level-based, so a restart resumes exactly where status says.

One pass (decide.py) works on a `Run` (state.py: a copy of status plus the pass' inputs), handed to
the functions of each section; a section imports only sections listed above it (no cycles):
  model        what goes in and out: Observations, Decision, RoutingPayload, Scale
  state        Run and its small helpers (events, wake-ups, history, phase)
  replicas     pods per deployment, delayed scale-downs
  assignments  key assignments per target (or bucket ranges), one handoff step at a time
  quarantine   per-key gates: a failing key back to stable alone, releaseKey, maxQuarantined
  lifecycle    start, success, rollback / freeze on failure, emergency stop
  progression  stages and steps, durations, approvals, webhook confirmations
  requests     status.requests, one outcome each
  gates        which gates apply and are due, recording measurements
  plan         what a pass observes (an ObservationPlan)
  summary      replicas, routing and conditions in status
  world        the desired routing and replicas a status implies
  decide       reconcile(), the order of one pass, and invalid()
"""

from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout.decide import invalid, reconcile, spec_errors
from strategy_rollouts.engine.rollout.gates import due_gates
from strategy_rollouts.engine.rollout.lifecycle import target_namespaces
from strategy_rollouts.engine.rollout.model import Decision, DeploymentObs, Observations, RoutingPayload, Scale
from strategy_rollouts.engine.rollout.plan import held_stop, plan, urgent
from strategy_rollouts.engine.rollout.world import routing_changes, routing_document
from strategy_rollouts.engine.routing import DRAINING

__all__ = [
    "DRAINING",
    "Decision",
    "DeploymentObs",
    "GateStatus",
    "Measurement",
    "Observations",
    "RoutingPayload",
    "Scale",
    "due_gates",
    "held_stop",
    "invalid",
    "plan",
    "reconcile",
    "routing_changes",
    "routing_document",
    "spec_errors",
    "target_namespaces",
    "urgent",
]
