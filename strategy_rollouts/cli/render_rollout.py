"""Pure renderers for StrategyRollouts: object dict (+ now) -> rich renderable or text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.requests import HandledRequest
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.cli.errors import EXIT_ERROR, EXIT_RUNNING
from strategy_rollouts.cli.fmt import PHASE_STYLE, RESULT_MARK, RESULT_STYLE, age, num, relative, styled
from strategy_rollouts.cli.render_approvals import approvals_cell, approvals_table
from strategy_rollouts.cli.render_notifications import notifications_text
from strategy_rollouts.cli.render_requests import OUTCOME_STYLE, requests_cell, requests_table
from strategy_rollouts.cli.render_symbols import symbol_map
from strategy_rollouts.read.requests import requests_of
from strategy_rollouts.read.views import DASH, stages_of, status_of, step_text


def _status(obj: dict[str, Any]) -> StrategyRolloutStatus:
    return status_of(StrategyRolloutStatus, obj)


def _condition_true(status: StrategyRolloutStatus, type_: str) -> bool:
    return any(c.type == type_ and c.status == "True" for c in status.conditions)


def judge_value(gate: GateStatus) -> str:
    """A judge gate's value is a one-sided p-value."""
    return DASH if gate.value is None else f"p={gate.value:.3g}"


def judge_detail(gate: GateStatus) -> str:
    """`effect -4.93, n 20/20`: the shift (canary - stable) and samples per side; a sequential judge's
    `effect -4.93 in [-5.9, -4.1], margin 2, n 20 pairs`: its confidence sequence and margin."""
    assert gate.samples is not None
    effect = DASH if gate.effect is None else f"{gate.effect:+.4g}"
    ci = gate.confidence_interval
    if ci is None and gate.samples.pairs is None:
        return f"effect {effect}, n {gate.samples.canary}/{gate.samples.stable}"
    interval = "" if ci is None else f" in [{num(ci.lower)}, {num(ci.upper)}]"
    margin = "" if gate.margin is None else f", margin {gate.margin:.4g}"
    return f"effect {effect}{interval}{margin}, n {gate.samples.pairs or 0} pairs"


def gate_text(gate: GateStatus) -> Text:
    """`tick-p95-ms 123.4 ✓` (value vs baseline in compare mode; a judge's p, effect and samples;
    `dry-run` marked)."""
    if gate.samples is not None:
        text = Text(f"{gate.name} {judge_value(gate)} {judge_detail(gate)}")
    else:
        text = Text(f"{gate.name} {num(gate.value)}")
    if gate.baseline is not None:
        text.append(f" vs {num(gate.baseline)}")
    if gate.result:
        text.append(f" {RESULT_MARK.get(gate.result, gate.result)}", style=RESULT_STYLE.get(gate.result, ""))
    if gate.dry_run:
        text.append(" (dry-run)", style="dim")
    return text


def market_text(status: StrategyRolloutStatus) -> Text:
    """status.market's one-liner (`open`, `closed, opens Mon 14:30Z`, `frozen: fomc`), `-` without a market."""
    summary = status.market.summary if status.market is not None else None
    if not summary:
        return Text(DASH, style="dim")
    return Text(summary, style="green" if summary == "open" else "yellow")


def _weight(status: StrategyRolloutStatus) -> str:
    return DASH if status.canary_weight is None else f"{status.canary_weight}%"


def rollouts_table(objs: list[dict[str, Any]], now: datetime, all_namespaces: bool = False) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    columns = ["NAMESPACE"] if all_namespaces else []
    columns += ["NAME", "STRATEGY", "PHASE", "STAGE", "STEP", "WEIGHT", "CANARY", "MARKET", "GATES", "REASON"]
    columns += ["REQUESTS", "AGE"]
    for column in columns:
        table.add_column(column, no_wrap=column != "GATES")
    for obj in objs:
        meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, _status(obj)
        gates = Text("\n").join(gate_text(g) for g in status.gates) if status.gates else Text(DASH)
        row: list[RenderableType] = [meta.get("namespace", "")] if all_namespaces else []
        row += [
            meta.get("name", ""),
            str(spec.get("strategy", DASH)),
            styled(status.phase or "Pending", PHASE_STYLE),
            status.stage or DASH,
            step_text(obj),
            _weight(status),
            status.canary_version or str((spec.get("canary") or {}).get("version", DASH)),
            market_text(status),
            gates,
            (status.reason or "") + approvals_cell(obj, status),
            requests_cell(obj),
            age(meta.get("creationTimestamp"), now),
        ]
        table.add_row(*row)
    return table


def exit_code(obj: dict[str, Any]) -> int:
    """`status` exit code: 0 Succeeded, 1 RolledBack / Invalid / Degraded=True / InvalidSpec=True, 2 running."""
    status = _status(obj)
    if status.phase == "Succeeded":
        return 0
    if status.phase in ("RolledBack", "Invalid") or any(
        _condition_true(status, t) for t in ("Degraded", "InvalidSpec")
    ):
        return EXIT_ERROR
    return EXIT_RUNNING


def _step_label(step: dict[str, Any]) -> str:
    if "setWeight" in step:
        return f"{step['setWeight']}%"
    duration = (step.get("pause") or {}).get("duration")
    return f"pause {duration}" if duration else "pause (promote)"


def _stage_steps(stage: dict[str, Any], state: str, step_index: int | None) -> Text:
    text = Text()
    for i, step in enumerate(stage.get("steps") or []):
        if i:
            text.append(" → ", style="dim")
        label = _step_label(step)
        if state == "done" or (state == "current" and step_index is not None and i < step_index):
            text.append(label, style="green")
        elif state == "current" and i == step_index:
            text.append(f"[{label}]", style="bold cyan")
        else:
            text.append(label, style="dim")
    return text


def stages_table(obj: dict[str, Any]) -> Table:
    status = _status(obj)
    table = Table(title="Stages", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("STAGE", "NAMESPACE", "STATE", "STEPS", "PROMOTION", "MIN", "MAX"):
        table.add_column(column)
    finished = status.phase == "Succeeded"
    current = status.stage_index
    for i, stage in enumerate(stages_of(obj)):
        if finished or (current is not None and i < current):
            state = "done"
        elif current == i:
            state = "current"
        else:
            state = "pending"
        table.add_row(
            str(stage.get("name", "")),
            str(stage.get("namespace") or (obj.get("metadata") or {}).get("namespace", "")),
            Text(state, style={"done": "green", "current": "bold cyan"}.get(state, "dim")),
            _stage_steps(stage, state, status.step_index),
            str(stage.get("promotion", "auto")),
            str(stage.get("minDuration", DASH)),
            str(stage.get("maxDuration", DASH)),
        )
    return table


def gates_table(status: StrategyRolloutStatus, now: datetime) -> Table:
    table = Table(title="Gates", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("GATE", "VALUE", "BASELINE", "RESULT", "FAILURES", "INCONCLUSIVE", "EVALUATED", "MESSAGE"):
        table.add_column(column)
    for gate in status.gates:
        result = Text(DASH, style="dim")
        if gate.result:
            mark = RESULT_MARK.get(gate.result, "")
            result = Text(f"{mark} {gate.result}", style=RESULT_STYLE.get(gate.result, ""))
        table.add_row(
            gate.name + (" (dry-run)" if gate.dry_run else ""),
            judge_value(gate) if gate.samples is not None else num(gate.value),
            judge_detail(gate) if gate.samples is not None else num(gate.baseline),
            result,
            str(gate.failures),
            str(gate.inconclusives),
            relative(gate.evaluated_at, now),
            gate.message or "",
        )
    return table


def quarantine_table(status: StrategyRolloutStatus, now: datetime) -> Table | None:
    """Keys a per-key gate sent back to stable (release one with `release-key NAME KEY`)."""
    if status.keys is None or not status.keys.quarantined:
        return None
    table = Table(title="Quarantined keys", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("KEY", "GATE", "VALUE", "SINCE"):
        table.add_column(column)
    for q in status.keys.quarantined:
        table.add_row(q.key, q.gate, num(q.value), relative(q.at, now))
    return table


SCOREBOARD_ROWS = 10  # of the up to 50 keys status keeps per gate, worst first


def scoreboard_tables(status: StrategyRolloutStatus) -> list[Table]:
    """Per-key gates: the keys nearest to failing, each key's value on the canary and on stable."""
    tables = []
    for gate in status.gates:
        if not gate.keys:
            continue
        shown = gate.keys[:SCOREBOARD_ROWS]
        more = len(gate.keys) - len(shown)
        title = f"Keys of gate {gate.name} (worst first{f'; {more} more in status' if more else ''})"
        table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
        for column in ("KEY", "CANARY", "STABLE", "RESULT"):
            table.add_column(column)
        for score in shown:
            style = RESULT_STYLE.get(score.result, "")
            table.add_row(score.key, num(score.canary), num(score.stable), Text(score.result, style=style))
        tables.append(table)
    return tables


def history_table(status: StrategyRolloutStatus, now: datetime) -> Table:
    table = Table(title="History", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("WHEN", "VERSION", "OUTCOME", "BY", "REASON"):
        table.add_column(column)
    for entry in reversed(status.history):
        table.add_row(relative(entry.at, now), entry.version, entry.outcome, entry.by or DASH, entry.reason or "")
    return table


def conditions_table(status: StrategyRolloutStatus, now: datetime) -> Table:
    table = Table(title="Conditions", title_justify="left", box=None, header_style="bold", pad_edge=False)
    for column in ("TYPE", "STATUS", "REASON", "SINCE", "MESSAGE"):
        table.add_column(column)
    for cond in status.conditions:
        table.add_row(cond.type, cond.status, cond.reason, relative(cond.last_transition_time, now), cond.message)
    return table


def _overview(obj: dict[str, Any], now: datetime) -> Text:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, _status(obj)
    stable, canary = spec.get("stable") or {}, spec.get("canary") or {}
    text = Text()
    text.append(f"StrategyRollout {meta.get('namespace', '')}/{meta.get('name', '')}", style="bold")
    text.append(f"  strategy {spec.get('strategy', DASH)}\n")
    text.append("Phase:    ")
    text.append_text(styled(status.phase or "Pending", PHASE_STYLE))
    if status.reason:
        text.append(f"  ({status.reason})")
    if status.message:
        text.append(f"  {status.message}")
    text.append("\nVersions: stable ")
    text.append(f"{status.stable_version or stable.get('version', DASH)} ({stable.get('deployment', DASH)})")
    text.append(" → canary ")
    text.append(f"{status.canary_version or canary.get('version', DASH)} ({canary.get('deployment', DASH)})")
    text.append(f"\nProgress: stage {status.stage or DASH}, step {step_text(obj)}, weight {_weight(status)}")
    text.append(f", started {relative(status.started_at, now)}, step started {relative(status.step_started_at, now)}")
    routing, replicas = status.routing, status.replicas
    mode = (spec.get("routing") or {}).get("mode", "symbols")
    keys = len((spec.get("routing") or {}).get("keys") or [])
    text.append(f"\nRouting:  {mode}")
    if routing is not None:
        text.append(f", revision {routing.revision}, canary keys {routing.canary_keys}")
        text.append(f"/{keys}" if mode == "symbols" else "")
        text.append(f", draining {routing.draining}", style="yellow" if routing.draining else "")
    if replicas is not None:
        text.append(
            f"\nReplicas: stable {replicas.stable_ready}/{replicas.stable} ready,"
            f" canary {replicas.canary_ready}/{replicas.canary} ready"
        )
    if status.risk_budget is not None and status.risk_budget.max_percent is not None:
        used = status.risk_budget.used_percent
        text.append(f"\nRisk:     {num(used, 2)}% of {num(status.risk_budget.max_percent, 2)}% budget")
    if status.market is not None:
        text.append("\nMarket:   ")
        text.append_text(market_text(status))
        market = spec.get("market") or {}
        if market:
            text.append(f"  ({market.get('calendar', DASH)}, advance {market.get('advance', 'always')}")
            text.append(f", {market.get('countTime', 'wall')} time)")
        if status.market.frozen_by and status.market.frozen_until is not None:
            text.append(f", ends {relative(status.market.frozen_until, now)}", style="yellow")
        elif status.market.open is not None:
            nxt = status.market.next_close if status.market.open else status.market.next_open
            text.append(f", {'closes' if status.market.open else 'opens'} {relative(nxt, now)}")
    if status.manual_pause is not None:
        mp = status.manual_pause
        text.append(f"\nPaused by {mp.by or 'unknown'} {relative(mp.at, now)}", style="yellow")
        text.append(f": {mp.reason}" if mp.reason else "", style="yellow")
    for _, req in requests_of(obj).pending:
        text.append(f"\nPending request: {req.action} by {req.by}", style="yellow")
    if spec.get("paused"):
        text.append("\nspec.paused is true (from Git)", style="yellow")
    if status.trading_stopped:
        text.append("\nTrading stopped (parity emergency)", style="bold red")
    notify = notifications_text(status.notifications, now)
    if notify is not None:
        text.append("\n").append_text(notify)
    return text


def rollout_detail(obj: dict[str, Any], now: datetime) -> Group:
    """`status NAME`: overview, stages with step progress, symbol map, gates, conditions, history."""
    status = _status(obj)
    parts: list[RenderableType] = [_overview(obj, now), Text(""), stages_table(obj)]
    symbols = symbol_map(obj)
    if symbols is not None:
        parts += [Text(""), symbols]
    if status.gates:
        parts += [Text(""), gates_table(status, now)]
    for board in scoreboard_tables(status):
        parts += [Text(""), board]
    quarantined = quarantine_table(status, now)
    if quarantined is not None:
        parts += [Text(""), quarantined]
    approvals = approvals_table(obj, status, now)
    if approvals is not None:
        parts += [Text(""), approvals]
    if status.conditions:
        parts += [Text(""), conditions_table(status, now)]
    requests = requests_table(obj, now)
    if requests is not None:
        parts += [Text(""), requests]
    if status.history:
        parts += [Text(""), history_table(status, now)]
    return Group(*parts)


def request_result(obj: dict[str, Any], entry: HandledRequest) -> Text:
    """One line after the operator handled a request: its outcome and message, then where the rollout is."""
    status = _status(obj)
    text = Text(f"{entry.action} ")
    text.append(entry.outcome, style=OUTCOME_STYLE.get(entry.outcome, ""))
    text.append(f" ({entry.message}): " if entry.message else ": ")
    text.append_text(styled(status.phase or "Pending", PHASE_STYLE))
    text.append(f" (stage {status.stage or DASH}, step {step_text(obj)}, weight {_weight(status)})")
    if status.reason:
        text.append(f" reason {status.reason}")
    if status.message:
        text.append(f": {status.message}")
    return text
