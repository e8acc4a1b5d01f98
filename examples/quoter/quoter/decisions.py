"""Decisions: what the strategy does at a tick, and where it is published (a Redis stream)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import market
from .knobs import Knobs

log = logging.getLogger(__name__)

STREAM_MAXLEN = 100_000


def stream_name(strategy: str, version: str) -> str:
    return f"decisions:{strategy}:{version}"


@dataclass(frozen=True)
class Decision:
    symbol: str
    tick: int
    type: market.DecisionType
    side: market.Side
    price: float
    quantity: float
    ts: float  # unix seconds when decided

    def fields(self) -> dict[str, str]:
        """The stream entry: every number as a decimal string."""
        return {
            "symbol": self.symbol,
            "tick": str(self.tick),
            "type": self.type,
            "side": self.side,
            "price": f"{self.price:.8f}",
            "quantity": f"{self.quantity:.8f}",
            "ts": f"{self.ts:.6f}",
        }


def dropped(seed: str, symbol: str, tick: int, drop_rate: float) -> bool:
    """Deterministic: processes with the same drop_rate drop the same decisions."""
    return drop_rate > 0.0 and market.unit_hash(seed, "drop", symbol, tick) < drop_rate


def decide(
    seed: str,
    tick: int,
    keys: Iterable[str],
    knobs: Knobs,
    *,
    size_multiplier: float = 1.0,
    entries_enabled: bool = True,
    ts: float = 0.0,
) -> list[Decision]:
    """The decisions for `tick` on `keys`, with routing (size, entries) and knobs applied."""
    out: list[Decision] = []
    price_factor = 1.0 + knobs.price_skew_bps / 1e4
    quantity_factor = size_multiplier * (1.0 + knobs.quantity_skew_percent / 100.0)
    for symbol in keys:
        sig = market.signal(seed, symbol, tick)
        if sig is None or (sig.type == "entry" and not entries_enabled):
            continue
        if dropped(seed, symbol, tick, knobs.drop_rate):
            continue
        out.append(
            Decision(
                symbol=symbol,
                tick=tick,
                type=sig.type,
                side=sig.side,
                price=sig.price * price_factor,
                quantity=sig.quantity * quantity_factor,
                ts=ts,
            )
        )
    return out


class RedisPublisher:
    """XADDs decisions to `decisions:{strategy}:{version}`, capped at ~STREAM_MAXLEN entries."""

    def __init__(self, url: str, strategy: str, version: str) -> None:
        import redis

        self.stream = stream_name(strategy, version)
        self._redis: Any = redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)

    def publish(self, decisions: Sequence[Decision]) -> None:
        if not decisions:
            return
        pipe = self._redis.pipeline(transaction=False)
        for decision in decisions:
            pipe.xadd(self.stream, decision.fields(), maxlen=STREAM_MAXLEN, approximate=True)
        pipe.execute()

    def close(self) -> None:
        self._redis.close()
