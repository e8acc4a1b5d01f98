"""ShadowRun report: `report.md` for humans and `summary.json` for tools, stored in a ConfigMap.

Every list and every string is capped, so the two documents stay far below the 1 MiB ConfigMap
limit however long the run and whatever the inputs contain (< 256 KiB in total by construction:
roughly 20 examples + 50 KPIs + 50 stages + 50 reasons, each row a few hundred bytes).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from strategy_rollouts.engine.shadow import (
    MISMATCH_KINDS,
    Decision,
    KpiResult,
    MatchCounts,
    MismatchExample,
    Quantiles,
    StageLatency,
    worst,
)

MAX_EXAMPLES: Final = 20
MAX_ROWS: Final = 50  # KPIs, latency stages, reasons
MAX_CELL: Final = 120  # characters of one table cell / JSON string
MAX_REASON: Final = 400


def _clip(text: str, limit: int = MAX_CELL) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _cell(text: str) -> str:
    """A markdown table cell: one line, pipes escaped, clipped."""
    flat = " ".join(_clip(text, MAX_CELL * 2).split())
    return _clip(flat).replace("|", "\\|")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _num(value: float | None, fmt: str = ".2f") -> str:
    finite = _finite(value)
    return "n/a" if finite is None else format(finite, fmt)


def _time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _omitted(total: int, shown: int, what: str) -> list[str]:
    return [f"_… {total - shown} more {what} omitted_", ""] if total > shown else []


# --------------------------------------------------------------------------------------- markdown


def _header(name: str, strategy: str, live: str, shadow: str, verdict: str | None, span: str) -> list[str]:
    return [
        f"# ShadowRun {_cell(name)}: {verdict or 'Running'}",
        "",
        f"Strategy `{_cell(strategy)}`: live `{_cell(live)}` vs shadow `{_cell(shadow)}`. {span}",
        "",
    ]


def _verdict_md(verdict: str | None, reasons: Sequence[str]) -> list[str]:
    lines = [f"## Verdict: **{verdict or 'none yet (running)'}**", ""]
    lines += [f"- {_clip(' '.join(_clip(r, 2 * MAX_REASON).split()), MAX_REASON)}" for r in reasons[:MAX_ROWS]]
    return [*lines, *_omitted(len(reasons), min(len(reasons), MAX_ROWS), "reasons"), ""]


def _decisions_md(counts: MatchCounts) -> list[str]:
    rate = counts.match_rate
    lines = [
        "## Decisions",
        "",
        "| compared | matched | match rate |",
        "|---:|---:|---:|",
        f"| {counts.compared} | {counts.matched} | {_num(rate, '.4f')} |",
        "",
        "### Mismatch breakdown",
        "",
        "| kind | count | share of compared |",
        "|---|---:|---:|",
    ]
    for kind, n in counts.mismatches.items():
        share = f"{n / counts.compared:.2%}" if counts.compared else "n/a"
        lines.append(f"| {kind} | {n} | {share} |")
    return [*lines, ""]


def _side(d: Decision | None) -> str:
    if d is None:
        return "—"
    return _cell(f"{d.side} {d.type} {d.quantity:f} @ {d.price:f} ({d.stream_id})")


def _examples_md(examples: Sequence[MismatchExample]) -> list[str]:
    chosen = worst(examples, MAX_EXAMPLES)
    lines = ["## Worst mismatches", ""]
    if not chosen:
        return [*lines, "None.", ""]
    lines += [
        "| # | kind | key | live | shadow | price Δ bps | qty Δ % |",
        "|---:|---|---|---|---|---:|---:|",
    ]
    for i, e in enumerate(chosen, 1):
        key = _cell(" / ".join(_clip(k) for k in e.key[:8]))
        lines.append(
            f"| {i} | {e.kind} | {key} | {_side(e.live)} | {_side(e.shadow)} "
            f"| {_num(e.price_bps)} | {_num(e.quantity_percent)} |"
        )
    return [*lines, "", *_omitted(len(examples), len(chosen), "examples")]


def _kpis_md(kpis: Sequence[KpiResult]) -> list[str]:
    lines = ["## KPIs", ""]
    if not kpis:
        return [*lines, "None configured.", ""]
    lines += ["| name | result | value | message |", "|---|---|---:|---|"]
    for k in kpis[:MAX_ROWS]:
        lines.append(f"| {_cell(k.name)} | {k.result} | {_num(k.value, '.6g')} | {_cell(k.message)} |")
    return [*lines, "", *_omitted(len(kpis), min(len(kpis), MAX_ROWS), "KPIs")]


def _q(q: Quantiles) -> str:
    return f"{_num(q.p50)} / {_num(q.p95)} / {_num(q.p99)}"


def _latency_md(stages: Sequence[StageLatency]) -> list[str]:
    lines = ["## Latency profile (p50 / p95 / p99)", ""]
    if not stages:
        return [*lines, "No latency data.", ""]
    lines += [
        "| stage | live | shadow | budget p95 | p95 regression % | max % |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in stages[:MAX_ROWS]:
        lines.append(
            f"| {_cell(s.stage)} | {_q(s.live)} | {_q(s.shadow)} | {_num(s.budget_p95)} "
            f"| {_num(s.regression_percent)} | {_num(s.max_regression_percent, 'g')} |"
        )
    return [*lines, "", *_omitted(len(stages), min(len(stages), MAX_ROWS), "stages")]


def _span(started_at: datetime | None, completed_at: datetime | None) -> str:
    start, end = _time(started_at), _time(completed_at)
    text = f"Started {start or 'not yet'}"
    if end:
        text += f", completed {end}"
    if started_at and completed_at:
        text += f" ({completed_at - started_at})"
    return text + "."


# ------------------------------------------------------------------------------------------- json


def _quantiles_json(q: Quantiles) -> dict[str, float | None]:
    return {"p50": _finite(q.p50), "p95": _finite(q.p95), "p99": _finite(q.p99)}


def _decision_json(d: Decision | None) -> dict[str, Any] | None:
    if d is None:
        return None
    return {
        "streamId": _clip(d.stream_id),
        "ts": _finite(d.ts),
        "symbol": _clip(d.symbol),
        "tick": _clip(d.tick),
        "type": _clip(d.type),
        "side": _clip(d.side),
        "price": _clip(format(d.price, "f"), 64),
        "quantity": _clip(format(d.quantity, "f"), 64),
    }


def _example_json(e: MismatchExample) -> dict[str, Any]:
    return {
        "kind": e.kind,
        "key": [_clip(k) for k in e.key[:8]],
        "live": _decision_json(e.live),
        "shadow": _decision_json(e.shadow),
        "priceBps": _finite(e.price_bps),
        "quantityPercent": _finite(e.quantity_percent),
    }


def _summary(
    header: dict[str, Any],
    counts: MatchCounts,
    examples: Sequence[MismatchExample],
    kpis: Sequence[KpiResult],
    stages: Sequence[StageLatency],
    reasons: Sequence[str],
) -> dict[str, Any]:
    return {
        **header,
        "reasons": [_clip(r, MAX_REASON) for r in reasons[:MAX_ROWS]],
        "decisions": {
            "compared": counts.compared,
            "matched": counts.matched,
            "matchRate": counts.match_rate,
            "mismatches": {kind: counts.mismatches[kind] for kind in MISMATCH_KINDS},
        },
        "worstExamples": [_example_json(e) for e in worst(examples, MAX_EXAMPLES)],
        "kpis": [
            {"name": _clip(k.name), "result": k.result, "value": _finite(k.value), "message": _clip(k.message)}
            for k in kpis[:MAX_ROWS]
        ],
        "latencyProfile": {
            _clip(s.stage): {
                "live": _quantiles_json(s.live),
                "shadow": _quantiles_json(s.shadow),
                "budgetP95": _finite(s.budget_p95),
                "regressionPercent": _finite(s.regression_percent),
            }
            for s in stages[:MAX_ROWS]
        },
        "omitted": {
            "reasons": max(0, len(reasons) - MAX_ROWS),
            "kpis": max(0, len(kpis) - MAX_ROWS),
            "stages": max(0, len(stages) - MAX_ROWS),
            "worstExamples": max(0, len(examples) - MAX_EXAMPLES),
        },
    }


def render_report(
    name: str,
    strategy: str,
    live_version: str,
    shadow_version: str,
    counts: MatchCounts,
    worst_examples: Sequence[MismatchExample],
    kpis: Sequence[KpiResult],
    latency_profile: Sequence[StageLatency],
    verdict: str | None,
    reasons: Sequence[str],
    started_at: datetime | None,
    completed_at: datetime | None,
) -> tuple[str, str]:
    """(`report.md`, `summary.json`), both bounded in size whatever the inputs."""
    markdown = [
        *_header(name, strategy, live_version, shadow_version, verdict, _span(started_at, completed_at)),
        *_verdict_md(verdict, reasons),
        *_decisions_md(counts),
        *_examples_md(worst_examples),
        *_kpis_md(kpis),
        *_latency_md(latency_profile),
    ]
    header = {
        "name": _clip(name),
        "strategy": _clip(strategy),
        "liveVersion": _clip(live_version),
        "shadowVersion": _clip(shadow_version),
        "verdict": _clip(verdict) if verdict else None,
        "startedAt": _time(started_at),
        "completedAt": _time(completed_at),
    }
    summary = _summary(header, counts, worst_examples, kpis, latency_profile, reasons)
    return "\n".join(markdown), json.dumps(summary, indent=2, sort_keys=True, allow_nan=False) + "\n"
