"""Which version owns a key: the one routing function the operator and the strategy apps share.

Standard library only, so a strategy app (or its client library) can import this module alone and
route exactly as the operator does:
- listed keys are ranked by the hex digest of sha256(salt + ":" + key), ascending (within a tier);
- an open universe (`spec.routing.buckets`) puts an id in bucket sha256(salt + ":" + id) mod buckets,
  the digest read as one big-endian integer; the canary owns the buckets below weight x buckets / 100.
Weights are exact decimals: 0.5 % of 10,000 buckets is 50 buckets, never 49 from a float rounding.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from fractions import Fraction

DRAINING = "draining"  # owned by nobody while it changes owner
NONE = "none"  # owned by nobody: trading stopped


def digest(salt: str, key: str) -> str:
    """Hex sha256 of `salt:key`: the rank of a listed key within its tier."""
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


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


def owner(document: Mapping[str, object], id_: str) -> str | None:
    """Who owns `id_` by a routing.json document (a version, `draining`, `none`), or None: not routed.

    Listed universes carry `assignments` (key -> owner); open universes carry `buckets`, `salt`,
    `canaryBuckets` and, while buckets change owner, `drainingBuckets: [from, to)` (owned by nobody);
    `stopped: true` after a stop (every id to none). An id named in `assignments` wins over its bucket.
    """
    assignments = document.get("assignments")
    if isinstance(assignments, Mapping) and id_ in assignments:
        found = assignments[id_]
        return found if isinstance(found, str) else None
    if document.get("stopped") is True:  # first: a stop holds whatever else the document says
        return NONE
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


def owns(document: Mapping[str, object], id_: str, version: str) -> bool:
    """May the pods of `version` trade `id_` now? (Never while it is draining or stopped.)"""
    return owner(document, id_) == version
