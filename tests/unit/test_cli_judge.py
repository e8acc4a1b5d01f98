"""The plugin's get/status show a judge gate's p-value, effect and samples, and a webhook's Rejected."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml

from strategy_rollouts.api.gates import ConfidenceInterval, GateStatus, JudgeSamples
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.cli.render_rollout import gate_text, rollout_detail, rollouts_table
from tests.unit.rollout_sim import EXAMPLE
from tests.unit.test_cli_render import obj, text

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
JUDGED = GateStatus(
    name="pnl-vs-stable",
    value=0.00123,
    effect=-4.93,
    samples=JudgeSamples(canary=31, stable=30),
    result="Fail",
    message="canary worse",
    evaluated_at=NOW,
)


def rollout_obj() -> dict[str, object]:
    status = StrategyRolloutStatus(
        phase="Progressing",
        stage="staging",
        stage_index=0,
        step_index=0,
        gates=[JUDGED, GateStatus(name="risk-desk", value=409, result="Rejected", message="rejected (HTTP 409)")],
    )
    return obj("StrategyRollout", "fib-rsi", yaml.safe_load(EXAMPLE), status.wire())


def test_gate_text_shows_p_effect_and_samples() -> None:
    assert gate_text(JUDGED).plain == "pnl-vs-stable p=0.00123 effect -4.93, n 31/30 ✗"


def test_get_and_status_show_judge_results_and_rejections() -> None:
    listing = text(rollouts_table([rollout_obj()], NOW))  # type: ignore[list-item]
    assert "p=0.00123 effect -4.93, n 31/30" in listing
    detail = text(rollout_detail(rollout_obj(), NOW))  # type: ignore[arg-type]
    assert "p=0.00123" in detail and "effect -4.93, n 31/30" in detail
    assert "Rejected" in detail and "rejected (HTTP 409)" in detail


def test_a_sequential_judge_shows_its_interval_and_margin() -> None:
    gate = GateStatus(
        name="pnl-seq",
        value=0.0004,
        effect=-4.93,
        samples=JudgeSamples(canary=31, stable=30, pairs=30),
        confidence_interval=ConfidenceInterval(lower=-5.9, upper=-4.1),
        margin=2.0,
        result="Fail",
    )
    assert gate_text(gate).plain == "pnl-seq p=0.0004 effect -4.93 in [-5.9, -4.1], margin 2, n 30 pairs ✗"
    early = GateStatus(
        name="pnl-seq", effect=0.1, samples=JudgeSamples(canary=3, stable=3, pairs=3), result="Undecided"
    )
    assert gate_text(early).plain == "pnl-seq - effect +0.1, n 3 pairs …"
