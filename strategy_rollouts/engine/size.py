"""Size by design: what a StrategyRollout writes stays well below what the API server accepts.

etcd refuses a request over 1.5 MiB (its default --max-request-bytes), and every status write carries
the whole object: spec, metadata and status. The status grows with keys x stage namespaces: each
target (stage namespace) records every key's owner, and while a key changes owner it is `draining`
with its next owner in `pending`. The largest status is therefore written by an abort (or a stop)
of a rollout that stands at weight 100 everywhere: every key of every namespace draining at once.
If that write were refused the rollback would never be recorded, and the abort never act.

So the spec is refused up front (InvalidSpec, and at apply by the admission webhook) when its worst
case does not fit these budgets, computed from the spec's own keys and versions:
- status.targets' routing state (assignments + pending, all namespaces): ROUTING_STATE_BUDGET;
  the rest of the status is small (a few KiB in every phase; tests/unit/test_rollout_size.py
  measures both, and the rest with every list at its own limit);
- each namespace's routing.json (the ConfigMap every strategy pod reads): ROUTING_JSON_BUDGET;
- the spec itself: SPEC_BUDGET (it is stored up to twice, with kubectl's last-applied annotation).
The bytes are those of compact JSON, how the API server stores custom resources; tests measure the
engine's own documents against these formulas. A listed universe of more than SEGMENTED_ABOVE keys is
recorded and published as segments of its hash order (engine/keys.py), at most MAX_SEGMENTS of them:
its size does not grow with the keys (100,000 keys take what 1,001 take).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable

from strategy_rollouts.api.rollout import BOUNDARY_DIGITS, MAX_SEGMENTS, SEGMENTED_ABOVE, StrategyRolloutSpec
from strategy_rollouts.engine.routing import DRAINING, NONE

KIB = 1024
ETCD_REQUEST_LIMIT = 1536 * KIB  # etcd's default --max-request-bytes: the whole object, per write
STATUS_BUDGET = 512 * KIB  # a third of it: the spec, metadata and managedFields share the object
ROUTING_STATE_BUDGET = 256 * KIB  # of the status: every target's assignments + pending, worst phase
ROUTING_JSON_BUDGET = 256 * KIB  # per stage namespace (a ConfigMap holds at most 1 MiB)
SPEC_BUDGET = 256 * KIB  # also what kubectl apply's last-applied annotation may hold

# routing.json besides the assignments: its field names, weight, revision, sizeMultiplier, entriesEnabled.
ROUTING_JSON_FIXED = 256


def encoded_len(text: str) -> int:
    """Bytes of `text` inside a JSON string, never fewer than the API server writes: non-ASCII as
    \\uXXXX (its UTF-8 is never longer), and <, > and & as \\u003c..., as Go's encoder writes them."""
    return len(json.dumps(text)) - 2 + 5 * sum(text.count(c) for c in "<>&")


def distinct_namespaces(spec: StrategyRolloutSpec) -> int:
    """Stage targets: each distinct stage namespace (stages without one share the rollout's)."""
    return len({stage.namespace for stage in spec.stages})


def _owner_len(spec: StrategyRolloutSpec, *others: str) -> int:
    return max(encoded_len(v) for v in (spec.stable.version, spec.canary.version, *others))


def _key_lens(keys: Iterable[str]) -> int:
    return sum(encoded_len(k) for k in keys)


def segmented(spec: StrategyRolloutSpec, keys: Collection[str] | None = None) -> bool:
    """Is a listed universe (the spec's keys, or `keys` read from keysFrom) recorded and published as
    segments? Above SEGMENTED_ABOVE keys, and whenever the key-by-key form would not fit its budgets, so
    that more keys never means refused (docs/keys.md)."""
    if spec.routing.mode != "symbols" or spec.routing.buckets is not None:
        return False
    universe = set(spec.routing.keys if keys is None else keys)
    if len(universe) > SEGMENTED_ABOVE:
        return True
    return _listed_state(spec, universe) > ROUTING_STATE_BUDGET or _listed_json(spec, universe) > ROUTING_JSON_BUDGET


def routing_state_bytes(spec: StrategyRolloutSpec) -> int:
    """status.targets' routing state in the worst phase, all namespaces (see _listed_state and
    _segmented_state)."""
    if spec.routing.mode != "symbols":
        return 0
    if segmented(spec):
        return _segmented_state(spec)
    return _listed_state(spec, set(spec.routing.keys))


def _listed_state(spec: StrategyRolloutSpec, keys: Collection[str]) -> int:
    """Key by key. Per key and namespace, draining: `"key":"draining",` in assignments and `"key":"owner",`
    in pending (the owner: a version, or `none` after a stop), 2 x key + owner + 20 bytes; plus the two
    maps' braces. A settled key (`"key":"owner",` in assignments only) takes less."""
    owner = _owner_len(spec, NONE)
    per_namespace = 4 + 2 * _key_lens(keys) + len(keys) * (owner + 20)
    # A rank query's order, frozen in status.keys.order for the run: every key once more, `"key",`.
    order = spec.routing.order
    frozen = 64 + _key_lens(keys) + 3 * len(keys) if order is not None and order.query is not None else 0
    return distinct_namespaces(spec) * per_namespace + frozen


def _segmented_state(spec: StrategyRolloutSpec) -> int:
    """Per segment `{"start":"<digest prefix>","owner":"o","next":"o"},` at most MAX_SEGMENTS a namespace,
    plus `segmented: {keys, sha256}` and the braces: the same for 1,001 keys as for 100,000."""
    owner = _owner_len(spec, NONE, DRAINING)
    return distinct_namespaces(spec) * (160 + MAX_SEGMENTS * (BOUNDARY_DIGITS + 2 * owner + 36))


def routing_json_bytes(spec: StrategyRolloutSpec) -> int:
    """One namespace's routing.json at its largest: every key with the longest owner it can show, or every
    segment."""
    if spec.routing.mode != "symbols":
        return 0
    if segmented(spec):
        return _segmented_json(spec)
    return _listed_json(spec, set(spec.routing.keys))


def _fixed_json(spec: StrategyRolloutSpec) -> int:
    return (
        ROUTING_JSON_FIXED
        + encoded_len(spec.strategy)
        + encoded_len(spec.stable.version)
        + (encoded_len(spec.canary.version))
    )


def _listed_json(spec: StrategyRolloutSpec, keys: Collection[str]) -> int:
    owner = _owner_len(spec, DRAINING, NONE)
    return _fixed_json(spec) + _key_lens(keys) + len(keys) * (owner + 6)


def _segmented_json(spec: StrategyRolloutSpec) -> int:
    """Per segment `["<digest prefix>","owner"],`; plus the salt and `universe: {keys, sha256}`."""
    owner = _owner_len(spec, DRAINING, NONE)
    salt = encoded_len(spec.routing.salt or spec.strategy)
    return _fixed_json(spec) + salt + 160 + MAX_SEGMENTS * (BOUNDARY_DIGITS + owner + 8)


def spec_bytes(spec: StrategyRolloutSpec) -> int:
    return len(spec.model_dump_json(by_alias=True, exclude_none=True))


def size_errors(spec: StrategyRolloutSpec) -> list[str]:
    """The spec's worst case against each budget; each message names the field, the limit and why. A listed
    universe whose key-by-key form would not fit is segmented (`segmented`), so only a segmented one can
    still exceed: by its number of stage namespaces and the length of its versions."""
    errors: list[str] = []
    state, document = routing_state_bytes(spec), routing_json_bytes(spec)
    if state > ROUTING_STATE_BUDGET or document > ROUTING_JSON_BUDGET:
        namespaces = distinct_namespaces(spec)
        errors.append(
            f"spec.stages: {namespaces} stage namespaces with versions of up to {_owner_len(spec)} characters"
            f" exceed the status size budget of {ROUTING_STATE_BUDGET // KIB} KiB with a universe of"
            f" {len(set(spec.routing.keys)):,} keys: recorded as segments of the keys' hash order, at most"
            f" {MAX_SEGMENTS} a namespace, {state:,} bytes (an abort must fit in etcd's"
            f" {ETCD_REQUEST_LIMIT / KIB / KIB:.1f} MiB per object); use fewer stage namespaces or shorter versions"
        )
    size = spec_bytes(spec)
    if size > SPEC_BUDGET:
        errors.append(
            f"spec: {size:,} bytes exceed the spec size budget of {SPEC_BUDGET // KIB} KiB (the spec, kubectl's"
            f" last-applied copy of it and the status share one object, which etcd refuses over"
            f" {ETCD_REQUEST_LIMIT / KIB / KIB:.1f} MiB)"
        )
    return errors
