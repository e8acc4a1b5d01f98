"""Decision streams: read a Redis stream from a stored cursor, parse entries, never crash on bad data.

Cursors are Redis stream ids (`<ms>-<seq>`). A read returns the entries strictly after the cursor and
at or before an upper bound (the run's end), at most `count` of them, and the new cursor: the id of
the last entry READ, parsed or not, so a malformed entry is counted once and never re-read.
Redis being unreachable is a reason (`error`), never an exception and never a Pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from strategy_rollouts.engine.shadow import Decision, parse_decision

BATCH = 10_000  # entries per side per reconcile: bounds memory and the time of one reconcile
TIMEOUT_S = 3.0

_CLIENTS: dict[tuple[int, str], aioredis.Redis] = {}


def initial_cursor(started_ms: int) -> str:
    """Only entries added after the run started count: ids strictly after `<startedAt ms>-0`."""
    return f"{started_ms}-0"


def safe_address(address: str) -> str:
    """host:port/db of a Redis URL, without credentials (for messages and status)."""
    parts = urlsplit(address)
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def client(address: str) -> aioredis.Redis:
    """One client (connection pool) per address and event loop, reused across reconciles."""
    key = (id(asyncio.get_running_loop()), address)
    if key not in _CLIENTS:
        _CLIENTS[key] = aioredis.Redis.from_url(
            address,
            decode_responses=False,
            socket_timeout=TIMEOUT_S,
            socket_connect_timeout=TIMEOUT_S,
            retry_on_timeout=False,
        )
    return _CLIENTS[key]


@dataclass(frozen=True)
class StreamRead:
    decisions: list[Decision] = field(default_factory=list)
    malformed: int = 0
    cursor: str = "0-0"  # the last id read (unchanged when nothing was read)
    truncated: bool = False  # `count` entries came back: there may be more before the bound
    error: str | None = None
    examples: tuple[str, ...] = ()  # why some entries were malformed (a few)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def parse_entries(entries: Sequence[tuple[Any, Mapping[Any, Any] | None]], cursor: str, count: int) -> StreamRead:
    """Pure part of a read: parse XRANGE entries, count the malformed ones, advance the cursor."""
    decisions: list[Decision] = []
    malformed = 0
    why: list[str] = []
    last = cursor
    for raw_id, fields in entries:
        stream_id = _text(raw_id)
        last = stream_id
        try:
            if fields is None:
                raise ValueError("entry has no fields")
            decisions.append(parse_decision(fields, stream_id))
        except ValueError as exc:
            malformed += 1
            if len(why) < 3:
                why.append(f"{stream_id}: {exc}")
    return StreamRead(decisions, malformed, last, len(entries) >= count, None, tuple(why))


async def read(address: str, stream: str, cursor: str, end_ms: int, count: int = BATCH) -> StreamRead:
    """Entries of `stream` with cursor < id <= end_ms (all sequence numbers of end_ms)."""
    try:
        entries = await client(address).xrange(stream, min=f"({cursor}", max=str(end_ms), count=count)
    except (RedisError, OSError, TimeoutError) as exc:
        return StreamRead(cursor=cursor, error=f"Redis at {safe_address(address)}: {type(exc).__name__}: {exc}"[:300])
    return parse_entries(list(entries or []), cursor, count)


async def close_all() -> None:
    for key, conn in list(_CLIENTS.items()):
        if key[0] == id(asyncio.get_running_loop()):
            await conn.aclose()
            del _CLIENTS[key]
