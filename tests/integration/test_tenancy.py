"""Tenancy on the real control plane (docs/safety.md "Tenancy"): a rollout acts only in namespaces that
let it in and only on objects that are its alone; the operator never adopts what it did not create.

The session's operator (cluster-wide rights, like the chart's ClusterRole) is the one acting; the
attacker is a ServiceAccount that may create StrategyRollouts in its own namespace and nothing else.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.test_safety_core import rollout
from tests.integration.workloads import (
    ROLLOUT_AUTHOR_RULES,
    allow_rollouts_from,
    apply,
    deployment,
    get,
    replicas,
    role_writer,
    status,
)

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

CLAIMED_BY = "strategyrollouts.io/claimed-by"
OWNER_UID = "strategyrollouts.io/owner-uid"


def invalid(cluster: DevCluster, name: str, ns: str, timeout: float = 60) -> str:
    """The rollout's InvalidSpec message, once it is Invalid."""

    def check() -> str | None:
        st = status(cluster, name, ns)
        return str(st["message"]) if st.get("phase") == "Invalid" and st.get("reason") == "InvalidSpec" else None

    try:
        return str(wait_for(check, timeout, what=f"{ns}/{name} InvalidSpec"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nstatus: {status(cluster, name, ns)}") from None


def at_promote(cluster: DevCluster, name: str, ns: str) -> dict[str, Any]:
    """The rollout (test_safety_core.rollout: 20 %, then a pause for a person) waiting at its pause."""
    return dict(
        wait_for(
            lambda: (st := status(cluster, name, ns)).get("reason") == "AwaitingPromotion" and st,
            90,
            what=f"{ns}/{name} at its pause",
        )
    )


def snapshot(cluster: DevCluster, ns: str, config_map: str, *deployments: str) -> dict[str, Any]:
    """What must not change: the ConfigMap as stored (resourceVersion included) and each Deployment's
    replicas and claim."""
    out: dict[str, Any] = {"cm": get(cluster, "configmap", config_map, ns)}
    for dep in deployments:
        body = get(cluster, "deployment", dep, ns) or {}
        meta = body.get("metadata") or {}
        out[dep] = (body["spec"]["replicas"], (meta.get("annotations") or {}).get(CLAIMED_BY))
    return out


def uid(cluster: DevCluster, name: str, ns: str) -> str:
    return str((get(cluster, "strategyrollout", name, ns) or {})["metadata"]["uid"])


@pytest.fixture
def victim(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> str:
    """trading-prod: fib-rsi rolling legacy -> pipeline, at 20 %, its routing ConfigMap fib-rsi-routing."""
    apply(cluster, deployment("legacy", namespace, 3, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout("fib-rsi", namespace))
    at_promote(cluster, "fib-rsi", namespace)
    return namespace


def test_another_namespace_cannot_take_over_routing_or_deployments_and_deleting_it_leaves_them(
    cluster: DevCluster,
    victim: str,
    other_namespace: str,
    live_operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    dev = other_namespace
    attacker, _ = role_writer(cluster, dev, "mallory", ROLLOUT_AUTHOR_RULES, tmp_path)
    # She may create rollouts in dev, and nothing at all in the victim's namespace.
    assert attacker.run("auth", "can-i", "create", "strategyrollouts", "-n", dev).stdout.strip() == "yes"
    for verb, what in (("create", "strategyrollouts"), ("get", "configmaps"), ("patch", "deployments")):
        assert attacker.run("auth", "can-i", verb, what, "-n", victim).stdout.strip() == "no", (verb, what)
    victim_uid = uid(cluster, "fib-rsi", victim)
    before = snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline")
    assert before["legacy"][1] == f"{victim}/fib-rsi/{victim_uid}"  # the victim's own claim, recorded
    assert before["cm"]["metadata"]["labels"][OWNER_UID] == victim_uid
    # Point a stage at the victim's namespace, its ConfigMap and its Deployments (swapped: "completing"
    # would scale the victim's stable to 0 and hand every key to the attacker's version).
    evil = rollout("evil", dev)
    evil["spec"]["stable"] = {"deployment": "pipeline", "version": "v0.0.1"}
    evil["spec"]["canary"] = {"deployment": "legacy", "version": "v6.6.6", "replicas": 1}
    evil["spec"]["routing"]["configMap"] = "fib-rsi-routing"
    evil["spec"]["stages"] = [{"name": "prod", "namespace": victim, "steps": [{"setWeight": 100}]}]
    evil["spec"]["scaleDownDelay"] = "1s"
    result = attacker.apply(evil)
    assert result.returncode == 0, result.stderr  # no admission webhook here: the operator must refuse
    message = invalid(cluster, "evil", dev)
    assert (
        f"spec.stages[0].namespace: namespace {victim} does not allow rollouts from {dev}"
        " (annotation strategyrollouts.io/allow-rollouts-from)"
    ) in message, message
    time.sleep(4)  # several passes of both rollouts
    assert snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline") == before
    assert status(cluster, "evil", dev).get("targets") in (None, [])  # it never routed anywhere
    assert status(cluster, "fib-rsi", victim)["reason"] == "AwaitingPromotion"
    # Deleting the refused rollout removes nothing of the victim's.
    assert attacker.run("delete", "srl", "evil", "-n", dev, "--wait=true").returncode == 0
    time.sleep(3)
    assert snapshot(cluster, victim, "fib-rsi-routing", "legacy", "pipeline") == before
    assert get(cluster, "configmap", "fib-rsi-routing", victim) is not None


def test_a_namespace_that_allows_it_gets_the_stage_and_its_claims_are_recorded(
    cluster: DevCluster, namespace: str, other_namespace: str, live_operator: OperatorProcess
) -> None:
    home, stage = namespace, other_namespace
    allow_rollouts_from(cluster, stage, "somewhere-else", home)
    for ns in (home, stage):
        apply(cluster, deployment("legacy", ns, 2, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    body = rollout("multi", home)
    body["spec"]["stages"] = [
        {"name": "staging", "namespace": stage, "steps": [{"setWeight": 20}, {"pause": {}}]},
        {"name": "prod", "steps": [{"setWeight": 20}]},
    ]
    apply(cluster, body)
    at_promote(cluster, "multi", home)
    me = f"{home}/multi/{uid(cluster, 'multi', home)}"
    cm = get(cluster, "configmap", "multi-routing", stage) or {}
    assert cm["metadata"]["labels"][OWNER_UID] == me.rsplit("/", 1)[1]
    for dep in ("legacy", "pipeline"):
        annotations = (get(cluster, "deployment", dep, stage) or {})["metadata"].get("annotations") or {}
        assert annotations.get(CLAIMED_BY) == me, (dep, annotations)
    assert replicas(cluster, "pipeline", stage)[0] == 2  # it acts there
    # The namespace takes its permission back: the rollout stops (nothing more is written there).
    allow_rollouts_from(cluster, stage, "somewhere-else")
    # Seen at its next pass (any event; at most --idle-recheck later): a spec edit makes it now.
    cluster.kubectl("patch", "srl", "multi", "-n", home, "--type=merge", "-p", '{"spec":{"scaleDownDelay":"3s"}}')
    message = invalid(cluster, "multi", home)
    assert f"spec.stages[0].namespace: namespace {stage} does not allow rollouts from {home}" in message


def test_two_rollouts_naming_one_deployment_the_second_is_invalid_naming_the_first(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    apply(cluster, deployment("legacy", ns, 3, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    apply(cluster, deployment("pipeline-b", ns, 0, "v3.0.0"))
    apply(cluster, rollout("first", ns))
    at_promote(cluster, "first", ns)
    before = snapshot(cluster, ns, "first-routing", "legacy", "pipeline", "pipeline-b")
    second = rollout("second", ns)  # the same stable Deployment, its own canary and ConfigMap
    second["spec"]["canary"] = {"deployment": "pipeline-b", "version": "v3.0.0", "replicas": 1}
    apply(cluster, second)
    message = invalid(cluster, "second", ns)
    assert f"spec.stable.deployment: deployment {ns}/legacy is claimed by strategyrollout {ns}/first" in message
    time.sleep(3)
    assert snapshot(cluster, ns, "first-routing", "legacy", "pipeline", "pipeline-b") == before
    assert get(cluster, "configmap", "second-routing", ns) is None  # it routed nothing
    # Once the first is gone its claim is stale: the second takes the Deployment and goes on.
    cluster.kubectl("delete", "srl", "first", "-n", ns)
    at_promote(cluster, "second", ns)
    annotations = (get(cluster, "deployment", "legacy", ns) or {})["metadata"]["annotations"]
    assert annotations[CLAIMED_BY] == f"{ns}/second/{uid(cluster, 'second', ns)}"


def test_two_rollouts_naming_one_config_map_the_second_is_invalid_and_deleting_it_leaves_the_config_map(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    for name in ("first", "second"):
        apply(cluster, deployment(f"{name}-legacy", ns, 3, "v1.0.0"), deployment(f"{name}-pipeline", ns, 0, "v2.0.0"))
    bodies = {}
    for name in ("first", "second"):
        body = rollout(name, ns)
        body["spec"]["stable"]["deployment"] = f"{name}-legacy"
        body["spec"]["canary"]["deployment"] = f"{name}-pipeline"
        body["spec"]["routing"]["configMap"] = "shared-routing"
        bodies[name] = body
    apply(cluster, bodies["first"])
    at_promote(cluster, "first", ns)
    before = snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline")
    apply(cluster, bodies["second"])
    message = invalid(cluster, "second", ns)
    assert f"spec.routing.configMap: configmap {ns}/shared-routing is claimed by strategyrollout {ns}/first" in message
    time.sleep(3)
    assert snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline") == before
    assert replicas(cluster, "second-pipeline", ns)[0] == 0 and replicas(cluster, "second-legacy", ns)[0] == 3
    cluster.kubectl("delete", "srl", "second", "-n", ns, "--wait=true")
    time.sleep(3)
    assert snapshot(cluster, ns, "shared-routing", "first-legacy", "first-pipeline") == before
    assert status(cluster, "first", ns)["reason"] == "AwaitingPromotion"


def test_a_config_map_nobody_created_for_it_is_never_adopted(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    ns = namespace
    apply(cluster, deployment("legacy", ns, 3, "v1.0.0"), deployment("pipeline", ns, 0, "v2.0.0"))
    theirs = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "fib-rsi-routing", "namespace": ns}}
    apply(cluster, {**theirs, "data": {"routing.json": '{"assignments": {"K0": "mine"}}', "other": "keep"}})
    before = snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline")
    apply(cluster, rollout("fib-rsi", ns))
    message = invalid(cluster, "fib-rsi", ns)
    assert (
        f"spec.routing.configMap: configmap {ns}/fib-rsi-routing exists and was not created by the operator" in message
    )
    time.sleep(3)
    assert snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline") == before
    cluster.kubectl("delete", "srl", "fib-rsi", "-n", ns, "--wait=true")
    time.sleep(3)
    assert snapshot(cluster, ns, "fib-rsi-routing", "legacy", "pipeline") == before
