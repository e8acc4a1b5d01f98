"""Fault-injection knobs: set by CLI flags and changeable at runtime over HTTP (POST /knobs)."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RATES = frozenset({"deadline_miss_rate", "partial_fill_rate", "drop_rate"})
NON_NEGATIVE = frozenset({"latency_ms", "return_noise_bps", "risk_percent"})


@dataclass(frozen=True)
class Knobs:
    latency_ms: float = 40.0  # mean simulated tick_total duration
    deadline_miss_rate: float = 0.0  # fraction of ticks counted in deadline_misses_total
    partial_fill_rate: float = 0.0  # fraction of orders counted in partial_fills_total
    price_skew_bps: float = 0.0  # shifts every decision price by this many bps
    quantity_skew_percent: float = 0.0  # scales every decision quantity by this many percent
    drop_rate: float = 0.0  # fraction of decisions dropped (deterministic by hash)
    return_drift_bps: float = 0.0  # live minus backtest return per period
    return_noise_bps: float = 0.0  # stdev of the live minus backtest return per period
    risk_percent: float = 0.5  # capital_at_risk_percent while trading at sizeMultiplier 1
    fees_bps: float = 0.0  # live minus backtest cost, per component
    slippage_bps: float = 0.0
    timing_bps: float = 0.0
    sizing_bps: float = 0.0
    symbol_net_bps: float = 2.0  # strategy_symbol_net_bps of each traded symbol
    bad_symbol_net_bps: float = -20.0  # the same for the --bad-symbols

    def as_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def updated(self, changes: Mapping[str, Any]) -> Knobs:
        """A copy with `changes` applied; ValueError naming the knob on bad input."""
        known = {f.name for f in dataclasses.fields(self)}
        values: dict[str, float] = {}
        for name, raw in changes.items():
            if name not in known:
                raise ValueError(f"unknown knob {name!r}; known: {', '.join(sorted(known))}")
            if isinstance(raw, bool) or not isinstance(raw, int | float | str):
                raise ValueError(f"knob {name!r} must be a number, got {raw!r}")
            try:
                value = float(raw)
            except ValueError:
                raise ValueError(f"knob {name!r} must be a number, got {raw!r}") from None
            if not math.isfinite(value):
                raise ValueError(f"knob {name!r} must be finite, got {raw!r}")
            if name in RATES and not 0.0 <= value <= 1.0:
                raise ValueError(f"knob {name!r} is a fraction in [0, 1], got {value}")
            if name in NON_NEGATIVE and value < 0.0:
                raise ValueError(f"knob {name!r} must be >= 0, got {value}")
            values[name] = value
        return dataclasses.replace(self, **values)


KNOB_NAMES = tuple(f.name for f in dataclasses.fields(Knobs))


class KnobStore:
    """The current knobs, shared by the tick loop and the control endpoint."""

    def __init__(self, initial: Knobs) -> None:
        self._lock = threading.Lock()
        self._knobs = initial

    def get(self) -> Knobs:
        with self._lock:
            return self._knobs

    def update(self, changes: Mapping[str, Any]) -> Knobs:
        with self._lock:
            self._knobs = self._knobs.updated(changes)
            return self._knobs
