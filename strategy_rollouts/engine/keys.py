"""Keys as first-class (docs/keys.md): ordered tiers, open universes of buckets, quarantine limits, and a
compact assignment (a canary prefix of the ranked order plus a short list of exceptions).

Pure functions; the rollout engine (engine/rollout/assignments.py) applies them one pass at a time.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strategy_rollouts.api.keyhash import DRAINING, NONE, exact, share
from strategy_rollouts.api.rollout import MAX_QUARANTINED
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


# ---- compact assignments ------------------------------------------------------------------------


UNASSIGNED = ""  # an exception: a ranked key the assignment does not name


@dataclass(frozen=True)
class CompactAssignment:
    """An assignment of N ranked keys in O(exceptions): ranked keys [0, canary) are the canary's,
    [canary, draining_to) are draining (a weight change drains one contiguous range of the ranked order),
    the rest stable's; `exceptions` (key -> owner) override single keys: a quarantined key back on stable,
    a key draining alone, `none`. What status and routing.json can carry at 100,000 keys."""

    canary: int
    draining_to: int
    exceptions: dict[str, str] = field(default_factory=dict)
    rest: str | None = None  # the owner of the keys past draining_to; None: stable (`none` after a stop)


def compact(ranked: Sequence[str], assignments: Mapping[str, str], stable: str, canary: str) -> CompactAssignment:
    """The form of `assignments` over `ranked` with the fewest exceptions (exact: the three regions canary,
    draining, rest follow each other in ranked order, so the best boundaries are a shortest path). The rest
    is stable's, or `none` when more keys are (a stop). Keys outside `ranked` are exceptions too."""
    forms = [_compact(ranked, assignments, stable, canary, rest) for rest in (None, NONE)]
    return min(forms, key=lambda f: len(f.exceptions))


def _compact(
    ranked: Sequence[str], assignments: Mapping[str, str], stable: str, canary: str, rest: str | None
) -> CompactAssignment:
    regions = (canary, DRAINING, rest or stable)
    owners = [assignments.get(k, UNASSIGNED) for k in ranked]
    cost = [0, 0, 0]
    back: list[tuple[int, int, int]] = []  # per key: the region the previous key was in, for each region
    for owner in owners:
        prev = (0, 0 if cost[0] <= cost[1] else 1, min(range(3), key=lambda r: (cost[r], r)))
        cost = [cost[prev[r]] + (owner != regions[r]) for r in range(3)]
        back.append(prev)
    region = min(range(3), key=lambda r: (cost[r], r))
    ends = [0, 0, len(owners)]  # ends[r]: one past the last key in region r
    seen = [False, False, False]
    for index in range(len(owners) - 1, -1, -1):
        if not seen[region]:
            ends[region], seen[region] = index + 1, True
        region = back[index][region]
    canary_end = ends[0] if seen[0] else 0
    draining_end = ends[1] if seen[1] else canary_end
    form = CompactAssignment(canary_end, draining_end, rest=rest)
    exceptions = {}
    for index, (key, owner) in enumerate(zip(ranked, owners, strict=True)):
        if owner != _expected(form, index, stable, canary):
            exceptions[key] = owner
    ranked_set = set(ranked)
    exceptions.update({k: v for k, v in assignments.items() if k not in ranked_set})
    return CompactAssignment(canary_end, draining_end, exceptions, rest)


def _expected(form: CompactAssignment, index: int, stable: str, canary: str) -> str:
    if index < form.canary:
        return canary
    return DRAINING if index < form.draining_to else (form.rest or stable)


def expand(ranked: Sequence[str], form: CompactAssignment, stable: str, canary: str) -> dict[str, str]:
    """The full key -> owner map a compact assignment stands for (the inverse of `compact`)."""
    out = {key: _expected(form, index, stable, canary) for index, key in enumerate(ranked)}
    for key, owner in form.exceptions.items():
        if owner == UNASSIGNED:
            out.pop(key, None)
        else:
            out[key] = owner
    return out


def draining_keys(form: CompactAssignment) -> Collection[str]:
    return [k for k, v in form.exceptions.items() if v == DRAINING]
