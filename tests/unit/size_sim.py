"""Drives the engine through a rollout's life at a given size and records the largest documents it writes.

The sizes are those of what the operator writes: `status.wire()` (the status subresource) and each
target's `routing.json` (engine/rollout.py `routing_document`), both as compact JSON, which is how the
API server stores them. No estimate: the engine produces every document measured here.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from strategy_rollouts.api.approvals import Approval
from strategy_rollouts.api.common import Condition, SecretKeyRef
from strategy_rollouts.api.gates import (
    MAX_PER_KEY_GATES,
    SCOREBOARD,
    ConfidenceInterval,
    GateStatus,
    JudgeSamples,
    KeyScore,
    TemplateUse,
)
from strategy_rollouts.api.market import MarketStatus
from strategy_rollouts.api.notify import NotificationStatus, PendingNotification, SentNotification
from strategy_rollouts.api.requests import HANDLED_LIMIT, HandledRequest
from strategy_rollouts.api.rollout import (
    MAX_BUCKETS,
    QUARANTINE_LIMIT,
    HistoryEntry,
    KeysStatus,
    QuarantinedKey,
    ReplicaStatus,
    RiskBudgetStatus,
    Routing,
    RoutingStatus,
    ScaleDown,
    StrategyRolloutSpec,
    StrategyRolloutStatus,
    TargetStatus,
)
from strategy_rollouts.engine.notifications import PENDING_LIMIT
from strategy_rollouts.engine.rollout import Decision, routing_document
from strategy_rollouts.engine.rollout.state import HISTORY_LIMIT
from strategy_rollouts.engine.routing import DRAINING
from strategy_rollouts.engine.size import segmented
from tests.unit.rollout_sim import T0, World

# Scenarios: what is requested once the rollout stands at weight 100 in every stage namespace, or
# in the middle of the handoff of the last stage (every key draining there, the others settled).
SCENARIOS = (
    "progress",  # the whole life without a request: every handoff, completion, Succeeded
    "abort",  # settled at 100 everywhere, then an abort: every key draining in every namespace
    "abort-mid-handoff",  # an abort while the last stage's handoff is under way
    "stop",  # settled at 100 everywhere, then stopTrading: every key to `none`
    "stop-mid-handoff",  # a stop while the last stage's keys drain: they wait for `none`
    "pause-mid-handoff",  # a pause request while the last stage's keys drain
    "abort-then-stop",  # a stop while an abort drains every key everywhere: they all wait for `none`
)
ALPHABET = string.digits + string.ascii_uppercase
MAX_KEYS: int = next(m.max_length for m in Routing.model_fields["keys"].metadata if hasattr(m, "max_length"))


def wire_bytes(document: Any) -> int:
    """Compact JSON, ASCII-escaped (never shorter than the API server's UTF-8)."""
    return len(json.dumps(document, separators=(",", ":")).encode())


def key_names(count: int, length: int) -> list[str]:
    """`count` distinct keys of exactly `length` characters (base 36, zero-padded)."""
    assert 36**length >= count, f"{count} keys do not fit in {length} characters"
    out = []
    for i in range(count):
        digits = ""
        n = i
        while n:
            n, r = divmod(n, 36)
            digits = ALPHABET[r] + digits
        out.append(digits.rjust(length, "0"))
    return out


def sized_spec(
    keys: int | list[str], namespaces: int, key_length: int = 10, version_length: int = 6, canary: str | None = None
) -> StrategyRolloutSpec:
    """One stage per namespace, each: weight 100, then a manual pause (it holds there until promoted).

    `keys`: how many (of `key_length` characters), or the keys themselves; the stable version has
    `version_length` characters, the canary as many or `canary`.
    """
    names = key_names(keys, key_length) if isinstance(keys, int) else keys
    stages = [
        {"name": f"s{i}", "namespace": f"ns-{i}", "steps": [{"setWeight": 100}, {"pause": {}}]}
        for i in range(namespaces)
    ]
    return StrategyRolloutSpec.model_validate(
        {
            "strategy": "size",
            "stable": {"deployment": "legacy", "version": "1".ljust(version_length, "0")},
            "canary": {
                "deployment": "pipeline",
                "version": canary or "2".ljust(version_length, "0"),
                "replicas": 1,
            },
            "routing": {"keys": names, "handoff": "5s"},
            "stages": stages,
            "scaleDownDelay": "5s",
        }
    )


def most_keys(namespaces: int, key_length: int, version_length: int) -> int:
    """The most keys (at most the CRD's 5000) a spec of these dimensions records key by key: one more is
    segmented (engine/size.py `segmented`)."""
    ceiling = min(MAX_KEYS, int(36**key_length))
    if not segmented(sized_spec(ceiling, namespaces, key_length, version_length)):
        return ceiling
    low, high = 0, ceiling  # low key by key (0: none is), high segmented
    while high - low > 1:
        mid = (low + high) // 2
        if segmented(sized_spec(mid, namespaces, key_length, version_length)):
            high = mid
        else:
            low = mid
    return low


@dataclass
class Sizes:
    status: int = 0  # the largest status written
    routing: int = 0  # the largest routing.json written
    status_phase: str = ""  # phase/reason of the largest status
    state: int = 0  # the largest routing state in a status: every target's assignments + pending
    rest: int = 0  # the largest rest of a status (all but that routing state)
    draining: int = 0  # the most keys draining at once (all targets)
    phases: set[str] = field(default_factory=set)
    largest: dict[str, Any] = field(default_factory=dict)  # the largest status written, as written
    largest_routing: dict[str, Any] = field(default_factory=dict)  # the largest routing.json, as a document

    def record(self, world: World, decision: Decision) -> None:
        st = decision.status
        wire = st.wire()
        size = wire_bytes(wire)
        if size > self.status:
            self.status, self.status_phase, self.largest = size, f"{st.phase}/{st.reason}", wire
        state = sum(
            wire_bytes(t.assignments) + wire_bytes(t.pending) + (wire_bytes(t.segmented.wire()) if t.segmented else 0)
            for t in st.targets
        )
        self.state = max(self.state, state)
        self.rest = max(self.rest, size - state)
        segmented_draining = sum(
            list(world.app_view(p).values()).count(DRAINING) for p in decision.routing if p.segmented is not None
        )
        self.draining = max(self.draining, sum(len(t.pending) for t in st.targets) + segmented_draining)
        self.phases.add(f"{st.phase}/{st.reason}")
        entries = not st.trading_stopped
        for payload in decision.routing:
            doc = routing_document(world.spec, payload, 1 << 31, 1.0, entries)
            if wire_bytes(doc) > self.routing:
                self.routing, self.largest_routing = wire_bytes(doc), doc


def _step(world: World, sizes: Sizes, ticks: int = 1) -> None:
    for _ in range(ticks):
        sizes.record(world, world.reconcile())
        world.now += timedelta(seconds=1)


def _until(world: World, sizes: Sizes, done: Any, limit: int = 600) -> None:
    for _ in range(limit):
        if done(world):
            return
        _step(world, sizes)
    raise AssertionError(f"stuck: {world.status.phase}/{world.status.reason} {world.status.message}")


def _awaiting_promotion(world: World) -> bool:
    return world.status.phase == "Paused" and world.status.reason == "AwaitingPromotion"


def _draining(world: World) -> bool:
    """Keys waiting for their next owner, or (an open universe) a range of buckets."""
    return any(
        t.pending
        or t.draining_buckets is not None
        or (t.segmented is not None and any(s.next is not None for s in t.segmented.segments))
        for t in world.status.targets
    )


def _settled(world: World) -> bool:
    return not _draining(world)


def measure(spec: StrategyRolloutSpec, scenario: str) -> Sizes:
    """Run `scenario` on `spec` (from sized_spec) and return the largest documents written."""
    assert scenario in SCENARIOS, scenario
    world = World(spec)
    sizes = Sizes()
    last = len(spec.stages) - 1
    seq = 0

    def request(action: str) -> None:
        nonlocal seq
        seq += 1
        world.request(f"r{seq}", action, "size-test", "measuring")  # type: ignore[arg-type]

    # Every stage but the last: weight 100, handed over, then promoted.
    _until(world, sizes, _awaiting_promotion)
    while (world.status.stage_index or 0) < last:
        request("promote")
        _step(world, sizes)
        _until(world, sizes, _awaiting_promotion)
    # The last stage stands at 100 too (every key on the canary everywhere); promote once more to
    # reach its handoff mid-way when asked.
    if scenario == "progress":
        request("promote")
        _until(world, sizes, lambda w: w.status.phase == "Succeeded")
        _step(world, sizes, 10)
        return sizes
    if scenario.endswith("mid-handoff"):
        # Back to stable in the last namespace is not a step; instead start the run again from a
        # settled canary: a retry after an abort re-runs every handoff, and the first stage's
        # handoff is the one interrupted here.
        request("abort")
        _until(world, sizes, lambda w: w.status.phase == "RolledBack" and _settled(w))
        request("retry")
        _step(world, sizes)
        _until(world, sizes, _draining)
        _step(world, sizes, 2)  # in the middle of the handoff: every key of a target draining
        assert _draining(world), "the handoff ended before the request"
    request({"abort": "abort", "stop": "stopTrading", "pause": "pause"}[scenario.split("-")[0]])
    _step(world, sizes)
    if scenario == "abort-then-stop":
        assert _draining(world)
        request("stopTrading")
        _step(world, sizes)
    _until(world, sizes, _settled)
    _step(world, sizes, 10)
    return sizes


def rest_at_limits(namespaces: int = 16) -> StrategyRolloutStatus:
    """A status whose every field but the routing state is at its own limit at once, every string at
    its longest: the history, the handled requests, the notification outbox, the gates, the approvals,
    the conditions, one target per stage namespace. What no simulated phase comes near."""
    now = T0
    by, reason, source, rid, version = "b" * 512, "r" * 1024, "s" * 512, "i" * 128, "v" * 128
    message = f"aborted by {by}: {reason}"
    entry = HistoryEntry(version=version, outcome="Superseded", at=now, by=by, reason=message)
    handled = HandledRequest(
        id=rid, action="promoteFull", by=by, source=source, reason=reason, outcome="Superseded",
        message="m" * 1024, requested_at=now, at=now, key="k" * 128,
    )  # fmt: skip
    # maxQuarantined at its cap, one key beyond it, every field at its longest
    quarantined = [
        QuarantinedKey(key="k" * 128, gate="g" * 63, value=1.2345678901234567e300, at=now)
        for _ in range(QUARANTINE_LIMIT)
    ]
    condition_types = ("InvalidSpec", "Progressing", "Paused", "Completed", "Degraded", "Frozen")
    big = 1.2345678901234567e300
    gate = GateStatus(
        name="g" * 63, value=big, baseline=big, effect=big,
        samples=JudgeSamples(canary=10**9, stable=10**9, pairs=10**9),
        confidence_interval=ConfidenceInterval(lower=big, upper=big), margin=big, undecided_overdue=True,
        template=TemplateUse(kind="ClusterGateTemplate", name="t" * 253, resource_version="9" * 20),
        result="Inconclusive", failures=10**6, consecutive_failures=10**6, inconclusives=10**6,
        evaluated_at=now, message="x" * 420, dry_run=True,
    )  # fmt: skip
    # the per-key gates at their limit, each with a full scoreboard
    scored = gate.model_copy(
        update={"keys": [KeyScore(key="k" * 128, canary=big, stable=big, result="Inconclusive")] * SCOREBOARD}
    )
    to = SecretKeyRef(name="n" * 253, key="k" * 253)
    sent = SentNotification(
        id=rid, event="AwaitingApproval", occurrence=10**9, at=now, outcome="Failed", message="m" * 512
    )
    pending = {
        f"AwaitingApproval-{10**9 + i}-{i % 8}": PendingNotification(
            event="AwaitingApproval", occurrence=10**9 + i, title="t" * 256, message="m" * 2048, to=to, at=now
        )
        for i in range(PENDING_LIMIT)
    }
    ns = ["n" * 253] * namespaces
    return StrategyRolloutStatus(
        observed_generation=2**62, phase="RolledBack", reason="ProgressDeadlineExceeded", message=message,
        stage="s" * 63, stage_index=15, step_index=63, canary_weight=100, started_at=now, stage_started_at=now,
        step_started_at=now, stable_version=version, canary_version=version,
        replicas=ReplicaStatus(stable=10**4, canary=10**4, stable_ready=10**4, canary_ready=10**4),
        routing=RoutingStatus(revision=2**62, canary_keys=MAX_KEYS, draining=MAX_KEYS),
        targets=[
            TargetStatus(
                namespace=n, config_map="c" * 253, weight=100, revision=2**62, draining_until=now,
                stable_replicas=10**4, canary_replicas=10**4, base_replicas=10**4, canary_scaled_at=now,
                canary_buckets=MAX_BUCKETS, draining_buckets=MAX_BUCKETS, next_buckets=MAX_BUCKETS,
            )
            for n in ns
        ],
        keys=KeysStatus(quarantined=quarantined),
        gates=[scored] * MAX_PER_KEY_GATES + [gate] * (33 - MAX_PER_KEY_GATES),  # 32 gates and the risk budget
        risk_budget=RiskBudgetStatus(used_percent=big, max_percent=100.0),
        history=[entry] * HISTORY_LIMIT,
        conditions=[
            Condition(type=t, status="False", reason="ProgressDeadlineExceeded", message=message,
                      last_transition_time=now, observed_generation=2**62)
            for t in condition_types
        ],
        manual_pause=entry,
        handled_requests=[handled] * HANDLED_LIMIT,
        scale_downs=[ScaleDown(namespace=n, deployment="d" * 253, at=now) for n in ns for _ in range(2)],
        trading_stopped=True,
        market=MarketStatus(open=False, next_open=now, next_close=now, frozen_by="f" * 63, frozen_until=now,
                            summary="s" * 128),
        approvals=[Approval(by=by, at=now, reason=reason, stage="s" * 63)] * 10,
        notifications=NotificationStatus(
            occurrence=2**62, pending=pending, last_delivered=sent, last_failed=sent
        ),
    )  # fmt: skip
