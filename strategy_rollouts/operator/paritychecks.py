"""ParityCheck reconcile: schedule, measure live vs backtest, call the pure engine, act, write status once.

One daemon per ParityCheck sleeps until `status.nextRunAt` or an event (a `status.runRequest` from
`kubectl strategy parity run`). A run queries Prometheus over [now - window, now] at `step`, the pure
engine turns the series into tracking error, attribution, level and the actions due, the actions are
applied (idempotent: each has a deterministic request id / is a routing merge that writes only on
change) and the run, the actions and what is now in force go into one guarded status patch.

The pure parts (validation, scheduling decision, evaluation, status bookkeeping) are plain functions
below and have unit tests; the async parts are thin.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, cast

import kopf
from pydantic import ValidationError

from strategy_rollouts.api.common import rfc3339, set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.paritycheck import (
    ActionTaken,
    AttributionStatus,
    ParityAction,
    ParityCheckSpec,
    ParityCheckStatus,
    ParityRun,
)
from strategy_rollouts.api.placeholders import PARITY_PLACEHOLDERS, substitute, unknown_placeholders
from strategy_rollouts.engine import parity, schedule
from strategy_rollouts.operator import daemons, metrics, prometheus, routing_writer
from strategy_rollouts.operator.context import Context

PLURAL = "paritychecks"
KIND = "paritycheck"
HISTORY_LIMIT: Final = 30
ACTIONS_LIMIT: Final = 50
HANDLED_LIMIT: Final = 30
MAX_POINTS: Final = 11_000  # Prometheus refuses range queries with more points per series
OPERATOR: Final = "strategy-rollouts"
LEVELS: Final = ("Excellent", "Good", "Warning", "Critical", "Emergency", "Unknown")
log = logging.getLogger(__name__)

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


# ------------------------------------------------------------------------------------ pure parts


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


def level_actions(action: ParityAction, rollout_target: bool = True) -> parity.LevelActions:
    """`spec.actions.<level>` for the engine; pausing/aborting a rollout means nothing for a deployment target."""
    return parity.LevelActions(
        size_multiplier=action.size_multiplier,
        entries_enabled=action.entries_enabled,
        pause_rollout=action.pause_rollout and rollout_target,
        abort_rollout=action.abort_rollout and rollout_target,
        stop_trading=action.stop_trading,
    )


def actions_spec(spec: ParityCheckSpec) -> parity.ActionsSpec:
    rollout = spec.target.rollout is not None
    return parity.ActionsSpec(
        warning=level_actions(spec.actions.warning, rollout),
        critical=level_actions(spec.actions.critical, rollout),
        emergency=level_actions(spec.actions.emergency, rollout),
    )


def thresholds(spec: ParityCheckSpec) -> parity.Thresholds:
    t = spec.thresholds_bps
    return parity.Thresholds(t.warning, t.critical, t.emergency)


def placeholder_values(spec: ParityCheckSpec, namespace: str) -> dict[str, str]:
    return {"strategy": spec.strategy, "namespace": namespace, "window": spec.window, "step": spec.step}


def queries(spec: ParityCheckSpec) -> dict[str, str]:
    """Every query by its field path (for messages): live, backtest, attribution.<c>.live|backtest."""
    out = {"spec.live.query": spec.live.query, "spec.backtest.query": spec.backtest.query}
    for name in parity.COMPONENTS:
        pair = getattr(spec.attribution, name)
        if pair is not None:
            out[f"spec.attribution.{name}.live"] = pair.live
            out[f"spec.attribution.{name}.backtest"] = pair.backtest
    return out


def validate(spec: ParityCheckSpec) -> list[str]:
    """What the schema cannot express, each message naming the field. Empty: usable."""
    errors: list[str] = []
    problem = schedule.validate_schedule(spec.schedule, spec.time_zone)
    if problem:
        errors.append(f"spec.{problem}")
    window = parse_duration(spec.window).total_seconds()
    step = parse_duration(spec.step).total_seconds()
    if step <= 0:
        errors.append(f"spec.step: must be positive, got {spec.step!r}")
    if window <= 0:
        errors.append(f"spec.window: must be positive, got {spec.window!r}")
    if step > 0 and window > 0:
        if step > window:
            errors.append(f"spec.step: {spec.step} is longer than spec.window {spec.window}")
        elif window / step > MAX_POINTS:
            errors.append(
                f"spec.step: window/step = {window / step:.0f} points, Prometheus allows at most {MAX_POINTS}"
            )
    for path, query in queries(spec).items():
        unknown = unknown_placeholders(query, PARITY_PLACEHOLDERS)
        if unknown:
            allowed = " ".join(f"{{{{{p}}}}}" for p in sorted(PARITY_PLACEHOLDERS))
            errors.append(f"{path}: unknown placeholder {{{{{unknown[0]}}}}} (allowed: {allowed})")
    if (spec.target.rollout is None) == (spec.target.deployment is None):
        errors.append("spec.target: set exactly one of rollout, deployment")
    if spec.target.rollout is not None and spec.target.config_map is not None:
        errors.append("spec.target.configMap: only for deployment targets (a rollout names its own)")
    try:
        thresholds(spec)
    except ValueError as exc:
        errors.append(f"spec.thresholdsBps: {exc}")
    return errors


@dataclass(frozen=True)
class Due:
    """What the schedule (or a manual request) wants now."""

    trigger: str | None  # scheduled | catch-up | manual; None: nothing to run now
    by: str | None
    request_id: str | None
    next_run_at: datetime  # the next scheduled slot after a run now (or the pending one)


def due(spec: ParityCheckSpec, status: ParityCheckStatus, created_at: datetime, now: datetime) -> Due:
    """A pending manual request runs now; otherwise the cron decides (one catch-up run after an outage)."""
    last = status.last_run.at if status.last_run is not None else None
    decision = schedule.due_runs(spec.schedule, spec.time_zone, last, created_at, now)
    req = status.run_request
    if req is not None and req.id not in status.handled_requests:
        return Due("manual", req.by, req.id, schedule.next_run(spec.schedule, spec.time_zone, now))
    if spec.suspend or not decision.run_now:
        return Due(None, None, None, decision.next_run_at)
    return Due("catch-up" if decision.catch_up else "scheduled", None, None, decision.next_run_at)


@dataclass(frozen=True)
class Measured:
    """The raw answers of one run's range queries."""

    live: prometheus.Series
    backtest: prometheus.Series
    components: dict[str, tuple[prometheus.Series, prometheus.Series]]


def evaluate(spec: ParityCheckSpec, measured: Measured, now: datetime, trigger: str, by: str | None) -> ParityRun:
    """Series -> ParityRun (tracking error, attribution, samples, unmatched, level, message)."""
    step_s = parse_duration(spec.step).total_seconds()
    notes: list[str] = []
    for what, series in (("live", measured.live), ("backtest", measured.backtest)):
        if series.error:
            notes.append(f"{what}: {series.error}")
    if notes:
        return ParityRun(at=now, level="Unknown", trigger=trigger, by=by, message="; ".join(notes))
    aligned = parity.align(measured.live.points, measured.backtest.points, step_s)
    diffs = aligned.diffs
    te = parity.tracking_error_bps(diffs, spec.periods_per_year)
    component_diffs: dict[str, tuple[float, ...]] = {}
    for name, (live, back) in measured.components.items():
        if live.error or back.error:
            notes.append(f"attribution.{name}: {live.error or back.error}")
            continue
        component_diffs[name] = parity.align(live.points, back.points, step_s).diffs
    attribution = parity.attribute(diffs, component_diffs)
    configured = set(measured.components)
    lvl = parity.level(te, thresholds(spec), samples=len(diffs), min_samples=spec.min_samples)
    if len(diffs) < spec.min_samples:
        notes.insert(0, f"{len(diffs)} aligned samples, fewer than minSamples {spec.min_samples}")
    empty = [n for n in configured if n in component_diffs and not component_diffs[n]]
    if empty:
        notes.append(f"no aligned attribution data for {', '.join(sorted(empty))} (counted as 0)")
    return ParityRun(
        at=now,
        tracking_error_bps=None if te is None else round(te, 6),
        level=lvl,
        attribution=AttributionStatus(
            alpha=None if attribution.alpha is None else round(attribution.alpha, 6),
            **{n: round(getattr(attribution, n), 6) if n in configured else None for n in parity.COMPONENTS},
        ),
        samples=len(diffs),
        unmatched=aligned.unmatched_live + aligned.unmatched_backtest,
        trigger=trigger,
        by=by,
        message="; ".join(notes) or None,
    )


@dataclass(frozen=True)
class Outcome:
    """What applying one action did (or why it could not)."""

    action: parity.Action
    ok: bool
    target: str | None
    message: str


def record(
    spec: ParityCheckSpec,
    status: ParityCheckStatus,
    run: ParityRun,
    breaches: int,
    plan: parity.ActionPlan,
    outcomes: list[Outcome],
    next_run_at: datetime,
    request_id: str | None,
    generation: int | None,
    now: datetime,
) -> ParityCheckStatus:
    """The status after a run. An action that failed is not recorded as in force: the next run retries it."""
    failed = [o.action for o in outcomes if not o.ok]
    still = [a for a in plan.in_force if a not in failed]
    taken = [
        ActionTaken(
            action=encode_action(o.action),
            level=run.level,
            at=now,
            target=o.target,
            message=o.message if o.ok else f"failed: {o.message}",
        )
        for o in outcomes
    ]
    new = status.model_copy(deep=True)
    new.observed_generation = generation
    new.phase = "Suspended" if spec.suspend else "Scheduled"
    new.message = None
    new.last_run = run
    new.history = [*status.history, run][-HISTORY_LIMIT:]
    new.consecutive_breaches = breaches
    new.active_actions = [encode_action(a) for a in still]
    new.actions_taken = [*status.actions_taken, *taken][-ACTIONS_LIMIT:]
    new.next_run_at = next_run_at
    if request_id is not None:
        new.run_request = None
        if request_id not in new.handled_requests:
            new.handled_requests = [*new.handled_requests, request_id][-HANDLED_LIMIT:]
    return settle(new, spec, generation, now)


def settle(
    status: ParityCheckStatus, spec: ParityCheckSpec, generation: int | None, now: datetime
) -> ParityCheckStatus:
    """Conditions from the status: InvalidSpec False, Breaching (last level at or above warning)."""
    status.conditions = set_condition(status.conditions, "InvalidSpec", False, "Valid", "", now, generation)
    last = status.last_run
    if last is None:
        reason, message = "NoRunYet", "no run yet"
    elif last.tracking_error_bps is None:
        reason, message = last.level, last.message or "no value"
    else:
        reason, message = last.level, f"tracking error {last.tracking_error_bps:.2f} bps is {last.level}"
    breaching = last is not None and last.level in parity.BREACH_LEVELS
    status.conditions = set_condition(status.conditions, "Breaching", breaching, reason, message, now, generation)
    return status


def idle_status(
    spec: ParityCheckSpec, status: ParityCheckStatus, next_run_at: datetime, generation: int | None, now: datetime
) -> ParityCheckStatus:
    """Status when nothing runs now: phase and nextRunAt kept current (written only if they changed)."""
    new = status.model_copy(deep=True)
    new.observed_generation = generation
    new.phase = "Suspended" if spec.suspend else "Scheduled"
    new.message = None
    new.next_run_at = next_run_at
    if new.run_request is not None and new.run_request.id in new.handled_requests:
        new.run_request = None  # re-sent after it was handled: answered already
    return settle(new, spec, generation, now)


def invalid_status(
    status: ParityCheckStatus, errors: list[str], generation: int | None, now: datetime
) -> ParityCheckStatus:
    """Invalid spec: reported, never run, never acted on; a manual request is answered (not left hanging)."""
    message = "; ".join(errors)
    new = status.model_copy(deep=True)
    new.observed_generation = generation
    new.phase = "Invalid"
    new.message = message
    new.next_run_at = None
    new.conditions = set_condition(new.conditions, "InvalidSpec", True, "InvalidSpec", message, now, generation)
    req = new.run_request
    if req is not None:
        new.run_request = None
        if req.id not in new.handled_requests:
            new.handled_requests = [*new.handled_requests, req.id][-HANDLED_LIMIT:]
    return new


def request_id(uid: str, previous_run_at: datetime | None, action: str) -> str:
    """Deterministic per (ParityCheck, run, action): a retried run re-sends the same id, which the
    rollout then ignores (its handledRequests), so a retry never acts twice."""
    seed = f"{uid}:{rfc3339(previous_run_at) if previous_run_at else '-'}:{action}"
    return hashlib.sha256(seed.encode()).hexdigest()[:32]


def routing_changes(actions: list[parity.Action], deployment_target: bool, keys: list[str]) -> dict[str, Any]:
    """routing.json fields to merge for these actions (parity checks own sizeMultiplier/entriesEnabled;
    for a deployment target stopTrading also gives every key to nobody)."""
    changes: dict[str, Any] = {}
    for a in actions:
        if a.kind == "set_size_multiplier" and a.value is not None:
            changes["sizeMultiplier"] = float(a.value)
        elif a.kind == "set_entries_enabled" and a.value is not None:
            changes["entriesEnabled"] = bool(a.value)
        elif a.kind == "stop_trading":
            changes["entriesEnabled"] = False
            if deployment_target:
                changes["assignments"] = {k: "none" for k in keys}
    return changes


# ------------------------------------------------------------------------------------ I/O parts


def parse(obj: dict[str, Any]) -> tuple[ParityCheckSpec | None, ParityCheckStatus, list[str]]:
    try:
        status = ParityCheckStatus.model_validate(obj.get("status") or {})
    except ValidationError:
        status = ParityCheckStatus()
    try:
        spec = ParityCheckSpec.model_validate(obj.get("spec") or {})
    except ValidationError as exc:
        return None, status, [validation_message(exc)]
    return spec, status, validate(spec)


async def measure(ctx: Context, namespace: str, spec: ParityCheckSpec, now: datetime) -> Measured:
    conn = await ctx.connection(namespace, spec.prometheus)
    values = placeholder_values(spec, namespace)
    start = now - parse_duration(spec.window)
    step_s = parse_duration(spec.step).total_seconds()

    def q(text: str) -> Any:
        return prometheus.range_series(conn, substitute(text, values), start, now, step_s)

    pairs = [(n, getattr(spec.attribution, n)) for n in parity.COMPONENTS if getattr(spec.attribution, n)]
    results = await asyncio.gather(
        q(spec.live.query),
        q(spec.backtest.query),
        *(q(p.live) for _, p in pairs),
        *(q(p.backtest) for _, p in pairs),
    )
    n = len(pairs)
    components = {name: (results[2 + i], results[2 + n + i]) for i, (name, _) in enumerate(pairs)}
    return Measured(results[0], results[1], components)


@dataclass
class TargetInfo:
    rollout: dict[str, Any] | None
    config_maps: list[tuple[str, str]]  # (namespace, name)
    label: str


async def target_info(ctx: Context, namespace: str, spec: ParityCheckSpec) -> TargetInfo:
    if spec.target.deployment is not None:
        cm = spec.target.config_map or f"{spec.target.deployment}-routing"
        return TargetInfo(None, [(namespace, cm)], f"deployment/{spec.target.deployment}")
    name = spec.target.rollout or ""
    obj = await ctx.kube.get("strategyrollouts", namespace, name)
    cms: list[tuple[str, str]] = []
    if obj is not None:
        for t in (obj.get("status") or {}).get("targets") or []:
            if t.get("namespace") and t.get("configMap"):
                cms.append((t["namespace"], t["configMap"]))
        if not cms:
            routing = (obj.get("spec") or {}).get("routing") or {}
            cms = [(namespace, routing.get("configMap") or f"{name}-routing")]
    return TargetInfo(obj, cms, f"strategyrollout/{name}")


async def send_rollout_request(
    ctx: Context, namespace: str, rollout: str, action: str, rid: str, by: str, reason: str, now: datetime
) -> None:
    await ctx.kube.merge_status(
        "strategyrollouts",
        namespace,
        rollout,
        {"request": {"id": rid, "action": action, "by": by, "reason": reason, "at": rfc3339(now)}},
    )


async def apply_actions(
    ctx: Context,
    obj: dict[str, Any],
    spec: ParityCheckSpec,
    status: ParityCheckStatus,
    actions: tuple[parity.Action, ...],
    run: ParityRun,
    now: datetime,
) -> list[Outcome]:
    """Apply the due actions; every one gets an Outcome (ok or the reason it failed)."""
    if not actions:
        return []
    meta = obj["metadata"]
    ns, name = meta["namespace"], meta["name"]
    te = f"{run.tracking_error_bps:.2f}" if run.tracking_error_bps is not None else "?"
    reason = f"tracking error {te} bps is {run.level}"
    by = f"paritycheck/{name}"
    target = await target_info(ctx, ns, spec)
    outcomes: list[Outcome] = []
    previous = status.last_run.at if status.last_run is not None else None

    # Routing ConfigMaps: one merged write each.
    routing_actions = [a for a in actions if a.kind in ("set_size_multiplier", "set_entries_enabled", "stop_trading")]
    deployment_target = spec.target.deployment is not None
    routing_error: str | None = None
    written: list[str] = []
    if routing_actions:
        if target.rollout is None and not deployment_target:
            routing_error = f"{target.label} not found"
        for cm_ns, cm in target.config_maps if routing_error is None else []:
            try:
                current = await routing_writer.read(ctx.kube, cm_ns, cm)
                keys = sorted(current.assignments)
                changes = routing_changes(routing_actions, deployment_target, keys)
                if changes:
                    await routing_writer.update(ctx.kube, cm_ns, cm, changes)
                written.append(f"configmap/{cm}" if cm_ns == ns else f"configmap/{cm_ns}/{cm}")
            except Exception as exc:  # recorded as failed; the next run retries
                routing_error = f"configmap {cm_ns}/{cm}: {type(exc).__name__}: {str(exc)[:200]}"
    # The rollout's single request slot: send the strongest one only.
    rollout_kinds = {a.kind for a in actions}
    strongest: str | None = None
    if "stop_trading" in rollout_kinds:
        strongest = "stopTrading"
    elif "abort_rollout" in rollout_kinds:
        strongest = "abort"
    elif "pause_rollout" in rollout_kinds:
        strongest = "pause"
    elif "resume_rollout" in rollout_kinds:
        strongest = "resume"
    rollout_error: str | None = None
    if strongest is not None and spec.target.rollout is not None:
        if target.rollout is None:
            rollout_error = f"{target.label} not found"
        else:
            try:
                rid = request_id(meta.get("uid", name), previous, strongest)
                await send_rollout_request(ctx, ns, spec.target.rollout, strongest, rid, by, reason, now)
            except Exception as exc:
                rollout_error = f"{type(exc).__name__}: {str(exc)[:200]}"
    scale_error: str | None = None
    if "stop_trading" in rollout_kinds and deployment_target:
        dep = spec.target.deployment or ""
        try:
            info = await ctx.kube.deployment(ns, dep)
            if info is None:
                scale_error = f"deployment {dep} not found"
            elif info.replicas != 0:
                await ctx.kube.scale(ns, dep, 0)
        except Exception as exc:
            scale_error = f"{type(exc).__name__}: {str(exc)[:200]}"

    cms = ", ".join(written) or target.label
    for a in actions:
        if a.kind == "event_only":
            outcomes.append(Outcome(a, True, None, f"{reason}: observe only"))
        elif a.kind in ("set_size_multiplier", "set_entries_enabled"):
            outcomes.append(Outcome(a, routing_error is None, cms, routing_error or f"{reason}: {encode_action(a)}"))
        elif a.kind == "stop_trading":
            err = routing_error or rollout_error or scale_error
            what = (
                f"stopTrading sent to {target.label}"
                if spec.target.rollout
                else f"every key to none, entries off, {target.label} scaled to 0"
            )
            outcomes.append(Outcome(a, err is None, target.label, err or f"{reason}: {what}"))
        elif spec.target.rollout is None:
            outcomes.append(Outcome(a, True, target.label, f"{reason}: no rollout target, nothing to {NAMES[a.kind]}"))
        else:
            sent = {"pause_rollout": "pause", "abort_rollout": "abort", "resume_rollout": "resume"}[a.kind]
            covered = strongest != sent
            text = f"{reason}: covered by {strongest}" if covered else f"{reason}: {sent} sent to {target.label}"
            outcomes.append(Outcome(a, rollout_error is None, target.label, rollout_error or text))
    return outcomes


def emit(obj: dict[str, Any], outcomes: list[Outcome], old: ParityCheckStatus, run: ParityRun) -> None:
    body = cast(kopf.Body, obj)
    prev = old.last_run.level if old.last_run is not None else None
    if run.level != prev:
        te = f"{run.tracking_error_bps:.2f} bps" if run.tracking_error_bps is not None else "no value"
        kind = "Warning" if run.level in parity.BREACH_LEVELS else "Normal"
        kopf.event(
            body, type=kind, reason=f"Parity{run.level}", message=f"tracking error {te}: {run.message or ''}"[:1000]
        )
    for o in outcomes:
        if not o.ok:
            kopf.event(
                body,
                type="Warning",
                reason="ParityActionFailed",
                message=f"{encode_action(o.action)}: {o.message}"[:1000],
            )
        elif o.action.lift:
            kopf.event(
                body,
                type="Normal",
                reason="ParityActionLifted",
                message=f"{encode_action(o.action)}: {o.message}"[:1000],
            )
        elif o.action.kind == "event_only":
            kopf.event(body, type="Warning", reason="ParityWarning", message=o.message[:1000])
        else:
            kopf.event(
                body, type="Warning", reason="ParityAction", message=f"{encode_action(o.action)}: {o.message}"[:1000]
            )


def record_metrics(obj: dict[str, Any], spec: ParityCheckSpec, run: ParityRun, outcomes: list[Outcome]) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if run.tracking_error_bps is not None:
        metrics.parity_tracking_error_bps.labels(ns, name, spec.strategy).set(run.tracking_error_bps)
    for lvl in LEVELS:
        metrics.parity_level.labels(ns, name, lvl).set(1 if lvl == run.level else 0)
    for o in outcomes:
        if o.ok:
            metrics.parity_actions_total.labels(ns, name, encode_action(o.action)).inc()


def created_at(obj: dict[str, Any], now: datetime) -> datetime:
    text = obj["metadata"].get("creationTimestamp")
    if not text:
        return now
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return now


async def write(ctx: Context, obj: dict[str, Any], old: ParityCheckStatus, new: ParityCheckStatus) -> None:
    if new.wire() != old.wire():
        meta = obj["metadata"]
        await ctx.kube.patch_status(PLURAL, meta["namespace"], meta["name"], new.wire(), meta["resourceVersion"])


async def reconcile_once(ctx: Context, namespace: str, name: str) -> datetime | None:
    """One pass: run if due (scheduled, catch-up or manual), act, write status once. Returns the wake time."""
    obj = await ctx.kube.get(PLURAL, namespace, name)
    if obj is None:
        return None
    generation = obj["metadata"].get("generation")
    spec, status, errors = parse(obj)
    now = datetime.now(UTC)
    if spec is None or errors:
        new = invalid_status(status, errors, generation, now)
        if status.phase != "Invalid" or status.message != new.message:
            kopf.event(
                cast(kopf.Body, obj),
                type="Warning",
                reason="InvalidSpec",
                message=new.message[:1000] if new.message else "",
            )
        await write(ctx, obj, status, new)
        return None
    todo = due(spec, status, created_at(obj, now), now)
    if todo.trigger is None:
        await write(ctx, obj, status, idle_status(spec, status, todo.next_run_at, generation, now))
        return todo.next_run_at
    measured = await measure(ctx, namespace, spec, now)
    run = evaluate(spec, measured, now, todo.trigger, todo.by)
    breaches = parity.next_breach_count(status.consecutive_breaches, run.level)
    plan = parity.plan_actions(
        run.level,
        breaches,
        spec.consecutive_breaches,
        actions_spec(spec),
        in_force(status),
        auto_recover=spec.auto_recover,
    )
    outcomes = await apply_actions(ctx, obj, spec, status, plan.due, run, now)
    new = record(spec, status, run, breaches, plan, outcomes, todo.next_run_at, todo.request_id, generation, now)
    await write(ctx, obj, status, new)
    emit(obj, outcomes, status, run)
    record_metrics(obj, spec, run, outcomes)
    log.info(
        "ParityCheck %s/%s %s run: %s te=%s samples=%d actions=%s",
        namespace,
        name,
        run.trigger,
        run.level,
        run.tracking_error_bps,
        run.samples,
        [encode_action(a) for a in plan.due],
    )
    return todo.next_run_at


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The check is gone: drop its metric series (the actions it took stay)."""
    metrics.forget_object(namespace, name, *metrics.PARITY_FAMILIES)


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One loop per ParityCheck: reconcile, then sleep until nextRunAt, an event (a runRequest) or stop."""
    await daemons.run_loop(
        ctx, "ParityCheck", KIND, namespace, name, stopped, lambda: reconcile_once(ctx, namespace, name)
    )
