"""Render the field tables of docs/{strategyrollout,shadowrun,paritycheck}.md from the pydantic models.

    .venv/bin/python docs/gen_reference.py          # rewrite the generated sections
    .venv/bin/python docs/gen_reference.py --check  # exit 1 when a page is out of date

Only the text between `<!-- BEGIN GENERATED FIELDS -->` and `<!-- END GENERATED FIELDS -->` is generated;
the rest of each page is prose. Types and constraints come from the same OpenAPI schema as the CRDs
(strategy_rollouts.api.crdgen), defaults from the models, descriptions from DESCRIPTIONS below.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from strategy_rollouts.api.crdgen import KINDS, openapi_schema  # noqa: E402

BEGIN = "<!-- BEGIN GENERATED FIELDS -->"
END = "<!-- END GENERATED FIELDS -->"

# Short meanings of the fields (prose details live on each page). Keys are paths as shown in the tables.
DESCRIPTIONS: dict[str, str] = {
    # shared
    "spec.strategy": "Strategy name; `{{strategy}}` in queries, label `strategy` on metrics.",
    "spec.prometheus": "Per-object Prometheus connection; default: the operator's `--prometheus-url`.",
    "spec.prometheus.address": "Prometheus base URL.",
    "spec.prometheus.timeout": "Timeout of one query.",
    "spec.prometheus.bearerTokenSecretRef": "Bearer token: a key of a labelled credentials Secret (same namespace).",
    "spec.prometheus.caSecretRef": "PEM CA bundle: a key of a labelled credentials Secret in the same namespace.",
    "spec.prometheus.insecureSkipVerify": "Skip TLS verification (tests only).",
    # StrategyRollout
    "spec.stable": "The version trading now (legacy / active).",
    "spec.stable.deployment": "Deployment of the stable version (in each stage's namespace).",
    "spec.stable.version": "Version label; `{{stable.version}}` in queries.",
    "spec.canary": "The new version (pipeline).",
    "spec.canary.deployment": "Deployment of the canary version.",
    "spec.canary.version": "Version label; `{{canary.version}}`. Changing it mid-rollout supersedes the run.",
    "spec.canary.replicas": "Symbols mode: canary pods; default: the stable deployment's replicas at start.",
    "spec.replicas": "Replicas mode: total pods shared by both sides; default: stable's replicas at start.",
    "spec.progressDeadline": "Canary pods not Ready this long after a scale-up: `onFailure`.",
    "spec.routing": "How traffic (keys or replicas) is split.",
    "spec.routing.mode": "`symbols`: keys are assigned to versions; `replicas`: pods are split by weight.",
    "spec.routing.keys": "The universe of keys (symbols, accounts, users). Required in symbols mode."
    " Keys x stage namespaces are bounded by the status size budget (docs/safety.md).",
    "spec.routing.salt": "Salt of the sha256 key ranking; default: `spec.strategy`.",
    "spec.routing.keysFrom": "Keys from a ConfigMap, one per line, up to 100,000 (instead of `keys`).",
    "spec.routing.keysFrom.configMapKeyRef": "The ConfigMap (this namespace) and its data key holding the list.",
    "spec.routing.buckets": "Open universe (instead of `keys`): an id's bucket is sha256(salt:id) mod buckets;"
    " the canary owns the buckets below weight x buckets / 100. Weights may be fractional (whole buckets).",
    "spec.routing.order": "Which keys go first: `tiers` or a rank `query` (+ `label`); hash order within a tier.",
    "spec.routing.order.tiers": "Explicit tiers, first tier first; each key at most once;"
    " keys no tier names form a last tier.",
    "spec.routing.order.query": "PromQL with one series per key; its value ranks the key (e.g. traded volume).",
    "spec.routing.order.label": "The series label naming the key (required with `query`).",
    "spec.routing.order.ascending": "Lowest rank first (e.g. low-volume symbols first).",
    "spec.routing.maxQuarantined": "Keys per-key gates may quarantine (a count or a percent of the keys);"
    " beyond it: `onFailure`.",
    "spec.gates[].perKey": "Judge per key: a failing key is quarantined (back to stable alone), not the rollout.",
    "spec.gates[].perKey.label": "The series label naming the key; the query is measured `by (label)`.",
    "status.keys.quarantined": "Keys a per-key gate sent back to stable (key, gate, value, when);"
    " `releaseKey` returns one.",
    "spec.routing.configMap": "Routing ConfigMap the apps read; default `<name>-routing`.",
    "spec.routing.handoff": "Drain time of a key that changes owner (owned by nobody meanwhile).",
    "spec.stages": "Ordered stages (e.g. staging, prod); names are unique.",
    "spec.stages[].name": "Stage name, shown in status and `kubectl get`.",
    "spec.stages[].namespace": "Target namespace of this stage; default: the rollout's namespace.",
    "spec.stages[].steps": "`setWeight` and `pause` steps, weights non-decreasing.",
    "spec.stages[].steps[].setWeight": "Canary share in percent; fractional only with `spec.routing.buckets`.",
    "spec.stages[].steps[].pause": "Wait; without `duration`, wait for `promote`.",
    "spec.stages[].steps[].pause.duration": "How long to wait before the next step.",
    "spec.stages[].riskBudget": "Stage-wide risk limit; exceeding it triggers `onFailure`.",
    "spec.stages[].riskBudget.query": "PromQL returning the percent of capital at risk.",
    "spec.stages[].riskBudget.maxPercent": "Largest allowed value of the query.",
    "spec.stages[].minDuration": "The stage never finishes earlier.",
    "spec.stages[].maxDuration": "All gates Pass at this age: promote; any Fail: `onFailure`.",
    "spec.stages[].promotion": "`auto`: next stage after the last step; `manual`: wait for `promote`.",
    "spec.stages[].approvals": "Two-person rule: the stage is promoted only after distinct users approve.",
    "spec.stages[].approvals.count": "How many distinct users must `approve` since the stage started.",
    "spec.stages[].approvals.message": "Shown while the stage waits, e.g. who is expected to approve.",
    "spec.gates": "Prometheus gates, evaluated every `interval` in every stage.",
    "spec.gates[].name": "Gate name (unique).",
    "spec.gates[].query": "PromQL returning one number; placeholders allowed.",
    "spec.gates[].condition": "Threshold mode: `<op> <number>`, op one of `< <= > >= == !=`.",
    "spec.gates[].baseline": "Compare mode: PromQL of the reference value (usually the stable version).",
    "spec.gates[].maxIncreasePercent": "Compare mode: largest allowed increase of query over baseline.",
    "spec.gates[].judge": "Statistical gate: canary vs stable populations (docs/judge.md).",
    "spec.gates[].judge.test": "`mannWhitneyU` (one fixed-sample test per look) or `sequential` (anytime-valid).",
    "spec.gates[].judge.query": "PromQL range query run once per side; `{{version}}` = canary, then stable.",
    "spec.gates[].judge.window": "mannWhitneyU: range of the query, ending now (sequential: since the step started).",
    "spec.gates[].judge.step": "Resolution of the range query.",
    "spec.gates[].judge.worseWhen": "Which direction is a regression for the canary: `lower` or `higher`.",
    "spec.gates[].judge.confidence": "mannWhitneyU: Fail if p < 1 - confidence; sequential: each error rate <= 1 - it.",
    "spec.gates[].judge.minSamples": "Samples needed (per side; sequential: pairs) before any decision.",
    "spec.gates[].judge.margin": "sequential: Pass when the canary is no worse than this, in the query's unit.",
    "spec.gates[].judge.marginPercent": "sequential: the margin in percent of stable's mean level (not with margin).",
    "spec.gates[].judge.pairing": "sequential: `time` pairs both sides' samples per timestamp; `none`: two samples.",
    "spec.gates[].judge.decideWithin": "sequential: no decision by then (since the step started): `onUndecided`.",
    "spec.gates[].judge.onUndecided": "sequential: `hold` (reason JudgeUndecided) or `rollback`; never promote.",
    "spec.gates[].webhook": "HTTP check by another system (docs/webhook-gates.md): 2xx = Pass.",
    "spec.gates[].webhook.url": "http(s) URL the operator POSTs the rollout's state to.",
    "spec.gates[].webhook.timeout": "No answer within this: Inconclusive.",
    "spec.gates[].webhook.at": "`continuous`, `stepIncrease` (before a weight rise), `promotion` (before promoting).",
    "spec.gates[].webhook.onReject": "Non-2xx answer: `hold` (wait, ask again every interval) or `fail` (a Fail).",
    "spec.gates[].webhook.bearerTokenSecretRef": "Bearer token: key of a labelled credentials Secret.",
    "spec.gates[].webhook.caSecretRef": "PEM CA bundle (labelled credentials Secret); default: system CAs.",
    "spec.gates[].templateRef": "Take the gate body from a (Cluster)GateTemplate (docs/gate-templates.md).",
    "spec.gates[].templateRef.kind": "`ClusterGateTemplate` (cluster-wide) or `GateTemplate` (this namespace).",
    "spec.gates[].templateRef.name": "Name of the template.",
    "spec.gates[].args": "Values of `{{args.NAME}}`; fields beside `templateRef` override the template's.",
    "status.gates[].value": "The query's value; judge: one-sided p (sequential: anytime-valid); webhook: HTTP status.",
    "status.gates[].effect": "Judge: canary - stable, query's unit (mannWhitneyU: Hodges-Lehmann; sequential: mean).",
    "status.gates[].samples": "Judge: samples per side (sequential: and the pairs used).",
    "status.gates[].confidenceInterval": "Sequential judge: the current confidence sequence for canary - stable.",
    "status.gates[].margin": "Sequential judge: the margin in the query's unit (marginPercent resolved).",
    "status.gates[].undecidedOverdue": "Sequential judge: no decision by decideWithin (onUndecided: hold).",
    "status.gates[].template": "Template (kind, name, resourceVersion) the last evaluation used.",
    "status.gates[].result": "Pass, Fail, Inconclusive, Error, Rejected (a webhook's no, `onReject: hold`), Undecided.",
    # GateTemplate / ClusterGateTemplate
    "spec.args": "Declared arguments; one without `default` must be passed by every gate using the template.",
    "spec.args[].name": "Argument name, used as `{{args.NAME}}` in the body.",
    "spec.args[].default": "Value when the gate passes none.",
    "spec.gate": "A gate body without `name`: threshold, compare, judge or webhook; strings may hold `{{args.NAME}}`.",
    "spec.gates[].interval": "Evaluation period; a result older than 2 x interval is stale.",
    "spec.gates[].failureLimit": "onFailure when the Fails since the step started exceed this (as in Argo Rollouts).",
    "spec.gates[].consecutiveFailureLimit": "onFailure when the Fails in a row exceed this (a Pass resets); unset: off",
    "spec.gates[].inconclusiveLimit": "Hold (phase Paused, reason Inconclusive) when exceeded.",
    "spec.gates[].dryRun": "Measured and shown, never acts.",
    "spec.shadowRun": "ShadowRun whose verdict must be Pass before the first step.",
    "spec.parityCheck": "ParityCheck whose critical/emergency level acts on this rollout.",
    "spec.onFailure": "`rollback` (default) or `pause` (freeze without rolling back).",
    "spec.scaleDownDelay": "Keep the losing side warm this long for instant rollback.",
    "spec.paused": "Declarative pause (GitOps); manual pause is `kubectl strategy pause`.",
    "spec.market": "Exchange hours this object follows ([market hours](market-hours.md)).",
    "spec.market.calendar": "An `exchange_calendars` code (ISO 10383 MIC, e.g. XNYS, XLON, XTKS) or `24/7`.",
    "spec.market.advance": "`always`; `whenOpen`: steps, promotions, start and completion only in the session.",
    "spec.market.avoidOpenClose": "With `whenOpen`: no progress within this of each open and close.",
    "spec.market.countTime": "`wall`; `trading`: durations count open-market time only (holidays, breaks excluded).",
    "spec.freezeWindows": "No step, promotion or start inside a window; gates run and a Fail still rolls back.",
    "spec.freezeWindows[].start": "Absolute window: first instant (RFC 3339).",
    "spec.freezeWindows[].end": "Absolute window: end (exclusive); must be after `start`.",
    "spec.freezeWindows[].schedule": "Recurring window: cron of its starts (5 fields) in `timeZone`.",
    "spec.freezeWindows[].duration": "Recurring window: how long each occurrence lasts.",
    "spec.freezeWindows[].timeZone": "IANA time zone of `schedule` (e.g. America/New_York).",
    "status.skipped": "ParityCheck: the last scheduled run skipped because its day is not a `market.calendar` session.",
    "status.market": "Market state: `open`, `nextOpen`, `nextClose`, `frozenBy`, `frozenUntil`, `summary`.",
    "status.phase": "Pending, Progressing, Paused, Succeeded, RolledBack or Invalid.",
    "status.reason": "Machine-readable reason of the phase (e.g. GateFailed, Inconclusive).",
    "status.message": "Human-readable explanation (which gate, which value).",
    "status.handledRequests": "The last 20 handled requests, newest last, each with its outcome and message.",
    "status.history": "Last 10 outcomes with who and why.",
    "status.conditions": "Progressing, Paused, Completed, Degraded, InvalidSpec.",
    "status.targets": "Per stage namespace: routing assignments and the replicas the operator enforces.",
    # ShadowRun
    "spec.live": "The live version (decisions reach the market).",
    "spec.shadow": "The shadow version (side effects disabled).",
    "spec.live.deployment": "Deployment of the live version.",
    "spec.live.version": "Version label; `{{live.version}}` in queries.",
    "spec.shadow.deployment": "Deployment of the shadow version.",
    "spec.shadow.version": "Version label; `{{shadow.version}}` in queries.",
    "spec.shadow.replicas": "Shadow pods during the run; scaled back to 0 at the end.",
    "spec.duration": "Length of the run; the verdict is given at its end (an early Fail is possible).",
    "spec.isolation.env": "Env vars the shadow pods must have (e.g. SHADOW_MODE=true).",
    "spec.isolation.denyEgress": "NetworkPolicy: shadow pods reach only `allowEgressTo`.",
    "spec.isolation.allowEgressTo": "Allowed egress CIDRs and ports.",
    "spec.decisions": "Decision-by-decision comparison (Redis streams).",
    "spec.decisions.source.redis.address": "redis:// or rediss:// URL; or addressSecretRef.",
    "spec.decisions.source.redis.addressSecretRef": "Labelled Secret key with the URL (password).",
    "spec.decisions.matchOn": "Fields pairing a live decision with a shadow one.",
    "spec.decisions.tolerances.priceBps": "Largest price difference of a match, in bps.",
    "spec.decisions.tolerances.quantityPercent": "Largest quantity difference of a match, in percent.",
    "spec.decisions.minDecisions": "Fewer compared at the end: Hold.",
    "spec.decisions.minMatchRate": "Lower match rate at the end: Fail.",
    "spec.decisions.pairingWindow": "Wait this long for a counterpart before counting a decision missing.",
    "spec.kpis": "Prometheus gates, same shape as StrategyRollout gates.",
    "spec.latencyProfile": "Per-stage p50/p95/p99, live vs shadow, against budgets.",
    "spec.latencyProfile.histogram": "Histogram metric name (without `_bucket`).",
    "spec.latencyProfile.stageLabel": "Label holding the stage name.",
    "spec.latencyProfile.budgets.configMap": "ConfigMap: stage -> p95 budget in ms.",
    "spec.latencyProfile.maxRegressionPercent": "Largest allowed shadow p95 increase over live.",
    "status.verdict": "Pass, Hold or Fail.",
    "status.reasons": "Why the verdict.",
    "status.report": "ConfigMap holding report.md and summary.json.",
    "status.matcher": "Matcher bookkeeping so a restart never recounts (internal).",
    "status.target": "What the run acts on, recorded at its start; side effects follow this, not later spec edits.",
    "status.target.replicas": "Shadow replicas while Running (0 once Completed).",
    # ParityCheck
    "spec.target": "Exactly one of `rollout` or `deployment`.",
    "spec.target.rollout": "StrategyRollout to act on.",
    "spec.target.deployment": "Deployment to act on (no rollout).",
    "spec.target.configMap": "Deployment targets: routing ConfigMap to write sizeMultiplier/entriesEnabled to.",
    "spec.schedule": "Cron schedule of runs.",
    "spec.timeZone": "IANA time zone of the schedule.",
    "spec.window": "Range of each run.",
    "spec.step": "Resolution of the range queries (one period).",
    "spec.live.query": "Per-period live returns (fraction).",
    "spec.backtest.query": "Per-period backtest returns (fraction).",
    "spec.periodsPerYear": "For annualizing the tracking error (8760 for hourly).",
    "spec.attribution": "Pairs of range queries (bps) attributing the gap: fees, slippage, timing, sizing.",
    "spec.thresholdsBps": "Levels: Warning, Critical, Emergency at these tracking errors.",
    "spec.consecutiveBreaches": "Act only after this many breaching runs in a row.",
    "spec.minSamples": "Fewer aligned samples: level Unknown.",
    "spec.autoRecover": "Lift actions by itself when the level recovers.",
    "spec.suspend": "Stop scheduled runs.",
    "spec.actions": "What each level does.",
    "status.lastRun": "The latest run: tracking error, level, attribution.",
    "status.requests": "Pending requests by id: each writer adds one key, the operator removes it when handled.",
    "status.runSeq": "Number of the latest run; part of the ids of the actions it planned.",
    "status.activeActions": "Actions currently in force.",
}


PATTERNS: list[tuple[str, str]] = [
    (r"^spec\.kpis\[\]\.([\w.]+)$", "spec.gates[].{0}"),
    (r"^spec\.(live|shadow)\.(deployment|version)$", "spec.stable.{1}"),
    (r"^spec\.attribution\.(\w+)$", "Range queries (bps) of the {0} component, live and backtest."),
    (r"^spec\.attribution\.(\w+)\.(live|backtest)$", "{1} series of the {0} cost, in bps per period."),
    (r"^spec\.thresholdsBps\.(\w+)$", "Tracking error (bps) from which the level is {0}."),
    (r"^spec\.actions\.(\w+)$", "Actions at level {0}."),
    (r"^spec\.actions\.\w+\.sizeMultiplier$", "Written to the routing ConfigMap: position size factor."),
    (r"^spec\.actions\.\w+\.entriesEnabled$", "Written to the routing ConfigMap: false blocks new entries."),
    (r"^spec\.actions\.\w+\.pauseRollout$", "Pause the target StrategyRollout."),
    (r"^spec\.actions\.\w+\.abortRollout$", "Abort (roll back) the target StrategyRollout."),
    (r"^spec\.actions\.\w+\.stopTrading$", "Every key to nobody, entries off (a bare deployment: scaled to 0)."),
    (r"^spec\.backtest$", "Backtest return series."),
    (r"^spec\.live$", "Live return series (ParityCheck) / live version (ShadowRun)."),
    (r"^spec\.isolation$", "Side-effect isolation of the shadow pods."),
    (r"^spec\.isolation\.allowEgressTo\[\]\.cidr$", "Destination network."),
    (r"^spec\.isolation\.allowEgressTo\[\]\.ports$", "TCP ports; empty: all."),
    (r"^spec\.decisions\.source(\.redis)?$", "Where decisions are read from (Redis streams)."),
    (r"^spec\.decisions\.source\.redis\.(live|shadow)Stream$", "Stream of the {0} version's decisions."),
    (r"^spec\.decisions\.tolerances$", "How close a shadow decision must be to match."),
    (r"^spec\.latencyProfile\.budgets$", "Per-stage p95 budgets."),
    (r"^spec\.latencyProfile\.window$", "rate() window; default: the run so far, at most 1h."),
    (r"^spec\.notify$", "Where to send notifications of this object's events (docs/notifications.md)."),
    (r"^spec\.notify\[\]\.to$", "The receiver."),
    (r"^spec\.notify\[\]\.to\.secretRef$", "Labelled Secret key with one or more Apprise URLs, one a line."),
    (r"^spec\.notify\[\]\.on$", "Events to send; see docs/notifications.md for each kind's."),
]


def describe(path: str, fallback: str) -> str:
    if path in DESCRIPTIONS:
        return DESCRIPTIONS[path]
    for pattern, template in PATTERNS:
        match = re.match(pattern, path)
        if match:
            text = template.format(*match.groups())
            return DESCRIPTIONS.get(text, text)
    return fallback


def defaults_of(model: type[BaseModel], prefix: str, out: dict[str, Any]) -> None:
    for name, field in model.model_fields.items():
        key = f"{prefix}.{field.alias or name}"
        if not field.is_required():
            value = field.get_default(call_default_factory=True)
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", by_alias=True, exclude_none=True)
            out[key] = value
        for nested, suffix in _models_in(field.annotation):
            defaults_of(nested, key + suffix, out)


def _models_in(annotation: Any) -> list[tuple[type[BaseModel], str]]:
    origin = typing.get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [(annotation, "")]
    if origin is typing.Annotated:
        return _models_in(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(annotation) for m in _models_in(a)]
    if origin is list:
        return [(m, s + "[]") if s == "" else (m, "[]" + s) for m, s in _models_in(typing.get_args(annotation)[0])]
    if origin is dict:
        return [(m, ".*" + s) for m, s in _models_in(typing.get_args(annotation)[1])]
    return []


def type_of(node: dict[str, Any]) -> str:
    t = node.get("type", "object")
    if node.get("x-kubernetes-preserve-unknown-fields"):
        return "object (free-form)"
    if t == "array":
        return f"[]{type_of(node.get('items', {}))}"
    if t == "object" and "additionalProperties" in node and not node.get("properties"):
        return f"map[string]{type_of(node['additionalProperties'])}"
    if node.get("format") == "date-time":
        return "timestamp"
    if node.get("pattern", "").startswith("^([0-9]+(\\.[0-9]+)?(ms|s|m|h|d))"):
        return "duration"
    return str(t)


def constraints_of(node: dict[str, Any]) -> str:
    parts: list[str] = []
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    for key, label, strict in (("minimum", ">=", "exclusiveMinimum"), ("maximum", "<=", "exclusiveMaximum")):
        if key in node:
            label = label[0] if node.get(strict) is True else label  # structural schemas: a boolean flag
            parts.append(f"{label} {node[key]:g}" if isinstance(node[key], float) else f"{label} {node[key]}")
    if "minLength" in node and node["minLength"] > 0:
        parts.append(f"min length {node['minLength']}")
    if "maxItems" in node:
        parts.append(f"max {node['maxItems']} items")
    if "minItems" in node:
        parts.append(f"min {node['minItems']} items")
    if node.get("x-kubernetes-list-map-keys"):
        parts.append("unique " + ", ".join(node["x-kubernetes-list-map-keys"]))
    rules = list(node.get("x-kubernetes-validations", []))
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        rules += node["items"].get("x-kubernetes-validations", [])
    for rule in rules:
        parts.append(f"rule: {rule['message']}")
    return "; ".join(parts)


def rows(node: dict[str, Any], path: str, required: bool, defaults: dict[str, Any]) -> list[str]:
    out: list[str] = []
    default = defaults.get(path)
    shown = "" if default is None or default == [] or default == {} else f"`{json.dumps(default)}`"
    desc = describe(path, node.get("description", "")).replace("|", "\\|").replace("\n", " ")
    cons = constraints_of(node).replace("|", "\\|")
    req = "yes" if required else ""
    out.append(f"| `{path}` | {type_of(node)} | {req} | {shown} | {cons} | {desc} |")
    target = node
    suffix = ""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        target, suffix = node["items"], "[]"
    elif (
        node.get("type") == "object"
        and isinstance(node.get("additionalProperties"), dict)
        and node["additionalProperties"].get("properties")
    ):
        target, suffix = node["additionalProperties"], ".*"
    props = target.get("properties", {})
    req_set = set(target.get("required", []))
    for name, child in props.items():
        out.extend(rows(child, f"{path}{suffix}.{name}", name in req_set, defaults))
    return out


def table(kind_index: int) -> str:
    kind = KINDS[kind_index]
    defaults: dict[str, Any] = {}
    defaults_of(kind.spec, "spec", defaults)
    if kind.status is not None:
        defaults_of(kind.status, "status", defaults)
    lines = [
        f"Generated from `{kind.spec.__module__}` by `docs/gen_reference.py`.",
        "",
        "### Spec",
        "",
        "| Field | Type | Required | Default | Constraints | Meaning |",
        "|---|---|---|---|---|---|",
    ]
    spec = openapi_schema(kind.spec)
    for name, child in spec.get("properties", {}).items():
        lines.extend(rows(child, f"spec.{name}", name in set(spec.get("required", [])), defaults))
    rules = spec.get("x-kubernetes-validations", [])
    if rules:
        lines += ["", "Object-level rules (checked at admission): " + "; ".join(r["message"] for r in rules) + "."]
    if kind.status is None:
        return "\n".join(lines) + "\n"
    lines += [
        "",
        "### Status (written by the operator; `requests` by users)",
        "",
        "| Field | Type | Meaning |",
        "|---|---|---|",
    ]
    status = openapi_schema(kind.status)
    for name, child in status.get("properties", {}).items():
        for row in rows(child, f"status.{name}", False, {}):
            cells = row.split(" | ")
            lines.append(" | ".join([cells[0], cells[1], cells[-1]]))
    return "\n".join(lines) + "\n"


PAGES = {
    "StrategyRollout": "strategyrollout.md",
    "ShadowRun": "shadowrun.md",
    "ParityCheck": "paritycheck.md",
    "GateTemplate": "gate-templates.md",  # ClusterGateTemplate has the same spec: one table for both
}


def updated(text: str, generated: str, page: str) -> str:
    if BEGIN not in text or END not in text:
        raise SystemExit(f"docs/{page}: markers {BEGIN} / {END} missing")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{generated}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for index, kind in enumerate(KINDS):
        if kind.kind not in PAGES:
            continue
        page = ROOT / "docs" / PAGES[kind.kind]
        text = page.read_text()
        new = updated(text, table(index), page.name)
        if new != text:
            stale.append(page.name)
            if not args.check:
                page.write_text(new)
    if args.check and stale:
        print(f"out of date: {stale}; run .venv/bin/python docs/gen_reference.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
