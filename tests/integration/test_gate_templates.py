"""Gate templates on the real control plane and real Prometheus: a ClusterGateTemplate-based gate rolls
back like its inline twin, a live template edit applies from the next evaluation, a missing template or
arg is InvalidSpec and nothing is routed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.gate_world import gate, rollout, scraped, start, wait_phase, wait_routed
from tests.integration.workloads import apply, routing, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

METRIC = "tmpl_gate_ms"
QUERY = 'max(tmpl_gate_ms{strategy="{{strategy}}",version="{{canary.version}}"})'
MISSING = "spec.gates[0].templateRef: ClusterGateTemplate 'no-such-template-x' not found"


def template(
    name: str, threshold: str = "50", kind: str = "ClusterGateTemplate", ns: str | None = None
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if ns is None else {"name": name, "namespace": ns}
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": kind,
        "metadata": meta,
        "spec": {
            "args": [{"name": "threshold", "default": threshold}, {"name": "metric"}],
            "gate": {
                "query": 'max({{args.metric}}{strategy="{{strategy}}",version="{{canary.version}}"})',
                "condition": "< {{args.threshold}}",
                "interval": "1s",
                "inconclusiveLimit": 30,
            },
        },
    }


def passing(cluster: DevCluster, name: str, namespace: str) -> bool:
    gates = [g for g in status(cluster, name, namespace).get("gates", []) if g["name"] == "tick-ms"]
    return bool(gates) and gates[0].get("result") == "Pass"


@pytest.fixture
def exporter(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> Iterator[Exporter]:
    with scraped(cluster, f"tmpl-{namespace}") as exp:
        yield exp


@pytest.fixture
def cluster_template(cluster: DevCluster, namespace: str) -> Iterator[str]:
    name = f"tick-{namespace}"  # cluster-scoped: one per test namespace
    apply(cluster, template(name))
    try:
        yield name
    finally:
        cluster.kubectl("delete", "clustergatetemplate", name, "--ignore-not-found", check=False)


def test_a_cluster_template_gate_rolls_back_like_its_inline_twin(
    cluster: DevCluster, namespace: str, exporter: Exporter, cluster_template: str
) -> None:
    inline = rollout(
        "twin-inline",
        namespace,
        [{"name": "tick-ms", "query": QUERY, "condition": "< 50", "interval": "1s", "inconclusiveLimit": 30}],
        pause="60s",
    )
    templated = rollout(
        "twin-tmpl",
        namespace,
        [{"name": "tick-ms", "templateRef": {"name": cluster_template}, "args": {"metric": METRIC}}],
        pause="60s",
    )
    for obj in (inline, templated):
        exporter.gauge("tmpl_gate_ms", 10.0, strategy=obj["spec"]["strategy"], version="v2.0.0")
        start(cluster, obj)
    for name in ("twin-inline", "twin-tmpl"):
        wait_for(lambda n=name: passing(cluster, n, namespace), 60, what=f"{name} gate Pass")  # type: ignore[misc]
    rv = json.loads(cluster.kubectl("get", "clustergatetemplate", cluster_template, "-o", "json").stdout)
    used = gate(status(cluster, "twin-tmpl", namespace), "tick-ms")["template"]
    assert used == {
        "kind": "ClusterGateTemplate",
        "name": cluster_template,
        "resourceVersion": rv["metadata"]["resourceVersion"],
    }
    for obj in (inline, templated):
        exporter.gauge("tmpl_gate_ms", 120.0, strategy=obj["spec"]["strategy"], version="v2.0.0")
    a = wait_phase(cluster, "twin-inline", namespace, "RolledBack")
    b = wait_phase(cluster, "twin-tmpl", namespace, "RolledBack")
    assert a["reason"] == b["reason"] == "GateFailed"
    assert a["message"] == b["message"]  # same gate, same value, same condition
    assert "tick-ms" in b["message"] and "120" in b["message"] and "< 50" in b["message"]
    for name in ("twin-inline", "twin-tmpl"):
        wait_routed(cluster, name, namespace, {"v1.0.0", "draining"})


def test_a_template_edited_mid_rollout_applies_from_the_next_evaluation(
    cluster: DevCluster, namespace: str, exporter: Exporter
) -> None:
    apply(cluster, template("tick", kind="GateTemplate", ns=namespace))
    obj = rollout(
        "edited",
        namespace,
        [{"name": "tick-ms", "templateRef": {"kind": "GateTemplate", "name": "tick"}, "args": {"metric": METRIC}}],
        pause="120s",
    )
    exporter.gauge("tmpl_gate_ms", 10.0, strategy=obj["spec"]["strategy"], version="v2.0.0")
    start(cluster, obj)
    wait_for(lambda: passing(cluster, "edited", namespace), 60, what="gate Pass")
    before = gate(status(cluster, "edited", namespace), "tick-ms")["template"]["resourceVersion"]
    apply(cluster, template("tick", threshold="5", kind="GateTemplate", ns=namespace))  # 10 is now too slow
    st = wait_phase(cluster, "edited", namespace, "RolledBack", timeout=60)
    assert "< 5" in st["message"]
    after = gate(st, "tick-ms")["template"]
    assert after["kind"] == "GateTemplate" and after["resourceVersion"] != before


@pytest.mark.parametrize(
    ("gates", "expected"),
    [
        ([{"name": "g", "templateRef": {"name": "no-such-template-x"}}], MISSING),
        (
            [{"name": "g", "templateRef": {"kind": "GateTemplate", "name": "tick"}}],
            "spec.gates[0].args.metric: required by GateTemplate tick",
        ),
    ],
    ids=["unknown-template", "missing-arg"],
)
def test_missing_template_or_arg_is_invalid_spec_and_nothing_is_routed(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, gates: list[dict[str, Any]], expected: str
) -> None:
    apply(cluster, template("tick", kind="GateTemplate", ns=namespace))
    start(cluster, rollout("untemplated", namespace, gates))
    st = wait_phase(cluster, "untemplated", namespace, "Invalid")
    assert st["reason"] == "InvalidSpec" and expected in st["message"]
    assert routing(cluster, "untemplated-routing", namespace) is None
