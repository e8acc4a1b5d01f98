"""Which version owns a key: the one routing function the operator and the strategy apps share.

Standard library only, so a strategy app (or its client library) can import this module alone and
route exactly as the operator does:
- listed keys are ranked by the hex digest of sha256(salt + ":" + key), ascending (within a tier);
- a large listed universe (more than 1,000 keys) is published as segments of that hash order: each
  `[from, owner]` owns the keys whose digest is >= from, up to the next segment's; an app applies them
  only when its own list of keys is the one the operator ranked (`universe_digest`);
- an open universe (`spec.routing.buckets`) puts an id in bucket sha256(salt + ":" + id) mod buckets,
  the digest read as one big-endian integer; the canary owns the buckets below weight x buckets / 100.
Weights are exact decimals: 0.5 % of 10,000 buckets is 50 buckets, never 49 from a float rounding.
"""

from __future__ import annotations

import bisect
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction

DRAINING = "draining"  # owned by nobody while it changes owner
NONE = "none"  # owned by nobody: trading stopped


def digest(salt: str, key: str) -> str:
    """Hex sha256 of `salt:key`: the rank of a listed key within its tier."""
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def universe_digest(keys: Iterable[str]) -> str:
    """Hex sha256 of the distinct keys, sorted, one per line: which universe a segmented routing ranks."""
    return hashlib.sha256("\n".join(sorted(set(keys))).encode()).hexdigest()


def segment_owner(segments: Sequence[Sequence[str]], key_digest: str) -> str | None:
    """The owner of the segment holding `key_digest`: the last one whose `from` is <= it (None: none)."""
    starts = [s[0] for s in segments]
    index = bisect.bisect_right(starts, key_digest) - 1
    return segments[index][1] if index >= 0 else None


def bucket_of(salt: str, id_: str, buckets: int) -> int:
    """The bucket of an id in an open universe: sha256(salt:id), big-endian, mod buckets."""
    if buckets < 1:
        raise ValueError(f"buckets must be >= 1, got {buckets}")
    return int.from_bytes(hashlib.sha256(f"{salt}:{id_}".encode()).digest(), "big") % buckets


def exact(weight: float) -> Fraction:
    """A weight as the decimal it was written as (0.1 is 1/10, not the float nearest to it)."""
    return Fraction(repr(weight)) if isinstance(weight, float) else Fraction(weight)


def share(weight: float, total: int) -> int:
    """ceil(weight x total / 100), exact: how many of `total` keys, buckets or pods `weight` percent is."""
    if not 0 <= weight <= 100:
        raise ValueError(f"weight {weight} is outside 0..100")
    return math.ceil(exact(weight) * total / 100) if total else 0


def owner(document: Mapping[str, object], id_: str, universe: str | None = None) -> str | None:
    """Who owns `id_` by a routing.json document (a version, `draining`, `none`), or None: not routed.

    Listed universes carry `assignments` (key -> owner); large listed ones carry `segments` instead,
    with `salt` and `universe: {keys, sha256}`, and route only for an app whose own keys have that
    digest (`universe`: `universe_digest(my_keys)`; any other, or none, routes nothing: the boundaries
    are only meaningful between the keys that were ranked). Open universes carry `buckets`, `salt`,
    `canaryBuckets` and, while buckets change owner, `drainingBuckets: [from, to)` (owned by nobody);
    `stopped: true` after a stop (every id to none). An id named in `assignments` wins over its bucket.
    """
    assignments = document.get("assignments")
    if isinstance(assignments, Mapping) and id_ in assignments:
        found = assignments[id_]
        return found if isinstance(found, str) else None
    if document.get("stopped") is True:  # first: a stop holds whatever else the document says
        return NONE
    segments = document.get("segments")
    if isinstance(segments, list):
        return _segmented(document, segments, id_, universe)
    buckets = document.get("buckets")
    if not isinstance(buckets, int) or isinstance(buckets, bool):
        return None
    salt, canary_buckets = document.get("salt"), document.get("canaryBuckets")
    if not isinstance(salt, str) or not isinstance(canary_buckets, int):
        return None
    bucket = bucket_of(salt, id_, buckets)
    draining = document.get("drainingBuckets")
    if isinstance(draining, list) and len(draining) == 2 and draining[0] <= bucket < draining[1]:
        return DRAINING
    version = document.get("canaryVersion" if bucket < canary_buckets else "stableVersion")
    return version if isinstance(version, str) else None


def _segmented(document: Mapping[str, object], segments: list[object], id_: str, universe: str | None) -> str | None:
    ranked = document.get("universe")
    salt = document.get("salt")
    if not isinstance(ranked, Mapping) or universe is None or ranked.get("sha256") != universe:
        return None
    if not isinstance(salt, str) or not all(
        isinstance(s, list) and len(s) == 2 and all(isinstance(x, str) for x in s) for s in segments
    ):
        return None
    return segment_owner(segments, digest(salt, id_)) or None  # type: ignore[arg-type]  # "": unassigned


def owners(document: Mapping[str, object], keys: Iterable[str]) -> dict[str, str]:
    """Each of `keys` that the document routes, and to whom, as an app holding exactly these keys reads it."""
    held = list(keys)
    universe = universe_digest(held)
    routed = {k: owner(document, k, universe) for k in held}
    return {k: v for k, v in routed.items() if v is not None}


def owns(document: Mapping[str, object], id_: str, version: str, universe: str | None = None) -> bool:
    """May the pods of `version` trade `id_` now? (Never while it is draining or stopped.)"""
    return owner(document, id_, universe) == version
