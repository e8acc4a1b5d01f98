"""Engine microbenchmarks: one `engine.rollout.reconcile` decision, and routing for 1,000 keys.

The reconcile inputs are real (spec, status, observations, now) snapshots taken from the unit
tests' World simulator at every reconcile of a full two-stage rollout (Pending -> Succeeded), so
the figure covers every state the engine goes through, not one easy state.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.engine import routing
from strategy_rollouts.engine.rollout import reconcile
from tests.unit.rollout_sim import T0, World, spec_from


def _timed(fn: Callable[[], Any], repeat: int, inner: int) -> list[float]:
    """Seconds per call, `repeat` samples each averaging `inner` calls (GC off, as timeit does)."""
    samples = []
    gc.disable()
    try:
        for _ in range(repeat):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        gc.enable()
    return samples


def reconcile_inputs(step_seconds: float = 1.0) -> list[tuple[Any, StrategyRolloutStatus, Any, Any]]:
    """Every reconcile of a whole rollout of the EXAMPLE spec, as (spec, status, obs, now)."""
    world = World(spec_from())
    inputs = []
    while world.status.phase != "Succeeded":
        obs = world.observe()
        inputs.append((world.spec, world.status.model_copy(deep=True), obs, world.now))
        world.reconcile()
        world.now += timedelta(seconds=step_seconds)
    return inputs


def bench_reconcile(repeat: int = 7) -> dict[str, Any]:
    inputs = reconcile_inputs()
    # Per-state: the time of one decision in each distinct state (median of `repeat` x 20 calls).
    per_state = []
    for spec, status, obs, now in inputs[:: max(1, len(inputs) // 60)]:
        samples = _timed(lambda s=spec, st=status, o=obs, n=now: reconcile(s, st, o, n), repeat, 20)
        per_state.append(sorted(samples)[len(samples) // 2])

    # Whole-rollout mean: every reconcile of a full rollout, back to back.
    def whole() -> None:
        for spec, status, obs, now in inputs:
            reconcile(spec, status, obs, now)

    whole_samples = [s / len(inputs) for s in _timed(whole, repeat, 1)]
    return {
        "states": len(inputs),
        "per_state_seconds": per_state,
        "mean_over_rollout_seconds": whole_samples,
        "t0": T0.isoformat(),
    }


def bench_routing(keys: int = 1000, repeat: int = 15) -> dict[str, Any]:
    universe = [f"SYM{i:05d}USDT" for i in range(keys)]
    ranked = routing.rank_keys(universe, "bench")
    stable, canary = "v1", "v2"
    at10 = routing.desired_assignments(ranked, 10, stable, canary)
    at50 = routing.desired_assignments(ranked, 50, stable, canary)
    now = T0
    state10 = routing.RoutingState(at10)
    handoff = timedelta(seconds=5)

    def full() -> None:
        r = routing.rank_keys(universe, "bench")
        d = routing.desired_assignments(r, 50, stable, canary)
        routing.step_handoff(state10, d, now, handoff)

    return {
        "keys": keys,
        "rank_keys_seconds": _timed(lambda: routing.rank_keys(universe, "bench"), repeat, 10),
        "desired_assignments_seconds": _timed(
            lambda: routing.desired_assignments(ranked, 50, stable, canary), repeat, 10
        ),
        "step_handoff_seconds": _timed(lambda: routing.step_handoff(state10, at50, now, handoff), repeat, 10),
        "settled_seconds": _timed(lambda: routing.settled(state10, at50), repeat, 10),
        "full_seconds": _timed(full, repeat, 10),
    }


def profile_reconcile(path: str) -> str | None:
    """pyinstrument profile of many reconciles (text), for the README when the target is missed."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        return None
    inputs = reconcile_inputs()
    profiler = Profiler(interval=0.0001)
    profiler.start()
    for _ in range(20):
        for spec, status, obs, now in inputs:
            reconcile(spec, status, obs, now)
    profiler.stop()
    text: str = profiler.output_text(unicode=False, color=False, show_all=False)
    with open(path, "w") as handle:
        handle.write(text)
    return text
