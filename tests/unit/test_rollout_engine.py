"""The StrategyRollout state machine, driven by a fake clock over hours and days in milliseconds."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.engine.routing import DRAINING, NONE
from tests.unit.rollout_sim import EXAMPLE, World, spec_from


def history(world: World) -> list[str]:
    return [h.outcome for h in world.status.history]


def test_happy_path_two_stages_ends_succeeded_and_scales_stable_down_after_delay() -> None:
    world = World(spec_from())
    world.run_until("Succeeded")
    st = world.status
    assert st.canary_weight == 100
    assert all(owner == "v2.0.0" for owner in world.published["trading"].values())
    assert history(world) == ["Succeeded"]
    assert {c.type: c.status for c in st.conditions}["Completed"] == "True"
    # staging: minDuration 2m, prod: pauses: the whole thing takes > 4 minutes.
    assert world.now - st.started_at >= timedelta(minutes=4)  # type: ignore[operator]
    assert world.replicas[("trading", "fib-rsi-legacy")] == 4
    world.run(61)
    assert world.replicas[("trading", "fib-rsi-legacy")] == 0
    assert world.replicas[("trading", "fib-rsi-pipeline")] == 2


def test_weights_follow_steps_in_order_and_canary_is_ready_before_keys() -> None:
    world = World(spec_from())
    seen: list[int] = []
    while world.status.phase != "Succeeded":
        world.reconcile()
        if world.status.canary_weight is not None and (not seen or seen[-1] != world.status.canary_weight):
            seen.append(world.status.canary_weight)
        world.now += timedelta(seconds=1)
    assert seen == [0, 10, 50, 100]
    first_canary_key = next(i for i, snap in enumerate(world.snapshots) if "v2.0.0" in snap.values())
    assert first_canary_key > 0
    assert world.scale_log[0] == ("trading", "fib-rsi-pipeline", 2)


def test_gate_failure_rolls_back_with_handoff_and_names_gate_and_value() -> None:
    world = World(spec_from())
    world.run(200)
    assert world.status.phase == "Progressing"
    world.gate_values["tick-p95-ms"] = 412.5
    world.run(40)
    st = world.status
    assert st.phase == "RolledBack"
    assert "tick-p95-ms" in (st.message or "") and "412.5" in (st.message or "")
    world.run(10)
    assert set(world.published["trading"].values()) == {"v1.0.0"}
    # every key that was on the canary went through draining first
    for before, after in zip(world.snapshots, world.snapshots[1:], strict=False):
        for key, owner in after.items():
            if before.get(key) not in (None, owner, DRAINING) and owner != DRAINING:
                raise AssertionError(f"{key} moved {before.get(key)} -> {owner} without draining")
    world.run(61)
    assert world.replicas[("trading", "fib-rsi-pipeline")] == 0
    assert history(world) == ["RolledBack"]
    assert {c.type: c.status for c in st.conditions}["Degraded"] == "True"


def test_on_failure_pause_freezes_without_rollback_until_resume() -> None:
    world = World(spec_from(onFailure="pause"))
    world.run(200)
    weight = world.status.canary_weight
    world.gate_values["tick-p95-ms"] = 999.0
    world.run(100)
    assert world.status.phase == "Paused" and world.status.reason == "GateFailed"
    assert world.status.canary_weight == weight
    assert history(world) == ["Paused"]
    world.gate_values["tick-p95-ms"] = 100.0
    world.run(100)
    assert world.status.phase == "Paused"  # sticky: a human decides
    world.request("r1", "resume", "alice", "fixed")
    world.run_until("Succeeded")
    assert history(world)[-2:] == ["Resumed", "Succeeded"]


def test_missing_data_holds_and_never_advances_then_continues_by_itself() -> None:
    world = World(spec_from())
    world.run(40)
    world.gate_values["tick-p95-ms"] = None
    step = world.status.step_index
    world.run(3600)
    assert world.status.phase == "Paused" and world.status.reason == "Inconclusive"
    assert world.status.step_index == step
    world.gate_values["tick-p95-ms"] = 120.0
    world.run_until("Succeeded")


def test_dry_run_gate_is_measured_but_never_acts() -> None:
    text = EXAMPLE.replace("inconclusiveLimit: 2}", "inconclusiveLimit: 2, dryRun: true}")
    world = World(spec_from(text))
    world.gate_values["tick-p95-ms"] = 5000.0
    world.run_until("Succeeded")
    assert world.status.gates[0].result == "Fail"


def test_manual_stage_promotion_and_pause_without_duration_wait_for_promote() -> None:
    text = EXAMPLE.replace("minDuration: 2m", "minDuration: 2m\n  promotion: manual")
    world = World(spec_from(text))
    world.run(3600)
    assert world.status.phase == "Paused" and world.status.reason == "AwaitingPromotion"
    world.request("p1", "promote", "bob")
    world.run_until("Succeeded")
    assert "Promoted" in history(world)


def test_promote_full_abort_and_retry() -> None:
    world = World(spec_from())
    world.run(30)
    world.request("a1", "abort", "carol", "bad fills")
    world.run(30)
    assert world.status.phase == "RolledBack" and "carol" in (world.status.message or "")
    world.request("r1", "retry", "carol")
    world.run(5)
    assert world.status.phase == "Progressing"
    world.request("f1", "promoteFull", "carol")
    world.run_until("Succeeded", limit=60)
    assert history(world) == ["Aborted", "Retried", "Promoted", "Succeeded"]


def test_a_request_id_is_handled_once() -> None:
    world = World(spec_from())
    world.run(30)
    world.request("a1", "pause", "dan")
    world.run(2)
    world.request("a1", "pause", "dan")
    world.run(2)
    assert history(world) == ["Paused"]


def test_max_duration_with_gates_passing_promotes_the_stage() -> None:
    text = EXAMPLE.replace("{setWeight: 100}]", "{setWeight: 100}, {pause: {}}]\n  maxDuration: 30m")
    world = World(spec_from(text))
    world.run_until("Succeeded", limit=3600)
    assert world.now - world.status.started_at < timedelta(minutes=40)  # type: ignore[operator]


def test_canary_change_mid_rollout_supersedes_and_restarts() -> None:
    world = World(spec_from())
    world.run(200)
    world.spec = spec_from(canary={"deployment": "fib-rsi-pipeline", "version": "v2.1.0", "replicas": 2})
    world.run(5)
    assert history(world) == ["Superseded"]
    assert world.status.history[0].version == "v2.0.0"
    assert world.status.stage_index == 0 and world.status.canary_version == "v2.1.0"
    world.run_until("Succeeded")
    assert set(world.published["trading"].values()) == {"v2.1.0"}


def test_risk_budget_exceeded_rolls_back() -> None:
    text = EXAMPLE.replace("  minDuration: 2m", "  minDuration: 2m\n  riskBudget: {query: risk, maxPercent: 1}")
    world = World(spec_from(text))
    world.gate_values["risk-budget:staging"] = 0.4
    world.run(60)
    assert world.status.risk_budget is not None and world.status.risk_budget.used_percent == 0.4
    world.gate_values["risk-budget:staging"] = 1.7
    world.run(40)
    assert world.status.phase == "RolledBack" and world.status.reason == "RiskBudgetExceeded"


def test_progress_deadline_when_canary_never_ready() -> None:
    world = World(spec_from(progressDeadline="2m"))
    original = world.observe

    def never_ready():  # type: ignore[no-untyped-def]
        obs = original()
        deps = dict(obs.deployments)
        deps[("trading", "fib-rsi-pipeline")] = type(next(iter(deps.values())))(2, 0)
        return type(obs)(**{**obs.__dict__, "deployments": deps})

    world.observe = never_ready  # type: ignore[method-assign]
    world.run(200)
    assert world.status.phase == "RolledBack" and world.status.reason == "ProgressDeadlineExceeded"
    assert "v2.0.0" not in world.published["trading"].values()


def test_shadow_run_gate_keeps_rollout_pending_until_pass() -> None:
    world = World(spec_from(shadowRun="fib-rsi-v2-shadow"))
    world.run(5)
    assert world.status.phase == "Pending" and world.status.reason == "ShadowRunNotFound"
    world.shadow = (True, "Hold")
    world.run(5)
    assert world.status.reason == "ShadowRunHold"
    world.shadow = (True, "Pass")
    world.run(5)
    assert world.status.phase == "Progressing"


def test_stop_trading_gives_every_key_to_nobody_entries_off_and_keeps_the_pods() -> None:
    world = World(spec_from())
    world.run(200)
    stable, canary = world.replicas[("trading", "fib-rsi-legacy")], world.replicas[("trading", "fib-rsi-pipeline")]
    world.request("s1", "stopTrading", "system:serviceaccount:sr:sr", "TE 140bps")
    world.run(3)
    assert set(world.published["trading"].values()) == {NONE}
    assert world.status.phase == "RolledBack" and world.status.reason == "TradingStopped"
    assert world.outcome("s1") == "Applied"
    decision = world.reconcile()
    assert all(r.entries_enabled is False for r in decision.routing)
    # The pods stay: they can still cancel working orders and manage positions.
    assert world.replicas[("trading", "fib-rsi-legacy")] == stable
    assert world.replicas[("trading", "fib-rsi-pipeline")] == canary
    world.run(120)
    assert world.replicas[("trading", "fib-rsi-legacy")] == stable


def test_after_a_stop_only_a_retry_by_a_person_moves_the_rollout() -> None:
    world = World(spec_from())
    world.run(200)
    world.request("s1", "stopTrading", "operator", "TE 140bps", source="paritycheck/p")
    world.run(2)
    world.request("p1", "promote", "alice")
    world.request("r1", "resume", "bob")
    world.request("x1", "retry", "operator", source="paritycheck/p")
    world.run(2)
    assert [world.outcome(i) for i in ("p1", "r1", "x1")] == ["Rejected", "Rejected", "Rejected"]
    assert world.status.phase == "RolledBack" and not world.status.requests
    world.request("r2", "retry", "carol", "reviewed")
    world.run(2)
    assert world.outcome("r2") == "Applied"
    assert world.status.phase == "Progressing" and not world.status.trading_stopped


def test_stop_written_with_human_requests_in_the_same_pass_wins_and_rejects_them() -> None:
    world = World(spec_from())
    world.run(200)
    world.request("p1", "promote", "alice")  # written first, in the same second
    world.now += timedelta(milliseconds=100)
    world.request("r1", "resume", "bob")
    world.now += timedelta(milliseconds=100)
    world.request("pck-1", "stopTrading", "operator", "TE 131 bps", source="paritycheck/p")
    world.reconcile()
    assert world.status.phase == "RolledBack" and world.status.reason == "TradingStopped"
    by_id = {h.id: h for h in world.status.handled_requests}
    assert by_id["pck-1"].outcome == "Applied"
    assert by_id["p1"].outcome == "Rejected" and "stopped" in by_id["p1"].message
    assert by_id["r1"].outcome == "Rejected" and "stopped" in by_id["r1"].message
    assert [h.id for h in world.status.handled_requests] == ["p1", "r1", "pck-1"]  # oldest first


def test_two_people_requests_are_both_handled_in_order() -> None:
    text = EXAMPLE.replace("minDuration: 2m", "minDuration: 2m\n  promotion: manual")
    world = World(spec_from(text))
    world.run(3600)
    assert world.status.reason == "AwaitingPromotion"
    world.request("b", "promote", "bob")
    world.now += timedelta(milliseconds=5)
    world.request("a", "pause", "alice", "lunch")
    world.reconcile()
    # pause is stronger: applied first, the promote of the same pass is superseded.
    assert [(h.id, h.outcome) for h in world.status.handled_requests] == [("b", "Superseded"), ("a", "Applied")]
    world.request("c", "resume", "alice")
    world.reconcile()
    world.now += timedelta(milliseconds=5)
    world.request("d", "promote", "bob")
    world.reconcile()
    assert [world.outcome(i) for i in ("c", "d")] == ["Applied", "Applied"]
    assert "Promoted" in history(world)


def test_a_request_that_does_not_apply_is_rejected_with_why() -> None:
    world = World(spec_from())
    world.run_until("Succeeded")
    world.request("p", "promote", "alice")
    world.request("q", "approve", "bob")
    world.reconcile()
    by_id = {h.id: h for h in world.status.handled_requests}
    assert by_id["p"].outcome == "Rejected" and "Succeeded" in by_id["p"].message
    assert by_id["q"].outcome == "Rejected"


def test_replicas_mode_splits_pods_and_ends_with_canary_owning_all() -> None:
    world = World(spec_from(routing={"mode": "replicas"}, replicas=10))
    seen: set[tuple[int, int]] = set()
    while world.status.phase != "Succeeded":
        world.reconcile()
        seen.add((world.replicas[("trading", "fib-rsi-legacy")], world.replicas[("trading", "fib-rsi-pipeline")]))
        world.now += timedelta(seconds=1)
    assert (9, 1) in seen and (5, 5) in seen and (0, 10) in seen


def test_stages_with_their_own_namespace_keep_last_weight_then_all_go_to_canary() -> None:
    text = EXAMPLE.replace("- name: staging\n", "- name: staging\n  namespace: trading-staging\n")
    world = World(spec_from(text))
    world.run_until("Succeeded")
    assert set(world.published["trading-staging"].values()) == {"v2.0.0"}
    assert set(world.published["trading"].values()) == {"v2.0.0"}


def test_invalid_spec_is_reported_and_nothing_is_done() -> None:
    world = World(spec_from(stable={"deployment": "fib-rsi-legacy", "version": "v2.0.0"}))
    decision = world.reconcile()
    assert world.status.phase == "Invalid" and "spec.canary.version" in (world.status.message or "")
    assert decision.routing == [] and decision.scales == []


def test_at_rest_nothing_changes() -> None:
    world = World(spec_from())
    world.run_until("Succeeded")
    world.run(120)
    before = world.status.wire()
    revisions = dict(world.revisions)
    world.run(600, tick=7)
    assert world.status.wire() == before
    assert world.revisions == revisions


@settings(max_examples=60, deadline=None)
@given(
    weights=st.lists(st.integers(min_value=0, max_value=100), min_size=1, max_size=6),
    handoff=st.sampled_from(["0s", "1s", "5s"]),
    fail_at=st.one_of(st.none(), st.integers(min_value=0, max_value=400)),
    tick=st.sampled_from([0.5, 1.0, 3.0]),
)
def test_property_no_key_is_ever_owned_by_both_and_canary_set_is_monotonic(
    weights: list[int], handoff: str, fail_at: int | None, tick: float
) -> None:
    weights = sorted(weights)
    steps = []
    for w in weights:
        steps += [{"setWeight": w}, {"pause": {"duration": "20s"}}]
    spec = spec_from(
        stages=[{"name": "prod", "steps": steps}],
        routing={"keys": [f"K{i}" for i in range(23)], "handoff": handoff},
    )
    world = World(spec)
    elapsed = 0.0
    canary_sets: list[set[str]] = []
    while world.status.phase not in ("Succeeded", "RolledBack") and elapsed < 2000:
        if fail_at is not None and elapsed >= fail_at:
            world.gate_values["tick-p95-ms"] = 900.0
        world.reconcile()
        world.now += timedelta(seconds=tick)
        elapsed += tick
        canary_sets.append({k for k, v in world.published.get("trading", {}).items() if v == "v2.0.0"})
    assert world.status.phase in ("Succeeded", "RolledBack")
    # exclusivity: between consecutive published revisions, no key jumps from one version to the other
    for before, after in zip(world.snapshots, world.snapshots[1:], strict=False):
        for key, owner in after.items():
            previous = before.get(key)
            if previous in ("v1.0.0", "v2.0.0") and owner in ("v1.0.0", "v2.0.0"):
                assert previous == owner, f"{key}: {previous} -> {owner} in one revision"
    if world.status.phase == "Succeeded":
        for a, b in itertools.pairwise(canary_sets):
            assert a <= b, "a canary key was taken back during a healthy rollout"


@settings(max_examples=40, deadline=None)
@given(
    crash_points=st.lists(st.integers(min_value=1, max_value=500), min_size=1, max_size=5),
    lose_apply=st.booleans(),
)
def test_property_restart_resumes_exactly_no_step_repeated_or_skipped(
    crash_points: list[int], lose_apply: bool
) -> None:
    """A restart is a reconcile from status alone (optionally after the world missed the last apply)."""
    reference = World(spec_from())
    reference.run_until("Succeeded")
    ref_steps = [(d.status.stage_index, d.status.step_index) for d in reference.decisions]

    world = World(spec_from())
    crashes = set(crash_points)
    i = 0
    while world.status.phase != "Succeeded":
        i += 1
        crashed = i in crashes
        world.reconcile(apply=not (crashed and lose_apply))
        if crashed:
            world.status = StrategyRolloutStatus.model_validate(world.status.wire())
        world.now += timedelta(seconds=1)
        assert i < 20000
    steps = [(d.status.stage_index, d.status.step_index) for d in world.decisions]
    dedup = lambda seq: [x for j, x in enumerate(seq) if j == 0 or seq[j - 1] != x]  # noqa: E731
    assert dedup(steps) == dedup(ref_steps)
    # each deployment was scaled to each value at most once per direction: no double scale
    assert len(world.scale_log) == len(set(world.scale_log))
