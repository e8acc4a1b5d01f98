"""Simulated side of a tick, driven by the knobs: stage latencies, misses, fills, returns, costs.

Randomness comes from hashes of (seed, tick, ...) rather than a process RNG, so two processes
with equal knobs report identical latency distributions and backtest series. Rates (misses,
partial fills) are spread evenly rather than randomly, so `rate()` over a few seconds shows them.
"""

from __future__ import annotations

from . import market
from .knobs import Knobs

# Share of tick_total spent in each stage; the stages add up to tick_total.
STAGE_SHARES = {"fetch": 0.25, "signal": 0.35, "risk": 0.15, "order": 0.25}
JITTER = 0.10  # each stage is uniform in mean * [1 - JITTER, 1 + JITTER]

# What the backtest assumes each cost component is, per period, in bps.
BACKTEST_COST_BPS = {"fees": 7.5, "slippage": 2.0, "timing": 1.0, "sizing": 0.5}


def stage_durations(seed: str, tick: int, latency_ms: float) -> dict[str, float]:
    """Seconds per stage, plus "tick_total" (their sum, with mean `latency_ms`)."""
    out: dict[str, float] = {}
    for stage, share in STAGE_SHARES.items():
        jitter = 1.0 + JITTER * (2.0 * market.unit_hash(seed, "latency", stage, tick) - 1.0)
        out[stage] = latency_ms / 1000.0 * share * jitter
    out["tick_total"] = sum(out.values())
    return out


_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio


def evenly(n: int, rate: float) -> bool:
    """True for a `rate` fraction of consecutive n, spread evenly (a Weyl sequence), so a counter
    fed by it shows `rate` over any short window, not just on average."""
    return (n * _GOLDEN) % 2**64 < rate * 2**64


def deadline_missed(tick: int, rate: float) -> bool:
    """Whether this tick counts as a simulated deadline miss (same answer in every process)."""
    return evenly(tick, rate)


def partially_filled(order_number: int, rate: float) -> bool:
    """Whether the process's `order_number`-th order is only partially filled."""
    return evenly(order_number, rate)


def returns(seed: str, strategy: str, version: str, tick: int, knobs: Knobs) -> dict[str, float]:
    """Per-period returns by source: live = backtest + drift + noise (knobs in bps)."""
    backtest = market.backtest_return(seed, strategy, tick)
    noise = knobs.return_noise_bps * market.gaussian_hash(seed, "live-noise", strategy, version, tick)
    return {"backtest": backtest, "live": backtest + (knobs.return_drift_bps + noise) / 1e4}


def costs(knobs: Knobs) -> dict[tuple[str, str], float]:
    """Cost per (source, component) in bps: live = backtest baseline + the component's knob."""
    live_extra = {
        "fees": knobs.fees_bps,
        "slippage": knobs.slippage_bps,
        "timing": knobs.timing_bps,
        "sizing": knobs.sizing_bps,
    }
    out: dict[tuple[str, str], float] = {}
    for component, baseline in BACKTEST_COST_BPS.items():
        out[("backtest", component)] = baseline
        out[("live", component)] = baseline + live_extra[component]
    return out
