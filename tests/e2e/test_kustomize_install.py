"""`kubectl apply -k manifests/install` on the real local control plane, then removal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import DevCluster
from devcluster.realnode import KWOK_NODE_SELECTOR, KWOK_TOLERATION

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "manifests" / "install"


def built(cluster: DevCluster) -> list[dict[str, Any]]:
    out = cluster.kubectl("kustomize", str(INSTALL)).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture
def installed(cluster: DevCluster) -> Iterator[list[dict[str, Any]]]:
    docs = built(cluster)
    yield docs
    # Remove what the install created, except the CRDs: they are shared by everything on this cluster
    # (deleting them would delete every StrategyRollout of concurrently running tests).
    for doc in reversed(docs):
        if doc["kind"] == "CustomResourceDefinition":
            continue
        ns = doc["metadata"].get("namespace")
        where = ["-n", ns] if ns else []
        cluster.kubectl(
            "delete", doc["kind"], doc["metadata"]["name"], *where, "--ignore-not-found", "--wait=false",
            check=False,
        )  # fmt: skip


def test_kustomize_build_has_crds_rbac_and_deployment(cluster: DevCluster) -> None:
    docs = built(cluster)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds.count("CustomResourceDefinition") == len(list((ROOT / "crds").glob("*.yaml")))  # our 5 kinds
    for kind in (
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
        "ConfigMap",
    ):
        assert kind in kinds, kind
    for d in docs:
        if d["kind"] not in {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}:
            assert d["metadata"]["namespace"] == "strategy-rollouts", d["metadata"]["name"]
    crds = {p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert {p.read_text() for p in (INSTALL / "crds").glob("*.yaml")} == crds


def test_kubectl_apply_k(cluster: DevCluster, installed: list[dict[str, Any]]) -> None:
    r = cluster.kubectl("apply", "-k", str(INSTALL))
    assert "deployment.apps/strategy-rollouts" in r.stdout
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=60s",
        "crd/strategyrollouts.strategyrollouts.io", "crd/shadowruns.strategyrollouts.io",
        "crd/paritychecks.strategyrollouts.io",
    )  # fmt: skip
    # The published image is not on this machine: place the pod on a kwok node (fake, never pulled), as a
    # user sets placement; the image running for real on the real node is tests/e2e/test_in_cluster.py.
    placement = {"spec": {"template": {"spec": {"nodeSelector": KWOK_NODE_SELECTOR, "tolerations": [KWOK_TOLERATION]}}}}
    cluster.kubectl(
        "patch", "deployment", "strategy-rollouts", "-n", "strategy-rollouts",
        "--type=merge", "-p", json.dumps(placement),
    )  # fmt: skip
    cluster.kubectl("rollout", "status", "deployment/strategy-rollouts", "-n", "strategy-rollouts", "--timeout=120s")
    dep = json.loads(
        cluster.kubectl("get", "deployment", "strategy-rollouts", "-n", "strategy-rollouts", "-o", "json").stdout
    )
    assert dep["status"]["readyReplicas"] == dep["spec"]["replicas"] == 2  # leader + standby (high-availability.md)
    pdb, lease_role = "poddisruptionbudget/strategy-rollouts", "role/strategy-rollouts-leader-election"
    cluster.kubectl("get", pdb, lease_role, "-n", "strategy-rollouts")  # raises when either is missing
    assert dep["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "kustomize"
    sa = "system:serviceaccount:strategy-rollouts:strategy-rollouts"
    r = cluster.kubectl(
        "auth", "can-i", "update", "deployments.apps", "--subresource=scale", "-n", "default", f"--as={sa}"
    )  # fmt: skip
    assert r.stdout.strip() == "yes"
    # The status admission policies are installed, cluster-scoped, and bound with their parameter (docs/rbac.md).
    for plural in ("strategyrollouts", "shadowruns", "paritychecks"):
        name = f"strategy-rollouts-status-{plural}"
        binding = json.loads(cluster.kubectl("get", "validatingadmissionpolicybinding", name, "-o", "json").stdout)
        assert binding["spec"]["policyName"] == name and "namespace" not in binding["metadata"]
        assert binding["spec"]["paramRef"]["name"] == "strategy-rollouts-status-writers"
        cluster.kubectl("get", "validatingadmissionpolicy", name)
    params = json.loads(
        cluster.kubectl(
            "get", "configmap", "strategy-rollouts-status-writers", "-n", "strategy-rollouts", "-o", "json"
        ).stdout
    )
    assert params["data"]["users"].split() == [sa]
    for role in ("operate", "approve", "risk"):
        cluster.kubectl("get", "clusterrole", f"strategy-rollouts-{role}")

    # Re-applying is a no-op (idempotent install). kubectl reports a PodDisruptionBudget "configured" on
    # every client-side apply (it always sends a patch for it); the object itself does not change. Its
    # resourceVersion may (the disruption controller writes its status as the pods become ready): compare
    # the generation and the spec, which only a change of the object bumps.
    def pdb_spec() -> tuple[int, dict[str, Any]]:
        obj = json.loads(cluster.kubectl("get", pdb, "-n", "strategy-rollouts", "-o", "json").stdout)
        return obj["metadata"]["generation"], obj["spec"]

    before = pdb_spec()
    again = cluster.kubectl("apply", "-k", str(INSTALL)).stdout
    others = "\n".join(line for line in again.splitlines() if not line.startswith("poddisruptionbudget.policy/"))
    assert "configured" not in others.replace("unchanged", ""), again
    assert pdb_spec() == before
    ns = json.loads(cluster.kubectl("get", "namespace", "strategy-rollouts", "-o", "json").stdout)
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
