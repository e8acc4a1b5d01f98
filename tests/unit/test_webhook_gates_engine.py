"""Webhook gates in the pure engine: when they are asked, what a yes / a no / no answer does.

The World feeds a webhook gate's measurement as its HTTP status (rollout_sim: gate value), None = no answer.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import yaml

from strategy_rollouts.engine.rollout import due_gates
from strategy_rollouts.engine.webhook_gates import payload
from tests.unit.rollout_sim import EXAMPLE, World, spec_from


def world_with(hook: dict[str, Any], **gate: Any) -> World:
    data = yaml.safe_load(EXAMPLE)
    data["gates"].append({"name": "desk", "interval": "10s", "webhook": {"url": "https://desk/ok", **hook}, **gate})
    world = World(spec_from(yaml.safe_dump(data)))
    world.gate_values["desk"] = 200.0
    return world


def asked(world: World, seconds: int) -> list[tuple[int, int | None, int | None]]:
    """(second, stage index, step index) of every pass in which the webhook was due, while running."""
    out = []
    for t in range(seconds):
        if any(g.name == "desk" for g in due_gates(world.spec, world.status, world.now)):
            out.append((t, world.status.stage_index, world.status.step_index))
        world.reconcile()
        world.now += timedelta(seconds=1)
    return out


def test_step_increase_webhook_is_asked_only_before_weight_increases_and_the_rollout_succeeds() -> None:
    world = world_with({"at": "stepIncrease"})
    calls = asked(world, 900)
    assert world.status.phase == "Succeeded"
    # Every ask stands before a setWeight step that raises the weight: staging 0 -> 10, prod 50 and 100
    # (prod's first step, 10, is no increase: the weight carried over from staging is already 10).
    spots = sorted({(stage, step) for _, stage, step in calls})
    assert spots == [(0, 0), (1, 2), (1, 4)]


def test_promotion_webhook_is_asked_only_before_a_stage_promotes() -> None:
    world = world_with({"at": "promotion"})
    calls = asked(world, 900)
    assert world.status.phase == "Succeeded"
    assert sorted({(stage, step) for _, stage, step in calls}) == [(0, 2), (1, 5)]


def test_reject_with_hold_waits_without_failing_and_continues_after_a_yes() -> None:
    world = world_with({"at": "stepIncrease", "onReject": "hold"})
    world.gate_values["desk"] = 409.0
    world.run(120)
    st = world.status
    assert (st.phase, st.reason, st.canary_weight) == ("Progressing", "WaitingForWebhook", 0)
    gate = next(g for g in st.gates if g.name == "desk")
    assert (gate.result, gate.failures, gate.inconclusives, gate.value) == ("Rejected", 0, 0, 409.0)
    assert "webhook desk Rejected: rejected (HTTP 409)" in (st.message or "")
    world.gate_values["desk"] = 204.0
    world.run(15)
    assert world.status.canary_weight == 10


def test_reject_with_fail_rolls_back_naming_the_webhook() -> None:
    world = world_with({"onReject": "fail"})
    world.run(200)
    assert world.status.phase == "Progressing"
    world.gate_values["desk"] = 503.0
    world.run(30)
    assert world.status.phase == "RolledBack"
    assert "gate desk failed: rejected (HTTP 503)" in (world.status.message or "")


def test_no_answer_is_inconclusive_and_holds_never_advances() -> None:
    world = world_with({"at": "stepIncrease"}, inconclusiveLimit=1)
    world.gate_values["desk"] = None
    world.run(120)
    st = world.status
    assert (st.phase, st.reason, st.canary_weight) == ("Paused", "Inconclusive", 0)


def test_payload_names_the_rollout_its_place_and_its_gates() -> None:
    world = world_with({})
    world.run(30)
    body = payload(world.spec, world.status, "trading", "fib-rsi")
    assert body["kind"] == "StrategyRollout" and (body["namespace"], body["name"]) == ("trading", "fib-rsi")
    assert (body["strategy"], body["stage"], body["weight"]) == ("fib_rsi", "staging", 10)
    assert body["stable"] == {"version": "v1.0.0"} and body["canary"] == {"version": "v2.0.0"}
    assert {g["name"] for g in body["gates"]} == {"tick-p95-ms", "desk"}
    assert all(set(g) == {"name", "result", "value"} for g in body["gates"])
