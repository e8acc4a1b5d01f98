"""Deterministic synthetic market and a tiny RSI strategy.

Everything here is a pure function of (seed, symbol, tick): two processes of different
versions, started at different times, see the same prices and reach the same decisions
for the same tick. The tick number is derived from the wall clock, so processes that share
a tick interval also agree on which tick is "now".
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

DecisionType = Literal["entry", "exit"]
Side = Literal["buy", "sell"]

RSI_PERIOD = 6
RSI_LOW = 30.0
RSI_MID = 50.0
RSI_HIGH = 70.0
ORDER_NOTIONAL = 1000.0  # quote currency per decision, before sizing

BASE_PRICES = {
    "BTCUSDT": 60000.0,
    "ETHUSDT": 3000.0,
    "SOLUSDT": 150.0,
    "BNBUSDT": 600.0,
    "ADAUSDT": 0.45,
    "XRPUSDT": 0.6,
    "DOGEUSDT": 0.15,
}

# (period in ticks, amplitude of log-price): white noise plus smooth trends on several scales.
_OCTAVES = ((4, 0.0010), (16, 0.0020), (64, 0.0040), (256, 0.0080))
_WHITE_NOISE = 0.0006


def tick_number(unix_time: float, tick_interval: float) -> int:
    """The tick every process agrees on: floor(unix_time / tick_interval)."""
    return math.floor(unix_time / tick_interval)


def unit_hash(*parts: object) -> float:
    """A uniform number in [0, 1) derived only from `parts`."""
    data = "|".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") / 2.0**64


def gaussian_hash(*parts: object) -> float:
    """A standard normal number derived only from `parts` (Box-Muller on two hashes)."""
    u1 = max(unit_hash(*parts, "g1"), 1e-12)
    u2 = unit_hash(*parts, "g2")
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


def base_price(seed: str, symbol: str) -> float:
    known = BASE_PRICES.get(symbol)
    return known if known is not None else 10.0 + 1000.0 * unit_hash(seed, "base", symbol)


def _smooth_noise(seed: str, symbol: str, period: int, tick: int) -> float:
    """Value noise in [-1, 1]: hashed knots every `period` ticks, smoothly interpolated."""
    knot, offset = divmod(tick, period)
    frac = offset / period
    frac = frac * frac * (3.0 - 2.0 * frac)
    a = unit_hash(seed, "knot", symbol, period, knot) * 2.0 - 1.0
    b = unit_hash(seed, "knot", symbol, period, knot + 1) * 2.0 - 1.0
    return a + (b - a) * frac


@lru_cache(maxsize=8192)
def price(seed: str, symbol: str, tick: int) -> float:
    """The market price of `symbol` at `tick`."""
    log_move = _WHITE_NOISE * (unit_hash(seed, "white", symbol, tick) * 2.0 - 1.0)
    for period, amplitude in _OCTAVES:
        log_move += amplitude * _smooth_noise(seed, symbol, period, tick)
    return base_price(seed, symbol) * math.exp(log_move)


def rsi(seed: str, symbol: str, tick: int, period: int = RSI_PERIOD) -> float:
    """Plain (simple-average) RSI over the last `period` price changes, in [0, 100]."""
    gains = losses = 0.0
    for t in range(tick - period + 1, tick + 1):
        change = price(seed, symbol, t) - price(seed, symbol, t - 1)
        if change > 0:
            gains += change
        else:
            losses -= change
    if gains + losses == 0.0:
        return 50.0
    return 100.0 * gains / (gains + losses)


@dataclass(frozen=True)
class Signal:
    """What the strategy wants at (symbol, tick), before sizing, skew and routing."""

    symbol: str
    tick: int
    type: DecisionType
    side: Side
    price: float
    quantity: float


def signal(seed: str, symbol: str, tick: int) -> Signal | None:
    """The strategy: act on RSI crossings; None means hold.

    - RSI crosses below 30: entry buy (oversold)    - above 70: entry sell (overbought)
    - RSI crosses up through 50: exit sell (close long) - down through 50: exit buy (cover short)
    """
    now, before = rsi(seed, symbol, tick), rsi(seed, symbol, tick - 1)
    kind: tuple[DecisionType, Side] | None = None
    if before >= RSI_LOW > now:
        kind = ("entry", "buy")
    elif before <= RSI_HIGH < now:
        kind = ("entry", "sell")
    elif before <= RSI_MID < now:
        kind = ("exit", "sell")
    elif before >= RSI_MID > now:
        kind = ("exit", "buy")
    if kind is None:
        return None
    px = price(seed, symbol, tick)
    notional = ORDER_NOTIONAL * (0.5 + unit_hash(seed, "size", symbol, tick))
    return Signal(symbol, tick, kind[0], kind[1], px, notional / px)


def backtest_return(seed: str, strategy: str, tick: int) -> float:
    """The backtest's per-period return (a fraction): mean 2 bps, stdev 10 bps."""
    return 0.0002 + 0.0010 * gaussian_hash(seed, "backtest", strategy, tick)
