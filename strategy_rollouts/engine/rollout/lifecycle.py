"""A run's beginning and ends: start, success, rollback (or freeze) on failure, emergency stop."""

from __future__ import annotations

from datetime import timedelta

from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.rollout import HistoryEntry, HistoryOutcome, StrategyRolloutSpec, TargetStatus
from strategy_rollouts.engine.keys import tiers_from_ranks
from strategy_rollouts.engine.rollout.assignments import routing_settled
from strategy_rollouts.engine.rollout.quarantine import set_keys
from strategy_rollouts.engine.rollout.replicas import schedule_scale_down, total, want_canary
from strategy_rollouts.engine.rollout.state import OPERATOR, Run
from strategy_rollouts.engine.routing import DRAINING, NONE

RANK_RETRY = timedelta(seconds=10)  # a rank query that ranked nothing is asked again this often


def target_namespaces(spec: StrategyRolloutSpec, namespace: str) -> list[str]:
    seen: list[str] = []
    for stage in spec.stages:
        ns = stage.namespace or namespace
        if ns not in seen:
            seen.append(ns)
    return seen


def start(run: Run) -> None:
    """Begin a run at the first step of the first stage (targets keep their current routing)."""
    spec = run.spec
    if spec.shadow_run and not _shadow_passed(run):
        return
    if run.hold is not None:
        run.set_phase("Pending", run.hold.reason, f"not starting: {run.hold.message}")
        run.wake(run.hold.until)
        return
    order = spec.routing.order
    measured: list[list[str]] | None = None
    if order is not None and order.query is not None:
        universe = set(run.universe)
        ranks = {k: v for k, v in (run.obs.ranks or {}).items() if k in universe}
        if not ranks:  # never a silent fallback to hash order
            why = "it failed or named none of the keys" if run.obs.ranks is not None else "it was not measured"
            run.set_phase("Pending", "RankUnmeasured", f"not starting: spec.routing.order.query ranks no key ({why})")
            run.wake(run.now + RANK_RETRY)
            return
        measured = tiers_from_ranks(ranks, order.ascending)
    known = {t.namespace: t for t in run.st.targets}
    targets: list[TargetStatus] = []
    for ns in target_namespaces(spec, run.obs.namespace):
        t = known.get(ns) or _unrecorded_target(run, ns)
        stable = run.deployment(ns, spec.stable.deployment)
        t.weight = 0
        t.base_replicas = stable.replicas if stable else (t.base_replicas or 0)
        t.stable_replicas = total(run, t) if not run.symbols else t.base_replicas
        t.canary_replicas = None if run.symbols else 0
        t.canary_scaled_at = None
        targets.append(t)
    run.st.targets = targets
    run.st.stable_version = spec.stable.version
    run.st.canary_version = spec.canary.version
    run.st.trading_stopped = False
    run.st.manual_pause = None
    run.st.scale_downs = []
    run.st.gates = []
    # A quarantine lasts for the run it was decided in; a measured order is frozen for it.
    set_keys(run, [], measured, run.now if measured is not None else None)
    run.rank(measured)
    run.st.started_at = run.st.stage_started_at = run.st.step_started_at = run.now
    run.st.stage_index, run.st.step_index, run.st.canary_weight = 0, 0, 0
    run.st.stage = spec.stages[0].name
    run.set_phase("Progressing", "Started", f"rolling {spec.stable.version} -> {spec.canary.version}")
    run.event("Normal", "RolloutStarted", run.st.message or "")


def _unrecorded_target(run: Run, ns: str) -> TargetStatus:
    """A target status has no record of starts from what its ConfigMap publishes."""
    t = TargetStatus(namespace=ns, config_map=run.spec.routing.config_map or f"{run.obs.name}-routing")
    published = dict(run.obs.routed.get(ns, {}))
    draining = {k: NONE for k, v in published.items() if v == DRAINING}
    if draining:  # next owner unknown: nobody, until step_handoff retargets them after a full drain
        t.pending, t.draining_until = draining, run.now + parse_duration(run.spec.routing.handoff)
    t.assignments = published
    return t


def _shadow_passed(run: Run) -> bool:
    name = run.spec.shadow_run
    verdict = run.obs.shadow_verdict
    if not run.obs.shadow_found:
        run.set_phase("Pending", "ShadowRunNotFound", f"waiting for ShadowRun {name} (not found)")
    elif verdict == "Pass":
        return True
    elif verdict is None:
        run.set_phase("Pending", "WaitingForShadowRun", f"waiting for ShadowRun {name} verdict")
    else:
        run.set_phase("Pending", f"ShadowRun{verdict}", f"ShadowRun {name} verdict is {verdict}, not Pass")
    return False


def finish_if_complete(run: Run) -> None:
    if run.st.phase != "Progressing" or (run.st.stage_index or 0) < len(run.spec.stages):
        return
    if not all(want_canary(run, t, 100) and routing_settled(run, t) for t in run.st.targets):
        return
    if run.quarantined:
        # The stable deployment still trades these keys: it must not be scaled down under them. A person
        # decides: releaseKey returns a key to the canary (and then this completes), abort rolls back.
        held = sorted(run.quarantined)
        run.set_phase(
            "Paused",
            "KeysQuarantined",
            f"every other key is on {run.spec.canary.version}; {len(held)} quarantined keys still trade on"
            f" {run.spec.stable.version} ({', '.join(held[:10])}): release them (releaseKey) to complete, or abort",
        )
        return
    delay = max(parse_duration(run.spec.scale_down_delay), parse_duration(run.spec.routing.handoff))
    for t in run.st.targets:
        schedule_scale_down(run, t.namespace, run.spec.stable.deployment, run.now + delay)
    run.set_phase("Succeeded", "Completed", f"{run.spec.canary.version} owns every key")
    run.history("Succeeded", OPERATOR, "all stages completed")
    run.event("Normal", "RolloutSucceeded", f"{run.spec.canary.version} rolled out")


def fail(run: Run, reason: str, message: str) -> None:
    """onFailure: roll every target back to stable, or freeze where it stands."""
    if run.spec.on_failure == "pause":
        run.st.manual_pause = HistoryEntry(
            version=run.spec.canary.version, outcome="Paused", at=run.now, by=OPERATOR, reason=message
        )
        run.set_phase("Paused", reason, message)
        run.history("Paused", OPERATOR, message)
        run.event("Warning", reason, f"frozen (onFailure: pause): {message}")
        return
    rollback(run, reason, message, "RolledBack", OPERATOR)


def rollback(run: Run, reason: str, message: str, outcome: HistoryOutcome, by: str | None) -> None:
    delay = max(parse_duration(run.spec.scale_down_delay), parse_duration(run.spec.routing.handoff))
    for t in run.st.targets:
        t.weight = 0
        if t.base_replicas is not None:
            t.stable_replicas = total(run, t) if not run.symbols else t.base_replicas
        schedule_scale_down(run, t.namespace, run.spec.canary.deployment, run.now + delay)
    run.st.canary_weight = 0
    run.set_phase("RolledBack", reason, message)
    run.history(outcome, by, message)
    run.event("Warning", reason, message)


def stop_trading(run: Run, by: str | None, why: str | None, source: str | None) -> None:
    """Emergency stop: nobody trades any key and entries are off. Both deployments keep their pods,
    which can still cancel working orders and manage positions."""
    for t in run.st.targets:
        t.weight = 0
    run.st.canary_weight = 0
    run.st.trading_stopped = True
    who = f"{by or OPERATOR}" + (f" for {source}" if source else "")
    message = f"trading stopped by {who}: {why or 'emergency'}"
    run.set_phase("RolledBack", "TradingStopped", message)
    run.history("Aborted", by, message)
    run.event("Warning", "TradingStopped", message)
