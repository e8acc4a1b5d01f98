"""Decision streams: read a Redis stream from a stored cursor; Redis being down is a reason, never a Pass.

A read returns the entries strictly after the cursor and at or before an upper bound (the run's end),
at most `count` of them, and the new cursor: the id of the last entry READ, parsed or not, so a
malformed entry is counted once and never re-read (parsing: `engine.shadow_observed.parse_entries`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from strategy_rollouts.engine.shadow_observed import StreamRead, initial_cursor, parse_entries

if TYPE_CHECKING:
    import redis.asyncio as aioredis

BATCH = 10_000  # entries per side per reconcile: bounds memory and the time of one reconcile
TIMEOUT_S = 3.0

__all__ = ["BATCH", "RedisClients", "StreamRead", "initial_cursor", "parse_entries", "read", "safe_address"]


def safe_address(address: str) -> str:
    """host:port/db of a Redis URL, without credentials (for messages and status)."""
    parts = urlsplit(address)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class RedisClients:
    """One client (connection pool) per address, reused across reconciles; one per operator process
    (held in `Context.shadow`), used from that process's event loop only."""

    def __init__(self) -> None:
        self._clients: dict[str, aioredis.Redis] = {}

    def get(self, address: str) -> aioredis.Redis:
        if address not in self._clients:
            import redis.asyncio as aioredis  # lazily: an operator without ShadowRuns does not pay for it

            self._clients[address] = aioredis.Redis.from_url(
                address,
                decode_responses=False,
                socket_timeout=TIMEOUT_S,
                socket_connect_timeout=TIMEOUT_S,
                retry_on_timeout=False,
            )
        return self._clients[address]

    async def close(self) -> None:
        clients, self._clients = self._clients, {}
        for conn in clients.values():
            await conn.aclose()


async def read(
    clients: RedisClients, address: str, stream: str, cursor: str, end_ms: int, count: int = BATCH
) -> StreamRead:
    """Entries of `stream` with cursor < id <= end_ms (all sequence numbers of end_ms)."""
    from redis.exceptions import RedisError

    try:
        entries = await clients.get(address).xrange(stream, min=f"({cursor}", max=str(end_ms), count=count)
    except (RedisError, OSError, TimeoutError) as exc:
        return StreamRead(cursor=cursor, error=f"Redis at {safe_address(address)}: {type(exc).__name__}: {exc}"[:300])
    return parse_entries(list(entries or []), cursor, count)
