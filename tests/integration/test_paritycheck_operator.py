"""ParityCheck end to end: the real operator, control plane, Prometheus and quoters.

`window: 30s`, `step: 1s`, `periodsPerYear: 1`: the tracking error is the stdev of the quoter's
per-period live - backtest difference x 1e4, i.e. its `return_noise_bps` knob, so each band is
driven by starting the quoter with a noise well inside it. Runs are triggered manually (one key in
`status.requests`, as the plugin writes it) except in the catch-up test. Actions are recorded Pending
before they are applied, and Applied once the target shows them (the rollout: its handledRequests).
"""

from __future__ import annotations

import functools
import json
import socket
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kubernetes import client, config

from strategy_rollouts.operator.clients.kube import Kube, Unanswered, configured
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.paritycheck.adapter import identity
from strategy_rollouts.testing.operator_process import OperatorProcess, free_port
from tests.integration.api_proxy import ApiProxy
from tests.integration.conftest import wait_for
from tests.integration.workloads import (
    apply,
    deployment,
    get,
    patch_status,
    replicas,
    routing,
    status,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))
from quoter.testing import QuoterProcess, start_quoter

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

REPO = Path(__file__).resolve().parents[2]
KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT"]
CM = "fib-rsi-routing"
NEVER = "0 0 1 1 *"  # yearly: no scheduled run during a test
# A band per test: the quoter's noise (bps) and thresholds that put it far inside the band, so the
# sample stdev of ~15-30 points lands there every time (thresholds are spec, the level is the engine's).
WARNING_NOISE, WARNING_BANDS = 50.0, {"warning": 20, "critical": 200, "emergency": 400}
CRITICAL_NOISE, CRITICAL_BANDS = 70.0, {"warning": 12, "critical": 25, "emergency": 400}
EMERGENCY_NOISE, EMERGENCY_BANDS = 400.0, {"warning": 20, "critical": 50, "emergency": 100}
MIN_POINTS = 15


def series(source: str, version: str = "v1.0.0") -> str:
    return f'strategy_return{{strategy="{{{{strategy}}}}",version="{version}",source="{source}"}}'


def cost(source: str, component: str, version: str = "v1.0.0") -> str:
    return (
        f'strategy_cost_bps{{strategy="{{{{strategy}}}}",version="{version}",source="{source}",'
        f'component="{component}"}}'
    )


def paritycheck(name: str, namespace: str, strategy: str, target: dict[str, str], **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "strategy": strategy,
        "target": target,
        "schedule": NEVER,
        "window": "30s",
        "step": "1s",
        "periodsPerYear": 1,
        "minSamples": 8,
        "live": {"query": series("live")},
        "backtest": {"query": series("backtest")},
        "attribution": {"fees": {"live": cost("live", "fees"), "backtest": cost("backtest", "fees")}},
        "thresholdsBps": EMERGENCY_BANDS,
        "consecutiveBreaches": 1,
    }
    spec.update(overrides)
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "ParityCheck",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def rollout(namespace: str, strategy: str) -> dict[str, Any]:
    """A rollout that sits in its prod stage (Progressing) for the whole test."""
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": "fib-rsi", "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "stable": {"deployment": "legacy", "version": "v1.0.0"},
            "canary": {"deployment": "pipeline", "version": "v2.0.0", "replicas": 2},
            "routing": {"keys": KEYS, "handoff": "1s"},
            "stages": [
                {"name": "staging", "steps": [{"setWeight": 20}, {"pause": {"duration": "1s"}}]},
                {"name": "prod", "steps": [{"setWeight": 50}, {"pause": {"duration": "10m"}}]},
            ],
            "scaleDownDelay": "1s",
        },
    }


@dataclass
class Env:
    cluster: DevCluster
    namespace: str
    strategy: str
    quoters: dict[str, QuoterProcess] = field(default_factory=dict)

    def status(self, name: str = "parity") -> dict[str, Any]:
        return status(self.cluster, name, self.namespace, kind="paritycheck")

    def rollout_status(self) -> dict[str, Any]:
        return status(self.cluster, "fib-rsi", self.namespace)

    def routing(self) -> dict[str, Any]:
        return routing(self.cluster, CM, self.namespace) or {}

    def start_quoters(self, noise: float, **knobs: float) -> None:
        for version in ("v1.0.0", "v2.0.0"):
            q = start_quoter(
                self.strategy,
                version,
                namespace=self.namespace,
                routing_configmap=CM,
                symbols=KEYS,
                kubeconfig=self.cluster.kubeconfig,
                tick_interval=0.2,
                knobs={"return_noise_bps": noise if version == "v1.0.0" else 0.0, **knobs},
            )
            self.quoters[version] = q
            self.cluster.add_scrape_target(f"pq-{self.namespace}-{version}", q.metrics_target)

    def wait_samples(self, count: int = MIN_POINTS, version: str = "v1.0.0") -> None:
        """Until Prometheus holds `count` scrapes of the live series (so a run has enough samples)."""
        query = f'count_over_time(strategy_return{{strategy="{self.strategy}",version="{version}",source="live"}}[30s])'

        def enough() -> float | None:
            url = f"{self.cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    result = json.load(resp)["data"]["result"]
            except OSError:
                return None
            value = float(result[0]["value"][1]) if result else 0.0
            return value if value >= count else None

        wait_for(enough, 30, what=f"{count} scrapes of the live series")

    @functools.cached_property
    def me(self) -> str:
        """The admin's user name: the admission policy pins every request's `by` to its writer."""
        return self.cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()

    def run(self, name: str = "parity", by: str | None = None, timeout: float = 15) -> dict[str, Any]:
        """Request a run (as `kubectl strategy parity run` does) and wait until it is handled."""
        by = by or self.me
        rid = uuid.uuid4().hex
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        request = {"action": "run", "by": by, "at": now}
        patch_status(self.cluster, "paritycheck", name, self.namespace, {"requests": {rid: request}})
        return wait_for(  # type: ignore[no-any-return]
            lambda: (st := self.status(name)) and rid in handled_ids(st) and rid not in st.get("requests", {}) and st,
            timeout,
            what=f"run request {rid} handled",
        )

    def settled(self, name: str = "parity", timeout: float = 20) -> dict[str, Any]:
        """Until no recorded action is Pending any more."""
        return wait_for(  # type: ignore[no-any-return]
            lambda: (
                (st := self.status(name)) and all(a["state"] != "Pending" for a in st.get("actionsTaken", [])) and st
            ),
            timeout,
            what="every action settled",
        )

    def events(self) -> list[dict[str, Any]]:
        out = self.cluster.kubectl("get", "events", "-n", self.namespace, "-o", "json").stdout
        return list(json.loads(out)["items"])

    def event_reasons(self, kind: str = "ParityCheck") -> list[str]:
        return [e["reason"] for e in self.events() if e["involvedObject"]["kind"] == kind]


@pytest.fixture
def env(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Env]:
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    e = Env(cluster, namespace, f"p_{namespace.replace('-', '_')}")
    try:
        yield e
    finally:
        for version, q in e.quoters.items():
            q.stop()
            cluster.remove_scrape_target(f"pq-{namespace}-{version}")


def routing_configmap(namespace: str, strategy: str) -> dict[str, Any]:
    """A routing ConfigMap as a rollout would leave it (for deployment targets): v1 owns every key."""
    doc = {
        "strategy": strategy,
        "stableVersion": "v1.0.0",
        "canaryVersion": "v2.0.0",
        "weight": 0,
        "assignments": dict.fromkeys(KEYS, "v1.0.0"),
        "sizeMultiplier": 1.0,
        "entriesEnabled": True,
        "revision": 1,
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": CM, "namespace": namespace},
        "data": {"routing.json": json.dumps(doc)},
    }


def deployment_target(e: Env) -> dict[str, str]:
    apply(e.cluster, routing_configmap(e.namespace, e.strategy))
    return {"deployment": "legacy", "configMap": CM}


def start_progressing_rollout(e: Env) -> None:
    apply(e.cluster, rollout(e.namespace, e.strategy))
    wait_for(
        lambda: (
            (st := e.rollout_status()).get("stage") == "prod"
            and st.get("phase") == "Progressing"
            and st.get("canaryWeight") == 50
        ),
        40,
        what="rollout progressing in prod",
    )


def assert_at_rest(e: Env, name: str, seconds: float = 3.0) -> None:
    """Nothing due: the operator does not write the object again (no status write loop)."""
    version = (get(e.cluster, "paritycheck", name, e.namespace) or {})["metadata"]["resourceVersion"]
    time.sleep(seconds)
    assert (get(e.cluster, "paritycheck", name, e.namespace) or {})["metadata"]["resourceVersion"] == version


def operator_metric(op: OperatorProcess, name: str, **labels: str) -> float | None:
    """A sample of the operator's own /metrics whose labels include `labels`."""
    samples = op.metric_samples(name, **labels)
    return samples[0] if samples else None


def actions(st: dict[str, Any]) -> list[str]:
    return [a["action"] for a in st.get("actionsTaken", [])]


def action_states(st: dict[str, Any]) -> dict[str, str]:
    return {a["action"]: a["state"] for a in st.get("actionsTaken", [])}


def handled_ids(st: dict[str, Any]) -> list[str]:
    return [h["id"] for h in st.get("handledRequests", [])]


def owned_keys(doc: dict[str, Any]) -> list[str]:
    return [k for k, v in doc.get("assignments", {}).items() if v in ("v1.0.0", "v2.0.0")]


# ---------------------------------------------------------------------------------------------------------


def test_excellent_and_warning_bands_observe_only_with_attribution(env: Env, live_operator: OperatorProcess) -> None:
    e = env
    e.start_quoters(WARNING_NOISE, fees_bps=3.0)
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, deployment_target(e), thresholdsBps=WARNING_BANDS))
    wait_for(lambda: e.status().get("nextRunAt"), 15, what="nextRunAt set")
    assert e.status()["phase"] == "Scheduled" and "lastRun" not in e.status()
    assert_at_rest(e, "parity")
    e.wait_samples()
    st = e.run()
    run = st["lastRun"]
    assert run["level"] == "Warning", run
    assert 20 <= run["trackingErrorBps"] < 200
    assert run["trigger"] == "manual" and run["by"] == e.me
    assert run["samples"] >= MIN_POINTS - 3  # count_over_time and the 1s grid differ by a point or two
    assert run["attribution"]["fees"] == pytest.approx(3.0, abs=1e-6)
    assert "slippage" not in run["attribution"]  # not configured: not shown (alpha counts it as 0)
    assert actions(st) == ["event"] and action_states(st) == {"event": "Applied"}
    assert st["actionsTaken"][0]["id"] == f"pck-parity-{st['runSeq']}-event"
    assert st["consecutiveBreaches"] == 1
    assert st["activeActions"] == ["event"]
    doc = e.routing()
    assert doc["sizeMultiplier"] == 1.0 and doc["entriesEnabled"] is True and doc["revision"] == 1
    wait_for(lambda: "ActionTaken" in e.event_reasons(), 10, what="ActionTaken event")
    assert "LevelChanged" in e.event_reasons()
    labels = {"namespace": e.namespace, "paritycheck": "parity"}
    assert operator_metric(live_operator, "parity_level", level="Warning", **labels) == 1.0
    assert operator_metric(live_operator, "parity_level", level="Critical", **labels) == 0.0
    assert operator_metric(live_operator, "parity_actions_total", action="event", **labels) == 1.0
    assert operator_metric(live_operator, "parity_tracking_error_bps", **labels) == run["trackingErrorBps"]
    # A second Warning run does not warn again (one event per breach episode).
    st = e.run()
    assert st["lastRun"]["level"] == "Warning" and actions(st) == ["event"] and st["consecutiveBreaches"] == 2
    assert [h["trigger"] for h in st["history"]] == ["manual", "manual"]
    # The v2 quoter has no noise: a check on it is Excellent.
    apply(
        e.cluster,
        paritycheck(
            "parity-v2",
            e.namespace,
            e.strategy,
            {"deployment": "pipeline", "configMap": CM},
            live={"query": series("live", "v2.0.0")},
            backtest={"query": series("backtest", "v2.0.0")},
        ),
    )
    e.wait_samples(10, "v2.0.0")  # its quoter was scraped a little later
    st = e.run("parity-v2")
    assert st["lastRun"]["level"] == "Excellent" and st["lastRun"]["trackingErrorBps"] < 1e-6, json.dumps(st["lastRun"])
    assert "actionsTaken" not in st or st["actionsTaken"] == []


def test_critical_halves_size_disables_entries_and_pauses_the_rollout(env: Env) -> None:
    e = env
    e.start_quoters(CRITICAL_NOISE)
    start_progressing_rollout(e)
    apply(
        e.cluster, paritycheck("parity", e.namespace, e.strategy, {"rollout": "fib-rsi"}, thresholdsBps=CRITICAL_BANDS)
    )
    e.wait_samples()
    st = e.run()
    assert st["lastRun"]["level"] == "Critical", st["lastRun"]
    assert sorted(actions(st)) == ["entriesEnabled=false", "pauseRollout", "sizeMultiplier=0.5"]
    assert sorted(st["activeActions"]) == sorted(actions(st))
    st = e.settled()
    assert set(action_states(st).values()) == {"Applied"}, st["actionsTaken"]
    doc = e.routing()
    assert doc["sizeMultiplier"] == 0.5 and doc["entriesEnabled"] is False
    assert owned_keys(doc), "critical does not take keys away"
    rst = wait_for(lambda: (r := e.rollout_status()).get("phase") == "Paused" and r, 15, what="rollout paused")
    rid = f"pck-parity-{st['runSeq']}-pause"
    handled = next(h for h in rst["handledRequests"] if h["id"] == rid)
    assert (
        handled["outcome"] == "Applied" and handled["source"] == "paritycheck/parity" and handled["action"] == "pause"
    )
    assert rst["history"][-1]["outcome"] == "Paused" and rst["history"][-1]["by"] == handled["by"]
    # The strategy app obeys the routing ConfigMap.
    q = e.quoters["v1.0.0"]
    wait_for(lambda: q.metric("size_multiplier") == 0.5 and q.metric("entries_enabled") == 0, 10, what="quoter obeys")
    # Idempotent: another Critical run takes no action again.
    st = e.run()
    assert st["lastRun"]["level"] == "Critical" and len(actions(st)) == 3
    assert e.routing()["sizeMultiplier"] == 0.5
    assert [h["outcome"] for h in e.rollout_status()["history"]] == ["Paused"]
    assert len(e.rollout_status()["handledRequests"]) == 1  # the pause was sent once
    reasons = e.event_reasons()
    assert reasons.count("ActionTaken") == 3, reasons


def test_emergency_stops_trading_everywhere(env: Env) -> None:
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    start_progressing_rollout(e)
    assert replicas(e.cluster, "pipeline", e.namespace)[0] == 2
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, {"rollout": "fib-rsi"}))
    e.wait_samples()
    st = e.run()
    assert st["lastRun"]["level"] == "Emergency", st["lastRun"]
    assert st["lastRun"]["trackingErrorBps"] >= 100
    assert sorted(actions(st)) == ["abortRollout", "entriesEnabled=false", "stopTrading"]
    # One request carries all three (the rollout turns entries off and frees every key itself).
    assert {a["request"] for a in st["actionsTaken"]} == {f"pck-parity-{st['runSeq']}-stopTrading"}
    rst = wait_for(lambda: (r := e.rollout_status()).get("phase") == "RolledBack" and r, 20, what="rolled back")
    assert rst["reason"] == "TradingStopped"
    wait_for(lambda: not owned_keys(e.routing()), 15, what="no key owned by anyone")
    assert e.routing()["entriesEnabled"] is False
    st = e.settled()
    assert set(action_states(st).values()) == {"Applied"}, st["actionsTaken"]
    # The pods stay: they have nothing to trade but can still manage their positions.
    assert replicas(e.cluster, "legacy", e.namespace)[0] == 2 and replicas(e.cluster, "pipeline", e.namespace)[0] == 2
    for q in e.quoters.values():
        wait_for(lambda q=q: q.metric("assigned_keys") == 0, 10, what="quoters trade nothing")


def test_consecutive_breaches_two_acts_only_on_the_second_breaching_run(env: Env) -> None:
    e = env
    e.start_quoters(CRITICAL_NOISE)
    apply(
        e.cluster,
        paritycheck(
            "parity", e.namespace, e.strategy, deployment_target(e), consecutiveBreaches=2, thresholdsBps=CRITICAL_BANDS
        ),
    )
    e.wait_samples()
    st = e.run()
    assert st["lastRun"]["level"] == "Critical" and st["consecutiveBreaches"] == 1
    assert actions(st) == [] and st.get("activeActions", []) == []
    assert e.routing()["sizeMultiplier"] == 1.0 and e.routing()["revision"] == 1
    st = e.run()
    assert st["lastRun"]["level"] == "Critical" and st["consecutiveBreaches"] == 2
    assert sorted(actions(st)) == ["entriesEnabled=false", "sizeMultiplier=0.5"]  # pauseRollout: no rollout
    st = e.settled()
    doc = e.routing()
    assert doc["sizeMultiplier"] == 0.5 and doc["entriesEnabled"] is False and doc["revision"] == 2
    assert sorted(owned_keys(doc)) == sorted(KEYS)


def test_emergency_on_a_deployment_target_frees_every_key_and_scales_it_to_zero(env: Env) -> None:
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, deployment_target(e)))
    e.wait_samples()
    st = e.run()
    assert st["lastRun"]["level"] == "Emergency"
    st = e.settled()
    doc = e.routing()
    assert set(doc["assignments"].values()) == {"none"} and doc["entriesEnabled"] is False
    assert replicas(e.cluster, "legacy", e.namespace)[0] == 0
    stop = next(a for a in st["actionsTaken"] if a["action"] == "stopTrading")
    assert stop["target"] == "deployment/legacy" and stop["state"] == "Applied" and stop["replicas"] == 2


def test_auto_recover_lifts_routing_actions_when_back_under_warning(env: Env) -> None:
    e = env
    e.start_quoters(CRITICAL_NOISE)
    target = deployment_target(e)
    apply(
        e.cluster,
        paritycheck(
            "parity", e.namespace, e.strategy, target, window="10s", autoRecover=True, thresholdsBps=CRITICAL_BANDS
        ),
    )
    e.wait_samples(10)
    st = e.run()
    assert st["lastRun"]["level"] == "Critical"
    e.settled()
    assert e.routing()["sizeMultiplier"] == 0.5
    e.quoters["v1.0.0"].set_knobs(return_noise_bps=0)
    time.sleep(12)  # the 10s window holds only quiet periods now
    st = e.run()
    assert st["lastRun"]["level"] == "Excellent", st["lastRun"]
    assert actions(st) == ["sizeMultiplier=0.5", "entriesEnabled=false", "sizeMultiplier=1", "entriesEnabled=true"]
    assert st.get("activeActions", []) == []
    st = e.settled()
    assert set(action_states(st).values()) == {"Applied"}
    doc = e.routing()
    assert doc["sizeMultiplier"] == 1.0 and doc["entriesEnabled"] is True
    assert "ActionApplied" in e.event_reasons()


def test_prometheus_unreachable_is_unknown_and_takes_no_action(env: Env) -> None:
    """A Prometheus nobody answers at (this check's own `prometheus.address`: the shared dev
    cluster's Prometheus stays up for concurrent sessions) gives Unknown with the reason, no action."""
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # closed again below: connection refused
    pc = paritycheck(
        "parity",
        e.namespace,
        e.strategy,
        deployment_target(e),
        prometheus={"address": f"http://127.0.0.1:{dead}", "timeout": "2s"},
    )
    apply(e.cluster, pc)
    e.wait_samples(MIN_POINTS)
    st = e.run(timeout=20)
    run = st["lastRun"]
    assert run["level"] == "Unknown" and "unreachable" in run["message"], run
    assert "trackingErrorBps" not in run
    assert actions(st) == [] and st["consecutiveBreaches"] == 0
    assert e.routing()["revision"] == 1 and replicas(e.cluster, "legacy", e.namespace)[0] == 2
    # The same check against the real Prometheus: Emergency, so the data was there all along.
    pc["spec"].pop("prometheus")
    apply(e.cluster, pc)
    st = e.run()
    assert st["lastRun"]["level"] == "Emergency"


def test_too_few_samples_is_unknown(env: Env) -> None:
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, deployment_target(e), minSamples=1000))
    e.wait_samples(5)
    st = e.run()
    assert st["lastRun"]["level"] == "Unknown" and "fewer than minSamples 1000" in st["lastRun"]["message"]
    assert st["lastRun"]["trackingErrorBps"] > 100  # measured and shown, not acted on
    assert actions(st) == []


def test_manual_run_by_plain_kubectl_patch_is_handled_once_and_recorded_with_who(env: Env) -> None:
    e = env
    e.start_quoters(0.0)
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, deployment_target(e)))
    e.wait_samples(10)
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    patch = {"status": {"requests": {"r-kubectl-1": {"action": "run", "by": e.me, "at": now}}}}
    out = e.cluster.kubectl(
        "patch", "pck", "parity", "-n", e.namespace, "--subresource=status", "--type=merge", "-p", json.dumps(patch)
    )
    assert out.returncode == 0, out.stderr
    st = wait_for(lambda: (s := e.status()) and "r-kubectl-1" in handled_ids(s) and s, 20, what="request handled")
    run = st["lastRun"]
    assert run["trigger"] == "manual" and run["by"] == e.me and run["level"] == "Excellent", run
    (handled,) = st["handledRequests"]
    assert handled["outcome"] == "Applied" and handled["message"] == f"run {st['runSeq']}: Excellent"
    assert "requests" not in st or st["requests"] == {}
    assert_at_rest(e, "parity")
    assert len(e.status()["history"]) == 1  # handled once: no second run


def test_catch_up_after_downtime_runs_exactly_once(env: Env, live_operator: OperatorProcess) -> None:
    e = env
    e.start_quoters(0.0)
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, deployment_target(e), schedule="* * * * *"))
    wait_for(lambda: e.status().get("nextRunAt"), 15, what="nextRunAt set")
    live_operator.stop()
    try:
        past = datetime.now(UTC) - timedelta(minutes=30)
        stamp: Callable[[datetime], str] = lambda t: t.isoformat(timespec="seconds").replace("+00:00", "Z")  # noqa: E731
        patch_status(
            e.cluster,
            "paritycheck",
            "parity",
            e.namespace,
            {
                "lastRun": {"at": stamp(past), "level": "Good", "trigger": "scheduled", "samples": 30},
                "history": [{"at": stamp(past), "level": "Good", "trigger": "scheduled", "samples": 30}],
                "nextRunAt": stamp(past + timedelta(minutes=1)),
            },
        )
        e.wait_samples(10)
    finally:
        live_operator.start()
    st = wait_for(lambda: (s := e.status()).get("lastRun", {}).get("trigger") == "catch-up" and s, 20, what="catch-up")
    next_run = datetime.fromisoformat(st["nextRunAt"].replace("Z", "+00:00"))
    assert next_run > datetime.now(UTC) - timedelta(seconds=2)
    time.sleep(3)
    st = e.status()
    triggers = [h["trigger"] for h in st["history"]]
    assert triggers.count("catch-up") == 1, triggers  # 29 missed slots, one run
    assert triggers[0] == "scheduled" and all(t == "scheduled" for t in triggers[2:])


def test_invalid_spec_is_reported_naming_the_field_and_never_runs(env: Env) -> None:
    e = env
    bad = paritycheck(
        "parity",
        e.namespace,
        e.strategy,
        {"deployment": "legacy"},
        live={"query": 'strategy_return{strategy="{{strategy}}",version="{{canary.version}}"}'},
        schedule="61 * * * *",
    )
    apply(e.cluster, bad)
    st = wait_for(lambda: (s := e.status()).get("phase") == "Invalid" and s, 15, what="phase Invalid")
    assert "spec.schedule" in st["message"] and "spec.live.query" in st["message"] and "canary.version" in st["message"]
    cond = next(c for c in st["conditions"] if c["type"] == "InvalidSpec")
    assert cond["status"] == "True"
    assert_at_rest(e, "parity")
    st = e.run()
    assert "lastRun" not in st and "InvalidSpec" in e.event_reasons()


def test_critical_then_good_pauses_then_resumes_the_rollout_and_lifts_the_routing(env: Env) -> None:
    e = env
    e.start_quoters(CRITICAL_NOISE)
    start_progressing_rollout(e)
    pc = paritycheck(
        "parity",
        e.namespace,
        e.strategy,
        {"rollout": "fib-rsi"},
        window="10s",
        autoRecover=True,
        thresholdsBps=CRITICAL_BANDS,
    )
    apply(e.cluster, pc)
    e.wait_samples(10)
    st = e.run()
    assert st["lastRun"]["level"] == "Critical", st["lastRun"]
    st = e.settled()
    assert action_states(st) == {
        "sizeMultiplier=0.5": "Applied",
        "entriesEnabled=false": "Applied",
        "pauseRollout": "Applied",
    }
    wait_for(lambda: e.rollout_status().get("phase") == "Paused", 15, what="rollout paused by the request")
    e.quoters["v1.0.0"].set_knobs(return_noise_bps=0)
    time.sleep(12)  # the 10s window holds only quiet periods now
    st = e.run()
    assert st["lastRun"]["level"] == "Excellent", st["lastRun"]
    st = e.settled()
    seq = st["runSeq"]
    lifts = {a["id"]: a["state"] for a in st["actionsTaken"] if a["run"] == seq}
    assert lifts == {
        f"pck-parity-{seq}-sizeMultiplier": "Applied",
        f"pck-parity-{seq}-entriesEnabled": "Applied",
        f"pck-parity-{seq}-resume": "Applied",
    }
    doc = e.routing()
    assert doc["sizeMultiplier"] == 1.0 and doc["entriesEnabled"] is True
    rst = wait_for(lambda: (r := e.rollout_status()).get("phase") == "Progressing" and r, 15, what="rollout resumed")
    assert [h["outcome"] for h in rst["history"]] == ["Paused", "Resumed"]
    assert [h["outcome"] for h in rst["handledRequests"]] == ["Applied", "Applied"]


def test_a_lift_recorded_just_before_a_crash_is_applied_after_the_restart(
    env: Env, live_operator: OperatorProcess
) -> None:
    """Kill the operator between its status write and its routing write: the next operator derives
    the routing write from the status alone (the lift is not lost, nothing is measured again)."""
    e = env
    e.start_quoters(CRITICAL_NOISE)
    apply(
        e.cluster,
        paritycheck(
            "parity", e.namespace, e.strategy, deployment_target(e), autoRecover=True, thresholdsBps=CRITICAL_BANDS
        ),
    )
    e.wait_samples(10)
    e.run()
    st = e.settled()
    assert e.routing()["sizeMultiplier"] == 0.5 and e.routing()["entriesEnabled"] is False
    live_operator.kill()  # SIGKILL
    try:
        # What the operator writes for a Good run before it touches the routing ConfigMap: the run and
        # its lifts, Pending. The process dies right after that write.
        seq = st["runSeq"] + 1
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        run = {"at": now, "seq": seq, "level": "Good", "trackingErrorBps": 12.0, "samples": 20, "trigger": "manual"}
        lifts = [
            {
                "id": f"pck-parity-{seq}-{name}",
                "action": action,
                "level": "Good",
                "run": seq,
                "at": now,
                "target": "deployment/legacy",
                "state": "Pending",
                "reason": "TE 12 bps (good)",
            }
            for name, action in (("sizeMultiplier", "sizeMultiplier=1"), ("entriesEnabled", "entriesEnabled=true"))
        ]
        intent = {
            "runSeq": seq,
            "lastRun": run,
            "history": [*st["history"], run],
            "consecutiveBreaches": 0,
            "activeActions": [],
            "actionsTaken": [*st["actionsTaken"], *lifts],
        }
        patch_status(e.cluster, "paritycheck", "parity", e.namespace, intent)
        assert e.routing()["sizeMultiplier"] == 0.5  # the routing write was lost with the process
    finally:
        live_operator.start()
    st = e.settled()
    assert {a["id"]: a["state"] for a in st["actionsTaken"] if a["run"] == seq} == {
        f"pck-parity-{seq}-sizeMultiplier": "Applied",
        f"pck-parity-{seq}-entriesEnabled": "Applied",
    }
    doc = e.routing()
    assert doc["sizeMultiplier"] == 1.0 and doc["entriesEnabled"] is True
    assert st["runSeq"] == seq and len(st["history"]) == seq  # not measured again
    assert_at_rest(e, "parity")
    assert e.routing()["revision"] == doc["revision"]  # written once


def test_emergency_racing_a_persons_promote_and_resume_ends_stopped_and_rejects_both(env: Env) -> None:
    """The race of the safety core: the ParityCheck's stopTrading lands on the rollout, and in the same
    second a person's promote and resume are written by plain kubectl. Whatever the order in which
    the operator sees them, the rollout ends stopped and both human requests are Rejected with why."""
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    start_progressing_rollout(e)
    me = e.me

    def human(rid: str, action: str) -> None:
        at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        patch_status(
            e.cluster,
            "strategyrollout",
            "fib-rsi",
            e.namespace,
            {"requests": {rid: {"action": action, "by": me, "at": at}}},
        )

    human("pause-first", "pause")  # paused by a person: without the stop, resume and promote would both apply
    wait_for(lambda: e.rollout_status().get("reason") == "Paused", 20, what="paused by a person")
    apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, {"rollout": "fib-rsi"}))
    e.wait_samples()
    rid = uuid.uuid4().hex
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    patch_status(
        e.cluster, "paritycheck", "parity", e.namespace, {"requests": {rid: {"action": "run", "by": me, "at": at}}}
    )

    def stop_written() -> bool:
        st = e.rollout_status()
        ids = [*st.get("requests", {}), *(h["id"] for h in st.get("handledRequests", []))]
        return any(i.startswith("pck-parity-") and i.endswith("-stopTrading") for i in ids)

    wait_for(stop_written, 30, interval=0.02, what="the ParityCheck's stopTrading on the rollout")
    human("h-promote", "promote")
    human("h-resume", "resume")
    rst = wait_for(
        lambda: (
            (r := e.rollout_status())
            and {"h-promote", "h-resume"} <= {h["id"] for h in r.get("handledRequests", [])}
            and r
        ),
        30,
        what="both human requests handled",
    )
    assert rst["phase"] == "RolledBack" and rst["reason"] == "TradingStopped", rst.get("message")
    by_id = {h["id"]: h for h in rst["handledRequests"]}
    stop = next(h for i, h in by_id.items() if i.endswith("-stopTrading"))
    assert stop["outcome"] == "Applied" and stop["source"] == "paritycheck/parity"
    for rid in ("h-promote", "h-resume"):
        assert by_id[rid]["outcome"] == "Rejected" and "stopped" in by_id[rid]["message"], by_id[rid]
    wait_for(lambda: not owned_keys(e.routing()), 15, what="no key owned by anyone")
    assert e.settled()["actionsTaken"] and set(action_states(e.settled()).values()) == {"Applied"}


def kube_at(cluster: DevCluster, host: str | None = None) -> Kube:
    """The operator's own client for the cluster's kubeconfig (optionally pointed at another address)."""
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    if host is not None:
        cfg.host = host
    return Kube(client.ApiClient(configured(cfg)))


async def test_a_failed_identity_lookup_is_never_cached_and_the_next_pass_asks_again(env: Env) -> None:
    """The operator's name (`by` of the stop an Emergency sends) is looked up on a ParityCheck pass. When
    that lookup fails (here: the API server's address refuses the connection), the pass fails and is
    retried by the loop; nothing is cached, and the next lookup against the real API server gives the real
    name, which the status admission policy accepts (test_emergency_stops_trading_everywhere shows the
    stop landing with it). The old code cached "unknown" for the life of the process."""
    down, up = kube_at(env.cluster, f"https://127.0.0.1:{free_port()}"), kube_at(env.cluster)
    try:
        ctx = Context(kube=down)
        with pytest.raises(Unanswered):
            await identity(ctx)
        assert ctx.identity is None, "a failed lookup is not remembered"
        ctx.kube = up
        assert await identity(ctx) == env.me
        assert ctx.identity == env.me
    finally:
        for kube in (down, up):
            kube.api.close()  # its pooled TLS connections (a ResourceWarning wherever they are collected)


def test_an_emergency_stops_its_rollout_when_the_operators_first_identity_lookup_failed(
    env: Env, live_operator: OperatorProcess, tmp_path: Path
) -> None:
    """End to end, the real operator process: its first SelfSubjectReview (asked when the Emergency sends its
    stop) is answered 503 by a proxy in front of the API server. The pass fails and is retried; the second
    lookup gives the real name, which the status admission policy accepts, and the rollout stops. The old
    code cached "unknown", and the policy refused that stop and every later one."""
    e = env
    e.start_quoters(EMERGENCY_NOISE)
    start_progressing_rollout(e)
    live_operator.stop()  # this namespace's operator is the one behind the proxy (the fixture restarts it)
    with ApiProxy(e.cluster.kubeconfig, tmp_path, {"/selfsubjectreviews": 1}) as proxy:
        op = OperatorProcess(proxy.kubeconfig, e.cluster.prometheus_url, tmp_path / "proxied.log", (e.namespace,))
        op.start()
        try:
            apply(e.cluster, paritycheck("parity", e.namespace, e.strategy, {"rollout": "fib-rsi"}))
            e.wait_samples()
            st = e.run(timeout=60)
            assert st["lastRun"]["level"] == "Emergency", st["lastRun"]
            rst = wait_for(lambda: (r := e.rollout_status()).get("phase") == "RolledBack" and r, 30, what="stopped")
            assert rst["reason"] == "TradingStopped"
            wait_for(lambda: not owned_keys(e.routing()), 15, what="no key owned by anyone")
            stop = next(h for h in rst["handledRequests"] if h["action"] == "stopTrading")
            assert stop["by"] == e.me and stop["source"] == "paritycheck/parity"
            assert proxy.failed["/selfsubjectreviews"] == 1, "the first lookup failed"
            assert proxy.forwarded["/selfsubjectreviews"] == 1, "asked again once, then kept"
        finally:
            op.stop()
