"""Per-key gates: a key failing one goes back to stable alone (quarantined), up to maxQuarantined.

A gate with `perKey` is measured once per key (Observations.per_key). Each key the canary owns is judged
alone; a failing key is recorded in `status.keys.quarantined` (with the gate, the value and why) and from
then on desired on stable, so the handoff drains it there like any other key that changes owner. It stays
there for the rest of the run unless a `releaseKey` request returns it. More quarantined keys than
`spec.routing.maxQuarantined` allows is a failure of the whole rollout (`onFailure`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from strategy_rollouts.api.conditions import parse_condition
from strategy_rollouts.api.gates import SCOREBOARD, GateSpec, GateStatus, KeyScore
from strategy_rollouts.api.requests import Outcome
from strategy_rollouts.api.rollout import KeysStatus, QuarantinedKey
from strategy_rollouts.engine import gates as gatelib
from strategy_rollouts.engine.keys import quarantine_limit
from strategy_rollouts.engine.rollout.state import Run


def set_keys(run: Run, entries: list[QuarantinedKey], order: list[list[str]] | None, at: datetime | None) -> None:
    run.st.keys = KeysStatus(quarantined=entries, order=order, ordered_at=at) if entries or order else None


def set_quarantined(run: Run, entries: list[QuarantinedKey]) -> None:
    keys = run.st.keys
    set_keys(run, entries, keys.order if keys else None, keys.ordered_at if keys else None)
    run.quarantined = frozenset(q.key for q in entries)
    run.desired_by_weight.clear()  # the desired assignments depend on the quarantined keys


def limit(run: Run) -> int:
    return quarantine_limit(run.spec.routing.max_quarantined, len(run.ranked))


def canary_keys(run: Run) -> set[str]:
    """Keys the canary trades now (published as its own) in any target."""
    canary = run.spec.canary.version
    return {k for t in run.st.targets for k, owner in t.assignments.items() if owner == canary}


def judge_keys(run: Run, gate: GateSpec, prev: GateStatus | None) -> GateStatus | None:
    """Judge this pass' per-key measurements of `gate`; None: nothing measured (the status stays as it was,
    and goes stale: a per-key gate never measured holds the rollout, like any gate without a fresh Pass).

    The gate's own status summarizes: Pass when no key it judged failed or the failures were quarantined
    within the limit; Fail (counted at once, whatever failureLimit) when the quarantined keys exceed it;
    Inconclusive when the canary trades keys and none of them was measured.
    """
    measured = run.obs.per_key.get(gate.name)
    if measured is None:
        return None
    trading = canary_keys(run) - run.quarantined
    judged = sorted(k for k in measured if k in trading)
    entries = list(run.st.keys.quarantined) if run.st.keys else []
    newly: list[str] = []
    allowed = limit(run)
    for key in judged:
        if len(entries) > allowed:
            break  # one beyond the limit fails the rollout: more would only grow the status
        result, message = gatelib.judge(gate, measured[key])
        if result != "Fail" or gate.dry_run:  # a dry-run gate is shown, never acts
            continue
        value = measured[key].value
        entries.append(QuarantinedKey(key=key, gate=gate.name, value=value, at=run.now))
        newly.append(key)
        run.event("Warning", "KeyQuarantined", f"{key} back to stable: gate {gate.name} {message}")
    if newly:
        set_quarantined(run, entries)
    over = len(entries) > allowed
    failures = prev.failures if prev else 0
    inconclusives = prev.inconclusives if prev else 0
    if over:
        result, failures, inconclusives = "Fail", failures + 1, 0
        message = (
            f"{len(entries)} keys quarantined, more than spec.routing.maxQuarantined allows ({allowed}):"
            f" {', '.join(q.key for q in entries[:10])}"
        )
    elif trading and not judged:
        result, inconclusives = "Inconclusive", inconclusives + 1
        message = f"none of the {len(trading)} canary keys was measured"
    else:
        result, inconclusives = "Pass", 0
        message = f"{len(judged)} keys judged; {len(newly)} quarantined now, {len(entries)} in all (at most {allowed})"
    stable = run.obs.per_key_stable.get(gate.name, {})
    board = scoreboard(gate, {k: measured[k] for k in judged}, stable)
    return GateStatus(
        name=gate.name,
        keys=board or None,
        value=float(len(entries)),
        result=result,
        failures=failures,
        consecutive_failures=(prev.consecutive_failures if prev else 0) + 1 if over else 0,
        inconclusives=inconclusives,
        evaluated_at=run.now,
        message=message,
        dry_run=gate.dry_run or None,
    )


_ORDER = {"Fail": 0, "Error": 1, "Inconclusive": 2}


def headroom(gate: GateSpec, m: gatelib.Measurement) -> float:
    """How far a key's value is from failing the gate (smaller: nearer); inf when it cannot say."""
    if m.value is None or not math.isfinite(m.value):
        return math.inf
    if gate.condition is not None:
        cond = parse_condition(gate.condition)
        gap = m.value - cond.threshold
        return gap if cond.op in (">", ">=") else -gap if cond.op in ("<", "<=") else abs(gap)
    if m.baseline is None or not math.isfinite(m.baseline) or m.baseline <= 0:
        return math.inf
    return (gate.max_increase_percent or 0.0) - (m.value - m.baseline) / m.baseline * 100


def scoreboard(
    gate: GateSpec, measured: Mapping[str, gatelib.Measurement], stable: Mapping[str, float]
) -> list[KeyScore]:
    """The keys judged this pass, worst first: failing, then erroring or inconclusive, then by headroom."""
    scored = []
    for key, m in measured.items():
        result, _ = gatelib.judge(gate, m)
        scored.append((_ORDER.get(result, 3), headroom(gate, m), key, result, m.value))
    scored.sort(key=lambda s: (s[0], s[1], s[2]))
    return [
        KeyScore(key=key, canary=value, stable=stable.get(key), result=result)
        for _, _, key, result, value in scored[:SCOREBOARD]
    ]


def over_limit(run: Run) -> bool:
    return run.st.keys is not None and len(run.st.keys.quarantined) > limit(run)


def release_key(run: Run, key: str | None) -> tuple[Outcome, str]:
    """`releaseKey`: the key leaves quarantine and goes back to the canary when its weight reaches it
    (with a drain, as every change of owner)."""
    if key is None:
        return "Rejected", "releaseKey needs the key to release (request field key)"
    entries = list(run.st.keys.quarantined) if run.st.keys else []
    if key not in {q.key for q in entries}:
        quarantined = ", ".join(q.key for q in entries[:10]) or "none"
        return "Rejected", f"{key} is not quarantined (quarantined: {quarantined})"
    set_quarantined(run, [q for q in entries if q.key != key])
    run.event("Normal", "KeyReleased", f"{key} released from quarantine")
    return "Applied", f"{key} released: it goes back to the canary with its weight"
