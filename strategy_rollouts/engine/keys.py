"""Keys as first-class (docs/keys.md): ordered tiers, open universes of buckets, quarantine limits, and a
segmented form of a large listed universe's assignment (run-lengths of the hash order).

Pure functions; the rollout engine (engine/rollout/assignments.py) applies them one pass at a time.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from strategy_rollouts.api.keyhash import digest, exact, share, universe_digest
from strategy_rollouts.api.rollout import BOUNDARY_DIGITS, MAX_QUARANTINED, KeySegment
from strategy_rollouts.engine.routing import rank_keys

# ---- order -------------------------------------------------------------------------------------


def tiered_rank(keys: Iterable[str], salt: str, tiers: Sequence[Sequence[str]] = ()) -> list[str]:
    """Tier by tier, first tier first, hash order within each; keys no tier names form a last tier.

    Deterministic, and monotonic in the weight like the plain hash order: the canary at weight w owns
    the first ceil(w x N / 100) keys of this list, so a key it owns at 10 % it owns at 50 %.
    Tier keys outside `keys` are ignored (validation refuses them where the universe is known).
    """
    universe = set(keys)
    placed: set[str] = set()
    order: list[str] = []
    for tier in tiers:
        members = [k for k in tier if k in universe and k not in placed]
        placed.update(members)
        order += rank_keys(members, salt)
    return order + rank_keys(universe - placed, salt)


def tiers_from_ranks(ranks: Mapping[str, float], ascending: bool = True) -> list[list[str]]:
    """A rank query's answer (key -> value, e.g. traded volume) as tiers: equal values share a tier.

    Keys with a NaN value are not ranked (they fall to the last tier with every unmeasured key)."""
    values = sorted({v for v in ranks.values() if not math.isnan(v)}, reverse=not ascending)
    by_value: dict[float, list[str]] = {v: [] for v in values}
    for key, value in ranks.items():
        if not math.isnan(value):
            by_value[value].append(key)
    return [sorted(by_value[v]) for v in values]


# ---- quarantine ----------------------------------------------------------------------------------


def quarantine_limit(max_quarantined: int | str, total: int) -> int:
    """How many keys may be quarantined before the whole rollout fails: a count, or a percent of the
    universe rounded down (Kubernetes' maxUnavailable convention: "10%" of 15 keys is 1)."""
    if isinstance(max_quarantined, int):
        return min(max_quarantined, MAX_QUARANTINED)
    # Validation refuses a percent above MAX_QUARANTINED where the universe is in the spec; with keysFrom
    # the list is read later, and the cap keeps status small there too (docs/keys.md says so).
    return min(math.floor(exact(float(max_quarantined.rstrip("%"))) * total / 100), MAX_QUARANTINED)


# ---- open universes: buckets ----------------------------------------------------------------------


@dataclass(frozen=True)
class BucketState:
    """What a target publishes for an open universe: buckets [0, canary) are the canary's, [canary,
    draining_to) are owned by nobody until `until`, the rest are stable's. Once the drain ends the canary
    owns [0, next). Always canary <= next <= draining_to; no drain when draining_to == canary."""

    canary: int = 0
    draining_to: int = 0
    next: int = 0
    until: datetime | None = None

    @property
    def draining(self) -> tuple[int, int] | None:
        return (self.canary, self.draining_to) if self.draining_to > self.canary else None


def canary_buckets(weight: float, buckets: int) -> int:
    return share(weight, buckets)


def step_buckets(state: BucketState, desired: int, now: datetime, handoff: timedelta, published: bool) -> BucketState:
    """One move toward a canary of `desired` buckets, never giving a bucket to a new owner without a drain.

    The same rules as engine/routing.step_handoff, on one contiguous range: a bucket that changes owner
    is owned by nobody for `handoff` (counted from when it was published), a draining bucket may be
    retargeted freely, and buckets newly drained restart the clock.
    """
    canary, to, nxt, until = state.canary, state.draining_to, state.next, state.until
    if to > canary and not published:
        until = max(until or now, now + handoff)
    if to > canary and published and until is not None and now >= until:
        canary, to, nxt, until = nxt, nxt, nxt, None
    if to == canary and desired == canary:
        return BucketState(canary, canary, canary, None)
    lo, hi = min(canary, desired), max(to, desired)
    started = lo < canary or hi > to
    if to == canary:
        started = True
    if started:
        until = max(until or now, now + handoff)
    return BucketState(lo, hi, desired, until)


# ---- segmented assignments (large listed universes) -------------------------------------------------


UNASSIGNED = ""  # a segment of ranked keys the assignment does not name (nobody trades them)


@functools.lru_cache(maxsize=64)
def hash_order(keys: tuple[str, ...], salt: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """The universe in hash order, each key's digest beside it, and the universe's own digest: once per
    universe and salt (100,000 sha256 take ~0.1 s; a pass reads the cache)."""
    ranked = tuple(rank_keys(keys, salt))
    return ranked, tuple(digest(salt, k) for k in ranked), universe_digest(ranked)


def boundary(previous: str | None, first: str) -> str:
    """The shortest prefix of `first` that sorts after `previous` (`first` > `previous`, both hex digests of
    one length): where a segment starts. '' before the first key."""
    if previous is None:
        return ""
    for index, (a, b) in enumerate(zip(previous, first, strict=True)):
        if a != b:
            return first[: index + 1]
    raise ValueError("two keys with one digest")


def near_collisions(keys: tuple[str, ...], salt: str, width: int = BOUNDARY_DIGITS - 1) -> list[tuple[str, str]]:
    """Neighbours in hash order whose digests share `width` leading hex digits: no segment start of at most
    width + 1 digits could fall between them (for 23 digits, 1 in 2^58 for 100,000 random keys)."""
    ranked, digests, _ = hash_order(keys, salt)
    return [(ranked[i - 1], ranked[i]) for i in range(1, len(ranked)) if digests[i - 1][:width] == digests[i][:width]]


def segments_of(
    ranked: Sequence[str], digests: Sequence[str], assignments: Mapping[str, str], pending: Mapping[str, str]
) -> list[KeySegment]:
    """The run-lengths of (owner, next owner) along the hash order. Keys outside `ranked` are left out:
    a segmented routing.json routes only an app whose keys are exactly `ranked` (api/keyhash.py owner),
    so a key that left the universe is traded by nobody who reads it."""
    out: list[KeySegment] = []
    last: tuple[str, str | None] | None = None
    previous: str | None = None
    for key, key_digest in zip(ranked, digests, strict=True):
        state = (assignments.get(key, UNASSIGNED), pending.get(key))
        if state != last:
            out.append(KeySegment(start=boundary(previous, key_digest), owner=state[0], next=state[1]))
            last = state
        previous = key_digest
    return out or [KeySegment(start="", owner=UNASSIGNED)]


def expand_segments(
    ranked: Sequence[str], digests: Sequence[str], segments: Sequence[KeySegment]
) -> tuple[dict[str, str], dict[str, str]]:
    """The assignments and pending owners `segments` stand for, over the universe `ranked` (the inverse of
    `segments_of` on the same universe; on another, each key gets the owner of the segment it falls in)."""
    assignments: dict[str, str] = {}
    pending: dict[str, str] = {}
    starts = [s.start for s in segments] + [None]
    for segment, end in zip(segments, starts[1:], strict=True):
        lo = bisect.bisect_left(digests, segment.start)
        hi = len(digests) if end is None else bisect.bisect_left(digests, end)
        if segment.owner == UNASSIGNED:
            continue
        keys = ranked[lo:hi]
        assignments.update(dict.fromkeys(keys, segment.owner))
        if segment.next is not None:
            pending.update(dict.fromkeys(keys, segment.next))
    return assignments, pending


def published_segments(segments: Sequence[KeySegment]) -> list[list[str]]:
    """What routing.json shows of them: [start, owner] pairs, neighbours with one owner merged."""
    out: list[list[str]] = []
    for s in segments:
        if not out or out[-1][1] != s.owner:
            out.append([s.start, s.owner])
    return out
