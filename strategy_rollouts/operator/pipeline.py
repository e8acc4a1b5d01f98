"""THE reconcile pass, written once for every kind.

read the cached body -> parse status (hold on failure) -> parse and check the spec (calendar,
Secrets, allow-lists, gate templates, tenancy: claims recorded here) -> the engine's observation plan
-> observe it -> engine -> record (one guarded status write) -> events -> enforce -> metrics.

A kind plugs in a `KindAdapter`: its models, its engine calls, what it observes and how it makes the
world match its status. The pipeline owns everything that must be the same for all kinds: the hold
on an unparseable status, the one rule for an invalid spec (the engine decides, from `errors`, and
nothing acts on the spec), conflicts (the cached body is dropped and the loop re-reads at once), the
guarded write, event posting, and the Decision's completion (engine/finish.py: templates stamped,
the notification outbox, InvalidStatus cleared).
Deliberate differences between kinds live in the adapters' class attributes, each with its reason.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Generic, TypeVar, cast

import kopf
from pydantic import BaseModel, ValidationError

from strategy_rollouts.api.common import PrometheusConnection, SecretKeyRef
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.gates import GateSpec, TemplateUse
from strategy_rollouts.api.notify import NotifyRule
from strategy_rollouts.engine import finish, notifications
from strategy_rollouts.engine.market import Calendar
from strategy_rollouts.engine.types import Decided, Event, ObservationPlan, Ref
from strategy_rollouts.operator.checks.calendars import market_calendar
from strategy_rollouts.operator.checks.trust import notify_refs, prometheus_refs, secret_errors, trust_errors
from strategy_rollouts.operator.clients.kube import KINDS, Conflict
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import templates
from strategy_rollouts.operator.runtime import loop, objects, status_guard
from strategy_rollouts.operator.runtime.loop import Stopped

log = logging.getLogger(__name__)
EVENT_MESSAGE_MAX = 1000  # kopf posts Events as given; the API server refuses messages over 1 KiB

SpecT = TypeVar("SpecT", bound=BaseModel)
StatusT = TypeVar("StatusT", bound=BaseModel)
ObsT = TypeVar("ObsT")


DecisionT = TypeVar("DecisionT", bound=Decided)


@dataclass
class Pass(Generic[SpecT, StatusT]):
    """One pass's inputs, parsed and checked; `now` is the pass's one clock reading."""

    obj: dict[str, Any]
    now: datetime
    persisted: StatusT  # as the API server has it
    status: StatusT  # what the engine starts from (an adapter may keep a newer working copy)
    spec: SpecT | None  # None: does not parse or fails a check; `errors` says why
    errors: list[str] = field(default_factory=list)
    calendar: Calendar | None = None
    templates_used: dict[str, TemplateUse] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # an adapter's extra check results (credentials)

    @property
    def namespace(self) -> str:
        return str(self.obj["metadata"]["namespace"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def generation(self) -> int:
        return int(self.obj["metadata"].get("generation") or 1)

    @property
    def valid(self) -> bool:
        return self.spec is not None and not self.errors


def post(obj: Mapping[str, Any], events: Sequence[Event]) -> None:
    """Every Event of every kind goes out here (one truncation rule)."""
    for e in events:
        kopf.event(cast(kopf.Body, obj), type=e.type, reason=e.reason, message=e.message[:EVENT_MESSAGE_MAX])


class KindAdapter(ABC, Generic[SpecT, StatusT, ObsT, DecisionT]):
    """What a kind plugs into the pipeline. Defaults cover the common case."""

    kind: ClassVar[str]  # "StrategyRollout"
    plural: ClassVar[str]  # "strategyrollouts"
    waker: ClassVar[str]  # the Wakers kind of its loop
    spec_model: ClassVar[type[BaseModel]]
    status_model: ClassVar[type[BaseModel]]
    gates_field: ClassVar[str | None] = None  # where templateRef gates live ("spec.gates"), if any
    status_gates_field: ClassVar[str | None] = None  # where their results live in status ("gates")
    # A ShadowRun being deleted is given back by its delete handler; a pass must not scale it up again.
    skip_when_deleting: ClassVar[bool] = False

    # -- parse and check ------------------------------------------------------------------------
    def parse_status(self, obj: Mapping[str, Any]) -> tuple[StatusT | None, str | None]:
        status, error = status_guard.parse_status(self.status_model, obj.get("status"))
        return cast(StatusT | None, status), error

    def parse_spec(self, obj: Mapping[str, Any]) -> tuple[SpecT | None, str | None]:
        try:
            return cast(SpecT, self.spec_model.model_validate(obj.get("spec") or {})), None
        except ValidationError as exc:
            return None, validation_message(exc)

    def working(self, ctx: Context, obj: dict[str, Any], persisted: StatusT) -> StatusT:
        return persisted

    def prometheus(self, spec: SpecT) -> PrometheusConnection | None:
        return cast(PrometheusConnection | None, getattr(spec, "prometheus", None))

    def notify_rules(self, spec: SpecT | None) -> list[NotifyRule]:
        return list(getattr(spec, "notify", None) or [])

    def gates(self, spec: SpecT) -> list[GateSpec]:
        return []

    def with_gates(self, spec: SpecT, gates: list[GateSpec]) -> SpecT:
        return spec

    def secret_refs(self, spec: SpecT) -> list[tuple[str, SecretKeyRef | None]]:
        return prometheus_refs(self.prometheus(spec))

    def avoid_open_close(self, spec: SpecT) -> Any:
        return None

    async def check_more(self, ctx: Context, p: Pass[SpecT, StatusT], gates: list[GateSpec]) -> list[str]:
        """Kind-specific checks after the common ones (e.g. webhook credentials); errors make the spec invalid."""
        return []

    async def check_tenancy(self, ctx: Context, p: Pass[SpecT, StatusT], act: bool) -> list[str]:
        """Where the spec may act and on what (docs/safety.md "Tenancy"); never relaxed. With `act` (no
        other error) the adapter records its claims here, before anything of the pass acts."""
        return []

    def relax(self, p: Pass[SpecT, StatusT]) -> bool:
        """True when template/credential errors must not turn a settled object Invalid (see rollouts)."""
        return False

    # -- plan, observe, decide, act ---------------------------------------------------------------
    @abstractmethod
    def plan(self, ctx: Context, p: Pass[SpecT, StatusT]) -> ObservationPlan:
        """The kind's engine says what this pass observes (its `plan()`; empty for an invalid spec
        where the kind observes nothing)."""

    @abstractmethod
    async def observe(self, ctx: Context, p: Pass[SpecT, StatusT], plan: ObservationPlan) -> ObsT:
        """Exactly what the plan asks for, as plain data."""

    @abstractmethod
    def decide(self, p: Pass[SpecT, StatusT], obs: ObsT) -> DecisionT:
        """The kind's engine call (its invalid path when `p.valid` is False)."""

    def new_status(self, decision: DecisionT) -> StatusT:
        return cast(StatusT, decision.status)

    def measured(self, obs: ObsT) -> Collection[str]:
        """Names of the gates (or KPIs) measured in this pass: `status_gates_field` records their templates."""
        return ()

    def occurrences(self, p: Pass[SpecT, StatusT], decision: DecisionT) -> list[notifications.Occurrence]:
        return []

    async def write(self, ctx: Context, p: Pass[SpecT, StatusT], decision: DecisionT) -> None:
        """One guarded status write when anything changed."""
        new = cast(Any, self.new_status(decision)).wire()
        if new != cast(Any, p.persisted).wire():
            await objects.write_status(ctx, self.plural, p.obj, new)

    async def enforce(self, ctx: Context, p: Pass[SpecT, StatusT], decision: DecisionT, obs: ObsT) -> None:
        """Make the world match the status just written."""

    def record_metrics(self, p: Pass[SpecT, StatusT], decision: DecisionT, obs: ObsT) -> None:
        """Per-kind series."""

    def held_stops(self, obj: Mapping[str, Any]) -> tuple[Ref, ...]:
        """What a pending stop acts on while the status is held (none for kinds without a stop)."""
        return ()

    async def stop_while_held(self, ctx: Context, obj: dict[str, Any], stops: tuple[Ref, ...]) -> None:
        """Apply the pending stop to `stops` (after the hold recorded it)."""

    def forget(self, ctx: Context, namespace: str, name: str) -> None:
        """The object is gone: drop memory and series."""

    async def run(self, ctx: Context, namespace: str, name: str, stopped: Stopped) -> None:
        """The object's long-lived loop (runtime/loop.py) driving this pipeline."""
        await loop.run_loop(
            ctx, self.kind, self.waker, namespace, name, stopped, lambda: reconcile_once(ctx, self, namespace, name)
        )


async def hold(ctx: Context, adapter: KindAdapter[Any, Any, Any, Any], obj: dict[str, Any], error: str) -> None:
    """Unparseable status: InvalidStatus=True, nothing observed, nothing enforced (fail closed) but a
    pending stop, which is always safe: recorded in the condition first, then applied."""
    meta = obj["metadata"]
    stops = adapter.held_stops(obj)
    try:
        message = await status_guard.hold(
            ctx.kube, adapter.plural, obj, adapter.kind, error, datetime.now(UTC), stopping=bool(stops)
        )
    except Conflict:
        ctx.watched.drop(KINDS[adapter.plural], meta["namespace"], meta["name"])
        raise
    if message:
        log.warning("%s %s/%s held: %s", adapter.kind, meta["namespace"], meta["name"], message)
        post(obj, [Event("Warning", "InvalidStatus", message)])
    if stops:
        await adapter.stop_while_held(ctx, obj, stops)


async def checked(
    ctx: Context, adapter: KindAdapter[SpecT, StatusT, Any, Any], obj: dict[str, Any], now: datetime
) -> Pass[SpecT, StatusT] | None:
    """Parse the status (None: held) and the spec, and run every check a spec must pass before it acts."""
    persisted, status_error = adapter.parse_status(obj)
    if persisted is None:
        await hold(ctx, adapter, obj, status_error or "status does not parse")
        return None
    spec, spec_error = adapter.parse_spec(obj)
    p: Pass[SpecT, StatusT] = Pass(obj, now, persisted, adapter.working(ctx, obj, persisted), spec)
    if spec is None:
        p.errors = [spec_error or "spec does not parse"]
        return p
    market = getattr(spec, "market", None)
    if market is not None:
        calendar, problem = await market_calendar(
            ctx.calendars, "spec.market", market.calendar, adapter.avoid_open_close(spec), now
        )
        if problem is not None:
            p.errors = [problem]
            return p
        p.calendar = calendar
    refs = notify_refs(adapter.notify_rules(spec)) + adapter.secret_refs(spec)
    errors = await secret_errors(ctx, p.namespace, refs)
    gates = adapter.gates(spec)
    late: list[str] = []
    if adapter.gates_field is not None:
        resolved = await templates.resolved(
            ctx, adapter.waker, (p.namespace, p.name), adapter.gates_field, adapter.gates(spec)
        )
        gates, p.templates_used = resolved.gates, dict(resolved.used)
        late += resolved.errors
    late += trust_errors(ctx, adapter.prometheus(spec), gates, adapter.gates_field or "spec")
    late += await adapter.check_more(ctx, p, gates)
    if late and adapter.relax(p):
        late = []
    p.errors = errors + late
    # Tenancy is never relaxed: a settled object that may not act there or on that acts nowhere.
    p.errors += await adapter.check_tenancy(ctx, p, act=not p.errors)
    if not p.errors and adapter.gates_field is not None:
        p.spec = adapter.with_gates(spec, gates)
    return p


async def reconcile_once(
    ctx: Context, adapter: KindAdapter[Any, Any, Any, Any], namespace: str, name: str
) -> datetime | None:
    """One level-based pass. Returns when to look again (None: only on an event)."""
    obj = await objects.read(ctx, adapter.plural, namespace, name)
    if obj is None or (adapter.skip_when_deleting and obj["metadata"].get("deletionTimestamp")):
        return None
    now = datetime.now(UTC)
    p = await checked(ctx, adapter, obj, now)
    if p is None:
        return None
    obs = await adapter.observe(ctx, p, adapter.plan(ctx, p))
    decision = adapter.decide(p, obs)
    finish.complete(  # the same pure last step for every kind; nothing changes the Decision after it
        adapter.new_status(decision),
        p.status,
        gates_field=adapter.status_gates_field,
        templates_used=p.templates_used,
        measured=adapter.measured(obs),
        rules=adapter.notify_rules(p.spec),
        occurrences=adapter.occurrences(p, decision),
        generation=p.generation,
        now=now,
    )
    await adapter.write(ctx, p, decision)  # record intent ...
    post(obj, decision.events)
    await adapter.enforce(ctx, p, decision, obs)  # ... then act on what status now records
    adapter.record_metrics(p, decision, obs)
    wake: datetime | None = decision.wake_at
    return wake
