"""ParityCheck actions as status records: planned with a stable id (Pending) before anything is applied,
settled from what the target shows (Applied / Rejected / Superseded), and the side effects a Pending
record still needs.

Record intent, then act: `effects` derives every write from the records and the observed world
alone, so a crash anywhere (after the status write, half-way through the writes) converges to the
same end state on the next pass, and a write whose result is already visible is never made again.
Pure: no I/O, no clock; `now` is an argument.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from strategy_rollouts.api.paritycheck import ActionTaken, ParityCheckStatus, ParityRun
from strategy_rollouts.api.requests import RolloutAction, RolloutRequest
from strategy_rollouts.engine import parity

ACTIONS_LIMIT: Final = 50  # settled records kept; Pending ones are never dropped (they drive enforcement)
ID_LIMIT: Final = 128

# Engine action kinds <-> the names shown in status (activeActions, actionsTaken) and Events.
NAMES: Final[dict[parity.ActionKind, str]] = {
    "event_only": "event",
    "set_size_multiplier": "sizeMultiplier",
    "set_entries_enabled": "entriesEnabled",
    "pause_rollout": "pauseRollout",
    "resume_rollout": "resumeRollout",
    "abort_rollout": "abortRollout",
    "stop_trading": "stopTrading",
}
KINDS: Final[dict[str, parity.ActionKind]] = {v: k for k, v in NAMES.items()}
# What the rollout is asked for (its status.requests `action`).
REQUEST_ACTIONS: Final[dict[parity.ActionKind, RolloutAction]] = {
    "pause_rollout": "pause",
    "resume_rollout": "resume",
    "abort_rollout": "abort",
    "stop_trading": "stopTrading",
}
ROUTING_FIELDS: Final[dict[parity.ActionKind, str]] = {
    "set_size_multiplier": "sizeMultiplier",
    "set_entries_enabled": "entriesEnabled",
}
ROUTING_DEFAULTS: Final[dict[str, Any]] = {"sizeMultiplier": 1.0, "entriesEnabled": True}


# ------------------------------------------------------------------------------ status form of actions


def encode_action(action: parity.Action) -> str:
    """`sizeMultiplier=0.5`, `entriesEnabled=false`, `pauseRollout`: the status form of an action."""
    name = NAMES[action.kind]
    if action.value is None:
        return name
    if isinstance(action.value, bool):
        return f"{name}={'true' if action.value else 'false'}"
    return f"{name}={action.value:g}"


def decode_action(text: str) -> parity.Action | None:
    """Inverse of encode_action; None for anything unrecognised (a newer operator's entry, a typo)."""
    name, sep, raw = text.partition("=")
    kind = KINDS.get(name.strip())
    if kind is None:
        return None
    if not sep:
        return parity.Action(kind)
    raw = raw.strip().lower()
    if raw in ("true", "false"):
        return parity.Action(kind, raw == "true")
    try:
        return parity.Action(kind, float(raw))
    except ValueError:
        return None


def in_force(status: ParityCheckStatus) -> list[parity.Action]:
    return [a for a in (decode_action(t) for t in status.active_actions) if a is not None]


def is_lift(action: parity.Action) -> bool:
    """Lifts undo a breach action: resume, entries back on, size back to 1 (breaches only ever lower it)."""
    return (
        action.kind == "resume_rollout"
        or (action.kind == "set_entries_enabled" and action.value is True)
        or (action.kind == "set_size_multiplier" and action.value is not None and float(action.value) >= 1.0)
    )


def action_id(check: str, seq: int, suffix: str) -> str:
    """`pck-<check>-<runSeq>-<action>`; a very long check name is shortened with a digest (ids <= 128)."""
    text = f"pck-{check}-{seq}-{suffix}"
    if len(text) <= ID_LIMIT:
        return text
    digest = hashlib.sha256(check.encode()).hexdigest()[:10]
    return f"pck-{check[:80].rstrip('.-')}-{digest}-{seq}-{suffix}"


# ---------------------------------------------------------------------------------- observed world


@dataclass(frozen=True)
class RoutingObs:
    """One routing ConfigMap of the target as read (document None: no ConfigMap yet)."""

    namespace: str
    name: str
    document: Mapping[str, Any] | None = None

    def value(self, name: str) -> Any:
        return {**ROUTING_DEFAULTS, **(self.document or {})}.get(name)

    @property
    def assignments(self) -> dict[str, str]:
        value = (self.document or {}).get("assignments")
        return dict(value) if isinstance(value, dict) else {}


@dataclass(frozen=True)
class RolloutObs:
    """The target rollout's request bookkeeping: ids still pending, and outcomes by id."""

    pending: frozenset[str] = frozenset()
    handled: Mapping[str, tuple[str, str]] = field(default_factory=dict)  # id -> (outcome, message)


@dataclass(frozen=True)
class Target:
    """What the check acts on, as observed in this pass."""

    namespace: str
    label: str  # strategyrollout/NAME or deployment/NAME
    rollout: str | None = None
    deployment: str | None = None
    routing: tuple[RoutingObs, ...] = ()
    rollout_obs: RolloutObs | None = None  # rollout target: None when the rollout does not exist
    replicas: int | None = None  # deployment target: spec.replicas; None when it does not exist


# ----------------------------------------------------------------------------------------- effects


@dataclass(frozen=True)
class RoutingChange:
    namespace: str
    config_map: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class Scale:
    namespace: str
    deployment: str
    replicas: int


@dataclass(frozen=True)
class OutgoingRequest:
    """One key to add to the target rollout's status.requests (JSON merge patch, status subresource)."""

    namespace: str
    rollout: str
    id: str
    request: RolloutRequest


@dataclass(frozen=True)
class Effects:
    routing: tuple[RoutingChange, ...] = ()
    scales: tuple[Scale, ...] = ()
    requests: tuple[OutgoingRequest, ...] = ()


@dataclass(frozen=True)
class Transition:
    """A record that settled in this pass (for Events and metrics)."""

    record: ActionTaken
    state: str


# ------------------------------------------------------------------------------------------ records


def reason_text(run: ParityRun) -> str:
    if run.tracking_error_bps is None:
        return f"level {run.level.lower()}"
    return f"TE {run.tracking_error_bps:.0f} bps ({run.level.lower()})"


def plan_records(
    due: Sequence[parity.Action], run: ParityRun, check: str, target: Target, now: datetime
) -> list[ActionTaken]:
    """One Pending record per due action. On a rollout target a stopTrading request carries the pause,
    the abort and the entries-off that come with it (the rollout does all), so only one request is sent."""
    rollout_target = target.rollout is not None
    stopping = any(a.kind == "stop_trading" for a in due)
    stop_id = action_id(check, run.seq, REQUEST_ACTIONS["stop_trading"])
    records: list[ActionTaken] = []
    for action in due:
        suffix = REQUEST_ACTIONS.get(action.kind) if rollout_target else None
        record = ActionTaken(
            id=action_id(check, run.seq, suffix or NAMES[action.kind]),
            action=encode_action(action),
            level=run.level,
            run=run.seq,
            at=now,
            target=target.label,
            reason=reason_text(run),
        )
        # A stopped rollout neither moves nor trades: its pause and abort come with the stop (a pause sent
        # on its own could land after the stop, where the rollout rejects it).
        carried = action.kind in ("abort_rollout", "pause_rollout") or (
            action.kind == "set_entries_enabled" and action.value is False
        )
        if action.kind == "event_only":
            settle_as(record, "Applied", "observe only: an Event and the metric", now)
        elif rollout_target and stopping and carried:
            record.request = stop_id
            record.message = f"carried by {stop_id}"
        elif rollout_target and action.kind in REQUEST_ACTIONS:
            record.request = record.id
        elif action.kind in REQUEST_ACTIONS and action.kind != "stop_trading":
            settle_as(record, "Applied", "no rollout target: nothing to do", now)
        elif action.kind == "stop_trading":
            record.replicas = target.replicas
        records.append(record)
    return records


Settled = Literal["Applied", "Rejected", "Superseded"]


def settle_as(record: ActionTaken, state: Settled, message: str, now: datetime) -> None:
    record.state = state
    record.message = message[:1024]
    record.settled_at = now


def field_of(record: ActionTaken) -> str | None:
    """The routing field a record sets (carried entries-off included), if any."""
    action = decode_action(record.action)
    return None if action is None else ROUTING_FIELDS.get(action.kind)


def supersede(existing: Sequence[ActionTaken], new: Sequence[ActionTaken], now: datetime) -> None:
    """A newer record on the same routing field replaces a Pending older one; a stop replaces every
    Pending lift not yet delivered to the rollout (nothing may undo a stop)."""
    fields = {f: r.id for r in new if (f := field_of(r)) is not None}
    stop = next((r.id for r in new if r.action == NAMES["stop_trading"]), None)
    for old in existing:
        if old.state != "Pending":
            continue
        action = decode_action(old.action)
        f = field_of(old)
        if f is not None and f in fields and not old.request:
            settle_as(old, "Superseded", f"superseded by {fields[f]}", now)
        elif stop is not None and action is not None and is_lift(action) and not old.delivered:
            settle_as(old, "Superseded", f"superseded by {stop}", now)


def _routing_done(record: ActionTaken, action: parity.Action, target: Target) -> str | None:
    """None when every routing ConfigMap of the target shows the action; else what is missing."""
    if not target.routing:
        return f"no routing ConfigMap known for {target.label}"
    missing = []
    for cm in target.routing:
        if cm.document is None:
            missing.append(cm.name)
        elif action.kind == "stop_trading":
            if not _stopped(cm):
                missing.append(cm.name)
        elif cm.value(ROUTING_FIELDS[action.kind]) != action.value:
            missing.append(cm.name)
    return f"waiting for configmap {', '.join(missing)}" if missing else None


def _stopped(cm: RoutingObs) -> bool:
    """Does the ConfigMap publish a stop: entries off, every listed key and every other id to none?"""
    keys_none = all(v == "none" for v in cm.assignments.values())
    return cm.value("entriesEnabled") is False and keys_none and cm.value("stopped") is True


def settle(records: Sequence[ActionTaken], target: Target, now: datetime) -> list[Transition]:
    """Pending -> Applied / Rejected / Superseded from what the target shows. Changes `records` in place."""
    moved: list[Transition] = []
    for record in records:
        if record.state != "Pending":
            continue
        action = decode_action(record.action)
        if action is None:
            settle_as(record, "Rejected", f"unknown action {record.action!r}", now)
        elif record.request:
            _settle_request(record, target, now)
        elif action.kind in ROUTING_FIELDS:
            waiting = _routing_done(record, action, target)
            if waiting is None:
                settle_as(record, "Applied", f"{record.action} in every routing ConfigMap", now)
            else:
                record.message = waiting
        elif action.kind == "stop_trading":
            waiting = _routing_done(record, action, target)
            if waiting is None and target.replicas in (0, None):
                scaled = "scaled to 0" if target.replicas == 0 else "not found"
                settle_as(record, "Applied", f"every key to none, entries off, {target.label} {scaled}", now)
            else:
                record.message = waiting or f"scaling {target.label} to 0"
        if record.state != "Pending":
            moved.append(Transition(record, record.state))
    return moved


def _settle_request(record: ActionTaken, target: Target, now: datetime) -> None:
    rid = record.request or ""
    seen = target.rollout_obs
    if seen is None:
        record.message = f"{target.label} not found"
    elif rid in seen.handled:
        outcome, message = seen.handled[rid]
        state: Settled = "Rejected"
        if outcome in ("Applied", "Superseded"):
            state = "Applied" if outcome == "Applied" else "Superseded"
        settle_as(record, state, message or f"{outcome} by {target.label}", now)
    elif rid in seen.pending:
        record.delivered = True
        record.message = f"{rid} waiting in {target.label} status.requests"
    elif record.delivered:
        settle_as(record, "Rejected", f"{rid} left {target.label} status.requests without an outcome", now)
    else:
        record.message = f"sending {rid} to {target.label}"


def trim(records: Sequence[ActionTaken]) -> list[ActionTaken]:
    """Every Pending record, and the last ACTIONS_LIMIT settled ones, in order."""
    settled = [r for r in records if r.state != "Pending"]
    keep = {id(r) for r in settled[-ACTIONS_LIMIT:]}
    return [r for r in records if r.state == "Pending" or id(r) in keep]


# ------------------------------------------------------------------------------------------ effects


def effects(records: Sequence[ActionTaken], target: Target, by: str, check: str) -> Effects:
    """What the Pending records still need, given what the target shows (nothing already visible)."""
    desired: dict[str, Any] = {}
    stopping = False
    owners: list[tuple[ActionTaken, parity.Action]] = []
    for record in records:
        action = decode_action(record.action)
        if record.state != "Pending" or action is None:
            continue
        if record.request:
            if record.request == record.id:
                owners.append((record, action))
        elif action.kind in ROUTING_FIELDS:
            desired[ROUTING_FIELDS[action.kind]] = action.value
        elif action.kind == "stop_trading":
            stopping = True
    if stopping:
        desired["entriesEnabled"] = False
    routing: list[RoutingChange] = []
    for cm in target.routing:
        changes = {k: v for k, v in desired.items() if cm.document is None or cm.value(k) != v}
        if stopping and any(v != "none" for v in cm.assignments.values()):
            changes["assignments"] = dict.fromkeys(cm.assignments, "none")
        if stopping and cm.value("stopped") is not True:
            changes["stopped"] = True  # every id of an open or segmented universe too (api/keyhash.py owner)
        if changes:
            routing.append(RoutingChange(cm.namespace, cm.name, changes))
    scales: list[Scale] = []
    if stopping and target.deployment is not None and target.replicas not in (0, None):
        scales.append(Scale(target.namespace, target.deployment, 0))
    requests: list[OutgoingRequest] = []
    seen = target.rollout_obs
    if seen is not None and target.rollout is not None:
        for record, action in owners:
            if record.delivered or record.id in seen.pending or record.id in seen.handled:
                continue
            request = RolloutRequest(
                action=REQUEST_ACTIONS[action.kind],
                by=by,
                source=f"paritycheck/{check}",
                reason=record.reason,
                at=record.at,
            )
            requests.append(OutgoingRequest(target.namespace, target.rollout, record.id, request))
    return Effects(tuple(routing), tuple(scales), tuple(requests))


def pending(records: Sequence[ActionTaken]) -> list[ActionTaken]:
    return [r for r in records if r.state == "Pending"]
