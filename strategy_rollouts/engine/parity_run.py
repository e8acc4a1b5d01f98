"""ParityCheck reconcile: `reconcile(spec, status, observations, now) -> Decision`, pure.

One pass: settle what earlier passes recorded (from the target as observed), run if a run is due
(scheduled, one catch-up after an outage, or the oldest pending `status.requests` entry) on the
series the operator measured, plan the level's actions as Pending records with stable ids, and
derive every side effect from the resulting status. The operator writes `Decision.status` first and
only then applies `Decision.effects`; a run already recorded is never measured again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final, Literal
from zoneinfo import ZoneInfo

from strategy_rollouts.api.common import set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.paritycheck import (
    AttributionStatus,
    ParityAction,
    ParityCheckSpec,
    ParityCheckStatus,
    ParityRun,
    ParitySkip,
)
from strategy_rollouts.api.placeholders import PARITY_PLACEHOLDERS, unknown_placeholders
from strategy_rollouts.api.requests import HandledRequest, ParityRequest
from strategy_rollouts.engine import market, parity, schedule
from strategy_rollouts.engine import parity_actions as acts
from strategy_rollouts.engine import requests as reqs
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.types import Event, EventType, ObservationPlan
from strategy_rollouts.engine.validation import notify_errors

HISTORY_LIMIT: Final = 30
MAX_POINTS: Final = 11_000  # Prometheus refuses range queries with more points per series
# While an action is Pending, look again this soon (the rollout answers in its own loop).
PENDING_RECHECK: Final = timedelta(seconds=2)


# ------------------------------------------------------------------------------------- spec helpers


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


def queries(spec: ParityCheckSpec) -> dict[str, str]:
    """Every query by its field path (for messages): live, backtest, attribution.<c>.live|backtest."""
    out = {"spec.live.query": spec.live.query, "spec.backtest.query": spec.backtest.query}
    for name in parity.COMPONENTS:
        pair = getattr(spec.attribution, name)
        if pair is not None:
            out[f"spec.attribution.{name}.live"] = pair.live
            out[f"spec.attribution.{name}.backtest"] = pair.backtest
    return out


def spec_errors(spec: ParityCheckSpec, namespace: str) -> list[str]:
    """THE validation of a ParityCheck spec: what the schema cannot express, each message naming the
    field. Empty: usable. `namespace` is the object's (one signature for every kind; unused here)."""
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
    errors += notify_errors("ParityCheck", spec.notify)
    return errors


# ------------------------------------------------------------------------------------------ schedule


@dataclass(frozen=True)
class Due:
    """What the schedule (or a manual request) wants now."""

    trigger: Literal["scheduled", "catch-up", "manual"] | None  # None: nothing to run now
    by: str | None
    requests: tuple[tuple[str, ParityRequest], ...]  # manual: every pending request, oldest first
    next_run_at: datetime  # the next scheduled slot after a run now (or the pending one)
    skip: str | None = None  # a scheduled run is due on a day that is not a session: why it is skipped


def open_requests(status: ParityCheckStatus) -> list[tuple[str, ParityRequest]]:
    """Pending requests not handled yet, oldest first (an id already in the log is a resend)."""
    done = {h.id for h in status.handled_requests}
    return [(rid, r) for rid, r in reqs.in_order(status.requests) if rid not in done]


def due(
    spec: ParityCheckSpec,
    status: ParityCheckStatus,
    created_at: datetime,
    now: datetime,
    calendar: Calendar | None = None,
) -> Due:
    """A pending manual request runs now (even when suspended); otherwise the cron decides, and with
    spec.market only on the calendar's session days (a due slot on a holiday is skipped, not failed)."""
    last = status.last_run.at if status.last_run is not None else None
    if status.skipped is not None and (last is None or status.skipped.at > last):
        last = status.skipped.at
    decision = schedule.due_runs(spec.schedule, spec.time_zone, last, created_at, now)
    manual = open_requests(status)
    if manual:
        return Due("manual", manual[0][1].by, tuple(manual), schedule.next_run(spec.schedule, spec.time_zone, now))
    if spec.suspend or not decision.run_now:
        return Due(None, None, (), decision.next_run_at)
    if spec.market is not None:
        cal = market.resolve(spec.market.calendar, calendar)
        if cal is None or not market.session_day(cal, now, spec.time_zone):
            day = now.astimezone(ZoneInfo(spec.time_zone)).strftime("%a %Y-%m-%d")
            why = f"skipped: {day} is not a {spec.market.calendar} session"
            return Due(None, None, (), decision.next_run_at, why)
    return Due("catch-up" if decision.catch_up else "scheduled", None, (), decision.next_run_at)


def plan(
    spec: ParityCheckSpec | None,
    status: ParityCheckStatus,
    namespace: str,
    created_at: datetime,
    now: datetime,
    calendar: Calendar | None = None,
) -> ObservationPlan:
    """What this pass observes: the range queries when a run is due (a valid spec only), and the
    target of its actions when it measures or an action taken is still pending."""
    ranges = False
    if spec is not None and not spec_errors(spec, namespace):
        ranges = due(spec, status, created_at, now, calendar).trigger is not None
    target = spec is not None and (ranges or bool(acts.pending(status.actions_taken)))
    return ObservationPlan(ranges=ranges, target=target)


# ---------------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class Measured:
    """The raw answers of one run's range queries."""

    live: parity.Series
    backtest: parity.Series
    components: Mapping[str, tuple[parity.Series, parity.Series]] = field(default_factory=dict)


def evaluate(
    spec: ParityCheckSpec,
    measured: Measured,
    now: datetime,
    trigger: Literal["scheduled", "catch-up", "manual"],
    by: str | None,
    seq: int = 0,
) -> ParityRun:
    """Series -> ParityRun (tracking error, attribution, samples, unmatched, level, message)."""
    step_s = parse_duration(spec.step).total_seconds()
    notes: list[str] = []
    for what, series in (("live", measured.live), ("backtest", measured.backtest)):
        if series.error:
            notes.append(f"{what}: {series.error}")
    if notes:
        return ParityRun(at=now, seq=seq, level="Unknown", trigger=trigger, by=by, message="; ".join(notes))
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
        seq=seq,
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


# ------------------------------------------------------------------------------------------ reconcile


@dataclass(frozen=True)
class Observations:
    namespace: str
    name: str
    user: str  # the operator's own user name: `by` of the requests it sends
    created_at: datetime
    generation: int | None = None
    spec_errors: tuple[str, ...] = ()  # the spec did not parse (spec is None)
    measured: Measured | None = None  # the range queries, when `plan` asked for them
    target: acts.Target | None = None  # observed when a run is due or an action is Pending
    calendar: Calendar | None = None  # spec.market's (operator/checks/calendars.py); None: 24/7 or no market


@dataclass(frozen=True)
class Decision:
    status: ParityCheckStatus
    effects: acts.Effects
    events: tuple[Event, ...]
    applied: tuple[str, ...]  # actions (status form) that became Applied in this pass, for the counter
    wake_at: datetime | None


def reconcile(spec: ParityCheckSpec | None, status: ParityCheckStatus, obs: Observations, now: datetime) -> Decision:
    """Decide everything for one pass. Deterministic in its arguments; `status` is not changed."""
    errors = list(obs.spec_errors) if spec is None else spec_errors(spec, obs.namespace)
    if spec is None or errors:
        return invalid(status, errors, obs, now)
    new = status.model_copy(deep=True)
    events: list[Event] = []
    moved = acts.settle(new.actions_taken, obs.target, now) if obs.target is not None else []
    out_of_force(new, moved)
    todo = due(spec, new, obs.created_at, now, obs.calendar)
    wake: datetime | None = todo.next_run_at
    if todo.skip is not None:
        new.skipped = ParitySkip(at=now, message=todo.skip)
        events.append(Event("Normal", "RunSkipped", todo.skip))
    if todo.trigger is not None and obs.measured is not None and obs.target is not None:
        moved += run_once(spec, new, todo, obs, obs.target, now, events)
    elif todo.trigger is not None:
        wake = now  # the operator measures first (or observes the target) and calls again
    new.actions_taken = acts.trim(new.actions_taken)
    new.requests = {rid: r for rid, r in new.requests.items() if rid not in {h.id for h in new.handled_requests}}
    new.next_run_at = todo.next_run_at
    settle_conditions(new, spec, obs.generation, now)
    events += transition_events(moved)
    effects = (
        acts.effects(new.actions_taken, obs.target, obs.user, obs.name) if obs.target is not None else acts.Effects()
    )
    if acts.pending(new.actions_taken):
        wake = min(w for w in (wake, now + PENDING_RECHECK) if w is not None)
    applied = tuple(t.record.action for t in moved if t.state == "Applied")
    return Decision(new, effects, tuple(events), applied, wake)


def run_once(
    spec: ParityCheckSpec,
    status: ParityCheckStatus,
    todo: Due,
    obs: Observations,
    target: acts.Target,
    now: datetime,
    events: list[Event],
) -> list[acts.Transition]:
    """Evaluate the run, record it and its actions (Pending) and answer the manual requests. In place."""
    assert obs.measured is not None and todo.trigger is not None
    seq = status.run_seq + 1
    run = evaluate(spec, obs.measured, now, todo.trigger, todo.by, seq)
    previous = status.last_run.level if status.last_run is not None else None
    breaches = parity.next_breach_count(status.consecutive_breaches, run.level)
    plan = parity.plan_actions(
        run.level,
        breaches,
        spec.consecutive_breaches,
        actions_spec(spec),
        acts.in_force(status),
        auto_recover=spec.auto_recover,
    )
    records = acts.plan_records(plan.due, run, obs.name, target, now)
    acts.supersede(status.actions_taken, records, now)
    status.actions_taken = [*status.actions_taken, *records]
    status.active_actions = [acts.encode_action(a) for a in plan.in_force]
    status.run_seq = seq
    status.last_run = run
    status.history = [*status.history, run][-HISTORY_LIMIT:]
    status.consecutive_breaches = breaches
    first = todo.requests[0][0] if todo.requests else ""
    answered = [
        reqs.handled(rid, r, "Applied", f"run {seq}: {run.level}" + (f" (with {first})" if rid != first else ""), now)
        for rid, r in todo.requests
    ]
    status.handled_requests = reqs.log(status.handled_requests, answered)
    if run.level != previous:
        te = f"{run.tracking_error_bps:.2f} bps" if run.tracking_error_bps is not None else "no value"
        kind: EventType = "Warning" if run.level in parity.BREACH_LEVELS else "Normal"
        events.append(Event(kind, "LevelChanged", f"run {seq}: {run.level}, tracking error {te} {run.message or ''}"))
    for record in records:
        action = acts.decode_action(record.action)
        lift = action is not None and acts.is_lift(action)
        kind = "Normal" if lift else "Warning"
        verb = "lift" if lift else "act"
        events.append(Event(kind, "ActionTaken", f"{verb} {record.action} ({record.id}): {record.reason}"))
    # Routing already showing the value, or an event: settled in the same write.
    return [acts.Transition(r, r.state) for r in records if r.state != "Pending"] + acts.settle(records, target, now)


def out_of_force(status: ParityCheckStatus, moved: list[acts.Transition]) -> None:
    """An action the target rejected (or superseded with a stronger one) is not in force: a later
    breaching run plans it again, and recovery does not try to undo it."""
    for t in moved:
        if t.state in ("Rejected", "Superseded") and t.record.action in status.active_actions:
            status.active_actions = [a for a in status.active_actions if a != t.record.action]


def transition_events(moved: list[acts.Transition]) -> list[Event]:
    out: list[Event] = []
    for t in moved:
        r = t.record
        if t.state == "Applied" and r.action != acts.NAMES["event_only"]:
            out.append(Event("Normal", "ActionApplied", f"{r.action} ({r.id}) applied: {r.message or ''}"))
        elif t.state in ("Rejected", "Superseded") and not (r.message or "").startswith("superseded by pck-"):
            out.append(Event("Warning", "ActionRejected", f"{r.action} ({r.id}) {t.state.lower()}: {r.message or ''}"))
    return out


def settle_conditions(status: ParityCheckStatus, spec: ParityCheckSpec, generation: int | None, now: datetime) -> None:
    """Phase, message and conditions from the status: InvalidSpec False, Breaching, ActionsPending."""
    status.observed_generation = generation
    status.phase = "Suspended" if spec.suspend else "Scheduled"
    waiting = acts.pending(status.actions_taken)
    status.message = f"pending: {', '.join(r.id for r in waiting)}" if waiting else None
    conds = set_condition(status.conditions, "InvalidSpec", False, "Valid", "", now, generation)
    last = status.last_run
    if last is None:
        reason, message = "NoRunYet", "no run yet"
    elif last.tracking_error_bps is None:
        reason, message = last.level, last.message or "no value"
    else:
        reason, message = last.level, f"tracking error {last.tracking_error_bps:.2f} bps is {last.level}"
    breaching = last is not None and last.level in parity.BREACH_LEVELS
    conds = set_condition(conds, "Breaching", breaching, reason, message, now, generation)
    pending_text = ", ".join(f"{r.action} ({r.message})" for r in waiting)[:1024]
    conds = set_condition(
        conds, "ActionsPending", bool(waiting), "Pending" if waiting else "Settled", pending_text, now, generation
    )
    status.conditions = conds


def invalid(status: ParityCheckStatus, errors: list[str], obs: Observations, now: datetime) -> Decision:
    """Invalid spec: reported, never run, never acted on; pending run requests are answered Rejected."""
    message = "; ".join(errors)
    new = status.model_copy(deep=True)
    new.observed_generation = obs.generation
    new.phase = "Invalid"
    new.message = message
    new.next_run_at = None
    new.conditions = set_condition(new.conditions, "InvalidSpec", True, "InvalidSpec", message, now, obs.generation)
    answered: list[HandledRequest] = [
        reqs.handled(rid, r, "Rejected", f"invalid spec: {message}", now) for rid, r in open_requests(new)
    ]
    new.handled_requests = reqs.log(new.handled_requests, answered)
    new.requests = {}
    events: tuple[Event, ...] = ()
    if status.phase != "Invalid" or status.message != message:
        events = (Event("Warning", "InvalidSpec", message),)
    return Decision(new, acts.Effects(), events, (), None)
