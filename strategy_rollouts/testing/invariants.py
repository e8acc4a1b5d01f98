"""Pure checks over what the chaos observers recorded. Each returns the violations it found, as
sentences naming the object, the values and when (seconds since the start), so a failure reads as
a reproduction."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

Body = dict[str, Any]
Timed = Sequence[tuple[float, Body]]
DRAINING, NONE = "draining", "none"


def positions(statuses: Timed) -> list[tuple[float, int, int]]:
    """(t, stageIndex, stepIndex) each time the position changed (statuses without one are skipped)."""
    out: list[tuple[float, int, int]] = []
    for t, st in statuses:
        if st.get("stageIndex") is None:
            continue
        pos = (int(st["stageIndex"]), int(st.get("stepIndex") or 0))
        if not out or out[-1][1:] != pos:
            out.append((t, *pos))
    return out


def step_violations(
    name: str, statuses: Timed, steps_per_stage: Sequence[int], t0: float = 0.0, relisted: Sequence[float] = ()
) -> list[str]:
    """Every move is one step forward, or from a stage's last step (or its end) to the next stage's
    step 0 (stage index == number of stages is the completion). Never back, never a step left out.

    The scenario's specs make every step need a pass of its own (each setWeight changes the weight,
    so a handoff or a scale-up ends the pass), so the watch must see each position, except across a
    relist (times in `relisted`: after an API server restart the watch could not resume, a 410, and
    revisions written just before it were never delivered): there only a move back is a violation."""
    out = []
    for (ta, sa, ia), (tb, sb, ib) in itertools.pairwise(positions(statuses)):
        last = steps_per_stage[sa] - 1 if sa < len(steps_per_stage) else 0
        one_step = sb == sa and ib == ia + 1 and ib <= last + 1
        next_stage = sb == sa + 1 and ib == 0 and ia >= last
        unseen_between = any(ta < t <= tb for t in relisted) and (sb, ib) > (sa, ia)
        if not (one_step or next_stage or unseen_between):
            out.append(f"{name}: position ({sa},{ia}) at {ta - t0:.1f}s -> ({sb},{ib}) at {tb - t0:.1f}s")
    return out


def outcome_violations(name: str, status: Body, version: str, expected: Mapping[str, int]) -> list[str]:
    """status.history for `version` holds each outcome exactly the expected number of times (absent: 0)."""
    seen = Counter(h.get("outcome") for h in status.get("history", []) if h.get("version") == version)
    return [
        f"{name}: history has {seen.get(outcome, 0)} x {outcome} for {version}, expected {count}"
        for outcome, count in expected.items()
        if seen.get(outcome, 0) != count
    ]


def handled_violations(name: str, status: Body) -> list[str]:
    """Each request id is handled once, and nothing handled is still pending."""
    handled = Counter(h.get("id") for h in status.get("handledRequests", []))
    out = [f"{name}: request {rid} handled {n} times" for rid, n in handled.items() if n > 1]
    out += [
        f"{name}: request {rid} handled and still pending" for rid in status.get("requests") or {} if rid in handled
    ]
    return out


def exclusivity_violations(
    name: str,
    docs: Timed,
    versions: Sequence[str],
    contiguous: bool,
    t0: float = 0.0,
    relisted: Sequence[float] = (),
) -> list[str]:
    """No key goes from one version straight to another one (without `draining` or `none` seen in
    between). `contiguous` (a watch): every revision is seen, each exactly one more than the last,
    except across a relist (times in `relisted`: the watch could not resume, after a 410)."""
    out = []
    for (ta, a), (tb, b) in itertools.pairwise(docs):
        ra, rb = int(a.get("revision", 0)), int(b.get("revision", 0))
        resumed = contiguous and not any(ta < t <= tb for t in relisted)
        if rb < ra or (resumed and rb != ra + 1) or (not contiguous and rb == ra and a != b):
            out.append(f"{name}: revision {ra} at {ta - t0:.1f}s followed by {rb} at {tb - t0:.1f}s")
        before, after = a.get("assignments", {}), b.get("assignments", {})
        for key, owner in after.items():
            prev = before.get(key)
            if prev in versions and owner in versions and prev != owner:
                out.append(f"{name}: {key} {prev} -> {owner} without draining (revision {ra} -> {rb}, {tb - t0:.1f}s)")
    return out


def drain_violations(name: str, docs: Timed, versions: Sequence[str], minimum: float, t0: float = 0.0) -> list[str]:
    """A key published as `draining` stays so for at least `minimum` seconds before a version owns it."""
    out = []
    since: dict[str, float] = {}
    for t, doc in docs:
        for key, owner in doc.get("assignments", {}).items():
            if owner == DRAINING:
                since.setdefault(key, t)
                continue
            start = since.pop(key, None)
            if start is not None and owner in versions and t - start < minimum:
                out.append(f"{name}: {key} draining {t - start:.2f}s (< {minimum}s) until {owner} at {t - t0:.1f}s")
    return out


def changes(series: Sequence[tuple[float, int]]) -> list[int]:
    """The distinct values of a series, in order (repeats collapsed)."""
    return [v for i, (_, v) in enumerate(series) if i == 0 or series[i - 1][1] != v]


def replica_violations(name: str, series: Sequence[tuple[float, int]], expected: Sequence[int]) -> list[str]:
    """spec.replicas went exactly through `expected` (each value once, in order): never the wrong
    way, never scaled twice."""
    got = changes(series)
    return [] if got == list(expected) else [f"{name}: spec.replicas went {got}, expected {list(expected)}"]
