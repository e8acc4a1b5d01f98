"""Checks the CRD schema cannot express; each message names the field (reported as InvalidSpec)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from fractions import Fraction

from strategy_rollouts.api.durations import format_duration, parse_duration
from strategy_rollouts.api.gates import MAX_PER_KEY_GATES, SCOREBOARD, GateSpec, JudgeSpec
from strategy_rollouts.api.notify import EVENTS_BY_KIND, NotifyRule
from strategy_rollouts.api.placeholders import (
    ROLLOUT_PLACEHOLDERS,
    SHADOW_PLACEHOLDERS,
    placeholders_in,
    unknown_placeholders,
)
from strategy_rollouts.api.rollout import (
    BOUNDARY_DIGITS,
    MAX_LISTED_KEYS,
    MAX_QUARANTINED,
    SEGMENTED_ABOVE,
    StrategyRolloutSpec,
)
from strategy_rollouts.engine.keys import near_collisions
from strategy_rollouts.engine.market import market_errors
from strategy_rollouts.engine.size import segmented, size_errors


def _duplicates(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dupes: list[str] = []
    for name in names:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    return dupes


def query_errors(field: str, query: str | None, known: frozenset[str]) -> list[str]:
    if query is None:
        return []
    return [f"{field}: unknown placeholder {{{{{name}}}}}" for name in unknown_placeholders(query, known)]


def gate_errors(
    field: str,
    gates: list[GateSpec],
    known: frozenset[str] = ROLLOUT_PLACEHOLDERS,
    webhooks: bool = True,
) -> list[str]:
    errors = [f"{field}: duplicate gate name {name!r}" for name in _duplicates(g.name for g in gates)]
    for i, gate in enumerate(gates):
        where = f"{field}[{i}]"
        if gate.template_ref is not None:
            # The operator resolves templates before the engine runs (engine/gate_templates.py).
            errors.append(f"{where}.templateRef: {gate.template_ref.kind} {gate.template_ref.name} not resolved")
            continue
        errors += query_errors(f"{where}.query", gate.query, known)
        errors += query_errors(f"{where}.baseline", gate.baseline, known)
        kinds = [
            k
            for k, present in (
                ("condition", gate.condition is not None),
                ("baseline", gate.baseline is not None),
                ("judge", gate.judge is not None),
                ("webhook", gate.webhook is not None),
            )
            if present
        ]
        if len(kinds) != 1:
            errors.append(
                f"{where}: set exactly one of condition, baseline with maxIncreasePercent, judge or webhook"
                f" (got {', '.join(kinds) or 'none'})"
            )
        if gate.baseline is not None and gate.max_increase_percent is None:
            errors.append(f"{where}.maxIncreasePercent: required with baseline")
        if (gate.condition is not None or gate.baseline is not None) and gate.query is None:
            errors.append(f"{where}.query: required with condition or baseline")
        if gate.judge is not None:
            errors += judge_errors(f"{where}.judge", gate, known)
        if gate.webhook is not None and not webhooks:
            errors.append(f"{where}.webhook: webhook gates are for StrategyRollouts only")
        if gate.per_key is not None and not webhooks:
            errors.append(f"{where}.perKey: per-key gates are for StrategyRollouts only")
        elif gate.per_key is not None and gate.query is None:
            errors.append(f"{where}.perKey: only a threshold or compare gate (query) can be judged per key")
        if parse_duration(gate.interval).total_seconds() <= 0:
            errors.append(f"{where}.interval: must be > 0")
    return errors


def judge_errors(where: str, gate: GateSpec, known: frozenset[str]) -> list[str]:
    judge = gate.judge
    assert judge is not None
    errors = [] if gate.query is None else [f"{where}: a judge has its own query; remove the gate's query"]
    errors += query_errors(f"{where}.query", judge.query, known | {"version"})
    if "version" not in placeholders_in(judge.query):
        errors.append(f"{where}.query: must use {{{{version}}}} (run once per side)")
    window, step = parse_duration(judge.window), parse_duration(judge.step)
    if step.total_seconds() <= 0:
        errors.append(f"{where}.step: must be > 0")
    elif window < step:
        errors.append(f"{where}.window: {judge.window} is shorter than step {judge.step}")
    errors += sequential_errors(where, judge)
    return errors  # minSamples >= 3 and 0.5 < confidence < 1 are the model's (field-named when they fail)


# A PromQL `@` modifier pins every point of a range query to one instant: nothing left to pair by time.
AT_MODIFIER = re.compile(r"@\s*(start\s*\(\s*\)|end\s*\(\s*\)|[-+]?[0-9.]+|\{\{)")


def sequential_errors(where: str, judge: JudgeSpec) -> list[str]:
    """Fields of `test: sequential` (a negative margin and onUndecided: promote are the schema's)."""
    extra = {
        "margin": judge.margin is not None,
        "marginPercent": judge.margin_percent is not None,
        "decideWithin": judge.decide_within is not None,
    }
    if judge.test != "sequential":
        return [f"{where}.{name}: only with test: sequential" for name, present in extra.items() if present]
    errors = []
    if judge.margin is not None and judge.margin_percent is not None:
        errors.append(f"{where}.marginPercent: set margin or marginPercent, not both")
    step = parse_duration(judge.step)
    if judge.decide_within is not None and step.total_seconds() > 0:
        least = step * judge.min_samples
        if parse_duration(judge.decide_within) < least:
            errors.append(
                f"{where}.decideWithin: {judge.decide_within} is shorter than minSamples x step"
                f" ({judge.min_samples} x {judge.step} = {format_duration(least)}): it could never decide"
            )
    if judge.pairing == "time" and AT_MODIFIER.search(judge.query):
        errors.append(
            f"{where}.query: pairing: time cannot align the sides of a query with an @ modifier (every point is"
            " one fixed instant, not the step's timestamps); remove the @ or use pairing: none"
        )
    return errors


def rollout_errors(spec: StrategyRolloutSpec) -> list[str]:
    """The checks behind `engine.rollout.spec_errors` (call that one: it is the entry point, cached)."""
    errors: list[str] = []
    if spec.stable.deployment == spec.canary.deployment:
        errors.append("spec.canary.deployment: must differ from spec.stable.deployment")
    if spec.stable.version == spec.canary.version:
        errors.append("spec.canary.version: must differ from spec.stable.version")
    errors += keys_errors(spec)
    errors += [f"spec.stages: duplicate stage name {n!r}" for n in _duplicates(s.name for s in spec.stages)]
    for i, stage in enumerate(spec.stages):
        where = f"spec.stages[{i}]"
        weights = [s.set_weight for s in stage.steps if s.set_weight is not None]
        if weights != sorted(weights):
            errors.append(f"{where}.steps: setWeight must be non-decreasing, got {weights}")
        for j, step in enumerate(stage.steps):
            if (step.set_weight is None) == (step.pause is None):
                errors.append(f"{where}.steps[{j}]: a step is either setWeight or pause")
        short = stage.min_duration and stage.max_duration
        if short and parse_duration(stage.max_duration or "0s") < parse_duration(stage.min_duration or "0s"):
            errors.append(f"{where}.maxDuration: {stage.max_duration} is shorter than minDuration {stage.min_duration}")
        if stage.risk_budget is not None:
            errors += query_errors(f"{where}.riskBudget.query", stage.risk_budget.query, ROLLOUT_PLACEHOLDERS)
    errors += gate_errors("spec.gates", spec.gates)
    errors += market_errors("spec", spec.market, spec.freeze_windows)
    errors += notify_errors("StrategyRollout", spec.notify)
    errors += size_errors(spec)  # status, routing.json and spec well within etcd's limit (engine/size.py)
    errors += segment_errors(spec, spec.routing.keys, "spec.routing.keys")
    return errors


def keys_errors(spec: StrategyRolloutSpec) -> list[str]:
    """The universe (keys, keysFrom or buckets), its order, quarantine and weights (docs/keys.md)."""
    routing = spec.routing
    errors = [f"spec.routing.keys: duplicate key {k!r}" for k in _duplicates(routing.keys)]
    sources = [
        name
        for name, given in (
            ("keys", bool(routing.keys)),
            ("keysFrom", routing.keys_from is not None),
            ("buckets", routing.buckets is not None),
        )
        if given
    ]
    if routing.mode == "replicas":
        errors += [f"spec.routing.{name}: only in symbols mode" for name in sources if name != "keys"]
        errors += ["spec.routing.order: only in symbols mode"] if routing.order is not None else []
        sources = []
    elif not sources:
        errors.append("spec.routing.keys: symbols mode needs keys, keysFrom or buckets")
    elif len(sources) > 1:
        errors.append(f"spec.routing.{sources[1]}: set one of keys, keysFrom or buckets (got {', '.join(sources)})")
    buckets = routing.buckets is not None and sources == ["buckets"]
    errors += _quarantine_errors(spec)
    errors += _order_errors(spec, buckets)
    per_key = [i for i, gate in enumerate(spec.gates) if gate.per_key is not None]
    for i in per_key:
        if buckets:
            errors.append(f"spec.gates[{i}].perKey: buckets are not keys; per-key gates need keys or keysFrom")
    if len(per_key) > MAX_PER_KEY_GATES:  # each keeps a scoreboard in status: the status stays under etcd's limit
        errors.append(
            f"spec.gates[{per_key[MAX_PER_KEY_GATES]}].perKey: at most {MAX_PER_KEY_GATES} per-key gates"
            f" (got {len(per_key)}): each keeps a scoreboard of up to {SCOREBOARD} keys in status"
        )
    for i, stage in enumerate(spec.stages):
        for j, step in enumerate(stage.steps):
            errors += _weight_errors(
                f"spec.stages[{i}].steps[{j}].setWeight", step.set_weight, routing.buckets if buckets else None
            )
    return errors


def listed_keys_errors(spec: StrategyRolloutSpec, listed: Sequence[str] | None) -> list[str]:
    """spec.routing.keysFrom, once its ConfigMap is read: never act on a universe that was not read."""
    ref = spec.routing.keys_from
    if ref is None or spec.routing.mode != "symbols":
        return []
    where = "spec.routing.keysFrom"
    cm = ref.config_map_key_ref
    if listed is None:
        return [f"{where}: the keys in ConfigMap {cm.name}, key {cm.key}, were not read"]
    errors = []
    if not listed:
        errors.append(f"{where}: ConfigMap {cm.name}, key {cm.key}, lists no keys")
    if len(listed) > MAX_LISTED_KEYS:
        errors.append(f"{where}: ConfigMap {cm.name} lists {len(listed)} keys, at most {MAX_LISTED_KEYS:,}")
    errors += [f"{where}: duplicate key {k!r} in ConfigMap {cm.name}" for k in _duplicates(listed)[:10]]
    errors += [f"{where}: key {k!r} in ConfigMap {cm.name} is longer than 128 characters" for k in listed
               if len(k) > 128][:10]  # fmt: skip
    universe = set(listed)
    # The same budgets as keys in the spec (engine/size.py: segmented when the key-by-key form does not fit).
    sized = spec.model_copy(update={"routing": spec.routing.model_copy(update={"keys": list(universe)})})
    errors += [e for e in size_errors(sized) if e.startswith("spec.stages")]
    errors += segment_errors(spec, tuple(universe), where)
    order = spec.routing.order
    if order is not None and segmented(spec, universe):
        errors += _segmented_order_errors(len(universe), f"ConfigMap {cm.name}")
    for i, tier in enumerate(order.tiers or [] if order else []):
        for j, key in enumerate(tier):
            if key not in universe:
                errors.append(f"spec.routing.order.tiers[{i}][{j}]: key {key!r} is not in ConfigMap {cm.name}")
    if isinstance(spec.routing.max_quarantined, str):
        allowed = math.floor(Fraction(spec.routing.max_quarantined.rstrip("%")) * len(universe) / 100)
        if allowed > MAX_QUARANTINED:
            errors.append(
                f"spec.routing.maxQuarantined: {spec.routing.max_quarantined} of {len(universe)} keys"
                f" allows {allowed} quarantined keys, at most {MAX_QUARANTINED} (status stays small)"
            )
    return errors


def _quarantine_errors(spec: StrategyRolloutSpec) -> list[str]:
    given = spec.routing.max_quarantined
    where = "spec.routing.maxQuarantined"
    if isinstance(given, int):
        allowed = given
    elif spec.routing.keys:
        allowed = math.floor(Fraction(given.rstrip("%")) * len(set(spec.routing.keys)) / 100)
    else:
        return []  # keysFrom: the engine caps it (docs/keys.md)
    if allowed > MAX_QUARANTINED:
        return [f"{where}: {given} allows {allowed} quarantined keys, at most {MAX_QUARANTINED} (status stays small)"]
    return []


def segment_errors(spec: StrategyRolloutSpec, universe: Sequence[str], where: str) -> list[str]:
    """A segmented universe whose keys a segment start could not tell apart (engine/keys.py near_collisions)."""
    if not segmented(spec, universe):
        return []
    salt = spec.routing.salt or spec.strategy
    return [
        f"{where}: keys {a!r} and {b!r} have sha256 digests sharing {BOUNDARY_DIGITS - 1} leading hex digits under"
        f" salt {salt!r}, too close to route as segments: set spec.routing.salt to another value"
        for a, b in near_collisions(tuple(universe), salt)[:5]
    ]


def _segmented_order_errors(keys: int, source: str) -> list[str]:
    """A segmented universe is routed in hash order: an order would scatter the canary's keys over its
    segments (docs/keys.md)."""
    return [
        f"spec.routing.order: {source} has {keys:,} keys, routed as segments of their hash order (more than"
        f" {SEGMENTED_ABOVE:,} keys, or too long to list key by key in status): an order (tiers or a rank"
        f" query) needs a smaller universe"
    ]


def _order_errors(spec: StrategyRolloutSpec, buckets: bool) -> list[str]:
    order = spec.routing.order
    if order is None:
        return []
    where = "spec.routing.order"
    if buckets:
        return [f"{where}: buckets go to the canary in number order; an order needs keys or keysFrom"]
    errors = []
    if (order.tiers is None) == (order.query is None):
        errors.append(f"{where}: set tiers or query, not both")
    if order.query is not None and order.label is None:
        errors.append(f"{where}.label: required with query (the series label that names each key)")
    if order.label is not None and order.query is None:
        errors.append(f"{where}.label: only with query")
    errors += query_errors(f"{where}.query", order.query, ROLLOUT_PLACEHOLDERS)
    # keysFrom: the universe is read by the operator, which checks the tiers against it then.
    universe = set(spec.routing.keys) if spec.routing.keys else None
    errors += _segmented_order_errors(len(universe or ()), "spec.routing.keys") if segmented(spec) else []
    first: dict[str, str] = {}
    for i, tier in enumerate(order.tiers or []):
        for j, key in enumerate(tier):
            here = f"{where}.tiers[{i}][{j}]"
            if key in first:
                errors.append(f"{here}: key {key!r} is named twice (first at {first[key]})")
                continue
            first[key] = here
            if universe is not None and key not in universe:
                errors.append(f"{here}: key {key!r} is not in spec.routing.keys")
    return errors


def _weight_errors(where: str, weight: float | None, buckets: int | None) -> list[str]:
    """A weight names an exact share: whole percents of a listed universe, whole buckets of an open one."""
    if weight is None or float(weight).is_integer():
        return []
    if buckets is None:
        return [
            f"{where}: {weight} is fractional; listed keys and replicas take whole percents (fractional weights"
            " need spec.routing.buckets)"
        ]
    share = Fraction(str(weight)) * buckets / 100
    if share.denominator != 1:
        return [f"{where}: {weight}% of {buckets} buckets is {float(share):g} buckets, not a whole number"]
    return []


__all__ = ["SHADOW_PLACEHOLDERS", "gate_errors", "keys_errors", "notify_errors", "query_errors", "rollout_errors"]


def notify_errors(kind: str, rules: Sequence[NotifyRule]) -> list[str]:
    """Events the kind never produces (the shared schema allows every kind's)."""
    allowed = EVENTS_BY_KIND[kind]
    out: list[str] = []
    for i, rule in enumerate(rules):
        bad = [e for e in rule.on if e not in allowed]
        if bad:
            out.append(f"spec.notify[{i}].on: {', '.join(bad)} is not a {kind} event (one of {', '.join(allowed)})")
    return out
