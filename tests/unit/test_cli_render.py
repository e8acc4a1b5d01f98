"""The plugin's pure parts: renderers, request payloads (read/), the wait loop, baseline budgets, argument parsing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from rich.console import Console, RenderableType

from strategy_rollouts.api.common import Condition, rfc3339
from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.paritycheck import ActionTaken, AttributionStatus, ParityCheckStatus, ParityRun
from strategy_rollouts.api.requests import HandledRequest, ParityRequest, RolloutRequest
from strategy_rollouts.api.rollout import (
    HistoryEntry,
    ReplicaStatus,
    RoutingStatus,
    StrategyRolloutStatus,
)
from strategy_rollouts.api.shadowrun import (
    DecisionStats,
    Mismatches,
    Percentiles,
    ShadowRunStatus,
    StageLatency,
)
from strategy_rollouts.cli import baseline, fmt, wait
from strategy_rollouts.cli.errors import EXIT_NOT_HANDLED, CliError
from strategy_rollouts.cli.main import build_parser
from strategy_rollouts.cli.render_parity import paritychecks_table, run_result
from strategy_rollouts.cli.render_requests import requests_cell
from strategy_rollouts.cli.render_rollout import (
    exit_code,
    gate_text,
    request_result,
    rollout_detail,
    rollouts_table,
)
from strategy_rollouts.cli.render_shadow import report_config_map, shadowruns_table
from strategy_rollouts.read import requests
from strategy_rollouts.read.views import actions_text, mismatches_text, step_text
from tests.unit.rollout_sim import EXAMPLE

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
CREATED = "2026-01-05T10:00:00Z"


def text(renderable: RenderableType) -> str:
    console = Console(file=io.StringIO(), width=250, record=True, color_system=None)
    console.print(renderable)
    return console.export_text()


def obj(kind: str, name: str, spec: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": name, "namespace": "trading", "creationTimestamp": CREATED},
        "spec": spec,
        **({"status": status} if status is not None else {}),
    }


def rollout(status: StrategyRolloutStatus | None = None, name: str = "fib-rsi") -> dict[str, Any]:
    return obj("StrategyRollout", name, yaml.safe_load(EXAMPLE), status.wire() if status else None)


def progressing() -> StrategyRolloutStatus:
    return StrategyRolloutStatus(
        phase="Progressing",
        reason="StepPaused",
        message="waiting 1m",
        stage="prod",
        stage_index=1,
        step_index=2,
        canary_weight=50,
        started_at=NOW - timedelta(minutes=30),
        step_started_at=NOW - timedelta(seconds=20),
        stable_version="v1.0.0",
        canary_version="v2.0.0",
        replicas=ReplicaStatus(stable=4, canary=2, stable_ready=4, canary_ready=2),
        routing=RoutingStatus(revision=7, canary_keys=5, draining=1),
        gates=[
            GateStatus(name="tick-p95-ms", value=123.44, result="Pass", evaluated_at=NOW - timedelta(seconds=10)),
            GateStatus(name="stage-regression", value=210.0, baseline=200.0, result="Fail", failures=1),
            GateStatus(name="misses", value=None, result="Inconclusive", inconclusives=2, dry_run=True),
        ],
        history=[
            HistoryEntry(version="v2.0.0", outcome="Paused", at=NOW - timedelta(minutes=5), by="alice", reason="lunch"),
            HistoryEntry(version="v2.0.0", outcome="Resumed", at=NOW - timedelta(minutes=2), by="bob"),
        ],
        conditions=[
            Condition(type="Progressing", status="True", reason="StepPaused", last_transition_time=NOW),
            Condition(type="Degraded", status="False", reason="GatesPassing", last_transition_time=NOW),
        ],
        requests={"abc123": RolloutRequest(action="promote", by="carol", at=NOW - timedelta(seconds=3))},
        handled_requests=[
            HandledRequest(
                id="old1", action="pause", by="alice", reason="lunch", outcome="Applied", message="paused", at=NOW
            ),
            HandledRequest(
                id="old2",
                action="resume",
                by="dave",
                outcome="Rejected",
                message="trading stopped: only retry",
                at=NOW - timedelta(minutes=1),
            ),
        ],
    )


# ---- StrategyRollout -----------------------------------------------------------------------------


def test_rollouts_table_row() -> None:
    out = text(rollouts_table([rollout(progressing()), rollout(None, "fresh")], NOW))
    header, row, *rest = out.splitlines()
    for column in ("NAME", "STRATEGY", "PHASE", "STAGE", "STEP", "WEIGHT", "CANARY", "GATES", "REASON", "REQUESTS"):
        assert column in header
    assert "NAMESPACE" not in header and "AGE" in header
    assert "1 pending" in row
    for cell in ("fib-rsi", "fib_rsi", "Progressing", "prod", "3/5", "50%", "v2.0.0", "tick-p95-ms 123.4 ✓"):
        assert cell in row
    assert "StepPaused" in row and "2h" in row
    assert "stage-regression 210.0 vs 200.0 ✗" in out
    assert "misses - ? (dry-run)" in out
    fresh = next(line for line in rest if "fresh" in line)
    assert "Pending" in fresh and "v2.0.0" in fresh  # no status yet: canary version from spec


def test_rollouts_table_all_namespaces() -> None:
    header = text(rollouts_table([rollout(progressing())], NOW, all_namespaces=True)).splitlines()[0]
    assert header.split()[:2] == ["NAMESPACE", "NAME"]


@pytest.mark.parametrize(
    ("stage_index", "step_index", "want"),
    [(None, None, "-"), (0, 0, "1/2"), (0, 1, "2/2"), (1, 4, "5/5"), (1, 9, "5/5"), (7, 0, "-")],
)
def test_step_text(stage_index: int | None, step_index: int | None, want: str) -> None:
    status = StrategyRolloutStatus(stage_index=stage_index, step_index=step_index)
    assert step_text(rollout(status)) == want


def test_gate_text_without_measurement() -> None:
    assert gate_text(GateStatus(name="g")).plain == "g -"


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (StrategyRolloutStatus(phase="Succeeded"), 0),
        (StrategyRolloutStatus(phase="RolledBack"), 1),
        (StrategyRolloutStatus(phase="Invalid"), 1),
        (StrategyRolloutStatus(phase="Paused", conditions=[Condition(type="Degraded", status="True")]), 1),
        (StrategyRolloutStatus(phase="Paused", conditions=[Condition(type="Degraded", status="False")]), 2),
        (StrategyRolloutStatus(phase="Pending", conditions=[Condition(type="InvalidSpec", status="True")]), 1),
        (StrategyRolloutStatus(phase="Progressing"), 2),
        (None, 2),
    ],
)
def test_exit_code(status: StrategyRolloutStatus | None, code: int) -> None:
    assert exit_code(rollout(status)) == code


def test_rollout_detail() -> None:
    out = text(rollout_detail(rollout(progressing()), NOW))
    assert "StrategyRollout trading/fib-rsi" in out
    assert "Progressing  (StepPaused)  waiting 1m" in out
    assert "stable v1.0.0 (fib-rsi-legacy) → canary v2.0.0 (fib-rsi-pipeline)" in out
    assert "stage prod, step 3/5, weight 50%" in out
    assert "revision 7, canary keys 5/10, draining 1" in out
    assert "stable 4/4 ready, canary 2/2 ready" in out
    assert "Pending request: promote by carol" in out
    requests = out[out.index("Requests") : out.index("History")].splitlines()
    assert "promote" in requests[2] and "carol" in requests[2] and "Pending" in requests[2] and "abc123" in requests[2]
    # then handled ones, newest first, with outcome, by and the operator's message
    assert "resume" in requests[3] and "Rejected" in requests[3] and "trading stopped: only retry" in requests[3]
    assert "pause" in requests[4] and "Applied" in requests[4] and "alice" in requests[4]
    staging = next(line for line in out.splitlines() if line.startswith("staging"))
    prod = next(line for line in out.splitlines() if line.startswith("prod "))
    assert "done" in staging and "10% → pause 1m" in staging
    assert "current" in prod and "10% → pause 1m → [50%] → pause 1m → 100%" in prod
    for piece in ("Gates", "✓ Pass", "✗ Fail", "? Inconclusive", "10s ago", "Conditions", "Degraded", "History"):
        assert piece in out
    history = out[out.index("History") :].splitlines()
    assert "Resumed" in history[2] and "bob" in history[2]  # newest first
    assert "Paused" in history[3] and "alice" in history[3] and "lunch" in history[3]


def test_rollout_detail_without_status() -> None:
    out = text(rollout_detail(rollout(None), NOW))
    assert "Pending" in out and "pending" in out and "Gates" not in out


def test_unreadable_status_renders_as_empty() -> None:
    broken = rollout(None)
    broken["status"] = {"phase": "SomethingNew", "stageIndex": "x"}
    assert "Pending" in text(rollouts_table([broken], NOW))


def applied(id_: str = "me", outcome: str = "Applied", message: str = "promoted to step 4") -> dict[str, Any]:
    return HandledRequest.model_validate(
        {"id": id_, "action": "promote", "by": "carol", "outcome": outcome, "message": message, "at": NOW}
    ).wire()


def test_request_result() -> None:
    entry = HandledRequest.model_validate(applied())
    line = request_result(rollout(progressing()), entry).plain
    assert line == (
        "promote Applied (promoted to step 4): Progressing (stage prod, step 3/5, weight 50%) reason StepPaused:"
        " waiting 1m"
    )


def test_requests_cell() -> None:
    assert requests_cell(rollout(None)).plain == "-"
    status = progressing()
    assert requests_cell(rollout(status)).plain == "1 pending"
    status.requests = {}
    assert requests_cell(rollout(status)).plain == "resume Rejected (dave)"


# ---- requests and the wait loop --------------------------------------------------------------------


def test_rollout_request_payload_adds_one_key() -> None:
    patch = requests.rollout_request("abort", "alice", "bad fills", NOW, "f" * 32)
    assert patch == {
        "status": {
            "requests": {
                "f" * 32: {"action": "abort", "by": "alice", "reason": "bad fills", "at": "2026-01-05T12:00:00.000Z"}
            }
        }
    }
    assert RolloutRequest.model_validate(patch["status"]["requests"]["f" * 32]).action == "abort"


def test_approve_request_payload() -> None:
    patch = requests.rollout_request("approve", "bob", "risk desk ok", NOW, "a1")
    assert patch["status"]["requests"]["a1"]["action"] == "approve"


def test_rollout_request_rejects_unknown_action() -> None:
    with pytest.raises(ValueError):
        requests.rollout_request("explode", "alice", None, NOW, "x")  # type: ignore[arg-type]


def test_parity_run_request_payload() -> None:
    patch = requests.parity_run_request("bob", NOW, "id1")
    assert patch == {"status": {"requests": {"id1": {"action": "run", "by": "bob", "at": "2026-01-05T12:00:00.000Z"}}}}
    assert ParityRequest.model_validate(patch["status"]["requests"]["id1"]).action == "run"


def test_new_ids_are_uuid_hex() -> None:
    a, b = requests.new_id(), requests.new_id()
    assert a != b and len(a) == 32 and int(a, 16) >= 0


def test_requests_of_orders_pending_oldest_first_and_skips_garbage() -> None:
    later, earlier = rfc3339(NOW), rfc3339(NOW - timedelta(seconds=1))
    status = {
        "requests": {
            "b": {"action": "pause", "by": "x", "at": earlier},
            "a": {"action": "abort", "by": "y", "at": later},
            "c": {"action": "resume", "by": "z", "at": earlier},
            "bad": {"action": "pause"},
        },
        "handledRequests": [applied("h1"), {"id": "broken"}],
    }
    got = requests.requests_of({"status": status})
    assert [id_ for id_, _ in got.pending] == ["b", "c", "a"]
    assert [h.id for h in got.handled] == ["h1"]


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


def pending(id_: str) -> dict[str, Any]:
    return {"action": "promote", "by": "carol", "at": rfc3339(NOW)}


def test_wait_handled_returns_the_outcome_when_the_id_is_logged() -> None:
    clock = FakeClock()
    reads: list[dict[str, Any]] = [
        {"status": {"requests": {"me": pending("me")}}},
        {"status": {"requests": {"me": pending("me")}, "handledRequests": [applied("other")]}},
        {"status": {"handledRequests": [applied("x"), applied("me")]}},
    ]
    got, entry = wait.wait_handled(lambda: reads.pop(0), "me", 30, "srl", clock=clock, sleep=clock.sleep)
    assert entry.id == "me" and entry.outcome == "Applied" and clock.t == 1.0
    assert got["status"]["handledRequests"][-1]["id"] == "me"


def test_rejected_fails_with_the_operators_message() -> None:
    entry = HandledRequest.model_validate(applied(outcome="Rejected", message="trading stopped: only retry moves it"))
    with pytest.raises(CliError) as err:
        wait.check_outcome(entry, "strategyrollout trading/x")
    assert err.value.code == 1
    assert err.value.message == "strategyrollout trading/x: promote Rejected: trading stopped: only retry moves it"
    wait.check_outcome(HandledRequest.model_validate(applied()), "srl")  # Applied: no error


def test_a_request_gone_from_both_lists_is_reported() -> None:
    with pytest.raises(CliError) as err:
        wait.outcome({"status": {"handledRequests": [applied("x")]}}, "me")
    assert "no longer in status.handledRequests" in err.value.message


def test_wait_handled_times_out_with_exit_3() -> None:
    clock = FakeClock()
    still = {"status": {"requests": {"me": pending("me")}}}
    with pytest.raises(CliError) as err:
        wait.wait_handled(lambda: still, "me", 2, "strategyrollout trading/x", clock=clock, sleep=clock.sleep)
    assert err.value.code == EXIT_NOT_HANDLED
    assert "did not pick up" in err.value.message and "operator running" in err.value.message
    assert clock.t == 2.0


# ---- ShadowRun -----------------------------------------------------------------------------------

SHADOW_SPEC = {
    "strategy": "fib_rsi",
    "live": {"deployment": "fib-rsi-legacy", "version": "v1.0.0"},
    "shadow": {"deployment": "fib-rsi-pipeline", "version": "v2.0.0"},
    "duration": "1h",
    "latencyProfile": {"histogram": "strategy_stage_duration_seconds", "budgets": {"configMap": "budgets"}},
}


def shadow_status(verdict: str | None = "Pass") -> ShadowRunStatus:
    return ShadowRunStatus.model_validate(
        {
            "phase": "Completed" if verdict else "Running",
            "verdict": verdict,
            "decisions": DecisionStats(
                compared=1000, matched=975, match_rate=0.975, mismatches=Mismatches(price=20, missing_live=5)
            ).wire(),
            "latencyProfile": {
                "tick_total": StageLatency(
                    live=Percentiles(p50=80, p95=140, p99=180), shadow=Percentiles(p50=81, p95=143.26, p99=190)
                ).wire(),
                "signal": StageLatency(shadow=Percentiles(p95=12.0)).wire(),
                "unmeasured": StageLatency().wire(),
            },
            "startedAt": "2026-01-05T10:30:00Z",
            "completedAt": "2026-01-05T11:30:00Z" if verdict else None,
        }
    )


def shadow(status: ShadowRunStatus | None) -> dict[str, Any]:
    return obj("ShadowRun", "fib-rsi-v2-shadow", SHADOW_SPEC, status.wire() if status else None)


def test_shadowruns_table() -> None:
    out = text(shadowruns_table([shadow(shadow_status()), shadow(None)], NOW))
    header, row, empty = out.splitlines()[:3]
    for column in ("NAME", "PHASE", "VERDICT", "MATCH", "COMPARED", "MISMATCHES", "STARTED", "COMPLETED", "AGE"):
        assert column in header
    for cell in ("Completed", "Pass", "97.50%", "1000", "price=20 missing_live=5", "90m ago", "30m ago", "2h"):
        assert cell in row
    assert "Pending" in empty


def test_mismatches_text() -> None:
    assert mismatches_text(Mismatches()) == "none"
    assert mismatches_text(Mismatches(side=1, missing_shadow=2)) == "side=1 missing_shadow=2"


def test_report_config_map_name() -> None:
    assert report_config_map(shadow(None)) == "fib-rsi-v2-shadow-report"
    assert report_config_map(shadow(ShadowRunStatus(report="custom"))) == "custom"


# ---- baseline update -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "want"), [(145.0, "145"), (123.44, "123.4"), (123.46, "123.5"), (0.04, "0")])
def test_format_ms(value: float, want: str) -> None:
    assert baseline.format_ms(value) == want


def test_new_budgets_from_pass() -> None:
    assert baseline.new_budgets(shadow(shadow_status("Pass"))) == {"signal": "12", "tick_total": "143.3"}
    assert baseline.budgets_config_map(shadow(None)) == "budgets"


@pytest.mark.parametrize("verdict", ["Fail", "Hold", None])
def test_new_budgets_refuses_without_pass(verdict: str | None) -> None:
    with pytest.raises(CliError, match="not Pass"):
        baseline.new_budgets(shadow(shadow_status(verdict)))
    assert baseline.new_budgets(shadow(shadow_status(verdict)), force=True)["tick_total"] == "143.3"


def test_new_budgets_needs_measurements_and_configmap() -> None:
    with pytest.raises(CliError, match="no measured shadow p95"):
        baseline.new_budgets(shadow(ShadowRunStatus(verdict="Pass")))
    spec = {k: v for k, v in SHADOW_SPEC.items() if k != "latencyProfile"}
    with pytest.raises(CliError, match=r"budgets\.configMap"):
        baseline.budgets_config_map(obj("ShadowRun", "s", spec, None))


def test_budgets_table() -> None:
    out = text(baseline.budgets_table({"tick_total": "145", "old": "9"}, {"tick_total": "143.3", "signal": "12"}))
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:]}
    assert lines["tick_total"] == ["145", "143.3", "-1.2%"]
    assert lines["signal"] == ["-", "12", "new"]
    assert lines["old"] == ["9", "unchanged"]


# ---- ParityCheck ---------------------------------------------------------------------------------

PARITY_SPEC = {
    "strategy": "fib_rsi",
    "target": {"rollout": "fib-rsi"},
    "live": {"query": "live"},
    "backtest": {"query": "backtest"},
}


def parity_status() -> ParityCheckStatus:
    run = ParityRun(
        at=NOW - timedelta(hours=6),
        tracking_error_bps=62.345,
        level="Critical",
        attribution=AttributionStatus(alpha=1.5, fees=0.25, slippage=3.0),
        samples=24,
        trigger="manual",
        by="alice",
    )
    actions = [
        ActionTaken(
            id=f"pck-p-{i}-a{i}", action=f"a{i}", level="Critical", at=NOW - timedelta(hours=6 - i), state="Applied"
        )
        for i in range(4)
    ]
    return ParityCheckStatus(
        phase="Scheduled",
        last_run=run,
        next_run_at=NOW + timedelta(hours=6),
        consecutive_breaches=2,
        actions_taken=actions,
        history=[run],
    )


def parity(status: ParityCheckStatus | None) -> dict[str, Any]:
    return obj("ParityCheck", "fib-rsi-parity", PARITY_SPEC, status.wire() if status else None)


def test_paritychecks_table() -> None:
    out = text(paritychecks_table([parity(parity_status()), parity(None)], NOW))
    header, row, empty = out.splitlines()[:3]
    for column in ("NAME", "TARGET", "LEVEL", "TE BPS", "LAST RUN", "NEXT RUN", "BREACHES", "ACTIONS", "AGE"):
        assert column in header
    for cell in ("srl/fib-rsi", "Critical", "62.3", "6h ago (manual)", "in 6h", " 2 ", "a3 (Critical)"):
        assert cell in row
    assert "+1 more" in row
    assert empty.split()[:3] == ["fib-rsi-parity", "srl/fib-rsi", "-"]


def test_actions_text() -> None:
    assert actions_text([]) == "none"
    one = [ActionTaken(id="pck-p-1-size", action="sizeMultiplier=0.5", level="Critical", at=NOW, state="Applied")]
    assert actions_text(one) == "sizeMultiplier=0.5 (Critical)"
    pending = [one[0].model_copy(update={"state": "Pending"})]
    assert actions_text(pending) == "sizeMultiplier=0.5 (Critical, Pending)"


def test_run_result() -> None:
    line = run_result(parity(parity_status())).plain
    assert line.startswith("run handled: level Critical, tracking error 62.3 bps, 24 samples")
    assert "alpha 1.50" in line and "slippage 3.00" in line
    assert "no result" in run_result(parity(None)).plain


# ---- formatting and arguments --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delta", "want"),
    [
        (timedelta(seconds=5), "5s"),
        (timedelta(seconds=90), "1m"),
        (timedelta(hours=1), "60m"),
        (timedelta(days=3), "3d"),
    ],
)
def test_age(delta: timedelta, want: str) -> None:
    assert fmt.age(NOW - delta, NOW) == want
    assert fmt.age(None, NOW) == "-"


def test_parser_global_flags_anywhere() -> None:
    parser = build_parser()
    a = parser.parse_args(["-n", "trading", "promote", "x", "--full"])
    b = parser.parse_args(["promote", "x", "--full", "-n", "trading", "--timeout", "1m30s"])
    assert a.namespace == b.namespace == "trading" and a.full and b.timeout == 90.0 and a.timeout == 30.0
    assert parser.parse_args(["get"]).namespace is None
    assert parser.parse_args(["parity", "run", "p"]).timeout == 60.0
    assert parser.parse_args(["baseline", "update", "s", "--force"]).force


@pytest.mark.parametrize("command", ["abort", "approve"])
def test_parser_abort_and_approve_need_a_reason(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "x"])
    assert exc.value.code == 2 and "--reason" in capsys.readouterr().err
    args = build_parser().parse_args([command, "x", "--reason", "ok"])
    assert args.command == command and args.reason == "ok"


def test_parser_rejects_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["status", "x", "--timeout", "soon"])
    assert "not a duration" in capsys.readouterr().err


def test_market_state_in_get_and_status() -> None:
    from strategy_rollouts.api.market import MarketStatus

    frozen = progressing().model_copy(
        update={
            "phase": "Paused",
            "reason": "Frozen",
            "market": MarketStatus(
                open=True,
                next_open=NOW + timedelta(hours=20),
                next_close=NOW + timedelta(hours=3),
                frozen_by="fomc",
                frozen_until=NOW + timedelta(minutes=75),
                summary="frozen: fomc",
            ),
        }
    )
    obj = rollout(frozen)
    obj["spec"]["market"] = {"calendar": "XNYS", "advance": "whenOpen", "countTime": "trading"}
    out = text(rollouts_table([obj], NOW))
    assert "MARKET" in out.splitlines()[0] and "frozen: fomc" in out
    detail = text(rollout_detail(obj, NOW))
    assert "Market:   frozen: fomc  (XNYS, advance whenOpen, trading time), ends in 75m" in detail
    closed = progressing().model_copy(
        update={
            "market": MarketStatus(open=False, next_open=NOW + timedelta(hours=2), summary="closed, opens Mon 14:30Z")
        }
    )
    assert "Market:   closed, opens Mon 14:30Z, opens in 2h" in text(rollout_detail(rollout(closed), NOW))
    assert "Market" not in text(rollout_detail(rollout(progressing()), NOW))
