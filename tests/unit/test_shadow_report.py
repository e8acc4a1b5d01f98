"""ShadowRun report: content of report.md / summary.json and a hard size bound."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from strategy_rollouts.engine.report import render_report
from strategy_rollouts.engine.shadow import (
    Decision,
    KpiResult,
    MatchCounts,
    MismatchExample,
    Quantiles,
    StageLatency,
    make_example,
)

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def decision(n: int, price: str, symbol: str = "BTCUSDT", side: str = "buy") -> Decision:
    return Decision(symbol, str(n), "limit", side, Decimal(price), Decimal("0.5"), 1.0 * n, f"{n}-0")


def sample() -> tuple[str, str]:
    examples = [
        make_example("price", ("BTCUSDT", "7"), decision(7, "65000"), decision(7, "65006.5")),
        make_example("side", ("ETHUSDT", "9"), decision(9, "3000"), decision(9, "3000", side="sell")),
        make_example("missing_shadow", ("SOLUSDT", "3"), decision(3, "150"), None),
    ]
    return render_report(
        name="fib-rsi-v2-shadow",
        strategy="fib_rsi",
        live_version="v1.0.0",
        shadow_version="v2.0.0",
        counts=MatchCounts(matched=912, price=41, side=1, missing_shadow=46),
        worst_examples=examples,
        kpis=[KpiResult("p95-latency-ms", "Pass", 312.5, "<= 350"), KpiResult("risk|ratio", "Inconclusive")],
        latency_profile=[
            StageLatency("tick_total", Quantiles(80, 140, 170), Quantiles(82, 144.2, 180), 145, 3),
            StageLatency("signal", Quantiles(10, 20, 30), Quantiles(None, None, None), None, 3),
        ],
        verdict="Fail",
        reasons=["match rate 0.912 < 0.95 (missing_shadow mismatches: 46, price mismatches: 41)"],
        started_at=START,
        completed_at=START + timedelta(hours=1),
    )


def test_markdown_has_every_section() -> None:
    md, _ = sample()
    assert md.startswith("# ShadowRun fib-rsi-v2-shadow: Fail")
    assert "live `v1.0.0` vs shadow `v2.0.0`" in md
    assert "Started 2024-05-01T12:00:00Z, completed 2024-05-01T13:00:00Z (1:00:00)." in md
    assert "- match rate 0.912 < 0.95 (missing_shadow mismatches: 46, price mismatches: 41)" in md
    assert "| 1000 | 912 | 0.9120 |" in md
    assert "| price | 41 | 4.10% |" in md
    # Worst first: side flip, then the 1 bps price skew, then the missing decision.
    rows = [line for line in md.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert "side" in rows[0] and "| price | BTCUSDT / 7 |" in rows[1] and "| 1.00 |" in rows[1]
    assert "buy limit 0.5 @ 65006.5 (7-0)" in md
    assert "| risk\\|ratio | Inconclusive | n/a |" in md  # pipes escaped inside cells
    assert "| tick_total | 80.00 / 140.00 / 170.00 | 82.00 / 144.20 / 180.00 | 145.00 | 3.00 | 3 |" in md
    assert "| signal | 10.00 / 20.00 / 30.00 | n/a / n/a / n/a | n/a | n/a | 3 |" in md


def test_summary_json() -> None:
    _, js = sample()
    summary = json.loads(js)
    assert summary["verdict"] == "Fail"
    assert summary["decisions"] == {
        "compared": 1000,
        "matched": 912,
        "matchRate": 0.912,
        "mismatches": {"price": 41, "quantity": 0, "side": 1, "type": 0, "missing_live": 0, "missing_shadow": 46},
    }
    assert [e["kind"] for e in summary["worstExamples"]] == ["side", "price", "missing_shadow"]
    assert summary["worstExamples"][1]["shadow"]["price"] == "65006.5"
    assert summary["latencyProfile"]["tick_total"]["regressionPercent"] == pytest.approx(3.0)
    assert summary["latencyProfile"]["signal"]["shadow"] == {"p50": None, "p95": None, "p99": None}
    assert summary["startedAt"] == "2024-05-01T12:00:00Z"


def test_running_report_without_data() -> None:
    md, js = render_report("x", "s", "a", "b", MatchCounts(), [], [], [], None, [], None, None)
    assert "# ShadowRun x: Running" in md and "Started not yet." in md
    assert "| 0 | 0 | n/a |" in md and "None configured." in md and "No latency data." in md
    assert json.loads(js)["decisions"]["matchRate"] is None


def test_report_stays_small_for_huge_inputs() -> None:
    """Well under the 1 MiB ConfigMap limit whatever the run: < 256 KiB for both documents together."""
    big = "x|\n" * 300_000  # ~1 MB strings, pipes and newlines included
    huge_decision = Decision(big, big, big, big, Decimal("1e-40"), Decimal("1e40"), 1.0, "1-0")
    examples = [
        MismatchExample("price", (big,) * 50, huge_decision, huge_decision, price_bps=float(i)) for i in range(20_000)
    ]
    kpis = [KpiResult(big, "Fail", float("nan"), big) for _ in range(10_000)]
    stages = [
        StageLatency(f"stage-{i}-" + "y|" * 500, Quantiles(1, 2, float("inf")), Quantiles(1, 2, 3), 5, 3)
        for i in range(10_000)
    ]
    counts = MatchCounts(matched=10**12, price=10**11, missing_live=10**10)
    md, js = render_report(big, big, big, big, counts, examples, kpis, stages, "Fail", [big] * 10_000, START, START)
    size = len(md.encode()) + len(js.encode())
    assert size < 256 * 1024, size
    summary = json.loads(js)
    assert len(summary["worstExamples"]) == 20 and summary["worstExamples"][0]["priceBps"] == 19_999.0
    assert summary["omitted"] == {"reasons": 9_950, "kpis": 9_950, "stages": 9_950, "worstExamples": 19_980}
    assert "_… 9950 more KPIs omitted_" in md
    assert all(line.count("\n") == 0 for line in md.splitlines())
