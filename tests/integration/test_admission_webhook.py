"""The validating admission webhook (operator/admission.py) on the real control plane.

Two operator processes with --leader-elect; the STANDBY serves the webhook (kopf's WebhookServer on
127.0.0.1, kopf's managed ValidatingWebhookConfiguration with a url clientConfig, a certificate made
here with openssl: kopf's own self-signing needs oscrypto, which cannot read this OpenSSL's version).
`kubectl apply` of each bad case is refused naming the field; with the operators down the same apply
succeeds (failurePolicy Ignore) and the operator reports InvalidSpec once back.

The namespace does not match the session operator's pattern: only these processes act here.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.operator_process import OperatorProcess, free_port
from tests.integration.conftest import wait_for
from tests.integration.test_paritycheck_operator import paritycheck
from tests.integration.test_rollout_operator import rollout
from tests.integration.test_shadowrun_operator import shadowrun
from tests.integration.workloads import (
    ROLLOUT_AUTHOR_RULES,
    allow_rollouts_from,
    apply,
    deployment,
    get,
    role_writer,
    self_signed,
    status,
)

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

GOOD_GATE = {"name": "p95", "query": 'max(up{job="{{strategy}}"})', "condition": "< 2", "interval": "5s"}


@dataclass
class Hooked:
    cluster: DevCluster
    ns: str
    config: str  # the ValidatingWebhookConfiguration kopf manages
    leader: OperatorProcess
    standby: OperatorProcess
    port: int

    def apply(self, obj: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return apply(self.cluster, obj, check=False)  # type: ignore[no-any-return]


@pytest.fixture
def hooked(cluster: DevCluster, crds: None, tmp_path: Path) -> Iterator[Hooked]:
    ns = f"adm{uuid.uuid4().hex[:10]}"
    name = f"{ns}.strategyrollouts.io"
    cluster.kubectl("create", "namespace", ns)
    cert, key = self_signed(tmp_path, "webhook")
    port = free_port()
    elect = ("--leader-elect", "--leader-elect-namespace", ns)
    webhook = ("--admission-webhook", str(port), "--admission-managed", name)
    webhook += ("--admission-cert", str(cert), "--admission-key", str(key))
    leader = OperatorProcess(cluster.kubeconfig, cluster.prometheus_url, tmp_path / "leader.log", (ns,), elect)
    standby = OperatorProcess(
        cluster.kubeconfig, cluster.prometheus_url, tmp_path / "standby.log", (ns,), (*elect, *webhook)
    )
    try:
        leader.start()
        wait_for(lambda: leader.readiness() == (200, "leader"), 30, 0.2, "the first process to lead")
        standby.start()
        # Ready (200) only once its webhook server accepts connections: 503 until then.
        wait_for(lambda: standby.readiness() == (200, "standby"), 30, 0.2, "the standby's webhook to serve")
        h = Hooked(cluster, ns, name, leader, standby, port)
        wait_for(lambda: served(h), 60, 0.5, "the webhook to refuse a bad object")
        yield h
    finally:
        for op in (standby, leader):
            op.stop()
        cluster.kubectl("delete", "validatingwebhookconfiguration", name, "--ignore-not-found", check=False)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def served(h: Hooked) -> bool:
    """The managed configuration points at the standby and a bad object is refused through it."""
    out = h.cluster.kubectl("get", "validatingwebhookconfiguration", h.config, "-o", "json", check=False)
    if out.returncode != 0:
        return False
    hooks = json.loads(out.stdout).get("webhooks") or []
    if not hooks or not all(f"127.0.0.1:{h.port}/" in w["clientConfig"].get("url", "") for w in hooks):
        return False
    probe = bad_rollout(h, "probe", query='max(up{job="{{strategyy}}"})')
    result = h.apply(probe)
    return result.returncode != 0 and "denied the request" in result.stderr


def bad_rollout(h: Hooked, name: str, **gate: Any) -> dict[str, Any]:
    return rollout(name, h.ns, f"s_{h.ns}", gates=[{**GOOD_GATE, **gate}])


def refused(h: Hooked, obj: dict[str, Any], *fields: str) -> str:
    result = h.apply(obj)
    assert result.returncode != 0, f"{obj['kind']} {obj['metadata']['name']} was admitted"
    assert "denied the request" in result.stderr, result.stderr
    for text in fields:
        assert text in result.stderr, (text, result.stderr)
    assert get(h.cluster, obj["kind"].lower(), obj["metadata"]["name"], h.ns) is None
    return result.stderr


def test_bad_objects_are_refused_at_apply_naming_the_field(hooked: Hooked) -> None:
    h = hooked
    assert h.standby.readiness() == (200, "standby"), "the standby serves the webhook"
    refused(h, bad_rollout(h, "placeholder", query='max(up{job="{{strategyy}}"})'),
            "spec.gates[0].query: unknown placeholder {{strategyy}}")  # fmt: skip
    message = refused(h, bad_rollout(h, "promql", query="sum(rate(up[5m])"), "spec.gates[0].query", "Prometheus")
    assert "parse error" in message  # Prometheus' own words
    market = rollout("calendar", h.ns, f"s_{h.ns}", gates=[GOOD_GATE], market={"calendar": "XNOPE"})
    refused(h, market, "spec.market", "XNOPE")
    template = bad_rollout(h, "template")
    template["spec"]["gates"] = [{"name": "tick", "templateRef": {"kind": "GateTemplate", "name": "missing"}}]
    refused(h, template, "spec.gates[0].templateRef", "missing")
    shadow = shadowrun("shadow", h.ns, f"s_{h.ns}", h.cluster.redis_url, kpis=[{**GOOD_GATE, "query": "max(up"}])
    refused(h, shadow, "spec.kpis[0].query", "Prometheus cannot parse")
    # Beyond the size budget (engine/size.py): 5,000 keys are segmented, but 16 stage namespaces of versions
    # named by git SHAs could not hold every segment an abort may write.
    wide = rollout("wide", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])
    wide["spec"]["routing"]["keys"] = [f"SYM{i:04d}USD" for i in range(5000)]
    wide["spec"]["stable"]["version"], wide["spec"]["canary"]["version"] = "a" * 40, "b" * 40
    steps = [{"setWeight": 100}]
    wide["spec"]["stages"] = [{"name": f"s{i}", "namespace": f"ns{i}", "steps": steps} for i in range(16)]
    refused(h, wide, "spec.stages: 16 stage namespaces with versions of up to 40 characters exceed the status size")
    # A sequential judge that could never decide, or whose sides cannot be paired by time (docs/judge.md).
    judge = {"test": "sequential", "query": 'pnl{version="{{version}}"}', "worseWhen": "lower", "step": "1m"}
    short = bad_rollout(h, "seq-short")
    short["spec"]["gates"] = [{"name": "j", "judge": {**judge, "minSamples": 30, "decideWithin": "20m"}}]
    refused(h, short, "spec.gates[0].judge.decideWithin: 20m is shorter than minSamples x step (30 x 1m = 30m)")
    pinned = bad_rollout(h, "seq-pinned")
    pinned["spec"]["gates"] = [{"name": "j", "judge": {**judge, "query": 'pnl{version="{{version}}"} @ end()'}}]
    refused(h, pinned, "spec.gates[0].judge.query: pairing: time cannot align the sides")
    parity = paritycheck("parity", h.ns, f"s_{h.ns}", {"rollout": "fib-rsi"})
    parity["spec"]["live"]["query"] = 'sum(pnl{strategy="{{strategy}}", v="{{nope}}"})'
    refused(h, parity, "spec.live.query", "{{nope}}")
    # A mannWhitneyU judge over an hour-long pause: admitted, with the repeated-look warning (its rate).
    warned = ""
    for attempt in range(15):  # an estimate that outlasts its bound is skipped, then cached for the next apply
        mw = rollout(f"mw-{attempt}", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])
        mw["spec"]["gates"].append(
            {"name": "j", "interval": "1m", "judge": {**judge, "test": "mannWhitneyU", "window": "30m"}}
        )
        mw["spec"]["stages"] = [{"name": "only", "steps": [{"setWeight": 20}, {"pause": {"duration": "1h"}}]}]
        result = h.apply(mw)
        assert result.returncode == 0, result.stderr
        if "judge simulate" in result.stderr:
            warned = result.stderr
            break
        time.sleep(1)
    assert "spec.gates[1].judge: a mannWhitneyU judge evaluated every 1m over a 60-minute step" in warned
    assert "rolls back a version that is not worse in about" in warned
    # The same judge from a GateTemplate warns too, naming the template (the estimate is cached by now).
    mw_judge = {**judge, "test": "mannWhitneyU", "window": "30m"}
    tpl = {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "GateTemplate",
        "metadata": {"name": "mw-judge", "namespace": h.ns},
        "spec": {"gate": {"interval": "1m", "judge": mw_judge}},  # no interval beside templateRef: the template's
    }
    assert h.apply(tpl).returncode == 0
    via = rollout("mw-tpl", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])
    via["spec"]["gates"].append({"name": "j", "templateRef": {"kind": "GateTemplate", "name": "mw-judge"}})
    via["spec"]["stages"] = mw["spec"]["stages"]
    result = h.apply(via)
    assert result.returncode == 0, result.stderr
    assert "spec.gates[1].judge (from GateTemplate mw-judge): a mannWhitneyU judge evaluated every 1m" in result.stderr
    # A good object passes, and the admission never wrote anything (the standby acts on nothing).
    assert h.apply(rollout("fine", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])).returncode == 0
    assert h.standby.metric_samples("strategy_rollouts_leader") == [0.0]


def test_with_the_operator_down_apply_succeeds_and_invalid_spec_follows(hooked: Hooked) -> None:
    h = hooked
    h.standby.signal(signal.SIGKILL)  # the configuration stays, pointing at nothing
    h.standby.proc.wait(10)  # type: ignore[union-attr]
    h.leader.stop()
    result = h.apply(bad_rollout(h, "later", query='max(up{job="{{strategyy}}"})'))
    assert result.returncode == 0, result.stderr  # failurePolicy Ignore
    h.leader.start()

    def invalid() -> dict[str, Any] | None:
        st = status(h.cluster, "later", h.ns)
        return st if st.get("phase") == "Invalid" else None

    st = wait_for(invalid, 60, 0.5, "InvalidSpec")
    assert st["reason"] == "InvalidSpec" and "spec.gates[0].query: unknown placeholder {{strategyy}}" in st["message"]


def test_a_foreign_namespace_and_a_claimed_deployment_are_refused_at_apply(hooked: Hooked, tmp_path: Path) -> None:
    """docs/safety.md "Tenancy": what the operator would report as InvalidSpec is refused at apply."""
    h = hooked
    victim = f"{h.ns}-victim"
    h.cluster.kubectl("create", "namespace", victim)
    try:
        # A user who may create rollouts in her own namespace only, pointing a stage at another one.
        mallory, _ = role_writer(h.cluster, h.ns, "mallory", ROLLOUT_AUTHOR_RULES, tmp_path)
        stages = [{"name": "prod", "namespace": victim, "steps": [{"setWeight": 100}]}]
        evil = rollout("evil", h.ns, f"s_{h.ns}", gates=[GOOD_GATE], stages=stages)
        result = mallory.apply(evil)
        assert result.returncode != 0 and "denied the request" in result.stderr, result
        assert (
            f"spec.stages[0].namespace: namespace {victim} does not allow rollouts from {h.ns}"
            " (annotation strategyrollouts.io/allow-rollouts-from)"
        ) in result.stderr, result.stderr
        assert get(h.cluster, "strategyrollout", "evil", h.ns) is None
        # Once the namespace lets h.ns in, the same apply is admitted.
        allow_rollouts_from(h.cluster, victim, h.ns)
        assert mallory.apply(evil).returncode == 0
        # One Deployment, two rollouts: the operator records the first's claim; the second is refused.
        apply(h.cluster, deployment("legacy", h.ns, 2, "v1.0.0"), deployment("pipeline", h.ns, 0, "v2.0.0"))
        assert h.apply(rollout("first", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])).returncode == 0

        def claim() -> str | None:
            dep = get(h.cluster, "deployment", "legacy", h.ns) or {}
            return (dep["metadata"].get("annotations") or {}).get("strategyrollouts.io/claimed-by")

        assert str(wait_for(claim, 60, 0.5, "the first's claim")).startswith(f"{h.ns}/first/")
        second = rollout("second", h.ns, f"s_{h.ns}", gates=[GOOD_GATE])
        second["spec"]["canary"]["deployment"] = "pipeline-2"
        refused(
            h, second, f"spec.stable.deployment: deployment {h.ns}/legacy is claimed by strategyrollout {h.ns}/first"
        )
    finally:
        h.cluster.kubectl("delete", "namespace", victim, "--wait=false", "--ignore-not-found", check=False)
