"""Pure views: an object as the API server serves it -> the JSON the dashboard's pages draw.

The same readings as the CLI's renderers (step text, mismatches, actions and requests come from
read/views.py and read/requests.py, which both use), so the terminal and the browser never disagree
about what a status means.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from strategy_rollouts.api.conditions import parse_condition
from strategy_rollouts.api.paritycheck import ParityCheckSpec, ParityCheckStatus
from strategy_rollouts.api.rollout import StrategyRolloutStatus, TargetStatus
from strategy_rollouts.api.shadowrun import ShadowRunStatus
from strategy_rollouts.engine.shadow import MatcherState, decision_to_dict
from strategy_rollouts.read.requests import requests_of
from strategy_rollouts.read.views import actions_text, mismatches_text, status_of, step_text

KINDS = ("strategyrollouts", "shadowruns", "paritychecks")
JSON = dict[str, Any]


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata") or {}
    return {
        "namespace": meta.get("namespace", ""),
        "name": meta.get("name", ""),
        "created": meta.get("creationTimestamp"),
        "resourceVersion": meta.get("resourceVersion"),
    }


def _dump(model: Any) -> JSON:
    return dict(model.model_dump(mode="json", by_alias=True, exclude_none=True))


# ---- list rows -------------------------------------------------------------------------------------


def rollout_row(obj: JSON) -> JSON:
    spec, status = obj.get("spec") or {}, status_of(StrategyRolloutStatus, obj)
    reqs = requests_of(obj)
    return {
        **_meta(obj),
        "kind": "strategyrollouts",
        "strategy": spec.get("strategy"),
        "phase": status.phase or "Pending",
        "reason": status.reason,
        "stage": status.stage,
        "step": step_text(obj),
        "weight": status.canary_weight,
        "canary": status.canary_version or (spec.get("canary") or {}).get("version"),
        "gates": [{"name": g.name, "value": g.value, "result": g.result} for g in status.gates],
        "pending": len(reqs.pending),
    }


def shadow_row(obj: JSON) -> JSON:
    status = status_of(ShadowRunStatus, obj)
    decisions = status.decisions
    return {
        **_meta(obj),
        "kind": "shadowruns",
        "strategy": (obj.get("spec") or {}).get("strategy"),
        "phase": status.phase or "Pending",
        "verdict": status.verdict,
        "matchRate": decisions.match_rate if decisions else None,
        "compared": decisions.compared if decisions else None,
        "mismatches": mismatches_text(decisions.mismatches) if decisions else None,
    }


def parity_row(obj: JSON) -> JSON:
    status = status_of(ParityCheckStatus, obj)
    last = status.last_run
    return {
        **_meta(obj),
        "kind": "paritychecks",
        "strategy": (obj.get("spec") or {}).get("strategy"),
        "phase": status.phase or "Pending",
        "level": last.level if last else None,
        "trackingErrorBps": last.tracking_error_bps if last else None,
        "actions": actions_text(status.actions_taken),
    }


ROWS = {"strategyrollouts": rollout_row, "shadowruns": shadow_row, "paritychecks": parity_row}


def row(kind: str, obj: JSON) -> JSON:
    return ROWS[kind](obj)


# ---- one rollout -----------------------------------------------------------------------------------


def _step_label(step: JSON) -> str:
    if "setWeight" in step:
        return f"{step['setWeight']}%"
    duration = (step.get("pause") or {}).get("duration")
    return f"pause {duration}" if duration else "pause (promote)"


def timeline(obj: JSON, status: StrategyRolloutStatus) -> list[JSON]:
    """Every stage with its steps, each `done`, `current` or `pending` (the CLI's stages table)."""
    finished = status.phase == "Succeeded"
    stages = list((obj.get("spec") or {}).get("stages") or [])
    out = []
    for i, stage in enumerate(stages):
        current = status.stage_index == i and not finished
        done = finished or (status.stage_index is not None and i < status.stage_index)
        steps = []
        for j, step in enumerate(stage.get("steps") or []):
            if done or (current and status.step_index is not None and j < status.step_index):
                state = "done"
            elif current and j == status.step_index:
                state = "current"
            else:
                state = "pending"
            steps.append({"label": _step_label(step), "state": state})
        out.append(
            {
                "name": stage.get("name", ""),
                "namespace": stage.get("namespace") or _meta(obj)["namespace"],
                "state": "done" if done else "current" if current else "pending",
                "promotion": stage.get("promotion", "auto"),
                "approvals": stage.get("approvals"),
                "steps": steps,
            }
        )
    return out


def symbol_map(obj: JSON, status: StrategyRolloutStatus) -> list[JSON]:
    """Per stage target: every key and its owner (`stable`, `canary`, `draining` with the owner it
    will get, or `none`; a version neither side has any more as itself), in the spec's key order, as
    status records it for the routing ConfigMap (whose assignments name versions)."""
    spec = obj.get("spec") or {}
    keys = list((spec.get("routing") or {}).get("keys") or [])
    roles = {
        status.stable_version or (spec.get("stable") or {}).get("version"): "stable",
        status.canary_version or (spec.get("canary") or {}).get("version"): "canary",
    }
    out = []
    for target in status.targets:
        if target.segmented is not None:
            out.append(_segment_map(target, roles))
            continue
        order = keys + sorted(k for k in target.assignments if k not in keys)
        owners = {k: target.assignments.get(k, "none") for k in order}
        out.append(
            {
                "namespace": target.namespace,
                "configMap": target.config_map,
                "weight": target.weight,
                "revision": target.revision,
                "drainingUntil": target.draining_until.isoformat() if target.draining_until else None,
                "keys": [
                    {
                        "key": k,
                        "owner": roles.get(owners[k], owners[k]),
                        "version": owners[k],
                        "next": roles.get(target.pending[k], target.pending[k]) if k in target.pending else None,
                    }
                    for k in order
                ],
            }
        )
    return out


def _segment_map(target: TargetStatus, roles: dict[str | None, str]) -> JSON:
    """A segmented universe (docs/keys.md): one entry per segment of the hash order, named by where it starts."""
    assert target.segmented is not None
    return {
        "namespace": target.namespace,
        "configMap": target.config_map,
        "weight": target.weight,
        "revision": target.revision,
        "drainingUntil": target.draining_until.isoformat() if target.draining_until else None,
        "segmented": {"keys": target.segmented.keys, "segments": len(target.segmented.segments)},
        "keys": [
            {
                "key": f"sha256 ≥ {s.start or '0'}",
                "owner": roles.get(s.owner, s.owner),
                "version": s.owner,
                "next": roles.get(s.next, s.next) if s.next is not None else None,
            }
            for s in target.segmented.segments
        ],
    }


def gate_lines(obj: JSON) -> list[JSON]:
    """Per gate of the spec: what to plot (its query, or baseline) and the threshold to draw."""
    out = []
    for gate in (obj.get("spec") or {}).get("gates") or []:
        line: JSON = {"name": gate.get("name"), "query": gate.get("query"), "threshold": None, "op": None}
        if gate.get("condition"):
            try:
                cond = parse_condition(gate["condition"])
                line.update(threshold=cond.threshold, op=cond.op)
            except ValueError:
                pass
        if gate.get("baseline"):
            line.update(baseline=gate["baseline"], maxIncreasePercent=gate.get("maxIncreasePercent"))
        line["kind"] = (
            "judge"
            if gate.get("judge")
            else "webhook"
            if gate.get("webhook")
            else "template"
            if gate.get("templateRef")
            else "compare"
            if gate.get("baseline")
            else "threshold"
        )
        out.append(line)
    return out


def _requests(obj: JSON) -> JSON:
    reqs = requests_of(obj)
    return {
        "pending": [{"id": id_, **_dump(r)} for id_, r in reqs.pending],
        "handled": [_dump(h) for h in reversed(reqs.handled)],
    }


def rollout_detail(obj: JSON) -> JSON:
    status = status_of(StrategyRolloutStatus, obj)
    spec = obj.get("spec") or {}
    current = timeline(obj, status)
    stage = next((s for s in current if s["state"] == "current"), None)
    wanted = (stage or {}).get("approvals") or {}
    return {
        **rollout_row(obj),
        "message": status.message,
        "stable": status.stable_version or (spec.get("stable") or {}).get("version"),
        "timeline": current,
        "symbolMap": symbol_map(obj, status),
        "gateStatus": [_dump(g) for g in status.gates],
        "quarantined": [_dump(q) for q in status.keys.quarantined] if status.keys else [],
        "gateLines": gate_lines(obj),
        "riskBudget": _dump(status.risk_budget) if status.risk_budget else None,
        "history": [_dump(h) for h in reversed(status.history)],
        "requests": _requests(obj),
        "approvals": {
            "required": wanted.get("count"),
            "message": wanted.get("message"),
            "given": [_dump(a) for a in status.approvals if stage and a.stage == stage["name"]],
        },
        "startedAt": status.started_at.isoformat() if status.started_at else None,
        "conditions": [_dump(c) for c in status.conditions],
    }


# ---- one shadow run --------------------------------------------------------------------------------


def worst_examples(status: ShadowRunStatus) -> list[JSON]:
    """The matcher's worst examples (kept in status.matcher while the run goes), readable."""
    if not status.matcher:
        return []
    try:
        state = MatcherState.from_dict(status.matcher)
    except ValueError:
        return []
    return [
        {
            "kind": e.kind,
            "key": list(e.key),
            "live": decision_to_dict(e.live) if e.live else None,
            "shadow": decision_to_dict(e.shadow) if e.shadow else None,
            "priceBps": e.price_bps,
            "quantityPercent": e.quantity_percent,
        }
        for e in state.worst_examples
    ]


def shadow_detail(obj: JSON) -> JSON:
    status = status_of(ShadowRunStatus, obj)
    decisions = status.decisions
    min_rate = ((obj.get("spec") or {}).get("decisions") or {}).get("minMatchRate", 0.95)
    return {
        **shadow_row(obj),
        "reasons": status.reasons,
        "message": status.message,
        "minMatchRate": min_rate if (obj.get("spec") or {}).get("decisions") else None,
        "decisions": _dump(decisions) if decisions else None,
        "worstExamples": worst_examples(status),
        "latencyProfile": {stage: _dump(s) for stage, s in status.latency_profile.items()},
        "kpis": [_dump(k) for k in status.kpis],
        "report": status.report,
        "startedAt": status.started_at.isoformat() if status.started_at else None,
        "completedAt": status.completed_at.isoformat() if status.completed_at else None,
    }


# ---- one parity check ------------------------------------------------------------------------------


def _runs(status: ParityCheckStatus) -> list[Any]:
    """The recorded runs oldest first, the last run included once."""
    runs = {r.seq: r for r in status.history}
    if status.last_run is not None:
        runs[status.last_run.seq] = status.last_run
    return sorted(runs.values(), key=lambda r: r.at)


def parity_detail(obj: JSON) -> JSON:
    status = status_of(ParityCheckStatus, obj)
    try:
        thresholds = _dump(ParityCheckSpec.model_validate(obj.get("spec") or {}).thresholds_bps)
    except ValidationError:
        thresholds = {}
    last = status.last_run
    return {
        **parity_row(obj),
        "message": status.message,
        "thresholds": thresholds,
        "runs": [
            {"at": r.at.timestamp(), "te": r.tracking_error_bps, "level": r.level, "seq": r.seq} for r in _runs(status)
        ],
        "attribution": _dump(last.attribution) if last and last.attribution else {},
        "lastRun": _dump(last) if last else None,
        "actionsTaken": [_dump(a) for a in reversed(status.actions_taken)],
        "activeActions": status.active_actions,
        "requests": _requests(obj),
        "nextRunAt": status.next_run_at.isoformat() if status.next_run_at else None,
    }


DETAILS = {"strategyrollouts": rollout_detail, "shadowruns": shadow_detail, "paritychecks": parity_detail}
