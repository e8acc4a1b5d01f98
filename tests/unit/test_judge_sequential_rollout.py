"""A sequential judge in the rollout engine (pure reconcile): each step decides on its own samples, an
Undecided step holds, decideWithin with onUndecided: hold pauses with reason JudgeUndecided."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np

from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import Observations, due_gates
from tests.unit.rollout_sim import World, spec_from

STEP_S = 60


def judge_gate(**judge: Any) -> dict[str, Any]:
    return {
        "name": "pnl",
        "interval": "1m",
        "inconclusiveLimit": 5,
        "judge": {
            "test": "sequential",
            "query": 'pnl{version="{{version}}"}',
            "worseWhen": "lower",
            "step": "1m",
            "minSamples": 10,
            **judge,
        },
    }


@dataclass
class JudgedWorld(World):
    """Samples once a minute per side since the step started, canary = stable + `shift` + noise."""

    shift: float = 0.0
    noise: float = 0.0

    def observe(self) -> Observations:
        obs = super().observe()
        measurements = dict(obs.measurements)
        for gate in due_gates(self.spec, self.status, self.now):
            if gate.judge is None:
                continue
            start = self.status.step_started_at or self.now
            n = int((self.now - start).total_seconds() // STEP_S) + 1
            times = tuple(start.timestamp() + STEP_S * k for k in range(n))
            rng = np.random.default_rng(int(start.timestamp()))  # the same samples at every look
            stable = rng.normal(100, 1, n)
            canary = stable + self.shift + rng.normal(0, self.noise, n) if self.noise else stable + self.shift
            measurements[gate.name] = Measurement(
                None, points=((times, tuple(canary)), (times, tuple(stable))), started=start
            )
        return Observations(**{**obs.__dict__, "measurements": measurements})


def world(gate: dict[str, Any], **kw: Any) -> JudgedWorld:
    w = JudgedWorld(spec_from(gates=[gate]), **kw)
    return w


def test_every_step_waits_for_its_own_min_samples_then_the_rollout_succeeds() -> None:
    w = world(judge_gate(margin=1.0))
    starts: list[tuple[int, int, Any]] = []
    while w.status.phase != "Succeeded":
        key = (w.status.stage_index or 0, w.status.step_index or 0)
        if not starts or starts[-1][:2] != key:
            starts.append((*key, w.now))
        w.reconcile()
        w.now += timedelta(seconds=10)
        assert w.status.phase != "RolledBack" and w.now < spec_start(w) + timedelta(hours=3)
    # every step that ended while serving took at least minSamples - 1 steps of samples (the first is at 0 s)
    durations = [(b[2] - a[2]).total_seconds() for a, b in itertools.pairwise(starts)]
    assert all(d >= 9 * STEP_S for d in durations[1:]), durations


def spec_start(w: World) -> Any:
    return w.status.started_at or w.now


def test_an_undecided_judge_holds_and_after_decide_within_pauses_with_judge_undecided() -> None:
    w = world(judge_gate(decideWithin="30m"), noise=1.0)  # not worse, margin 0: no evidence either way
    w.run(20 * 60, tick=30)
    assert (w.status.phase, w.status.reason) == ("Progressing", "WaitingForGates")
    assert next(g for g in w.status.gates if g.name == "pnl").result == "Undecided"
    w.run(15 * 60, tick=30)
    assert (w.status.phase, w.status.reason) == ("Paused", "JudgeUndecided")
    assert "no decision within decideWithin 30m (onUndecided: hold)" in (w.status.message or "")
    assert w.status.canary_weight == 10  # never promoted


def test_a_worse_canary_rolls_back_at_min_samples() -> None:
    w = world(judge_gate(margin=1.0), shift=-5.0, noise=1.0)
    w.run_until("RolledBack", limit=3600, tick=30)
    assert w.status.reason == "GateFailed" and "entirely below 0" in (w.status.message or "")


def test_samples_read_from_an_earlier_step_are_not_this_steps_decision() -> None:
    """An observation that read the status from before the step changed measures from the last step's
    start: the engine drops it (and measures again) rather than decide on the last step's samples."""
    from strategy_rollouts.api.gates import GateSpec
    from strategy_rollouts.engine.rollout.gates import read_an_earlier_step

    gate = GateSpec.model_validate(judge_gate())
    w = world(judge_gate())
    now = w.now
    old = Measurement(None, points=(((1.0,), (1.0,)), ((1.0,), (1.0,))), started=now - timedelta(minutes=5))
    assert read_an_earlier_step(gate, old, now)
    assert not read_an_earlier_step(gate, old, now - timedelta(minutes=5, microseconds=-900))  # ms rounding
    assert not read_an_earlier_step(gate, Measurement(1.0), now)
