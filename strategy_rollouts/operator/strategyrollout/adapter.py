"""StrategyRollout in the pipeline: its checks, observations, engine call, write and enforcement."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.rollout import StrategyRolloutSpec, StrategyRolloutStatus
from strategy_rollouts.engine import notifications
from strategy_rollouts.engine.rollout import (
    Decision,
    Observations,
    held_stop,
    invalid,
    plan,
    reconcile,
    routing_changes,
)
from strategy_rollouts.engine.routing import NONE
from strategy_rollouts.engine.types import ObservationPlan, Ref
from strategy_rollouts.operator.clients import routing as routing_writer
from strategy_rollouts.operator.clients import webhook as webhook_client
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import templates as gate_templates
from strategy_rollouts.operator.pipeline import KindAdapter, Pass
from strategy_rollouts.operator.runtime import metrics
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.operator.strategyrollout import tenancy
from strategy_rollouts.operator.strategyrollout.observe import DEPLOYMENT_COUNTS, KIND, Routings, observe
from strategy_rollouts.operator.strategyrollout.writes import (
    PLURAL,
    is_own_write,
    must_persist,
    working_status,
    write_status,
)

__all__ = ["ADAPTER", "DEPLOYMENT_COUNTS", "KIND", "PLURAL", "is_own_write", "must_persist"]
log = logging.getLogger(__name__)
RolloutPass = Pass[StrategyRolloutSpec, StrategyRolloutStatus]


@dataclass(frozen=True)
class Observed:
    obs: Observations | None  # None: the spec is invalid, nothing was observed
    routings: Routings


class RolloutAdapter(KindAdapter[StrategyRolloutSpec, StrategyRolloutStatus, Observed, Decision]):
    kind = "StrategyRollout"
    plural = PLURAL
    waker = KIND
    spec_model = StrategyRolloutSpec
    status_model = StrategyRolloutStatus
    gates_field = "spec.gates"
    status_gates_field = "gates"

    def working(self, ctx: Context, obj: dict[str, Any], persisted: StrategyRolloutStatus) -> StrategyRolloutStatus:
        return working_status(ctx, obj, persisted)

    def gates(self, spec: StrategyRolloutSpec) -> list[GateSpec]:
        return list(spec.gates)

    def with_gates(self, spec: StrategyRolloutSpec, gates: list[GateSpec]) -> StrategyRolloutSpec:
        return spec.model_copy(update={"gates": gates})

    def avoid_open_close(self, spec: StrategyRolloutSpec) -> Any:
        return spec.market.avoid_open_close if spec.market is not None else None

    async def check_more(self, ctx: Context, p: RolloutPass, gates: list[GateSpec]) -> list[str]:
        auth, errors = await webhook_client.credentials(ctx, p.namespace, "spec.gates", gates)
        p.context["auth"] = auth
        return errors

    async def check_tenancy(self, ctx: Context, p: RolloutPass, act: bool) -> list[str]:
        # Its namespaces must let it in, and the Deployments and routing ConfigMaps must be its alone:
        # claims are recorded here, before the pass routes or scales anything (tenancy.py).
        return await tenancy.problems(ctx, p.obj, act)

    def relax(self, p: RolloutPass) -> bool:
        # A finished run measures no gate: a template or Secret removed since must not turn it Invalid
        # (an Invalid rollout starts over once fixed). A new version or a request checks again.
        return p.spec is not None and gate_templates.settled(p.spec, p.status)

    def plan(self, ctx: Context, p: RolloutPass) -> ObservationPlan:
        if not p.valid or p.spec is None:
            return ObservationPlan()  # an invalid spec observes nothing (a stop needs nothing observed)
        return plan(p.spec, p.status, p.namespace, p.name, p.now)

    async def observe(self, ctx: Context, p: RolloutPass, plan: ObservationPlan) -> Observed:
        if not p.valid:
            return Observed(None, {})
        assert p.spec is not None
        obs, routings = await observe(ctx, p.obj, p.spec, p.status, plan, p.context.get("auth"))
        if p.calendar is not None:
            obs = dataclasses.replace(obs, calendar=p.calendar)
        return Observed(obs, routings)

    def decide(self, p: RolloutPass, observed: Observed) -> Decision:
        if observed.obs is None or p.spec is None:
            return invalid(p.status, p.errors, p.generation, p.now)
        # After the gates were measured (that may take seconds): their results are recorded as of now.
        return reconcile(p.spec, p.status, observed.obs, datetime.now(UTC))

    def measured(self, observed: Observed) -> Collection[str]:
        return observed.obs.measurements.keys() if observed.obs is not None else ()

    def occurrences(self, p: RolloutPass, decision: Decision) -> list[notifications.Occurrence]:
        if not p.valid or p.spec is None:
            return []
        return notifications.rollout_occurrences(p.spec, p.status, decision.status, p.namespace, p.name)

    async def write(self, ctx: Context, p: RolloutPass, decision: Decision) -> None:
        await write_status(ctx, p.obj, p.persisted, decision)

    async def enforce(self, ctx: Context, p: RolloutPass, decision: Decision, observed: Observed) -> None:
        """Routing ConfigMaps and replica counts as status records them, writing only differences."""
        for payload in decision.routing:
            # A stop while the spec is invalid: only what the stop changes, nothing read from the spec.
            changes = routing_changes(p.spec if observed.obs is not None else None, payload)
            read = observed.routings.get((payload.namespace, payload.config_map))
            await routing_writer.update(
                ctx.kube, payload.namespace, payload.config_map, changes, owner=p.obj, current=read, cache=ctx.watched
            )
        if observed.obs is None:
            return
        for scale in decision.scales:
            current = observed.obs.deployments.get((scale.namespace, scale.deployment))
            if current is None:
                continue  # reported through readiness; never create a workload we do not own
            if current.replicas != scale.replicas:  # conditional on the version the watch holds
                await runtime.scale(ctx, scale.namespace, scale.deployment, scale.replicas)

    def record_metrics(self, p: RolloutPass, decision: Decision, observed: Observed) -> None:
        if p.spec is None or observed.obs is None:
            return
        ns, name, spec, old, new = p.namespace, p.name, p.spec, p.status, decision.status
        metrics.set_rollout_phase(ns, name, spec.strategy, new.phase)
        metrics.canary_traffic_percent.labels(ns, name, spec.strategy, spec.canary.version).set(new.canary_weight or 0)
        if new.phase != old.phase:
            if new.phase == "Succeeded":
                metrics.version_activations_total.labels(spec.strategy, spec.canary.version).inc()
            if new.phase == "RolledBack":
                metrics.rollbacks_total.labels(spec.strategy, new.reason or "").inc()
        for gate in new.gates:
            if gate.name in observed.obs.measurements:
                metrics.gate_evaluations_total.labels("StrategyRollout", gate.name, gate.result or "").inc()

    def held_stops(self, obj: Mapping[str, Any]) -> tuple[Ref, ...]:
        return held_stop(obj.get("status"))

    async def stop_while_held(self, ctx: Context, obj: dict[str, Any], stops: tuple[Ref, ...]) -> None:
        """Every key to none and entries off in each routing ConfigMap created for this rollout
        (`owned_by`; never one it did not create, never created now); nothing else (no scale, no status)."""
        for namespace, config_map in stops:
            read = await routing_writer.read(ctx.kube, namespace, config_map, ctx.watched)
            if read.document is None or read.config_map is None or not routing_writer.owned_by(read.config_map, obj):
                continue
            changes = {
                "assignments": dict.fromkeys(sorted(read.assignments), NONE),
                "entriesEnabled": False,
                "stopped": True,  # an open universe's ids too (api/keyhash.py owner)
            }
            await routing_writer.update(
                ctx.kube, namespace, config_map, changes, owner=obj, current=read, cache=ctx.watched
            )

    def forget(self, ctx: Context, namespace: str, name: str) -> None:
        ctx.rollouts.forget((namespace, name))
        ctx.prometheus.forget(("StrategyRollout", namespace, name))
        metrics.forget_object(namespace, name, *metrics.ROLLOUT_FAMILIES)


ADAPTER = RolloutAdapter()
