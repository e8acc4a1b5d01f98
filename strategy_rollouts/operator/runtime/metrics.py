"""The operator's own Prometheus metrics (served on --metrics-port at /metrics)."""

from __future__ import annotations

import contextlib

from prometheus_client import Counter, Gauge, Histogram

PHASES = ("Pending", "Progressing", "Paused", "Succeeded", "RolledBack", "Invalid")

rollout_phase = Gauge(
    "strategy_rollout_phase",
    "1 for the rollout's current phase",
    ["namespace", "rollout", "strategy", "phase"],
)
canary_traffic_percent = Gauge(
    "canary_traffic_percent",
    "Canary weight of the current stage",
    ["namespace", "rollout", "strategy", "version"],
)
version_activations_total = Counter(
    "version_activations_total", "Rollouts that made a version own every key", ["strategy", "version"]
)
gate_evaluations_total = Counter(
    "rollout_gate_evaluations_total", "Gate measurements by result", ["kind", "gate", "result"]
)
gate_value = Gauge("rollout_gate_value", "Latest measured value of a gate", ["namespace", "rollout", "gate"])
rollbacks_total = Counter("rollbacks_total", "Rollouts rolled back", ["strategy", "reason"])
reconcile_seconds = Histogram(
    "strategy_reconcile_duration_seconds",
    "Time of one reconcile",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
leader = Gauge("strategy_rollouts_leader", "1 while this replica is the leader and acts, 0 on a standby")
fenced_total = Counter("strategy_rollouts_fenced_total", "Writes refused because this replica was not the leader")
reconcile_errors_total = Counter("strategy_reconcile_errors_total", "Reconciles that raised", ["kind"])
shadow_match_rate = Gauge("shadow_match_rate", "Decision match rate of a ShadowRun", ["namespace", "shadowrun"])
shadow_verdict = Gauge("shadow_verdict", "1 for the ShadowRun's verdict", ["namespace", "shadowrun", "verdict"])
shadow_decisions_total = Gauge("shadow_decisions_compared", "Decisions compared so far", ["namespace", "shadowrun"])
parity_tracking_error_bps = Gauge(
    "parity_tracking_error_bps", "Last tracking error", ["namespace", "paritycheck", "strategy"]
)
parity_level = Gauge("parity_level", "1 for the last level", ["namespace", "paritycheck", "level"])
parity_actions_total = Counter("parity_actions_total", "Parity actions applied", ["namespace", "paritycheck", "action"])


def set_rollout_phase(namespace: str, name: str, strategy: str, phase: str | None) -> None:
    for p in PHASES:
        rollout_phase.labels(namespace, name, strategy, p).set(1 if p == phase else 0)


def forget_object(namespace: str, name: str, *families: Gauge | Counter) -> None:
    """Drop every series of `families` labelled with this object (it was deleted); their first two
    labels are (namespace, object name)."""
    for family in families:
        stale = {
            tuple(sample.labels.values())
            for metric in family.collect()
            for sample in metric.samples
            if list(sample.labels.values())[:2] == [namespace, name]
        }
        for values in stale:
            with contextlib.suppress(KeyError):
                family.remove(*values)


ROLLOUT_FAMILIES = (rollout_phase, canary_traffic_percent, gate_value)
PARITY_FAMILIES = (parity_tracking_error_bps, parity_level, parity_actions_total)
SHADOW_FAMILIES = (shadow_match_rate, shadow_verdict, shadow_decisions_total)
