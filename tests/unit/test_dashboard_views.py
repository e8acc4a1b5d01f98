"""The dashboard's pure views: what a status means on the page (no cluster, no browser)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from strategy_rollouts.dashboard import views


def rollout(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "trading", "name": "fib-rsi", "resourceVersion": "7"},
        "spec": {
            "strategy": "fib_rsi",
            "stable": {"deployment": "legacy", "version": "v1"},
            "canary": {"deployment": "pipeline", "version": "v2"},
            "routing": {"keys": ["BTC", "ETH", "SOL"]},
            "stages": [
                {"name": "staging", "steps": [{"setWeight": 20}, {"pause": {"duration": "1m"}}]},
                {"name": "prod", "steps": [{"setWeight": 100}], "approvals": {"count": 2, "message": "desk"}},
            ],
            "gates": [
                {"name": "p95", "query": "q", "condition": "< 200"},
                {"name": "cmp", "query": "q", "baseline": "b", "maxIncreasePercent": 10},
                {"name": "tpl", "templateRef": {"name": "tick-p95"}},
            ],
            **spec,
        },
        "status": status,
    }


TARGET = {
    "namespace": "trading",
    "configMap": "fib-rsi-routing",
    "weight": 50,
    "revision": 4,
    "assignments": {"BTC": "v2", "ETH": "draining", "SOL": "v1"},
    "pending": {"ETH": "v2"},
    "drainingUntil": "2026-12-02T10:00:05Z",
}


def test_symbol_map_colours_every_key_by_role_and_shows_draining_with_its_next_owner() -> None:
    detail = views.rollout_detail(
        rollout({"phase": "Progressing", "stageIndex": 1, "stepIndex": 0, "targets": [TARGET]})
    )
    (target,) = detail["symbolMap"]
    assert [(k["key"], k["owner"], k["next"]) for k in target["keys"]] == [
        ("BTC", "canary", None),
        ("ETH", "draining", "canary"),
        ("SOL", "stable", None),
    ]
    assert target["drainingUntil"].startswith("2026-12-02T10:00:05")


def test_timeline_marks_done_current_and_pending_steps() -> None:
    detail = views.rollout_detail(rollout({"phase": "Progressing", "stageIndex": 0, "stepIndex": 1}))
    staging, prod = detail["timeline"]
    assert [s["state"] for s in staging["steps"]] == ["done", "current"] and staging["state"] == "current"
    assert [s["label"] for s in staging["steps"]] == ["20%", "pause 1m"]
    assert prod["state"] == "pending" and prod["steps"][0]["state"] == "pending"
    done = views.rollout_detail(rollout({"phase": "Succeeded", "stageIndex": 1, "stepIndex": 1}))
    assert all(s["state"] == "done" for stage in done["timeline"] for s in stage["steps"])


def test_gate_lines_carry_thresholds_and_kinds() -> None:
    lines = {g["name"]: g for g in views.gate_lines(rollout({}))}
    assert (lines["p95"]["threshold"], lines["p95"]["op"], lines["p95"]["kind"]) == (200.0, "<", "threshold")
    assert lines["cmp"]["kind"] == "compare" and lines["cmp"]["maxIncreasePercent"] == 10
    assert lines["tpl"]["kind"] == "template" and lines["tpl"]["threshold"] is None


def test_requests_approvals_and_list_row() -> None:
    status = {
        "phase": "Paused",
        "reason": "AwaitingApproval",
        "stageIndex": 1,
        "stepIndex": 0,
        "canaryWeight": 50,
        "requests": {"b": {"action": "pause", "by": "bob", "at": "2026-12-02T10:00:02Z"}},
        "handledRequests": [
            {"id": "a", "action": "approve", "by": "alice", "outcome": "Applied", "at": "2026-12-02T10:00:01Z"}
        ],
        "approvals": [{"by": "alice", "at": "2026-12-02T10:00:01Z", "stage": "prod", "reason": "ok"}],
        "gates": [{"name": "p95", "value": 120.5, "result": "Pass"}],
    }
    detail = views.rollout_detail(rollout(status))
    assert [r["id"] for r in detail["requests"]["pending"]] == ["b"]
    assert detail["requests"]["handled"][0]["by"] == "alice"
    assert detail["approvals"]["required"] == 2 and [a["by"] for a in detail["approvals"]["given"]] == ["alice"]
    row = views.row("strategyrollouts", rollout(status))
    assert (row["phase"], row["step"], row["weight"], row["pending"]) == ("Paused", "1/1", 50, 1)
    assert row["gates"] == [{"name": "p95", "value": 120.5, "result": "Pass"}]


def test_an_unreadable_status_shows_as_empty_not_a_crash() -> None:
    row = views.row("strategyrollouts", rollout({"phase": "NoSuchPhase", "targets": "garbage"}))
    assert row["phase"] == "Pending" and row["step"] == "-"


def test_parity_runs_are_ordered_once_each_with_the_spec_thresholds() -> None:
    run = {"at": "2026-12-02T10:00:00Z", "seq": 1, "level": "Good", "trackingErrorBps": 5.0}
    last = {
        "at": "2026-12-02T11:00:00Z",
        "seq": 2,
        "level": "Warning",
        "trackingErrorBps": 31.0,
        "attribution": {"fees": 1.0, "alpha": -2.0},
    }
    obj = {
        "metadata": {"namespace": "trading", "name": "parity"},
        "spec": {
            "strategy": "s",
            "target": {"deployment": "live"},
            "live": {"query": "a"},
            "backtest": {"query": "b"},
            "thresholdsBps": {"warning": 20, "critical": 60, "emergency": 120},
        },
        "status": {"lastRun": last, "history": [run, last]},
    }
    detail = views.parity_detail(obj)
    assert [r["te"] for r in detail["runs"]] == [5.0, 31.0]
    assert detail["thresholds"] == {"warning": 20, "critical": 60, "emergency": 120}
    assert detail["attribution"] == {"fees": 1.0, "alpha": -2.0} and detail["level"] == "Warning"


def test_shadow_detail_reads_the_worst_examples_from_the_matcher_state() -> None:
    from strategy_rollouts.engine.shadow import Decision, MatcherState, make_example

    d = Decision("BTC", "1", "limit", "buy", Decimal("100"), Decimal("1"), 1.0, "1-0")
    state = MatcherState(worst_examples=(make_example("missing_shadow", ("BTC", "1"), d, None),))
    obj = {
        "metadata": {"namespace": "t", "name": "s"},
        "spec": {"decisions": {"minMatchRate": 0.9}},
        "status": {
            "verdict": "Fail",
            "reasons": ["match rate 0.8 < 0.9"],
            "matcher": state.to_dict(),
            "decisions": {"compared": 10, "matched": 8, "matchRate": 0.8, "mismatches": {"missing_shadow": 2}},
        },
    }
    detail = views.shadow_detail(obj)
    assert detail["verdict"] == "Fail" and detail["minMatchRate"] == 0.9
    (example,) = detail["worstExamples"]
    assert example["kind"] == "missing_shadow" and example["live"]["price"] == "100" and example["shadow"] is None
    assert views.row("shadowruns", obj)["mismatches"] == "missing_shadow=2"


def test_a_segmented_universe_shows_one_entry_per_segment_with_its_role() -> None:
    segmented = {
        "keys": 100_000,
        "sha256": "ab" * 32,
        "segments": [
            {"start": "", "owner": "v2"},
            {"start": "199b", "owner": "draining", "next": "v2"},
            {"start": "7f", "owner": "v1"},
        ],
    }
    target = {**TARGET, "assignments": {}, "pending": {}, "segmented": segmented}
    detail = views.rollout_detail(rollout({"phase": "Progressing", "targets": [target]}))
    (shown,) = detail["symbolMap"]
    assert shown["segmented"] == {"keys": 100_000, "segments": 3}
    assert [(k["key"], k["owner"], k["next"]) for k in shown["keys"]] == [
        ("sha256 ≥ 0", "canary", None),
        ("sha256 ≥ 199b", "draining", "canary"),
        ("sha256 ≥ 7f", "stable", None),
    ]
