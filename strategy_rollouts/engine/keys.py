"""Keys as first-class (docs/keys.md): ordered tiers, open universes of buckets, quarantine limits, and a
compact assignment (a canary prefix of the ranked order plus a short list of exceptions).

Pure functions; the rollout engine (engine/rollout/assignments.py) applies them one pass at a time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strategy_rollouts.api.keyhash import DRAINING, exact, share
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
        return max_quarantined
    return math.floor(exact(float(max_quarantined.rstrip("%"))) * total / 100)


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


# ---- compact assignments ------------------------------------------------------------------------


@dataclass(frozen=True)
class CompactAssignment:
    """An assignment of N ranked keys in O(exceptions): the first `canary` keys of the ranked order are
    the canary's and the rest stable's, except the keys in `exceptions` (key -> owner: draining,
    quarantined back to stable, none). What status and routing.json can carry at 100,000 keys."""

    canary: int
    exceptions: dict[str, str] = field(default_factory=dict)


def compact(ranked: Sequence[str], assignments: Mapping[str, str], stable: str, canary: str) -> CompactAssignment:
    """The shortest prefix form of `assignments` over `ranked`: the prefix length that leaves the fewest
    exceptions (ties: the shorter prefix). Keys of `assignments` outside `ranked` are exceptions too."""
    # exceptions(p) = canary-owned keys at index >= p + non-canary keys at index < p (+ keys not ranked)
    owners = [assignments.get(k) for k in ranked]
    cost = sum(1 for o in owners if o != stable)  # prefix 0: every key not stable's is an exception
    best, best_cost = 0, cost
    for p, owner in enumerate(owners, start=1):
        # the boundary moves past index p - 1: that key is expected to be the canary's now
        cost += (owner != canary) - (owner != stable)
        if cost < best_cost:
            best, best_cost = p, cost
    exceptions = {}
    for index, (key, owner) in enumerate(zip(ranked, owners, strict=True)):
        expected = canary if index < best else stable
        if owner != expected:
            exceptions[key] = owner if owner is not None else "unassigned"
    ranked_set = set(ranked)
    exceptions.update({k: v for k, v in assignments.items() if k not in ranked_set})
    return CompactAssignment(best, exceptions)


def expand(ranked: Sequence[str], form: CompactAssignment, stable: str, canary: str) -> dict[str, str]:
    """The full key -> owner map a compact assignment stands for (the inverse of `compact`)."""
    out = {key: (canary if index < form.canary else stable) for index, key in enumerate(ranked)}
    for key, owner in form.exceptions.items():
        if owner == "unassigned":
            out.pop(key, None)
        else:
            out[key] = owner
    return out


def draining_keys(form: CompactAssignment) -> Collection[str]:
    return [k for k, v in form.exceptions.items() if v == DRAINING]
