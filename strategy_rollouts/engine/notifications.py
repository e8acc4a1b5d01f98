"""Notifications, pure: which occurrences a pass produced, the outbox they go to, when to retry.

An occurrence is derived from what a pass changed (the status before and after, or the Events a
ParityCheck run emits), so it is decided exactly once: recomputing a pass from the same status (after a
conflict or a crash before the write) yields the same occurrences with the same numbers, and once the
transition is written nothing derives it again. Each occurrence is numbered (status.notifications
.occurrence) and written to `pending` in the same status write as the transition; the sender delivers
from there (operator/clients/notifier.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from strategy_rollouts.api.common import SecretKeyRef
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.notify import NotificationStatus, NotifyEvent, NotifyRule, PendingNotification
from strategy_rollouts.api.paritycheck import ParityCheckSpec
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.api.shadowrun import ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine.types import Event

RETRY_WINDOW = timedelta(minutes=10)
MAX_BACKOFF = timedelta(seconds=60)
PENDING_LIMIT = 64  # a receiver down for 10 minutes under a burst of events: the oldest go first
PAUSE_EVENTS: dict[str, NotifyEvent] = {
    "AwaitingApproval": "AwaitingApproval",
    "Inconclusive": "Inconclusive",
    "Frozen": "Frozen",
    "MarketClosed": "Frozen",
}


@dataclass(frozen=True)
class Occurrence:
    event: NotifyEvent
    title: str
    message: str


def outbox(
    rules: Sequence[NotifyRule], previous: NotificationStatus | None, occurrences: Iterable[Occurrence], now: datetime
) -> NotificationStatus | None:
    """`previous` with one pending entry per (occurrence, receiver) that a rule asks for.

    Unchanged (the same object) when no rule wants any of them: objects without `notify` never write.
    """
    state = previous
    for occ in occurrences:
        targets = _targets(rules, occ.event)
        if not targets:
            continue
        if state is previous:
            state = (previous or NotificationStatus()).model_copy(deep=True)
        assert state is not None
        state.occurrence += 1
        for n, ref in enumerate(targets):
            state.pending[f"{occ.event}-{state.occurrence}-{n}"] = PendingNotification(
                event=occ.event,
                occurrence=state.occurrence,
                title=occ.title[:256],
                message=occ.message[:2048],
                to=ref,
                at=now,
            )
    if state is not None and state is not previous and len(state.pending) > PENDING_LIMIT:
        newest = sorted(state.pending.items(), key=lambda kv: (kv[1].occurrence, kv[0]))[-PENDING_LIMIT:]
        state.pending = dict(newest)
    return state


def _targets(rules: Sequence[NotifyRule], event: str) -> list[SecretKeyRef]:
    seen: dict[tuple[str, str], SecretKeyRef] = {}
    for rule in rules:
        if event in rule.on:
            seen.setdefault((rule.to.secret_ref.name, rule.to.secret_ref.key), rule.to.secret_ref)
    return list(seen.values())


def retry_at(recorded_at: datetime, failures: int, now: datetime, window: timedelta = RETRY_WINDOW) -> datetime | None:
    """After `failures` failed attempts: when to try again (2 s, 4 s, ... at most a minute apart, the
    last at the end of the window), or None when the window is over and the entry is given up."""
    deadline = recorded_at + window
    if now >= deadline:
        return None
    delay = min(timedelta(seconds=2 ** max(failures, 1)), MAX_BACKOFF)
    return min(now + delay, deadline)


# ---- StrategyRollout: from the status transition ----------------------------------------------------


def rollout_occurrences(
    spec: StrategyRolloutSpec, old: StrategyRolloutStatus, new: StrategyRolloutStatus, namespace: str, name: str
) -> list[Occurrence]:
    if not spec.notify:
        return []
    title = f"StrategyRollout {namespace}/{name}"
    weight = old.canary_weight if new.phase == "RolledBack" else new.canary_weight
    where = (
        f"{spec.strategy} {spec.stable.version} -> {spec.canary.version}, stage {new.stage or '-'},"
        f" weight {weight if weight is not None else 0}%"
    )
    out: list[Occurrence] = []

    def add(event: NotifyEvent, what: str) -> None:
        out.append(Occurrence(event, f"{title}: {event}", f"{title} ({where}): {what}"))

    for gate in _newly_failed(old.gates, new.gates):
        add("GateFailed", f"gate {gate.name}{' (dry-run)' if gate.dry_run else ''} failed: {gate.message}")
    moved_step = (
        old.stage_index == new.stage_index
        and old.step_index is not None
        and new.step_index is not None
        and new.step_index > old.step_index
    )
    if moved_step and new.phase in ("Progressing", "Paused"):
        add("StepAdvanced", f"step {new.step_index} reached")
    if old.stage_index is not None and new.stage_index is not None and new.stage_index > old.stage_index:
        done = spec.stages[old.stage_index].name if old.stage_index < len(spec.stages) else old.stage
        add("StageCompleted", f"stage {done} completed" + (f"; now {new.stage}" if new.stage else "; completing"))
    changed = (old.phase, old.reason) != (new.phase, new.reason)
    because = f"{new.reason}: {new.message or ''}"
    if new.phase == "Succeeded" and old.phase != "Succeeded":
        add("Succeeded", f"{spec.canary.version} owns every key")
    elif new.phase == "RolledBack" and changed:
        event: NotifyEvent = {"TradingStopped": "TradingStopped", "Aborted": "Aborted"}.get(  # type: ignore[assignment]
            new.reason or "", "RolledBack"
        )
        add(event, because)
    elif new.phase == "Paused":
        event = PAUSE_EVENTS.get(new.reason or "", "Paused")
        if changed or (event == "AwaitingApproval" and old.message != new.message):
            add(event, because)
    elif new.phase == "Progressing" and old.phase == "Paused":
        add("Resumed", because)
    return out


def _newly_failed(old: Sequence[GateStatus], new: Sequence[GateStatus]) -> list[GateStatus]:
    before = {g.name: g.result for g in old}
    return [g for g in new if g.result == "Fail" and before.get(g.name) != "Fail"]


# ---- ShadowRun: the verdict -------------------------------------------------------------------------


def shadow_occurrences(
    spec: ShadowRunSpec | None, old: ShadowRunStatus, new: ShadowRunStatus, namespace: str, name: str
) -> list[Occurrence]:
    if spec is None or not spec.notify or new.verdict is None or new.verdict == old.verdict:
        return []
    title = f"ShadowRun {namespace}/{name}"
    reasons = "; ".join(new.reasons) or "no reasons given"
    message = (
        f"{title} ({spec.strategy} live {spec.live.version} vs shadow {spec.shadow.version}):"
        f" verdict {new.verdict}: {reasons}"
    )
    return [Occurrence("Verdict", f"{title}: verdict {new.verdict}", message)]


# ---- ParityCheck: the Events of a run ----------------------------------------------------------------


def parity_occurrences(
    spec: ParityCheckSpec | None, events: Iterable[Event], namespace: str, name: str
) -> list[Occurrence]:
    """LevelChanged and ActionTaken are emitted once, by the run that caused them (a new runSeq)."""
    if spec is None or not spec.notify:
        return []
    title = f"ParityCheck {namespace}/{name}"
    target = spec.target.rollout or spec.target.deployment
    out: list[Occurrence] = []
    for ev in events:
        if ev.reason in ("LevelChanged", "ActionTaken"):
            event: NotifyEvent = ev.reason  # type: ignore[assignment]
            message = f"{title} ({spec.strategy}, target {target}): {ev.message}"
            out.append(Occurrence(event, f"{title}: {event}", message))
    return out
