"""Pure pieces of the ShadowRun operator: manifests, validation, matcher storage, verdict assembly."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from strategy_rollouts.api.gates import GateStatus
from strategy_rollouts.api.placeholders import placeholder_values
from strategy_rollouts.api.shadowrun import EgressRule, LatencyProfileSpec, ShadowRunSpec, ShadowRunStatus
from strategy_rollouts.engine import networkpolicy
from strategy_rollouts.engine.networkpolicy import policy_shape
from strategy_rollouts.engine.shadow import Decision, MatchCounts, MatcherState, Quantiles, StageLatency
from strategy_rollouts.engine.shadow_observed import (
    Cursors,
    dump_matcher,
    kpi_results,
    latency_query,
    load_matcher,
    parse_budgets,
    profile_stages,
    profile_status,
    stream_names,
    to_ms,
    watermark,
)
from strategy_rollouts.engine.shadow_run import conditions_for, spec_errors, verdict_for
from strategy_rollouts.operator.clients import redis_streams as decisions
from strategy_rollouts.operator.shadowrun.adapter import parse_spec, parse_status

OWNER = {
    "apiVersion": "strategyrollouts.io/v1alpha1",
    "kind": "ShadowRun",
    "metadata": {"name": "fib", "namespace": "trading", "uid": "u-1"},
}


def spec(**overrides: Any) -> ShadowRunSpec:
    raw: dict[str, Any] = {
        "strategy": "fib_rsi",
        "live": {"deployment": "legacy", "version": "v1"},
        "shadow": {"deployment": "pipeline", "version": "v2"},
        "duration": "1h",
        "decisions": {"source": {"redis": {"address": "redis://r:6379/0"}}, "minDecisions": 10},
    }
    raw.update(overrides)
    return ShadowRunSpec.model_validate(raw)


def dec(stream_id: str, ts: float = 1.0) -> Decision:
    return Decision("BTC", "1", "entry", "buy", Decimal("100"), Decimal("1"), ts, stream_id)


# ---------------------------------------------------------------------------------- NetworkPolicy


def test_egress_policy_selects_the_shadow_pods_and_allows_only_the_listed_cidrs() -> None:
    rules = [EgressRule(cidr="10.0.0.0/8", ports=[6379, 9090]), EgressRule(cidr="192.168.1.0/24")]
    policy = networkpolicy.egress_policy(OWNER, {"app": "pipeline"}, rules)
    assert policy["metadata"]["name"] == "fib-egress" and policy["metadata"]["namespace"] == "trading"
    owner = policy["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("ShadowRun", "fib", "u-1", True)
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "pipeline"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert policy["spec"]["egress"] == [
        {
            "to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}],
            "ports": [{"protocol": "TCP", "port": 6379}, {"protocol": "TCP", "port": 9090}],
        },
        {"to": [{"ipBlock": {"cidr": "192.168.1.0/24"}}]},
    ]


def test_egress_policy_without_rules_denies_all_egress() -> None:
    policy = networkpolicy.egress_policy(OWNER, {"app": "x"}, [])
    assert policy["spec"]["egress"] == [] and policy["spec"]["policyTypes"] == ["Egress"]


def test_policy_shape_ignores_server_defaults_so_an_unchanged_policy_is_not_rewritten() -> None:
    manifest = networkpolicy.egress_policy(OWNER, {"app": "p"}, [EgressRule(cidr="10.0.0.0/8", ports=[9090, 6379])])
    served = {
        "podSelector": {"matchLabels": {"app": "p"}},
        "policyTypes": ["Egress"],
        "egress": [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}}], "ports": [{"port": 6379, "protocol": "TCP"}, {"port": 9090}]}
        ],
    }
    assert policy_shape(served) == policy_shape(manifest["spec"])
    served["podSelector"] = {"matchLabels": {"app": "other"}}
    assert policy_shape(served) != policy_shape(manifest["spec"])


def test_isolation_errors_name_each_missing_or_wrong_env() -> None:
    required = {"SHADOW_MODE": "true", "ORDERS": "off"}
    errors = networkpolicy.isolation_errors("pipeline", required, {"SHADOW_MODE": "false"})
    assert len(errors) == 2
    assert "ORDERS='off'" in errors[0] and "not set" in errors[0]
    assert "SHADOW_MODE='true'" in errors[1] and "'false'" in errors[1] and "pipeline" in errors[1]
    assert networkpolicy.isolation_errors("p", required, {**required, "OTHER": "1"}) == []


# ------------------------------------------------------------------------------------ validation


def test_placeholders_alias_live_and_shadow_as_stable_and_canary() -> None:
    values = placeholder_values(spec(), "trading")
    assert values["live.version"] == values["stable.version"] == "v1"
    assert values["shadow.deployment"] == values["canary.deployment"] == "pipeline"
    assert stream_names(spec(), "trading") == ("decisions:fib_rsi:v1", "decisions:fib_rsi:v2")


def test_spec_errors_name_the_field() -> None:
    assert spec_errors(spec(), "ns") == []
    bad = spec(
        shadow={"deployment": "legacy", "version": "v2"},
        isolation={"env": {}},
        kpis=[{"name": "k", "query": "up{v='{{nope}}'}", "condition": "> 0"}],
    )
    errors = spec_errors(bad, "ns")
    assert any(e.startswith("spec.shadow.deployment") for e in errors)
    assert any(e.startswith("spec.isolation.env") for e in errors)
    assert any("spec.kpis[0].query" in e and "{{nope}}" in e for e in errors)
    same = spec(
        decisions={
            "source": {"redis": {"address": "redis://r", "liveStream": "s:{{strategy}}", "shadowStream": "s:fib_rsi"}}
        }
    )
    assert any("same" in e for e in spec_errors(same, "ns"))
    unknown = spec(decisions={"source": {"redis": {"address": "redis://r", "liveStream": "{{bogus}}"}}})
    assert any("liveStream" in e and "{{bogus}}" in e for e in spec_errors(unknown, "ns"))
    ref = {"name": "redis-url", "key": "url"}
    for redis in ({}, {"address": "redis://r", "addressSecretRef": ref}):
        assert "spec.decisions.source.redis: set exactly one of address and addressSecretRef" in spec_errors(
            spec(decisions={"source": {"redis": redis}}), "ns"
        )
    assert spec_errors(spec(decisions={"source": {"redis": {"addressSecretRef": ref}}}), "ns") == []


def test_parse_reports_a_bad_spec_without_raising() -> None:
    obj = {"spec": {"strategy": "x"}, "status": {"phase": "Pending"}}
    parsed, error = parse_spec(obj)
    status, _ = parse_status(obj)
    assert parsed is None and status is not None and status.phase == "Pending"
    assert error is not None and "spec.live" in error


# ---------------------------------------------------------------------------------- matcher state


def test_matcher_and_cursors_round_trip_through_status() -> None:
    state = MatcherState(pending_live=(dec("5-0"),), last_live_id="5-0", malformed=2)
    stored = dump_matcher(state, Cursors("7-0", "3-1"))
    status = ShadowRunStatus.model_validate({"matcher": stored})
    loaded, cursors = load_matcher(status)
    assert loaded == state and cursors == Cursors("7-0", "3-1")


def test_unreadable_matcher_state_has_no_cursors() -> None:
    assert load_matcher(ShadowRunStatus()) == (MatcherState(), None)
    assert load_matcher(ShadowRunStatus.model_validate({"matcher": {"version": 99}}))[1] is None


def test_parse_entries_counts_malformed_and_moves_the_cursor_past_them() -> None:
    good = {
        b"symbol": b"BTC",
        b"tick": b"1",
        b"type": b"entry",
        b"side": b"buy",
        b"price": b"1",
        b"quantity": b"2",
        b"ts": b"3",
    }
    entries: list[tuple[Any, Any]] = [(b"10-0", good), (b"11-0", {b"symbol": b"BTC"}), (b"12-0", None)]
    read = decisions.parse_entries(entries, "9-0", count=3)
    assert [d.stream_id for d in read.decisions] == ["10-0"]
    assert read.malformed == 2 and read.cursor == "12-0" and read.truncated
    assert "tick" in read.examples[0]
    empty = decisions.parse_entries([], "9-0", count=3)
    assert empty.cursor == "9-0" and not empty.truncated and empty.malformed == 0


def test_watermark_holds_back_expiry_for_a_side_read_only_partly() -> None:
    full = decisions.StreamRead([dec("1-0", 50.0)], cursor="1-0")
    partial = decisions.StreamRead([dec("1-0", 40.0)], cursor="1-0", truncated=True)
    assert watermark(100.0, [full, full]) == 100.0
    assert watermark(100.0, [full, partial]) == 40.0


def test_unreachable_redis_is_a_reason_and_keeps_the_cursor() -> None:
    # asyncio.run, not an async test: pytest-asyncio leaves an implicit event loop unclosed per async test.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connection refused
        clients = decisions.RedisClients()

        async def once() -> decisions.StreamRead:
            try:
                return await decisions.read(clients, f"redis://user:secret@127.0.0.1:{port}/0", "s", "5-0", 10)
            finally:
                await clients.close()

        read = asyncio.run(once())
    assert read.error is not None and f"127.0.0.1:{port}" in read.error and "secret" not in read.error
    assert read.cursor == "5-0" and read.decisions == []


def test_safe_address_drops_credentials() -> None:
    assert decisions.safe_address("rediss://u:pw@redis.example:6380/2") == "rediss://redis.example:6380/2"
    assert decisions.initial_cursor(1700000000123) == "1700000000123-0"


# ------------------------------------------------------------------------------- latency, KPIs


def test_latency_query_and_window() -> None:
    lp = LatencyProfileSpec(histogram="strategy_stage_duration_seconds", stage_label="stage")
    assert latency_query(lp, "fib", "v2", 0.95, "30s") == (
        "histogram_quantile(0.95, sum by (le, stage) (rate(strategy_stage_duration_seconds_bucket"
        '{strategy="fib",version="v2"}[30s]))) * 1000'
    )


def test_budgets_parse_and_bad_values_are_reasons() -> None:
    assert parse_budgets(None, "b") == ({}, ["latency budgets ConfigMap b not found"])
    budgets, problems = parse_budgets({"tick_total": "145", "fetch": "x", "risk": "-1"}, "b")
    assert budgets == {"tick_total": 145.0}
    assert len(problems) == 2 and "fetch='x'" in problems[0]


def test_profile_covers_every_stage_seen_or_budgeted() -> None:
    lp = LatencyProfileSpec(histogram="h", max_regression_percent=3)
    live = {"p50": {"fetch": 5.0}, "p95": {"fetch": 10.0, "risk": 4.0}}
    shadow = {"p95": {"fetch": 10.2, "risk": 5.0}}
    stages = profile_stages(lp, live, shadow, {"fetch": 12.0, "order": 9.0})
    assert [s.stage for s in stages] == ["fetch", "order", "risk"]
    status = profile_status(stages)
    assert status["fetch"].result == "Pass" and status["fetch"].budget_p95 == 12.0
    assert status["fetch"].regression_percent == pytest.approx(2.0)
    assert status["order"].result == "Inconclusive"
    assert status["risk"].result == "Fail"  # +25% > 3%


def test_kpi_results_skip_dry_run_and_mark_failures_beyond_the_limit() -> None:
    s = spec(
        kpis=[
            {"name": "a", "query": "q", "condition": "> 0", "failureLimit": 1},
            {"name": "b", "query": "q", "condition": "> 0"},
            {"name": "dry", "query": "q", "condition": "> 0", "dryRun": True},
        ]
    )
    statuses = [GateStatus(name="a", result="Fail", failures=2, value=0.0), GateStatus(name="dry", result="Fail")]
    results = kpi_results(s, statuses)
    assert [(r.name, r.result, r.beyond_limit) for r in results] == [
        ("a", "Fail", True),
        ("b", "Inconclusive", False),
    ]


# ------------------------------------------------------------------------------------------ verdict


def test_verdict_assembly() -> None:
    s = spec()
    good = MatchCounts(matched=20)
    assert verdict_for(s, good, [], [], finished=True).verdict == "Pass"
    assert verdict_for(s, good, [], [], finished=False).verdict is None
    held = verdict_for(s, good, [], [], finished=True, hold=["decisions unavailable at the end: Redis down"])
    assert held.verdict == "Hold" and held.reasons[0].startswith("decisions unavailable")
    few = verdict_for(s, MatchCounts(matched=3), [], [], finished=True)
    assert few.verdict == "Hold" and "minDecisions 10" in few.reasons[0]
    bad = MatchCounts(matched=10, price=10)
    failed = verdict_for(s, bad, [], [], finished=True, hold=["x"])
    assert failed.verdict == "Fail" and "price mismatches: 10" in failed.reasons[0] and "x" in failed.reasons
    early = verdict_for(s, good, [], [], finished=False, fail=["isolation: env removed"])
    assert early.verdict == "Fail" and early.reasons == ("isolation: env removed",)


def test_without_decisions_only_kpis_and_latency_judge() -> None:
    s = spec(decisions=None)
    v = verdict_for(s, MatchCounts(), [], [], finished=True)
    assert v.verdict == "Pass" and not any("match rate" in r for r in v.reasons)
    stage = StageLatency("fetch", Quantiles(p95=10), Quantiles(p95=20), None, 3)
    assert verdict_for(s, MatchCounts(), [], [stage], finished=True).verdict == "Fail"


def test_conditions_follow_the_phase() -> None:
    now = datetime(2024, 1, 1, tzinfo=UTC)
    conds = conditions_for([], "Running", None, "Started", "m", now, 1)
    by_type = {c.type: c.status for c in conds}
    assert by_type == {"InvalidSpec": "False", "Running": "True", "Completed": "False", "Passed": "False"}
    done = {c.type: c for c in conditions_for(conds, "Completed", "Pass", "Completed", "ok", now, 1)}
    assert done["Completed"].status == "True" and done["Passed"].status == "True" and done["Running"].status == "False"


def test_to_ms_is_exact() -> None:
    at = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
    assert to_ms(at) == 1700000000123
