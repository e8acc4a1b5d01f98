"""Symbol routing: deterministic key ranking, weight -> assignments, and the draining handoff.

Exclusivity invariant: a key that changes owner is first published as `draining` (owned by
nobody) for the handoff time, and only then given to its new owner.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from strategy_rollouts.api.keyhash import NONE as NONE
from strategy_rollouts.api.keyhash import digest, share
from strategy_rollouts.api.rollout import DRAINING as DRAINING


def rank_keys(keys: Iterable[str], salt: str) -> list[str]:
    """Keys sorted by hex sha256(salt + ":" + key), ascending; ties (impossible in practice) by key."""
    return sorted(set(keys), key=lambda k: (digest(salt, k), k))


def canary_count(weight: float, total: int) -> int:
    """ceil(w * N / 100) in exact arithmetic (10% of 10 is exactly 1; 0.5% of 10,000 is exactly 50)."""
    return share(weight, total)


def desired_assignments(
    ranked: Sequence[str], weight: float, stable: str, canary: str, quarantined: Collection[str] = ()
) -> dict[str, str]:
    """The first canary_count keys of the ranked order go to the canary, except quarantined ones (stable)."""
    cut = canary_count(weight, len(ranked))
    return {key: (canary if index < cut and key not in quarantined else stable) for index, key in enumerate(ranked)}


@dataclass(frozen=True)
class RoutingState:
    """What is published for one target, plus keys waiting for their handoff to end."""

    assignments: dict[str, str]
    pending: dict[str, str] = field(default_factory=dict)
    draining_until: datetime | None = None


def step_handoff(
    state: RoutingState,
    desired: Mapping[str, str],
    now: datetime,
    handoff: timedelta,
    published: bool = True,
) -> RoutingState:
    """One move toward `desired`, never giving a key to a new owner without a drain.

    `published` is False while the last computed state has not reached the ConfigMap yet: the
    drain clock must not run out on a `draining` that nobody has seen.
    """
    if not state.pending and state.assignments == desired:
        return state  # settled: most passes, and at 100,000 keys the copies below are most of their cost
    assignments = dict(state.assignments)
    pending = dict(state.pending)
    until = state.draining_until
    if pending and not published:
        until = max(until or now, now + handoff)
    if pending and published and until is not None and now >= until:
        for key, owner in pending.items():
            assignments[key] = owner
        pending, until = {}, None
    started = False
    for key, owner in desired.items():
        current = assignments.get(key)
        if current == owner:
            pending.pop(key, None)
            continue
        if current == DRAINING:
            pending[key] = owner  # still owned by nobody: retarget freely
        elif current is None or current == NONE or owner == NONE:
            # Owned by nobody before, or by nobody after: no two owners can meet, no drain needed.
            # (Taking a key away to `none` is an emergency stop: it must not wait.)
            assignments[key] = owner
        else:
            assignments[key] = DRAINING
            pending[key] = owner
            started = True
    for key in list(assignments):
        if key not in desired:
            # Key removed from the universe: drain it to nobody.
            if assignments[key] not in (DRAINING, NONE):
                assignments[key] = DRAINING
                pending[key] = NONE
                started = True
            elif assignments[key] == DRAINING and key not in pending:
                pending[key] = NONE
    if started:
        until = max(until or now, now + handoff)
    if not pending:
        until = None
    return RoutingState(assignments, pending, until)


def settled(state: RoutingState, desired: Mapping[str, str]) -> bool:
    return not state.pending and all(state.assignments.get(k) == v for k, v in desired.items())


def count_owned(assignments: Mapping[str, str], version: str) -> int:
    return sum(1 for owner in assignments.values() if owner == version)


def count_draining(assignments: Mapping[str, str]) -> int:
    return sum(1 for owner in assignments.values() if owner == DRAINING)
