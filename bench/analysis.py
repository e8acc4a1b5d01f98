"""Pure parts of the harness: statistics, metric parsing, latency extraction from recorded events."""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from strategy_rollouts.api.durations import parse_duration


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100): p99 of 50 samples is the maximum, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
        "min": min(values) if values else None,
    }


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str, names: Iterable[str]) -> list[tuple[str, dict[str, str], float]]:
    """(name, labels, value) for every sample of the given metric names in Prometheus text format."""
    wanted = set(names)
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if not m or m.group(1) not in wanted:
            continue
        labels = dict(_LABEL.findall(m.group(3) or ""))
        try:
            out.append((m.group(1), labels, float(m.group(4))))
        except ValueError:
            continue
    return out


def sum_by(samples: Iterable[tuple[str, dict[str, str], float]], *keys: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for _, labels, value in samples:
        out[" ".join(labels.get(k, "") for k in keys)] += value
    return dict(out)


def delta(after: Mapping[str, float], before: Mapping[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0) != 0}


WRITE_VERBS = ("create", "update", "patch", "delete", "POST", "PUT", "PATCH", "DELETE", "apply")


def writes(by_verb: Mapping[str, float]) -> float:
    """Sum of the counts whose verb (first word of the key) is a write."""
    return sum(v for k, v in by_verb.items() if k.split(" ")[0] in WRITE_VERBS)


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@dataclass
class CmEvent:
    t: float
    revision: int
    weight: int
    canary: int
    stable: int
    draining: int
    keys: int


def cm_event(t: float, obj: Mapping[str, Any], stable: str, canary: str) -> CmEvent | None:
    import json

    text = (obj.get("data") or {}).get("routing.json")
    if not text:
        return None
    doc = json.loads(text)
    owners = list((doc.get("assignments") or {}).values())
    return CmEvent(
        t=t,
        revision=int(doc.get("revision", 0)),
        weight=int(doc.get("weight", 0)),
        canary=sum(1 for o in owners if o == canary),
        stable=sum(1 for o in owners if o == stable),
        draining=sum(1 for o in owners if o == "draining"),
        keys=len(owners),
    )


@dataclass
class RolloutTrace:
    """What the harness saw of one rollout: its status events and routing ConfigMap revisions."""

    steps: list[dict[str, Any]]
    statuses: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    routing: list[CmEvent] = field(default_factory=list)


def pause_due_times(trace: RolloutTrace) -> list[tuple[int, float, int]]:
    """(step index, due time, next weight) of every timed pause the rollout entered."""
    out = []
    seen: set[int] = set()
    for _, st in trace.statuses:
        index, started = st.get("stepIndex"), st.get("stepStartedAt")
        if index is None or started is None or index in seen or st.get("stageIndex", 0) != 0:
            continue
        if index >= len(trace.steps):
            continue
        step = trace.steps[index]
        pause = step.get("pause")
        if not pause or not pause.get("duration"):
            continue
        nxt = next((s["setWeight"] for s in trace.steps[index + 1 :] if "setWeight" in s), None)
        if nxt is None:
            continue
        seen.add(index)
        out.append((index, parse_time(started) + parse_duration(pause["duration"]).total_seconds(), nxt))
    return out


def step_latencies(trace: RolloutTrace, keys: int) -> list[dict[str, float]]:
    """Per timed pause: seconds from its due time to the first routing revision carrying the next
    weight (`weight`) and to the revision where the canary owns exactly its share with nothing
    draining (`assigned`)."""
    out = []
    for index, due, weight in pause_due_times(trace):
        want = math.ceil(weight * keys / 100)
        first = next((e for e in trace.routing if e.weight == weight and e.t >= due - 1), None)
        done = next(
            (
                e
                for e in trace.routing
                if e.weight == weight and e.canary == want and e.draining == 0 and e.t >= due - 1
            ),
            None,
        )
        if first is None:
            continue
        out.append(
            {
                "step": index,
                "due": due,
                "weight": weight,
                "latency": first.t - due,
                "assigned": (done.t - due) if done else math.nan,
            }
        )
    return out


def rollback_latency(trace: RolloutTrace, sample_ts: float, keys: int) -> dict[str, float] | None:
    """From the failing sample's timestamp: first draining revision and the all-stable revision."""
    after = [e for e in trace.routing if e.t >= sample_ts]
    drain = next((e for e in after if e.canary == 0 and e.draining > 0), None)
    stable = next((e for e in after if e.stable == keys), None)
    rolled = next((t for t, st in trace.statuses if t >= sample_ts and st.get("phase") == "RolledBack"), None)
    if stable is None:
        return None
    # When the failing measurement was taken (status.gates[].evaluatedAt), to split waiting for the
    # gate's next evaluation from acting on it.
    evaluated = None
    for _, st in trace.statuses:
        for gate in st.get("gates") or []:
            if gate.get("result") == "Fail" and gate.get("evaluatedAt"):
                at = parse_time(gate["evaluatedAt"])
                if at >= sample_ts - 1 and (evaluated is None or at < evaluated):
                    evaluated = at
    return {
        "to_failing_evaluation": (evaluated - sample_ts) if evaluated is not None else math.nan,
        "evaluation_to_stable": (stable.t - evaluated) if evaluated is not None else math.nan,
        "to_drain": (drain.t - sample_ts) if drain else math.nan,
        "to_stable": stable.t - sample_ts,
        "to_status": (rolled - sample_ts) if rolled else math.nan,
    }
