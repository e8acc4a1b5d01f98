"""ShadowRun engine: `reconcile(spec, status, observations, now) -> Decision`, pure.

Phases: Pending (waiting for the shadow deployment) -> Running -> Completed (final), or Invalid.
The Decision says the new status and the world that status implies; the adapter writes the status
FIRST and only then makes the world match it, on every pass:
- Running: the recorded shadow (`status.target`) at its replicas, with the egress NetworkPolicy
  (created before the scale-up, so no shadow pod runs unconfined);
- Completed: the recorded shadow at 0 and no NetworkPolicy, for ever (a crash between the status
  write and the scale, or a person scaling it up again, is undone on the next pass); the report
  ConfigMap derived from status alone;
- Pending, Invalid: nothing is touched.
A completed run is final: later spec changes are ignored (create a new ShadowRun to re-run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from strategy_rollouts.api.common import Condition, set_condition
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.placeholders import SHADOW_PLACEHOLDERS
from strategy_rollouts.api.shadowrun import DecisionStats, ShadowRunSpec, ShadowRunStatus, ShadowTarget
from strategy_rollouts.engine import gates, market
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.networkpolicy import egress_policy, isolation_errors
from strategy_rollouts.engine.report import render_report
from strategy_rollouts.engine.shadow import (
    KpiResult,
    MatchCounts,
    MatcherState,
    StageLatency,
    Tolerances,
    Verdict,
    finalize,
    ingest,
    shadow_verdict,
    validate_match_on,
)
from strategy_rollouts.engine.shadow_observed import (
    Cursors,
    StreamPlan,
    StreamRead,
    decision_stats,
    dump_matcher,
    initial_cursor,
    kpi_results,
    parse_budgets,
    profile_stages,
    profile_status,
    read_matcher,
    stages_from_status,
    stream_names,
    to_ms,
    watermark,
)
from strategy_rollouts.engine.types import Event, ObservationPlan
from strategy_rollouts.engine.validation import gate_errors, notify_errors, query_errors

READ_EVERY_S: Final = 2.0  # decision reads while running
FINAL_GRACE_S: Final = 1.0  # after the end, so every entry with an id <= end has been added
ABSENT: Final = "absent"
ENDING: Final = "Ending"  # condition type, see `_ending`
# A trading-time end past what the calendar knows: far enough never to be reached before a rebuild.
BEYOND_CALENDAR: Final = timedelta(days=3650)
PolicyWant = dict[str, Any] | Literal["absent"] | None  # manifest, must not exist, or leave alone


# ------------------------------------------------------------------------------------- in and out


@dataclass(frozen=True)
class ShadowDeployment:
    replicas: int
    env: Mapping[str, str]  # the pod template's env, all containers
    match_labels: Mapping[str, str]


@dataclass(frozen=True)
class Latency:
    live: Mapping[str, Mapping[str, float]]  # quantile (p50, p95, p99) -> stage -> ms
    shadow: Mapping[str, Mapping[str, float]]
    errors: Sequence[str] = ()
    budgets: Mapping[str, str] | None = None  # the budgets ConfigMap's data; None: not found


@dataclass(frozen=True)
class Observations:
    namespace: str
    name: str
    owner: Mapping[str, Any]  # apiVersion, kind, metadata {name, namespace, uid}: owner of what we create
    generation: int = 1
    spec_error: str | None = None  # the spec does not parse (spec is None)
    deployment: ShadowDeployment | None = None  # the recorded (or, before the start, the spec's) shadow
    live: StreamRead | None = None  # None: not read this pass
    shadow: StreamRead | None = None
    kpis: Mapping[str, Measurement] = field(default_factory=dict)  # the due KPIs, measured
    latency: Latency | None = None  # measured only when the run may end (see `plan`)
    policy_exists: bool = False
    report: Mapping[str, str] | None = None  # the report ConfigMap's data, if it exists
    calendar: Calendar | None = None  # spec.market's (operator/checks/calendars.py); None: 24/7 or no market


@dataclass(frozen=True)
class Report:
    name: str
    data: dict[str, str]


@dataclass(frozen=True)
class Decision:
    status: ShadowRunStatus
    deployment: str | None  # the shadow deployment `scale` applies to
    scale: int | None  # desired replicas; None: leave alone
    policy: PolicyWant
    report: Report | None  # (re)write when missing or different; None: leave alone
    events: tuple[Event, ...] = ()
    wake_at: datetime | None = None


# ------------------------------------------------------------------------------------- validation


def spec_errors(spec: ShadowRunSpec, namespace: str) -> list[str]:
    """What the CRD schema cannot check; each message names the field."""
    errors: list[str] = []
    if spec.live.deployment == spec.shadow.deployment:
        errors.append("spec.shadow.deployment: must differ from spec.live.deployment")
    if parse_duration(spec.duration).total_seconds() <= 0:
        errors.append("spec.duration: must be > 0")
    if not spec.isolation.env:
        errors.append("spec.isolation.env: must name at least one variable (e.g. SHADOW_MODE: 'true')")
    errors += gate_errors("spec.kpis", spec.kpis, known=SHADOW_PLACEHOLDERS, webhooks=False)
    errors += notify_errors("ShadowRun", spec.notify)
    if spec.decisions is not None:
        bad = validate_match_on(spec.decisions.match_on)
        if bad:
            errors.append(f"spec.decisions.{bad}")
        source = spec.decisions.source.redis
        if (source.address is None) == (source.address_secret_ref is None):
            errors.append("spec.decisions.source.redis: set exactly one of address and addressSecretRef")
        errors += query_errors("spec.decisions.source.redis.liveStream", source.live_stream, SHADOW_PLACEHOLDERS)
        errors += query_errors("spec.decisions.source.redis.shadowStream", source.shadow_stream, SHADOW_PLACEHOLDERS)
        if not errors:
            live, shadow = stream_names(spec, namespace)
            if live == shadow:
                errors.append(f"spec.decisions.source.redis: live and shadow streams are the same ({live!r})")
        if parse_duration(spec.decisions.pairing_window).total_seconds() < 0:
            errors.append("spec.decisions.pairingWindow: must be >= 0")
    return errors


def status_error(status: ShadowRunStatus) -> str | None:
    """What the schema lets through but the engine cannot act on safely (the caller holds the object
    with InvalidStatus): an unreadable matcher would recount or lose decisions; a started phase
    without `startedAt`, or a Completed one without a verdict, has no record to act from."""
    _, _, error = read_matcher(status.matcher)
    if error:
        return error
    if status.phase in ("Running", "Completed") and status.started_at is None:
        return f"status.startedAt: missing for phase {status.phase}"
    if status.phase == "Completed" and status.verdict is None:
        return "status.verdict: missing for phase Completed"
    return None


# ---------------------------------------------------------------------------------------- helpers


def end_of(spec: ShadowRunSpec, started_at: datetime, calendar: Calendar | None = None) -> datetime:
    """The run's end: `duration` of wall time, or of trading time with `market.countTime: trading`."""
    duration = parse_duration(spec.duration)
    if spec.market is None or spec.market.count_time != "trading":
        return started_at + duration
    resolved = market.resolve(spec.market.calendar, calendar)
    end = resolved.add_trading_time(started_at, duration) if resolved is not None else None
    # Not within the calendar's known sessions (or none provided): not over; never judged early.
    return end if end is not None else started_at + BEYOND_CALENDAR


def shadow_replicas(spec: ShadowRunSpec) -> int:
    return spec.shadow.replicas if spec.shadow.replicas is not None else 1


def target_deployment(spec: ShadowRunSpec | None, status: ShadowRunStatus) -> str | None:
    """The deployment this run acts on: the one recorded at the start, else the spec's."""
    if status.target is not None:
        return status.target.shadow_deployment
    return spec.shadow.deployment if spec is not None else None


def target_of(spec: ShadowRunSpec, deployment: str) -> ShadowTarget:
    return ShadowTarget(
        strategy=spec.strategy,
        live_version=spec.live.version,
        shadow_deployment=deployment,
        shadow_version=spec.shadow.version,
        replicas=shadow_replicas(spec),
    )


def plan(
    spec: ShadowRunSpec | None,
    status: ShadowRunStatus,
    namespace: str,
    now: datetime,
    read: bool,
    calendar: Calendar | None = None,
) -> ObservationPlan:
    """What this pass observes: the deployment, the decision streams from their cursors, the due KPIs,
    and the latency profile when the run may end in this pass (past its end, or ENDING recorded).
    `read`: the adapter's throttle allows a decision read (always done once the run is past its end)."""
    deployment = target_deployment(spec, status)
    deployments = ((namespace, deployment),) if deployment else ()
    if spec is None or status.phase in ("Completed", "Invalid") or status.started_at is None:
        return ObservationPlan(deployments=deployments)
    by_name = {s.name: s for s in status.kpis}
    due = tuple(k for k in spec.kpis if gates.is_due(k, by_name.get(k.name), now))
    streams = None
    end = end_of(spec, status.started_at, calendar)
    past_end = now >= end + timedelta(seconds=FINAL_GRACE_S)
    if spec.decisions is not None and (read or past_end):
        _, cursors, _ = read_matcher(status.matcher)
        if cursors is None:
            first = initial_cursor(to_ms(status.started_at))
            cursors = Cursors(first, first)
        live, shadow = stream_names(spec, namespace)
        source = spec.decisions.source.redis
        streams = StreamPlan(source.address, live, shadow, cursors, to_ms(end), source.address_secret_ref)
    ending = past_end or any(c.type == ENDING and c.status == "True" for c in status.conditions)
    latency = spec.latency_profile is not None and status.phase == "Running" and ending
    return ObservationPlan(deployments=deployments, measure=due, streams=streams, latency=latency)


def verdict_for(
    spec: ShadowRunSpec,
    counts: MatchCounts,
    kpis: Sequence[KpiResult],
    stages: Sequence[StageLatency],
    *,
    finished: bool,
    hold: Sequence[str] = (),
    fail: Sequence[str] = (),
) -> Verdict:
    """The matcher's verdict, plus run-level reasons (unreachable sources, missing budgets, isolation).

    Without `spec.decisions` the decision comparison is not part of the verdict.
    """
    if spec.decisions is not None:
        min_decisions, min_rate = spec.decisions.min_decisions, spec.decisions.min_match_rate
    else:
        counts, min_decisions, min_rate = MatchCounts(matched=1), 0, 0.0
    v = shadow_verdict(
        counts, min_decisions=min_decisions, min_match_rate=min_rate, kpis=kpis, stages=stages, finished=finished
    )
    reasons = list(v.reasons)
    if spec.decisions is None:
        reasons = [r for r in reasons if not r.startswith("match rate")]
    if not finished:
        return Verdict("Fail", tuple([*fail, *reasons])) if fail or v.verdict == "Fail" else Verdict(None, ())
    if fail or v.verdict == "Fail":
        return Verdict("Fail", tuple([*fail, *reasons, *hold]))
    if hold or v.verdict == "Hold":
        return Verdict("Hold", tuple([*hold, *(reasons if v.verdict == "Hold" else [])]))
    return Verdict("Pass", tuple(reasons or ["every KPI and latency budget passed"]))


def conditions_for(
    old: list[Condition], phase: str, verdict: str | None, reason: str, message: str, now: datetime, gen: int
) -> list[Condition]:
    invalid = phase == "Invalid"
    conds = set_condition(
        old, "InvalidSpec", invalid, reason if invalid else "Valid", message if invalid else "", now, gen
    )
    conds = set_condition(conds, "Running", phase == "Running", reason, message if phase == "Running" else "", now, gen)
    done = phase == "Completed"
    conds = set_condition(conds, "Completed", done, verdict or reason, message if done else "", now, gen)
    return set_condition(conds, "Passed", verdict == "Pass", verdict or "NoVerdict", message if done else "", now, gen)


def report_documents(name: str, status: ShadowRunStatus) -> Report | None:
    """`report.md` and `summary.json` of a Completed run, from its status alone (so a re-derived
    report is byte-for-byte the one first written, whatever the spec says later)."""
    target = status.target
    if status.phase != "Completed" or status.report is None or target is None:
        return None
    state, _, _ = read_matcher(status.matcher)
    kpis = [
        KpiResult(k.name, k.result or "Inconclusive", k.value, k.message or "") for k in status.kpis if not k.dry_run
    ]
    md, summary = render_report(
        name,
        target.strategy,
        target.live_version,
        target.shadow_version,
        state.counts,
        state.worst_examples,
        kpis,
        stages_from_status(status.latency_profile),
        status.verdict,
        status.reasons,
        status.started_at,
        status.completed_at,
    )
    return Report(status.report, {"report.md": md, "summary.json": summary})


def _policy(spec: ShadowRunSpec, obs: Observations) -> PolicyWant:
    if not spec.isolation.deny_egress:
        return ABSENT
    if obs.deployment is None:
        return None  # no selector to aim at; nothing runs either
    return egress_policy(obs.owner, obs.deployment.match_labels, spec.isolation.allow_egress_to)


# ------------------------------------------------------------------------------------------ phases


def _invalid(status: ShadowRunStatus, reason: str, message: str, gen: int, now: datetime) -> Decision:
    new = status.model_copy(
        update={
            "phase": "Invalid",
            "message": message,
            "reasons": [],
            "observed_generation": gen,
            "conditions": conditions_for(status.conditions, "Invalid", None, reason, message, now, gen),
        }
    )
    events = () if status.phase == "Invalid" and status.message == message else (Event("Warning", reason, message),)
    return Decision(new, None, None, None, None, events)


def _pending(status: ShadowRunStatus, reason: str, message: str, gen: int, now: datetime) -> Decision:
    new = status.model_copy(
        update={
            "phase": "Pending",
            "message": message,
            "observed_generation": gen,
            "conditions": conditions_for(status.conditions, "Pending", None, reason, message, now, gen),
        }
    )
    return Decision(new, None, None, None, None)


def _completed(spec: ShadowRunSpec | None, status: ShadowRunStatus, obs: Observations) -> Decision:
    """Final: enforce the recorded end state on every pass."""
    deployment = target_deployment(spec, status)
    events: list[Event] = []
    if obs.deployment is not None and obs.deployment.replicas != 0:
        events.append(
            Event(
                "Warning",
                "ShadowScaledBack",
                f"completed run's shadow {deployment} had {obs.deployment.replicas} replicas; scaling it back to 0",
            )
        )
    report = report_documents(obs.name, status)
    return Decision(status, deployment, 0, ABSENT, report, tuple(events))


def _start(spec: ShadowRunSpec, status: ShadowRunStatus, obs: Observations, gen: int, now: datetime) -> Decision:
    started = now.replace(microsecond=now.microsecond // 1000 * 1000)
    cursor = initial_cursor(to_ms(started))
    end = end_of(spec, started, obs.calendar)
    target = target_of(spec, spec.shadow.deployment)
    message = f"shadow {target.shadow_deployment} {target.shadow_version} running until {end.isoformat()}"
    new = status.model_copy(
        update={
            "phase": "Running",
            "verdict": None,
            "reasons": [],
            "message": message,
            "started_at": started,
            "target": target,
            "observed_generation": gen,
            "decisions": DecisionStats() if spec.decisions is not None else None,
            "matcher": dump_matcher(MatcherState(), Cursors(cursor, cursor)),
            "conditions": conditions_for(status.conditions, "Running", None, "Started", message, started, gen),
        }
    )
    return Decision(
        new,
        target.shadow_deployment,
        target.replicas,
        _policy(spec, obs),
        None,
        (Event("Normal", "Started", message),),
        wake_at=now,
    )


@dataclass(frozen=True)
class _Progress:
    """A running pass up to the verdict: what was read and measured, and whether the run ends now."""

    state: MatcherState
    cursors: Cursors
    kpi_statuses: list[GateStatus]
    kpis: list[KpiResult]
    problems: list[str]
    source_error: str | None
    caught_up: bool
    conditions: list[Condition]
    end: datetime
    complete: bool


def _progress(spec: ShadowRunSpec, status: ShadowRunStatus, obs: Observations, now: datetime) -> _Progress:
    assert status.started_at is not None
    gen = obs.generation
    target = status.target or target_of(spec, spec.shadow.deployment)
    end = end_of(spec, status.started_at, obs.calendar)
    past_end = now >= end + timedelta(seconds=FINAL_GRACE_S)
    problems = (
        [f"isolation: {p}" for p in isolation_errors(target.shadow_deployment, spec.isolation.env, obs.deployment.env)]
        if obs.deployment
        else []
    )
    problems += [f"invalid spec change: {e}" for e in spec_errors(spec, obs.namespace)]
    if spec.shadow.deployment != target.shadow_deployment:
        problems.append(
            f"invalid spec change: spec.shadow.deployment is {spec.shadow.deployment!r}, the run started on "
            f"{target.shadow_deployment!r} (create a new ShadowRun to judge another deployment)"
        )
    state, cursors, _ = read_matcher(status.matcher)
    if cursors is None:  # status.matcher removed by hand: count again from the start, from zero
        first = initial_cursor(to_ms(status.started_at))
        state, cursors = MatcherState(), Cursors(first, first)
    caught_up, source_error, conditions = True, None, status.conditions
    if spec.decisions is not None and obs.live is not None and obs.shadow is not None:
        live, shadow = obs.live, obs.shadow
        source_error = live.error or shadow.error
        conditions = set_condition(
            conditions,
            "DecisionsAvailable",
            source_error is None,
            "SourceUnreachable" if source_error else "Reading",
            source_error or "",
            now,
            gen,
        )
        if source_error is None:
            tol = Tolerances(spec.decisions.tolerances.price_bps, spec.decisions.tolerances.quantity_percent)
            window = parse_duration(spec.decisions.pairing_window).total_seconds()
            state = ingest(
                state,
                live.decisions,
                shadow.decisions,
                spec.decisions.match_on,
                tol,
                watermark(now.timestamp(), (live, shadow)),
                window,
                malformed=live.malformed + shadow.malformed,
            )
            cursors = Cursors(live.cursor, shadow.cursor)
            caught_up = not (live.truncated or shadow.truncated)
    elif spec.decisions is not None and past_end:
        caught_up = False  # the end needs one last read
    by_name = {s.name: s for s in status.kpis}
    for kpi in spec.kpis:
        m = obs.kpis.get(kpi.name)
        if m is not None and gates.is_due(kpi, by_name.get(kpi.name), now):
            by_name[kpi.name] = gates.record(by_name.get(kpi.name), kpi, m, now)
    kpi_statuses = [by_name[k.name] for k in spec.kpis if k.name in by_name]
    kpis = kpi_results(spec, kpi_statuses)
    early = verdict_for(spec, state.counts, kpis, [], finished=False, fail=problems)
    complete = (past_end and caught_up) or early.verdict == "Fail" or decided_pass(spec, kpi_statuses, problems)
    return _Progress(state, cursors, kpi_statuses, kpis, problems, source_error, caught_up, conditions, end, complete)


def decided_pass(spec: ShadowRunSpec, kpis: Sequence[GateStatus], problems: Sequence[str]) -> bool:
    """A run whose verdict rests only on anytime-valid tests ends at their decision: every KPI that
    counts is a sequential judge, each has decided Pass (its guarantee holds however often it looks,
    so stopping at the decision is sound), and nothing else needs the full duration (no decision
    comparison, no latency profile). A Fail ends any run early already."""
    counted = [k for k in spec.kpis if not k.dry_run]
    if problems or not counted or spec.decisions is not None or spec.latency_profile is not None:
        return False
    if any(k.judge is None or k.judge.test != "sequential" for k in counted):
        return False
    by_name = {k.name: k for k in kpis}
    return all(k.name in by_name and by_name[k.name].result == "Pass" for k in counted)


def _ending(conditions: list[Condition], ending: bool, now: datetime, gen: int) -> list[Condition]:
    """ENDING: the run ended early in a pass that measured no latency profile; the next pass (at once)
    measures it and ends the run. Recorded, so the plan of that pass asks for it (no second look)."""
    if ending:
        return set_condition(conditions, ENDING, True, "EndingEarly", "measuring the latency profile", now, gen)
    return [c for c in conditions if c.type != ENDING]


def _latency(spec: ShadowRunSpec, obs: Observations) -> tuple[list[StageLatency], list[str]]:
    lp = spec.latency_profile
    if lp is None:
        return [], []
    if obs.latency is None:
        return [], ["latency profile: not measured"]
    hold = list(dict.fromkeys(f"latency profile: {e}" for e in obs.latency.errors))
    budgets: dict[str, float] = {}
    if lp.budgets is not None:
        budgets, problems = parse_budgets(obs.latency.budgets, lp.budgets.config_map)
        hold += problems
    return profile_stages(lp, obs.latency.live, obs.latency.shadow, budgets), hold


def _complete(spec: ShadowRunSpec, status: ShadowRunStatus, obs: Observations, p: _Progress, now: datetime) -> Decision:
    assert status.started_at is not None
    gen = obs.generation
    target = (status.target or target_of(spec, spec.shadow.deployment)).model_copy(update={"replicas": 0})
    final = finalize(p.state, spec.decisions.match_on if spec.decisions else ("symbol", "tick"))
    stages, hold = _latency(spec, obs)
    if p.source_error:
        hold.insert(0, f"decisions unavailable at the end: {p.source_error}")
    verdict = verdict_for(spec, final.counts, p.kpis, stages, finished=True, hold=hold, fail=p.problems)
    assert verdict.verdict is not None
    message = f"verdict {verdict.verdict}: {'; '.join(verdict.reasons)}"[:1000]
    new = status.model_copy(
        update={
            "phase": "Completed",
            "verdict": verdict.verdict,
            "reasons": list(verdict.reasons),
            "message": message,
            "observed_generation": gen,
            "decisions": decision_stats(final) if spec.decisions is not None else None,
            "kpis": p.kpi_statuses,
            "latency_profile": profile_status(stages),
            "report": f"{obs.name}-report",
            "target": target,
            "completed_at": now,
            "matcher": dump_matcher(final, p.cursors),
            "conditions": conditions_for(
                _ending(p.conditions, False, now, gen), "Completed", verdict.verdict, "Completed", message, now, gen
            ),
        }
    )
    event = Event("Normal" if verdict.verdict == "Pass" else "Warning", f"Shadow{verdict.verdict}", message)
    return Decision(new, target.shadow_deployment, 0, ABSENT, report_documents(obs.name, new), (event,))


def _run(spec: ShadowRunSpec, status: ShadowRunStatus, obs: Observations, now: datetime) -> Decision:
    p = _progress(spec, status, obs, now)
    # An early end (a Fail before the end) in a pass whose plan did not ask for the latency profile.
    early = now < p.end + timedelta(seconds=FINAL_GRACE_S)
    ending = p.complete and early and spec.latency_profile is not None and obs.latency is None
    if p.complete and not ending:
        return _complete(spec, status, obs, p, now)
    counts = p.state.counts
    rate = "n/a" if counts.match_rate is None else f"{counts.match_rate:.4f}"
    message = f"{counts.compared} decisions compared, match rate {rate}; ends {p.end.isoformat()}"
    if p.source_error:
        message = f"decisions unavailable: {p.source_error}"
    # Replicas follow the spec while running; recorded here first, then enforced from the record.
    target = (status.target or target_of(spec, spec.shadow.deployment)).model_copy(
        update={"replicas": shadow_replicas(spec)}
    )
    new = status.model_copy(
        update={
            "phase": "Running",
            "message": message,
            "observed_generation": obs.generation,
            "decisions": decision_stats(p.state) if spec.decisions is not None else None,
            "kpis": p.kpi_statuses,
            "target": target,
            "matcher": dump_matcher(p.state, p.cursors),
            "conditions": _ending(p.conditions, ending, now, obs.generation),
        }
    )
    wake = [now + timedelta(seconds=READ_EVERY_S), p.end + timedelta(seconds=FINAL_GRACE_S)]
    if not p.caught_up or ending:
        wake.append(now)
    by_name = {s.name: s for s in p.kpi_statuses}
    wake += [gates.next_due(k, by_name.get(k.name), now) for k in spec.kpis]
    scale = target.replicas if obs.deployment is not None else None
    return Decision(new, target.shadow_deployment, scale, _policy(spec, obs), None, (), min(wake))


def reconcile(spec: ShadowRunSpec | None, status: ShadowRunStatus, obs: Observations, now: datetime) -> Decision:
    """One pass. `spec` is None when it does not parse (`obs.spec_error` says why)."""
    gen = obs.generation
    if status.phase == "Completed":
        return _completed(spec, status, obs)
    if spec is None:
        return _invalid(status, "InvalidSpec", obs.spec_error or "spec does not parse", gen, now)
    if status.started_at is None:
        errors = spec_errors(spec, obs.namespace)
        if errors:
            return _invalid(status, "InvalidSpec", "; ".join(errors), gen, now)
        if obs.deployment is None:
            msg = f"shadow deployment {spec.shadow.deployment} not found"
            return _pending(status, "ShadowDeploymentNotFound", msg, gen, now)
        isolation = isolation_errors(spec.shadow.deployment, spec.isolation.env, obs.deployment.env)
        if isolation:
            return _invalid(status, "IsolationMissing", "; ".join(isolation), gen, now)
        return _start(spec, status, obs, gen, now)
    return _run(spec, status, obs, now)


def on_delete(spec: ShadowRunSpec | None, status: ShadowRunStatus) -> tuple[str | None, PolicyWant]:
    """The run is being deleted: (deployment to scale to 0 or None, policy). A started, unfinished run
    gives its shadow back; the policy goes in every case."""
    if status.started_at is not None and status.phase != "Completed":
        return target_deployment(spec, status), ABSENT
    return None, ABSENT
