"""Validating admission webhook (kopf's own machinery; API.md "Operator: high availability and admission").

At `kubectl apply` it refuses what the CRD schema cannot: unknown placeholders (the engine's own
validation, so the same checks still report InvalidSpec when the webhook is down: failurePolicy
Ignore), unknown calendars, GateTemplates / ClusterGateTemplates that do not exist, and PromQL that
Prometheus itself cannot parse (asked with an instant query at time 0, so nothing is scanned; this
Prometheus has no /api/v1/parse_query). Prometheus unreachable: allowed with a warning. For a
StrategyRollout also tenancy (strategyrollout/tenancy.py, read-only), once the spec has no other error
(its reads are not spent on a spec refused anyway): a stage namespace that does not let the rollout's
namespace in, and a Deployment or routing ConfigMap another rollout holds or nobody created for it.

Served by every replica, leader or standby: it only reads. Registered only with --admission-webhook
(kopf refuses to start with admission handlers and no server).
"""

from __future__ import annotations

import asyncio
import importlib
import threading
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from prometheus_api_client.exceptions import PrometheusApiClientException
from pydantic import BaseModel, ValidationError

from strategy_rollouts.api.common import GROUP, VERSION, PrometheusConnection
from strategy_rollouts.api.durations import parse_duration
from strategy_rollouts.api.errors import validation_message
from strategy_rollouts.api.gates import GateSpec
from strategy_rollouts.api.paritycheck import ParityCheckSpec
from strategy_rollouts.api.placeholders import placeholder_values, substitute, unknown_placeholders
from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.api.shadowrun import ShadowRunSpec
from strategy_rollouts.engine import judge_replay, parity_run, rollout, shadow_run
from strategy_rollouts.engine.allowlist import address_errors
from strategy_rollouts.engine.gate_templates import key_of, resolve
from strategy_rollouts.operator.checks.calendars import market_calendar
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.gates import templates as gate_templates
from strategy_rollouts.operator.strategyrollout import tenancy
from strategy_rollouts.read import prometheus

PROMQL_TIMEOUT_S = 3.0  # per query, all in parallel: well inside the webhook's timeoutSeconds
Queries = dict[str, str]  # field path -> the query with its placeholders filled in
Checked = tuple[list[str], Queries]


async def _resolved(ctx: Context, field: str, gates: list[GateSpec], ns: str) -> tuple[list[GateSpec], list[str]]:
    """templateRef gates resolved as the reconcile does (engine.gate_templates.resolve), read-only."""
    keys = [k for k in (key_of(g, ns) for g in gates) if k is not None]
    templates = {k: await gate_templates.lookup(ctx, k) for k in dict.fromkeys(keys)}
    out = resolve(field, gates, ns, templates)
    return out.gates, out.errors


def _gate_queries(field: str, gates: list[GateSpec], values: Mapping[str, str], known: frozenset[str]) -> Queries:
    out: Queries = {}
    for i, gate in enumerate(gates):
        filled = {**values, "interval": gate.interval, "version": values.get("stable.version", "")}
        for name, text in (("query", gate.query), ("baseline", gate.baseline)):
            if text and not unknown_placeholders(text, known):
                out[f"{field}[{i}].{name}"] = substitute(text, filled)
        if gate.judge is not None and not unknown_placeholders(gate.judge.query, known | {"version"}):
            out[f"{field}[{i}].judge.query"] = substitute(gate.judge.query, filled)
    return out


async def _calendar(ctx: Context, code: str | None, avoid: str | None) -> list[str]:
    if code is None:
        return []
    _, problem = await market_calendar(ctx.calendars, "spec.market", code, avoid, datetime.now(UTC))
    return [problem] if problem else []


WARN_TIMEOUT_S = 2.0  # the repeated-look estimate never holds admission up longer than this


def step_durations(spec: StrategyRolloutSpec) -> list[float]:
    """Seconds of every pause step with a duration: the steps of known duration a judge looks at."""
    return [
        parse_duration(step.pause.duration).total_seconds()
        for stage in spec.stages
        for step in stage.steps
        if step.pause is not None and step.pause.duration is not None
    ]


async def judge_warnings(written: list[GateSpec], gates: list[GateSpec], durations: list[float]) -> list[str]:
    """mannWhitneyU judges that would roll back a not-worse version too often (engine/judge_replay.py;
    memoized, computed off the event loop and bounded in time: a slow estimate is skipped, not waited for).
    `gates` are the `written` gates with their templateRefs resolved (same order): a template's judge warns
    too, naming the template it came from."""
    warnings: list[str] = []
    for i, (own, gate) in enumerate(zip(written, gates, strict=True)):
        if gate.judge is None or gate.judge.test != "mannWhitneyU" or gate.dry_run:
            continue
        ref = own.template_ref
        where = f"spec.gates[{i}].judge" + (f" (from {ref.kind} {ref.name})" if ref is not None else "")
        try:
            warn = await asyncio.wait_for(
                asyncio.to_thread(judge_replay.repeated_look_warning, gate, durations, where), WARN_TIMEOUT_S
            )
        except TimeoutError:
            continue
        if warn:
            warnings.append(warn)
    return warnings


async def check_rollout(ctx: Context, namespace: str, spec: StrategyRolloutSpec) -> Checked:
    from strategy_rollouts.api.placeholders import ROLLOUT_PLACEHOLDERS

    gates, errors = await _resolved(ctx, "spec.gates", spec.gates, namespace)
    if not errors:
        errors += rollout.spec_errors(spec.model_copy(update={"gates": gates}), namespace)
    market = spec.market
    errors += await _calendar(ctx, market.calendar if market else None, market.avoid_open_close if market else None)
    values = placeholder_values(spec, namespace, spec.stages[0].name if spec.stages else None, "")
    queries = _gate_queries("spec.gates", gates, values, ROLLOUT_PLACEHOLDERS)
    for i, stage in enumerate(spec.stages):
        budget = stage.risk_budget
        if budget is not None and not unknown_placeholders(budget.query, ROLLOUT_PLACEHOLDERS):
            queries[f"spec.stages[{i}].riskBudget.query"] = substitute(budget.query, {**values, "stage": stage.name})
    return errors, queries


async def check_shadowrun(ctx: Context, namespace: str, spec: ShadowRunSpec) -> Checked:
    from strategy_rollouts.api.placeholders import SHADOW_PLACEHOLDERS

    kpis, errors = await _resolved(ctx, "spec.kpis", spec.kpis, namespace)
    if not errors:
        errors += shadow_run.spec_errors(spec.model_copy(update={"kpis": kpis}), namespace)
    errors += await _calendar(ctx, spec.market.calendar if spec.market else None, None)
    return errors, _gate_queries("spec.kpis", kpis, placeholder_values(spec, namespace), SHADOW_PLACEHOLDERS)


async def check_paritycheck(ctx: Context, namespace: str, spec: ParityCheckSpec) -> Checked:
    from strategy_rollouts.api.placeholders import PARITY_PLACEHOLDERS

    errors = parity_run.spec_errors(spec, namespace)
    errors += await _calendar(ctx, spec.market.calendar if spec.market else None, None)
    values = placeholder_values(spec, namespace)
    queries = {
        path: substitute(text, values)
        for path, text in parity_run.queries(spec).items()
        if not unknown_placeholders(text, PARITY_PLACEHOLDERS)
    }
    return errors, queries


async def tenancy_errors(ctx: Context, namespace: str, body: Mapping[str, Any]) -> list[str]:
    """What the operator would report as InvalidSpec for tenancy, judged on the spec (its status is the
    operator's, never a reason to refuse a spec edit). Reads only; the claims are recorded by the operator."""
    name = str((body.get("metadata") or {}).get("name") or "")
    spec_only = {"metadata": {"namespace": namespace, "name": name}, "spec": body.get("spec") or {}}
    return await tenancy.problems(ctx, spec_only, act=False, me=tenancy.Me(namespace, name, None))


async def promql_errors(
    ctx: Context, namespace: str, override: PrometheusConnection | None, queries: Queries
) -> tuple[list[str], list[str]]:
    """(errors, warnings): a query Prometheus answers with bad_data is refused, naming the field;
    Prometheus unreachable (or any other answer) only warns: InvalidSpec and gate results stay the judge."""
    if not queries:
        return [], []
    # The allow-list first: no query (and no credential) goes to an address the operator may not use,
    # a server-side dry run included.
    address = override.address if override is not None and override.address else ctx.settings.prometheus_url
    refused = address_errors(
        "spec.prometheus.address", address, ctx.settings.prometheus_allow, "security.allowedPrometheus"
    )
    if refused:
        return refused, []
    conn = await ctx.connection(namespace, override)
    api = prometheus.client(conn)

    def parse(query: str) -> str | None:
        try:
            api.custom_query(query, params={"time": "0", "timeout": f"{PROMQL_TIMEOUT_S:g}s"})
        except PrometheusApiClientException as exc:
            text = str(exc)
            if "HTTP Status Code 400" in text and "bad_data" in text:
                return text.split("bad_data", 1)[1].strip(' ",:').split('"}')[0][:300]
            raise
        return None

    async def one(field: str, query: str) -> tuple[str, str | None, str | None]:
        try:
            bad = await asyncio.wait_for(asyncio.to_thread(parse, query), PROMQL_TIMEOUT_S + 1)
            return field, bad, None
        except Exception as exc:  # unreachable, timed out, 5xx: allowed, the operator decides later
            return field, None, f"{field}: PromQL not checked ({type(exc).__name__}: Prometheus at {conn.address})"

    results = await asyncio.gather(*(one(f, q) for f, q in queries.items()))
    errors = [f"{field}: Prometheus cannot parse the query: {bad}" for field, bad, _ in results if bad]
    return errors, [warn for *_, warn in results if warn]


Checker = Callable[[Context, str, Any], Coroutine[Any, Any, Checked]]
KINDS: dict[str, tuple[type[BaseModel], Checker]] = {
    "strategyrollouts": (StrategyRolloutSpec, check_rollout),
    "shadowruns": (ShadowRunSpec, check_shadowrun),
    "paritychecks": (ParityCheckSpec, check_paritycheck),
}


async def review(
    ctx: Context, plural: str, namespace: str, body: Mapping[str, Any], old: Mapping[str, Any] | None
) -> list[str]:
    """Warnings for an acceptable object; raises kopf.AdmissionError naming every bad field."""
    spec_body = body.get("spec") or {}
    if (body.get("metadata") or {}).get("deletionTimestamp"):
        return []  # going away: finalizer removals must never be refused
    if old is not None and (old.get("spec") or {}) == spec_body:
        return []  # metadata-only update: what was admitted (or applied while we were down) stays
    model, checker = KINDS[plural]
    try:
        spec = model.model_validate(spec_body)
    except ValidationError as exc:
        raise kopf.AdmissionError(f"spec: {validation_message(exc)}", code=422) from None
    errors, queries = await checker(ctx, namespace, spec)
    bad, warnings = await promql_errors(ctx, namespace, getattr(spec, "prometheus", None), queries)
    errors += bad
    if not errors and plural == "strategyrollouts":  # its reads only for a spec fine otherwise
        errors += await tenancy_errors(ctx, namespace, body)
    if errors:
        raise kopf.AdmissionError("; ".join(errors), code=422)
    if isinstance(spec, StrategyRolloutSpec):  # admitted: every templateRef resolved (else it was refused)
        gates, _ = await _resolved(ctx, "spec.gates", spec.gates, namespace)
        warnings += await judge_warnings(spec.gates, gates, step_durations(spec))
    return warnings


async def validate(
    body: kopf.Body, memo: Any, warnings: list[str], namespace: str | None, param: Any = None, **kwargs: Any
) -> None:
    """kopf's validating handler for the kind `param` (a plural)."""
    from strategy_rollouts.operator.handlers import context

    old = kwargs.get("old")
    ns = namespace or body.metadata.namespace or "default"
    warnings.extend(await review(context(memo), str(param), ns, body, old if isinstance(old, Mapping) else None))


def register() -> None:
    """The three validating handlers (kopf's webhook ids: validate-<plural>)."""
    # scipy loads in seconds: load it now, off the loop, so the first judge warning fits WARN_TIMEOUT_S.
    threading.Thread(target=lambda: importlib.import_module("scipy.stats"), name="warm-scipy", daemon=True).start()
    for plural in KINDS:
        kopf.on.validate(
            GROUP,
            VERSION,
            plural,
            id=f"validate-{plural}",
            param=plural,
            operations=["CREATE", "UPDATE"],
            ignore_failures=True,  # failurePolicy: Ignore (the operator down never blocks an apply)
        )(validate)


def server(port: int, addr: str, host: str | None, cert: str | None, key: str | None) -> kopf.WebhookServer:
    """kopf's server; with cert and key files (the chart's Secret, or a dev cert) it also hands their
    certificate to a managed configuration as the CA bundle. Without them kopf self-signs (kopf[dev])."""
    return kopf.WebhookServer(addr=addr, port=port, host=host, certfile=cert, pkeyfile=key)
