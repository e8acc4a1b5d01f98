"""The dashboard's gate charts: which range queries each gate kind draws (pure; no Prometheus, no cluster)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client

from strategy_rollouts.api.rollout import StrategyRolloutSpec
from strategy_rollouts.dashboard.series import gate_charts
from strategy_rollouts.dashboard.store import Store
from strategy_rollouts.engine.gate_templates import Template, TemplateKey, template_of
from tests.unit.test_dashboard_views import rollout

NOW = datetime(2026, 12, 2, 10, 0, tzinfo=UTC)
START = NOW - timedelta(minutes=20)
JUDGE = {
    "name": "fill-latency",
    "judge": {
        "query": 'avg(fill_ms{version="{{version}}",ns="{{namespace}}"})',
        "worseWhen": "higher",
        "window": "10m",
        "step": "30s",
    },
}
TEMPLATE = template_of(
    "ClusterGateTemplate",
    {
        "metadata": {"name": "tick-p95", "resourceVersion": "9"},
        "spec": {
            "args": [{"name": "limit", "default": "200"}],
            "gate": {
                "query": 'max(tick_p95{strategy="{{strategy}}",version="{{canary.version}}"})',
                "condition": "< {{args.limit}}",
            },
        },
    },
)
TPL_KEY: TemplateKey = ("ClusterGateTemplate", "", "tick-p95")


def charts(gates: list[dict[str, Any]], templates: dict[TemplateKey, Template | None] | None = None, **kw: Any) -> Any:
    spec = StrategyRolloutSpec.model_validate({**rollout({})["spec"], "gates": gates})
    return gate_charts(spec, "trading", "staging", templates or {}, kw.pop("results", {}), START, NOW, **kw)


def test_a_judge_gate_draws_its_query_for_both_versions_over_its_window() -> None:
    out, jobs = charts([JUDGE])
    entry = out["fill-latency"]
    assert entry["kind"] == "judge" and entry["worseWhen"] == "higher" and entry["window"] == "10m"
    assert [(j.line, j.query) for j in jobs] == [
        ("stable", 'avg(fill_ms{version="v1",ns="trading"})'),
        ("canary", 'avg(fill_ms{version="v2",ns="trading"})'),
    ]
    assert all(j.start == NOW - timedelta(minutes=10) and j.end == NOW and j.step_s == 30 for j in jobs)


def test_threshold_and_compare_gates_draw_the_query_since_the_start_with_their_limits() -> None:
    gates = [
        {"name": "p95", "query": 'q{s="{{strategy}}",i="{{interval}}"}', "condition": "<= 250", "interval": "1m"},
        {"name": "cmp", "query": "canary", "baseline": "stable", "maxIncreasePercent": 10},
    ]
    out, jobs = charts(gates)
    assert (out["p95"]["threshold"], out["p95"]["op"], out["p95"]["query"]) == (250.0, "<=", 'q{s="fib_rsi",i="1m"}')
    assert out["cmp"]["kind"] == "compare" and out["cmp"]["maxIncreasePercent"] == 10
    assert [(j.gate, j.line, j.start) for j in jobs] == [
        ("p95", "value", START),
        ("cmp", "value", START),
        ("cmp", "baseline", START),
    ]


def test_a_template_gate_is_drawn_as_the_gate_its_template_resolves_to() -> None:
    out, jobs = charts(
        [{"name": "tpl", "templateRef": {"name": "tick-p95"}, "args": {"limit": "150"}}], {TPL_KEY: TEMPLATE}
    )
    entry = out["tpl"]
    assert (entry["kind"], entry["resolvedKind"], entry["template"]) == (
        "template",
        "threshold",
        "ClusterGateTemplate tick-p95",
    )
    assert (entry["threshold"], entry["op"]) == (150.0, "<")
    (job,) = jobs
    assert job.query == 'max(tick_p95{strategy="fib_rsi",version="v2"})' == entry["query"]


def test_a_template_the_dashboard_cannot_see_is_a_note_not_a_line() -> None:
    out, jobs = charts(
        [{"name": "tpl", "templateRef": {"name": "tick-p95"}}],
        {TPL_KEY: None},
        template_errors={"clustergatetemplates": "403 Forbidden"},
    )
    assert jobs == []
    assert "ClusterGateTemplate 'tick-p95' not found" in out["tpl"]["note"]
    assert "clustergatetemplates: 403 Forbidden" in out["tpl"]["note"]


def test_a_webhook_gate_has_no_series_but_its_results_as_seen() -> None:
    results = {"risk-desk": [(1.0, "Pass", 200.0), (2.0, "Rejected", 409.0)]}
    out, jobs = charts([{"name": "risk-desk", "webhook": {"url": "http://desk/check"}}], results=results)
    assert jobs == [] and out["risk-desk"]["timeline"] == [[1.0, "Pass", 200.0], [2.0, "Rejected", 409.0]]
    assert out["risk-desk"]["note"].startswith("webhook: no series")


def test_the_store_keeps_each_new_webhook_result_it_sees() -> None:
    store = Store(client.ApiClient())
    obj = rollout(
        {},
        gates=[
            {"name": "risk-desk", "webhook": {"url": "http://desk/check"}},
            {"name": "p95", "query": "q", "condition": "< 1"},
        ],
    )
    for at, result in (("10:00:00", "Pass"), ("10:00:00", "Pass"), ("10:00:30", "Rejected")):
        obj["status"] = {
            "gates": [
                {"name": "risk-desk", "result": result, "value": 200, "evaluatedAt": f"2026-12-02T{at}Z"},
                {"name": "p95", "result": "Pass", "value": 0.5, "evaluatedAt": f"2026-12-02T{at}Z"},
            ]
        }
        store._apply("strategyrollouts", "MODIFIED", obj)
    seen = store.gate_results[("trading", "fib-rsi")]
    assert list(seen) == ["risk-desk"]  # Prometheus charts the others
    assert [r for _, r, _ in seen["risk-desk"]] == ["Pass", "Rejected"]
    store._apply("strategyrollouts", "DELETED", obj)
    assert ("trading", "fib-rsi") not in store.gate_results


def test_the_store_holds_templates_for_the_charts() -> None:
    store = Store(client.ApiClient())
    body = {
        "metadata": {"name": "tick-p95", "resourceVersion": "9"},
        "spec": {"gate": {"query": "q", "condition": "< 1"}},
    }
    store._apply("clustergatetemplates", "ADDED", body)
    held = store.template(TPL_KEY)
    assert held is not None and held.name == "tick-p95" and held.spec.gate == {"query": "q", "condition": "< 1"}
    assert store.template(("GateTemplate", "trading", "tick-p95")) is None


def test_a_sequential_judge_reads_since_the_step_started_and_draws_its_confidence_sequence() -> None:
    from strategy_rollouts.api.gates import JudgeSpec
    from strategy_rollouts.dashboard.series import sequence_chart

    seq = {"name": "pnl", "judge": {**JUDGE["judge"], "test": "sequential", "minSamples": 5, "margin": 2.0}}
    step_start = NOW - timedelta(minutes=7)
    out, jobs = charts([seq], step_start=step_start)
    assert out["pnl"]["sequential"] is True and out["pnl"]["start"] == step_start.timestamp()
    assert all(j.start == step_start and j.step_s == 30 for j in jobs)  # the operator's own grid
    judge = JudgeSpec.model_validate(seq["judge"])
    t0 = step_start.timestamp()
    stable = {"points": [[t0 + 30 * i, 100.0 + (i % 3)] for i in range(14)]}
    canary = {"points": [[t0 + 30 * i, 110.0 + (i % 3)] for i in range(14)]}  # 10 higher: worse
    drawn = sequence_chart(judge, canary, stable)
    assert drawn["result"] == "Fail" and drawn["decidedAt"] == t0 + 30 * 4  # at minSamples
    assert len(drawn["t"]) == len(drawn["lower"]) == len(drawn["upper"]) == 10
    assert all(lo <= hi for lo, hi in zip(drawn["lower"], drawn["upper"], strict=True))
    assert drawn["lower"][-1] > 0 and drawn["margin"] == 2.0  # worse when higher: the margin line is +2
    empty = sequence_chart(judge, {"points": []}, stable)
    assert empty["result"] == "Inconclusive" and empty["t"] == [] and "no canary samples" in empty["message"]
