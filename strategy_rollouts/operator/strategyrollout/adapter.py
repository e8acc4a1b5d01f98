"""StrategyRollout reconcile: read, observe, call the pure engine, write status once, enforce the world."""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime
from typing import Any, cast

import kopf
from pydantic import ValidationError

from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import notifications
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.rollout import (
    Decision,
    Observations,
    invalid,
    reconcile,
    routing_document,
)
from strategy_rollouts.operator.checks.calendars import market_calendar
from strategy_rollouts.operator.checks.trust import prometheus_refs, secret_errors, trust_errors
from strategy_rollouts.operator.clients import notifier
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients import webhook as webhook_client
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import templates as gate_templates
from strategy_rollouts.operator.runtime import loop as daemons
from strategy_rollouts.operator.runtime import metrics, status_guard
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.operator.strategyrollout.observe import DEPLOYMENT_COUNTS, KIND, Routings, observe
from strategy_rollouts.operator.strategyrollout.writes import (
    PLURAL,
    is_own_write,
    must_persist,
    working_status,
    write_status,
)

__all__ = ["DEPLOYMENT_COUNTS", "KIND", "PLURAL", "is_own_write", "must_persist", "reconcile_once"]
log = logging.getLogger(__name__)


def parse(
    obj: dict[str, Any],
) -> tuple[StrategyRolloutSpec | None, StrategyRolloutStatus | None, str | None, str | None]:
    """(spec, status, spec error, status error). What does not parse is reported, never acted on."""
    status, status_error = status_guard.parse_status(StrategyRolloutStatus, obj.get("status"))
    try:
        return StrategyRolloutSpec.model_validate(obj.get("spec") or {}), status, None, status_error
    except ValidationError as exc:
        return None, status, validation_message(exc), status_error


async def enforce(
    ctx: Context,
    obj: dict[str, Any],
    spec: StrategyRolloutSpec,
    decision: Decision,
    obs: Observations,
    routings: Routings,
) -> None:
    """Make the world match status: routing ConfigMaps and replica counts, writing only differences."""
    for payload in decision.routing:
        doc = routing_document(spec, payload, 0, 1.0, True)
        changes = {k: doc[k] for k in ("strategy", "stableVersion", "canaryVersion", "weight", "assignments")}
        if payload.entries_enabled is not None:
            changes["entriesEnabled"] = payload.entries_enabled
        read = routings.get((payload.namespace, payload.config_map))
        await routing_writer.update(
            ctx.kube, payload.namespace, payload.config_map, changes, owner=obj, current=read, cache=ctx.watched
        )
    for scale in decision.scales:
        current = obs.deployments.get((scale.namespace, scale.deployment))
        if current is None:
            continue  # reported through readiness; never create a workload we do not own
        if current.replicas != scale.replicas:
            version = await ctx.kube.scale(scale.namespace, scale.deployment, scale.replicas)
            ctx.watched.scaled(scale.namespace, scale.deployment, scale.replicas, version)


def record_metrics(
    obj: dict[str, Any], spec: StrategyRolloutSpec, old: StrategyRolloutStatus, new: StrategyRolloutStatus
) -> None:
    ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    metrics.set_rollout_phase(ns, name, spec.strategy, new.phase)
    metrics.canary_traffic_percent.labels(ns, name, spec.strategy, spec.canary.version).set(new.canary_weight or 0)
    if new.phase != old.phase:
        if new.phase == "Succeeded":
            metrics.version_activations_total.labels(spec.strategy, spec.canary.version).inc()
        if new.phase == "RolledBack":
            metrics.rollbacks_total.labels(spec.strategy, new.reason or "").inc()


async def reconcile_once(ctx: Context, namespace: str, name: str) -> datetime | None:
    """One level-based pass. Returns when to look again (None: only on an event)."""
    obj = await runtime.read(ctx, PLURAL, namespace, name)
    if obj is None:
        return None
    spec, persisted, error, status_error = parse(obj)
    now = datetime.now(UTC)
    if persisted is None:
        # Fail closed: no scale, no routing change until the status parses (it is never read as empty).
        message = await status_guard.hold(ctx.kube, PLURAL, obj, "StrategyRollout", status_error or "", now)
        if message:
            kopf.event(cast(kopf.Body, obj), type="Warning", reason="InvalidStatus", message=message[:1000])
        return None
    status = working_status(ctx, obj, persisted)
    problems = await notifier.secret_errors(ctx, namespace, spec.notify) if spec is not None else []
    problems += await secret_errors(ctx, namespace, prometheus_refs(spec.prometheus)) if spec is not None else []
    if spec is None or problems:
        errors = problems or [error or "spec does not parse"]
        decision = invalid(status, errors, obj["metadata"].get("generation", 1), now)
        await write_status(ctx, obj, persisted, decision)
        return None
    calendar: Calendar | None = None  # spec.market's, built from exchange_calendars (operator/checks/calendars.py)
    if spec.market is not None:
        market = spec.market
        calendar, problem = await market_calendar(
            ctx.calendars, "spec.market", market.calendar, market.avoid_open_close, now
        )
        if problem is not None:
            decision = invalid(status, [problem], obj["metadata"].get("generation", 1), now)
            await write_status(ctx, obj, persisted, decision)
            return None
    templated = await gate_templates.resolved(ctx, KIND, (namespace, name), "spec.gates", spec.gates)
    auth, auth_errors = await webhook_client.credentials(ctx, namespace, "spec.gates", templated.gates)
    auth_errors += trust_errors(ctx, spec.prometheus, templated.gates, "spec.gates")
    if (templated.errors or auth_errors) and gate_templates.settled(spec, status):
        # A finished run measures no gate: a template or Secret removed since must not turn it Invalid
        # (an Invalid rollout starts over once fixed). A new version or a request checks again.
        templated.errors, auth_errors = [], []
    if templated.errors or auth_errors:  # a missing template, arg or credential: report, never act
        errors = templated.errors + auth_errors
        decision = invalid(status, errors, obj["metadata"].get("generation", 1), now)
        await write_status(ctx, obj, persisted, decision)
        return None
    spec = spec.model_copy(update={"gates": templated.gates})
    obs, routings = await observe(ctx, obj, spec, status, auth)
    if calendar is not None:
        obs = dataclasses.replace(obs, calendar=calendar)
    decision = reconcile(spec, status, obs, datetime.now(UTC))
    decision.status.gates = gate_templates.stamp(decision.status.gates, templated.used, obs.measurements)
    # The outbox is written with the transition that caused it (record intent, then notify).
    occurrences = notifications.rollout_occurrences(spec, status, decision.status, namespace, name)
    decision.status.notifications = notifications.outbox(spec.notify, status.notifications, occurrences, now)
    decision.status.conditions = status_guard.cleared(decision.status.conditions, obs.generation, now)
    await write_status(ctx, obj, persisted, decision)
    # Only what the status now records is enforced (the write above succeeded, or we did not get here).
    await enforce(ctx, obj, spec, decision, obs, routings)
    record_metrics(obj, spec, status, decision.status)
    for gate in decision.status.gates:
        if gate.name in obs.measurements:
            metrics.gate_evaluations_total.labels("StrategyRollout", gate.name, gate.result or "").inc()
    return decision.wake_at


def forget(ctx: Context, namespace: str, name: str) -> None:
    """The rollout is gone: drop what memory holds about it."""
    ctx.rollouts.forget((namespace, name))
    metrics.forget_object(namespace, name, *metrics.ROLLOUT_FAMILIES)


async def run_daemon(ctx: Context, namespace: str, name: str, stopped: daemons.Stopped) -> None:
    """One long-lived loop per rollout: reconcile, then sleep until the engine's next due time or an event."""
    await daemons.run_loop(
        ctx, "StrategyRollout", KIND, namespace, name, stopped, lambda: reconcile_once(ctx, namespace, name)
    )
