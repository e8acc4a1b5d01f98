"""Per-process memory of the ShadowRun adapter (one instance, in `Context.shadow`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from strategy_rollouts.operator.clients.redis_streams import RedisClients


@dataclass
class ShadowMemory:
    redis: RedisClients = field(default_factory=RedisClients)
    # (namespace, name) -> monotonic time of the last decision read: our own status writes wake the
    # run, and reading at most every READ_EVERY_S / 2 keeps that from becoming a read-write loop.
    last_read: dict[tuple[str, str], float] = field(default_factory=dict)
