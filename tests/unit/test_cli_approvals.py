"""The kubectl plugin shows approvals (a `get` REASON suffix, a `status` section) and notifications."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml
from rich.console import Console, RenderableType

from strategy_rollouts.api.approvals import Approval
from strategy_rollouts.api.common import SecretKeyRef
from strategy_rollouts.api.notify import NotificationStatus, PendingNotification, SentNotification
from strategy_rollouts.api.rollout import StrategyRolloutStatus
from strategy_rollouts.cli.render_rollout import rollout_detail, rollouts_table
from tests.unit.rollout_sim import EXAMPLE

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


def text(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=250, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def rollout(status: StrategyRolloutStatus, approvals: dict[str, Any] | None) -> dict[str, Any]:
    spec = yaml.safe_load(EXAMPLE)
    if approvals is not None:
        spec["stages"][1]["approvals"] = approvals
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": "fib-rsi", "namespace": "trading", "creationTimestamp": "2026-01-05T10:00:00Z"},
        "spec": spec,
        "status": status.wire(),
    }


def awaiting() -> StrategyRolloutStatus:
    return StrategyRolloutStatus(
        phase="Paused",
        reason="AwaitingApproval",
        message="1 of 2 approvals (alice) for stage prod: risk desk + owner",
        stage="prod",
        stage_index=1,
        step_index=5,
        approvals=[Approval(by="alice", at=NOW - timedelta(minutes=2), reason="risk ok", stage="prod")],
    )


def test_get_shows_how_many_approvals_the_current_stage_has() -> None:
    out = text(rollouts_table([rollout(awaiting(), {"count": 2, "message": "risk desk + owner"})], NOW))
    assert "AwaitingApproval (approvals 1/2)" in out


def test_status_lists_who_approved_and_how_many_are_missing() -> None:
    out = text(rollout_detail(rollout(awaiting(), {"count": 2, "message": "risk desk + owner"}), NOW))
    assert "Approvals: 1 of 2 for stage prod (risk desk + owner), 1 missing" in out
    row = next(line for line in out.splitlines() if "alice" in line and "risk ok" in line)
    assert "2m ago" in row


def test_a_stage_without_approvals_shows_none() -> None:
    status = awaiting().model_copy(update={"reason": "StepPaused", "approvals": []})
    assert "Approvals" not in text(rollout_detail(rollout(status, None), NOW))
    assert "(approvals" not in text(rollouts_table([rollout(status, None)], NOW))


def test_status_shows_pending_and_last_delivered_notifications() -> None:
    state = NotificationStatus(
        occurrence=3,
        pending={
            "RolledBack-3-0": PendingNotification(
                event="RolledBack", occurrence=3, title="t", message="m", to=SecretKeyRef(name="s", key="k"), at=NOW
            )
        },
        last_delivered=SentNotification(
            id="Paused-2-0", event="Paused", occurrence=2, at=NOW - timedelta(minutes=2), outcome="Delivered"
        ),
    )
    status = awaiting().model_copy(update={"notifications": state})
    out = text(rollout_detail(rollout(status, None), NOW))
    assert "Notify:   1 pending (RolledBack-3-0); last delivered Paused-2-0 2m ago" in out
    assert "Notify" not in text(rollout_detail(rollout(awaiting(), None), NOW))
