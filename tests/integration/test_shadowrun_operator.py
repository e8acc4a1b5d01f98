"""ShadowRun end to end: the real operator, control plane, Prometheus, Redis and quoter processes.

A live quoter (v1) and a shadow quoter (v2, --shadow) trade the same synthetic market and publish
their decisions to Redis streams; the operator compares them decision by decision.
"""

from __future__ import annotations

import json
import socket
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis

from strategy_rollouts.engine.shadow import MatcherState, Tolerances, finalize, ingest, parse_decision
from strategy_rollouts.engine.shadow_observed import to_ms
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.workloads import apply, deployment, get, patch_status, replicas, status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))
from quoter.testing import QuoterProcess, start_quoter

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

LIVE, SHADOW = "v1.0.0", "v2.0.0"
STAGES = ("fetch", "signal", "risk", "order", "tick_total")


def decisions(redis_url: str, **overrides: Any) -> dict[str, Any]:
    return {
        "source": {"redis": {"address": redis_url}},
        "matchOn": ["symbol", "tick"],
        "tolerances": {"priceBps": 0.5, "quantityPercent": 1},
        "minDecisions": 20,
        "minMatchRate": 0.95,
        "pairingWindow": "3s",
        **overrides,
    }


def shadowrun(name: str, namespace: str, strategy: str, redis_url: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "live": {"deployment": "live", "version": LIVE},
        "shadow": {"deployment": "shadow", "version": SHADOW, "replicas": 1},
        "duration": "15s",
        "isolation": {
            "env": {"SHADOW_MODE": "true"},
            "denyEgress": True,
            "allowEgressTo": [{"cidr": "10.0.0.0/8", "ports": [6379, 9090]}],
        },
        "decisions": decisions(redis_url),
    }
    spec.update(overrides)
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "ShadowRun",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


@dataclass
class Env:
    cluster: DevCluster
    namespace: str
    strategy: str
    quoters: dict[str, QuoterProcess] = field(default_factory=dict)
    scraped: list[str] = field(default_factory=list)

    def start_quoters(self, shadow_knobs: dict[str, float] | None = None, scrape: bool = False) -> None:
        for version, shadow, knobs in ((LIVE, False, None), (SHADOW, True, shadow_knobs)):
            q = start_quoter(
                self.strategy,
                version,
                namespace=self.namespace,
                kubeconfig=self.cluster.kubeconfig,
                redis_url=self.cluster.redis_url,
                tick_interval=0.2,
                shadow=shadow,
                knobs=knobs,
            )
            self.quoters[version] = q
            if scrape:
                job = f"quoter-{self.namespace}-{version}"
                self.cluster.add_scrape_target(job, q.metrics_target)
                self.scraped.append(job)

    def status(self, name: str) -> dict[str, Any]:
        return status(self.cluster, name, self.namespace, kind="shadowrun")

    def wait_phase(self, name: str, phase: str, timeout: float = 40) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            st = self.status(name)
            return st if st.get("phase") == phase else None

        try:
            return wait_for(check, timeout, what=f"shadowrun {name} phase {phase}")  # type: ignore[no-any-return]
        except AssertionError as exc:
            shown = {k: v for k, v in self.status(name).items() if k != "matcher"}
            raise AssertionError(f"{exc}\nstatus: {json.dumps(shown, indent=1)[:3000]}") from None

    def create(self, name: str, **overrides: Any) -> None:
        apply(self.cluster, shadowrun(name, self.namespace, self.strategy, self.cluster.redis_url, **overrides))

    def prometheus_has(self, query: str) -> bool:
        url = f"{self.cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
        with urllib.request.urlopen(url, timeout=5) as resp:
            return bool(json.loads(resp.read())["data"]["result"])


@pytest.fixture
def env(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Env]:
    """Deployments `live` (1 replica) and `shadow` (0 replicas, pod template with SHADOW_MODE=true)."""
    apply(
        cluster,
        deployment("live", namespace, 1, LIVE),
        deployment("shadow", namespace, 0, SHADOW, env={"SHADOW_MODE": "true"}),
    )
    e = Env(cluster, namespace, f"s_{namespace.replace('-', '_')}")
    try:
        yield e
    finally:
        for q in e.quoters.values():
            q.stop()
        for job in e.scraped:
            cluster.remove_scrape_target(job)


def recompute(
    cluster: DevCluster, strategy: str, st: dict[str, Any], window_s: float, duration_s: float
) -> dict[str, Any]:
    """The uninterrupted computation: every decision of both streams with startedAt < id <= startedAt + duration."""
    started_ms = to_ms(datetime.fromisoformat(st["startedAt"].replace("Z", "+00:00")))
    end_ms = started_ms + int(duration_s * 1000)
    r = redis.Redis.from_url(cluster.redis_url)
    sides = []
    for version in (LIVE, SHADOW):
        entries = r.xrange(f"decisions:{strategy}:{version}", min=f"({started_ms}-0", max=str(end_ms))
        sides.append([parse_decision(fields, sid.decode()) for sid, fields in entries])
    completed = datetime.fromisoformat(st["completedAt"].replace("Z", "+00:00")).timestamp()
    state = ingest(MatcherState(), sides[0], sides[1], ["symbol", "tick"], Tolerances(0.5, 1.0), completed, window_s)
    counts = finalize(state).counts.to_dict()
    # status.decisions.mismatches uses the contract's kind names (missing_live, missing_shadow)
    return counts


def test_agreeing_shadow_passes_with_report(env: Env, cluster: DevCluster, live_operator: OperatorProcess) -> None:
    env.start_quoters(scrape=True)
    budgets = {s: "1000" for s in STAGES}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "budgets", "namespace": env.namespace},
        "data": budgets,
    }
    apply(cluster, cm)
    for version in (LIVE, SHADOW):
        sel = f'strategy_stage_duration_seconds_bucket{{strategy="{env.strategy}",version="{version}"}}'
        wait_for(lambda sel=sel: env.prometheus_has(sel), 20, what=f"Prometheus scraping {sel}")
    kpi = {
        "name": "shadow-ticking",
        "query": 'sum(rate(ticks_total{strategy="{{strategy}}",version="{{shadow.version}}"}[5s]))',
        "condition": "> 0",
        "interval": "2s",
        "inconclusiveLimit": 10,
    }
    env.create(
        "agree",
        kpis=[kpi],
        latencyProfile={
            "histogram": "strategy_stage_duration_seconds",
            "budgets": {"configMap": "budgets"},
            "maxRegressionPercent": 50,
        },
    )
    st = env.wait_phase("agree", "Completed")
    assert st["verdict"] == "Pass", st["reasons"]
    d = st["decisions"]
    assert d["compared"] >= 20 and d["matchRate"] >= 0.95, d
    assert recompute(cluster, env.strategy, st, 3, 15)["compared"] == d["compared"]
    assert set(st["latencyProfile"]) == set(STAGES)
    assert all(v["result"] == "Pass" and v["shadow"]["p95"] > 0 for v in st["latencyProfile"].values())
    assert st["kpis"][0]["result"] == "Pass"
    assert {c["type"]: c["status"] for c in st["conditions"]}["Completed"] == "True"
    report = get(cluster, "configmap", "agree-report", env.namespace)
    assert report is not None and st["report"] == "agree-report"
    assert report["metadata"]["ownerReferences"][0]["kind"] == "ShadowRun"
    assert "Pass" in report["data"]["report.md"]
    assert json.loads(report["data"]["summary.json"])["verdict"] == "Pass"
    assert sum(len(v) for v in report["data"].values()) < 256 * 1024
    with urllib.request.urlopen(live_operator.metrics_url, timeout=5) as resp:
        exported = resp.read().decode()
    labels = f'namespace="{env.namespace}",shadowrun="agree"'
    assert f'shadow_verdict{{{labels},verdict="Pass"}} 1.0' in exported
    assert f"shadow_match_rate{{{labels}}}" in exported and f"shadow_decisions_compared{{{labels}}}" in exported


def test_price_skew_fails_naming_price_mismatches(env: Env) -> None:
    env.start_quoters(shadow_knobs={"price_skew_bps": 1.0})
    env.create("skew", duration="10s")
    st = env.wait_phase("skew", "Completed")
    assert st["verdict"] == "Fail"
    mism = st["decisions"]["mismatches"]
    assert mism["price"] > 0 and mism["price"] >= st["decisions"]["compared"] * 0.9, st["decisions"]
    assert any("price mismatches" in r for r in st["reasons"]), st["reasons"]


def test_too_few_decisions_hold_and_malformed_entries_are_counted_once(env: Env) -> None:
    env.start_quoters()
    env.create(
        "few",
        duration="6s",
        decisions=decisions(env.cluster.redis_url, minDecisions=100_000),
    )
    env.wait_phase("few", "Running", timeout=20)
    r = redis.Redis.from_url(env.cluster.redis_url)
    r.xadd(f"decisions:{env.strategy}:{LIVE}", {"symbol": "BTCUSDT", "tick": "1"})  # no type, side, price...
    r.xadd(
        f"decisions:{env.strategy}:{SHADOW}",
        {**dict.fromkeys(("symbol", "tick", "type", "side", "ts"), "x"), "price": "-1", "quantity": "1"},
    )
    st = env.wait_phase("few", "Completed")
    assert st["verdict"] == "Hold"
    assert any("minDecisions 100000" in r for r in st["reasons"]), st["reasons"]
    assert st["decisions"]["malformed"] == 2 and st["decisions"]["compared"] > 0


def test_shadow_without_isolation_env_never_gets_a_replica(env: Env, cluster: DevCluster) -> None:
    apply(cluster, deployment("unisolated", env.namespace, 0, SHADOW))
    env.create("unsafe", shadow={"deployment": "unisolated", "version": SHADOW, "replicas": 2})
    st = env.wait_phase("unsafe", "Invalid", timeout=20)
    assert "SHADOW_MODE" in st["message"] and "unisolated" in st["message"], st["message"]
    cond = {c["type"]: c for c in st["conditions"]}["InvalidSpec"]
    assert cond["status"] == "True" and cond["reason"] == "IsolationMissing"
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline:
        assert replicas(cluster, "unisolated", env.namespace)[0] == 0
        time.sleep(0.25)
    assert get(cluster, "networkpolicy", "unsafe-egress", env.namespace) is None
    assert "startedAt" not in env.status("unsafe")


def test_network_policy_while_running_then_removed_and_shadow_at_zero(env: Env, cluster: DevCluster) -> None:
    env.start_quoters()
    env.create(
        "net",
        duration="6s",
        decisions=decisions(env.cluster.redis_url, minDecisions=1),
    )
    env.wait_phase("net", "Running", timeout=20)
    policy = wait_for(lambda: get(cluster, "networkpolicy", "net-egress", env.namespace), 10, what="NetworkPolicy")
    assert policy["spec"]["podSelector"] == {"matchLabels": {"app": "shadow"}}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert [p["ipBlock"]["cidr"] for p in policy["spec"]["egress"][0]["to"]] == ["10.0.0.0/8"]
    assert sorted(p["port"] for p in policy["spec"]["egress"][0]["ports"]) == [6379, 9090]
    assert policy["metadata"]["ownerReferences"][0]["name"] == "net"
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 1, 10, what="shadow scaled to 1")
    time.sleep(2.5)  # a few reconciles later the policy is untouched (no write when nothing changed)
    again = get(cluster, "networkpolicy", "net-egress", env.namespace)
    assert again is not None and again["metadata"]["resourceVersion"] == policy["metadata"]["resourceVersion"]
    st = env.wait_phase("net", "Completed")
    assert st["verdict"] == "Pass", st["reasons"]
    assert get(cluster, "networkpolicy", "net-egress", env.namespace) is None
    assert replicas(cluster, "shadow", env.namespace)[0] == 0


def test_operator_restart_mid_run_does_not_double_count(
    env: Env, cluster: DevCluster, live_operator: OperatorProcess
) -> None:
    env.start_quoters(shadow_knobs={"drop_rate": 0.1})
    env.create("restart", duration="16s")
    wait_for(
        lambda: (env.status("restart").get("decisions") or {}).get("compared", 0) > 5,
        20,
        what="some decisions compared",
    )
    live_operator.stop()
    time.sleep(5)  # longer than the pairing window: the backlog is read in one go on resume
    live_operator.start()
    st = env.wait_phase("restart", "Completed")
    expected = recompute(cluster, env.strategy, st, 3, 16)
    got = st["decisions"]
    assert {k: got[k] for k in ("compared", "matched", "mismatches")} == {
        k: expected[k] for k in ("compared", "matched", "mismatches")
    }
    assert got["mismatches"]["missing_shadow"] > 0  # the dropped decisions, each counted once


def test_rollout_waits_for_shadow_pass(env: Env, cluster: DevCluster) -> None:
    apply(cluster, deployment("legacy", env.namespace, 2, LIVE), deployment("pipeline", env.namespace, 0, SHADOW))
    env.start_quoters()
    env.create(
        "gate",
        duration="8s",
        decisions=decisions(env.cluster.redis_url, minDecisions=5),
    )
    rollout = {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": "after-shadow", "namespace": env.namespace},
        "spec": {
            "strategy": env.strategy,
            "stable": {"deployment": "legacy", "version": LIVE},
            "canary": {"deployment": "pipeline", "version": SHADOW, "replicas": 1},
            "routing": {"keys": ["BTCUSDT", "ETHUSDT"], "handoff": "1s"},
            "stages": [{"name": "prod", "steps": [{"setWeight": 50}, {"pause": {}}]}],
            "shadowRun": "gate",
        },
    }
    apply(cluster, rollout)
    seen: list[str] = []

    def rollout_status() -> dict[str, Any]:
        return status(cluster, "after-shadow", env.namespace)

    def progressing() -> bool:
        rs = rollout_status()
        if rs.get("reason"):
            seen.append(str(rs.get("reason")))
        return bool((rs.get("canaryWeight") or 0) > 0)

    env.wait_phase("gate", "Running", timeout=20)
    time.sleep(2)
    rs = rollout_status()
    assert rs.get("phase") == "Pending" and rs.get("reason") == "WaitingForShadowRun", rs
    assert (rs.get("canaryWeight") or 0) == 0
    st = env.wait_phase("gate", "Completed")
    assert st["verdict"] == "Pass", st["reasons"]
    wait_for(progressing, 30, what="rollout progressing after the shadow's Pass")
    assert "WaitingForShadowRun" in seen or rs.get("reason") == "WaitingForShadowRun"


def test_deleting_a_running_shadowrun_scales_the_shadow_back_and_removes_the_policy(
    env: Env, cluster: DevCluster
) -> None:
    env.create("gone", duration="5m")
    env.wait_phase("gone", "Running", timeout=20)
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 1, 10, what="shadow scaled to 1")
    wait_for(lambda: get(cluster, "networkpolicy", "gone-egress", env.namespace), 10, what="NetworkPolicy")
    cluster.kubectl("delete", "shadowrun", "gone", "-n", env.namespace, "--timeout=20s")
    assert get(cluster, "shadowrun", "gone", env.namespace) is None
    assert replicas(cluster, "shadow", env.namespace)[0] == 0
    assert get(cluster, "networkpolicy", "gone-egress", env.namespace) is None


def test_unreachable_redis_never_passes(env: Env) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{s.getsockname()[1]}/0"  # bound, never listening
        env.create("blind", duration="4s", decisions=decisions(closed, minDecisions=0))
        running = env.wait_phase("blind", "Running", timeout=20)
        assert running.get("verdict") is None
        st = env.wait_phase("blind", "Completed")
    assert st["verdict"] == "Hold", st["reasons"]
    assert any("decisions unavailable" in r and "127.0.0.1" in r for r in st["reasons"]), st["reasons"]
    cond = {c["type"]: c for c in st["conditions"]}["DecisionsAvailable"]
    assert cond["status"] == "False" and cond["reason"] == "SourceUnreachable"


def test_isolation_removed_mid_run_fails_at_once_and_stops_the_shadow(env: Env, cluster: DevCluster) -> None:
    env.create("tamper", duration="5m")
    env.wait_phase("tamper", "Running", timeout=20)
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 1, 10, what="shadow scaled to 1")
    apply(cluster, deployment("shadow", env.namespace, 1, SHADOW, env={"SHADOW_MODE": "false"}))
    st = env.wait_phase("tamper", "Completed", timeout=20)
    assert st["verdict"] == "Fail"
    assert any(r.startswith("isolation:") and "SHADOW_MODE" in r for r in st["reasons"]), st["reasons"]
    assert replicas(cluster, "shadow", env.namespace)[0] == 0
    assert get(cluster, "networkpolicy", "tamper-egress", env.namespace) is None


def _hand_policy(name: str, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"podSelector": {"matchLabels": {"app": "shadow"}}, "policyTypes": ["Egress"], "egress": [{}]},
    }


def test_completed_run_puts_its_shadow_back_after_hand_edits(env: Env, cluster: DevCluster) -> None:
    env.create("sticky", duration="3s", decisions=decisions(env.cluster.redis_url, minDecisions=0))
    done = env.wait_phase("sticky", "Completed")
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 0, 10, what="shadow at 0")
    assert get(cluster, "networkpolicy", "sticky-egress", env.namespace) is None
    # By hand: a policy under the operator's name (e.g. restored from a backup), then the shadow scaled up.
    apply(cluster, _hand_policy("sticky-egress", env.namespace))
    cluster.kubectl("scale", "deployment", "shadow", "-n", env.namespace, "--replicas=3")
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 0, 15, what="shadow back at 0")
    wait_for(lambda: get(cluster, "networkpolicy", "sticky-egress", env.namespace) is None, 15, what="policy gone")
    assert env.status("sticky") == done  # the record did not move: only the world was put back


def test_running_run_recreates_a_deleted_policy(env: Env, cluster: DevCluster) -> None:
    env.create("guarded", duration="5m")
    env.wait_phase("guarded", "Running", timeout=20)
    wait_for(lambda: get(cluster, "networkpolicy", "guarded-egress", env.namespace), 10, what="NetworkPolicy")
    cluster.kubectl("delete", "networkpolicy", "guarded-egress", "-n", env.namespace)
    wait_for(lambda: get(cluster, "networkpolicy", "guarded-egress", env.namespace), 10, what="policy recreated")


def test_hand_edited_status_the_schema_allows_holds_the_run(env: Env, cluster: DevCluster) -> None:
    env.create("edited", duration="5m")
    env.wait_phase("edited", "Running", timeout=20)
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 1, 10, what="shadow scaled to 1")
    # status.matcher is free-form in the CRD, so the API server takes a negative count; the operator must not.
    patch_status(cluster, "shadowrun", "edited", env.namespace, {"matcher": {"counts": {"matched": -3}}})

    def held() -> dict[str, Any] | None:
        conds = {c["type"]: c for c in env.status("edited").get("conditions", [])}
        cond = conds.get("InvalidStatus")
        return cond if cond is not None and cond["status"] == "True" else None

    cond = wait_for(held, 15, what="InvalidStatus=True")
    assert "status.matcher" in cond["message"] and "kubectl patch shadowrun edited" in cond["message"]
    cluster.kubectl("scale", "deployment", "shadow", "-n", env.namespace, "--replicas=0")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # held: a Running run would scale it back to 1 within a pass
        assert replicas(cluster, "shadow", env.namespace)[0] == 0
        time.sleep(0.25)
    st = env.status("edited")
    assert st["phase"] == "Running" and st["matcher"]["counts"]["matched"] == -3  # kept as it was
    # Recovery as the message says: remove the field; counting restarts from the start, the run goes on.
    cluster.kubectl(
        "patch",
        "shadowrun",
        "edited",
        "-n",
        env.namespace,
        "--subresource=status",
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/status/matcher"}]',
    )
    wait_for(lambda: replicas(cluster, "shadow", env.namespace)[0] == 1, 15, what="shadow back at 1")
    conds = {c["type"]: c["status"] for c in env.status("edited")["conditions"]}
    assert conds["InvalidStatus"] == "False" and env.status("edited")["phase"] == "Running"


def credentials_secret(name: str, namespace: str, data: dict[str, str], labelled: bool) -> dict[str, Any]:
    labels = {"strategyrollouts.io/credentials": "true"} if labelled else {}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "stringData": data,
    }


def test_redis_address_from_a_labelled_secret_is_used_and_never_shown(
    env: Env, cluster: DevCluster, live_operator: OperatorProcess
) -> None:
    planted = f"planted{uuid.uuid4().hex}"  # rides in the URL as the client name: Redis shows it was used
    assert "?" not in cluster.redis_url
    apply(
        cluster,
        credentials_secret("redis-url", env.namespace, {"url": f"{cluster.redis_url}?client_name={planted}"}, True),
    )
    env.start_quoters()
    ref = {"addressSecretRef": {"name": "redis-url", "key": "url"}}
    env.create(
        "fromsecret", duration="6s", decisions=decisions(cluster.redis_url, source={"redis": ref}, minDecisions=5)
    )
    st = env.wait_phase("fromsecret", "Completed")
    assert st["verdict"] == "Pass" and st["decisions"]["compared"] >= 5, st["reasons"]
    names = [c.get("name") for c in redis.Redis.from_url(cluster.redis_url).client_list()]
    assert planted in names, names
    shown = [
        cluster.kubectl("get", "shadowrun", "fromsecret", "-n", env.namespace, "-o", "json").stdout,
        cluster.kubectl("get", "events", "-n", env.namespace, "-o", "json").stdout,
        cluster.kubectl("get", "configmaps", "-n", env.namespace, "-o", "json").stdout,
        live_operator.log(),
    ]
    assert not [i for i, text in enumerate(shown) if planted in text]


def test_an_unlabelled_redis_secret_is_invalid_spec_naming_the_field(env: Env, cluster: DevCluster) -> None:
    apply(cluster, credentials_secret("redis-plain", env.namespace, {"url": cluster.redis_url}, False))
    ref = {"addressSecretRef": {"name": "redis-plain", "key": "url"}}
    env.create("unlabelled", decisions=decisions(cluster.redis_url, source={"redis": ref}))
    st = env.wait_phase("unlabelled", "Invalid", timeout=20)
    assert "spec.decisions.source.redis.addressSecretRef" in st["message"] and "lacks the label" in st["message"], st
    assert replicas(cluster, "shadow", env.namespace)[0] == 0
