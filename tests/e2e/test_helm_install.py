"""The Helm chart on the real local control plane: install, upgrade, uninstall; examples validate.

Here the operator pod is pinned to the (tainted) kwok nodes, which make it Running/Ready without pulling
an image, so these tests cover everything Kubernetes checks: CRDs, RBAC, Deployment, Service, values wiring.
The operator running for real, from the image built here, on the real node: tests/e2e/test_in_cluster.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.cluster import DevCluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "strategy-rollouts"
EXAMPLES = ROOT / "manifests" / "examples"
CRDS = ("strategyrollouts.strategyrollouts.io", "shadowruns.strategyrollouts.io", "paritychecks.strategyrollouts.io")
# An image kwok never pulls: pods are fake, so the Deployment gets Ready without a registry.
IMAGE = [
    "--set", "image.repository=localhost/strategy-rollouts", "--set", "image.tag=e2e",
    # kwok's nodes, not the real one (the values users set for node placement)
    "--set", "nodeSelector.type=kwok",
    "--set", "tolerations[0].key=kwok.x-k8s.io/node", "--set", "tolerations[0].operator=Exists",
    "--set", "tolerations[0].effect=NoSchedule",
]  # fmt: skip


def eventually(pred: Callable[[], Any], timeout: float = 90.0, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def get(cluster: DevCluster, *args: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return data


def can_i(cluster: DevCluster, sa: str, verb: str, resource: str, namespace: str | None) -> bool:
    where = ["-n", namespace] if namespace else []
    resource, _, sub = resource.partition("/")
    if sub:
        where.append(f"--subresource={sub}")
    r = cluster.kubectl("auth", "can-i", verb, resource, *where, f"--as={sa}", check=False)
    return r.stdout.strip() == "yes"


@pytest.fixture
def release(cluster: DevCluster, namespace: str) -> Iterator[str]:
    name = f"sr-{namespace[2:]}"
    yield name
    cluster.helm("uninstall", name, "-n", namespace, "--ignore-not-found", "--wait", check=False)


def deployment_available(cluster: DevCluster, namespace: str, name: str) -> bool:
    dep = get(cluster, "deployment", name, "-n", namespace)
    conds = {c["type"]: c["status"] for c in dep.get("status", {}).get("conditions", [])}
    return (
        conds.get("Available") == "True"
        and dep["status"].get("observedGeneration") == dep["metadata"]["generation"]
        and dep["status"].get("updatedReplicas") == dep["spec"]["replicas"]
        and dep["status"].get("readyReplicas") == dep["spec"]["replicas"]
    )


def test_helm_install_upgrade_uninstall(cluster: DevCluster, namespace: str, release: str) -> None:
    started = time.monotonic()
    cluster.helm("install", release, str(CHART), "-n", namespace, *IMAGE, "--wait", "--timeout", "180s")
    fullname = f"{release}-strategy-rollouts"

    # CRDs installed from the chart (or already there: Helm never overwrites CRDs) and Established.
    for crd in CRDS:
        obj = get(cluster, "crd", crd)
        conds = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
        assert conds["Established"] == "True", crd
        assert (obj["spec"]["versions"][0]["name"], obj["spec"]["versions"][0]["subresources"]) == (
            "v1alpha1",
            {"status": {}},
        )
    assert eventually(lambda: deployment_available(cluster, namespace, fullname))
    pod = get(cluster, "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={release}")["items"][0]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert pod["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    svc = get(cluster, "service", f"{fullname}-metrics", "-n", namespace)
    assert svc["spec"]["ports"][0]["port"] == 9102

    # RBAC as the API server evaluates it (all namespaces: a ClusterRole).
    sa = f"system:serviceaccount:{namespace}:{fullname}"
    get(cluster, "clusterrole", fullname)
    get(cluster, "clusterrolebinding", fullname)
    # patch on deployments: the tenancy claim annotation only (docs/rbac.md); replicas via the scale below
    assert can_i(cluster, sa, "patch", "deployments.apps", "default"), "the claim annotation (tenancy)"
    assert not can_i(cluster, sa, "update", "deployments.apps", "default"), "never a whole Deployment"
    assert can_i(cluster, sa, "get", "namespaces", None), "the opt-in annotation of a stage namespace (tenancy)"
    assert can_i(cluster, sa, "update", "deployments.apps/scale", "default"), "a conditional replace of the scale"
    assert not can_i(cluster, sa, "patch", "deployments.apps/scale", "default"), "never an unconditional patch"
    assert can_i(cluster, sa, "patch", "strategyrollouts.strategyrollouts.io/status", "default")
    assert can_i(cluster, sa, "create", "networkpolicies.networking.k8s.io", "default")
    assert not can_i(cluster, sa, "get", "secrets", "default"), "no Secret anywhere unless granted per namespace"
    assert not can_i(cluster, sa, "list", "secrets", "default")
    assert not can_i(cluster, sa, "delete", "deployments.apps", "default")
    assert not can_i(cluster, sa, "create", "pods", "default")
    assert can_i(cluster, sa, "watch", "customresourcedefinitions.apiextensions.k8s.io", None)

    # Upgrade: watch only this namespace -> Role + RoleBinding here, ClusterRole shrinks, args change.
    generation = get(cluster, "deployment", fullname, "-n", namespace)["metadata"]["generation"]
    cluster.helm(
        "upgrade", release, str(CHART), "-n", namespace, *IMAGE,
        "--set", f"watchNamespaces={{{namespace}}}", "--set", "operator.idleRecheck=60",
        "--set", f"rbac.secretNamespaces={{{namespace}}}",
        "--wait", "--timeout", "180s",
    )  # fmt: skip
    dep = get(cluster, "deployment", fullname, "-n", namespace)
    assert dep["metadata"]["generation"] > generation
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--namespace={namespace}" in args and "--idle-recheck=60" in args
    assert eventually(lambda: deployment_available(cluster, namespace, fullname))
    get(cluster, "role", fullname, "-n", namespace)
    get(cluster, "rolebinding", fullname, "-n", namespace)
    assert can_i(cluster, sa, "update", "deployments.apps/scale", namespace)
    assert eventually(lambda: not can_i(cluster, sa, "update", "deployments.apps/scale", "default"), timeout=30)
    # Secrets: get by name in the granted namespace only (rbac.secretNamespaces), never list
    get(cluster, "role", f"{fullname}-secrets", "-n", namespace)
    assert eventually(lambda: can_i(cluster, sa, "get", "secrets", namespace), timeout=30)
    assert not can_i(cluster, sa, "list", "secrets", namespace), "secrets: get by name only"
    assert not can_i(cluster, sa, "get", "secrets", "default")
    history = json.loads(cluster.helm("history", release, "-n", namespace, "-o", "json").stdout)
    assert [h["status"] for h in history][-1] == "deployed" and len(history) == 2

    # Uninstall removes everything it created except the CRDs (Helm policy: CRDs and CRs survive).
    cluster.helm("uninstall", release, "-n", namespace, "--wait")
    assert cluster.kubectl("get", "deployment", fullname, "-n", namespace, check=False).returncode != 0
    assert cluster.kubectl("get", "clusterrole", fullname, check=False).returncode != 0
    assert cluster.kubectl("get", "role", fullname, "-n", namespace, check=False).returncode != 0
    assert cluster.kubectl("get", "role", f"{fullname}-secrets", "-n", namespace, check=False).returncode != 0
    for crd in CRDS:
        get(cluster, "crd", crd)
    assert time.monotonic() - started < 300


def localize(docs: list[dict[str, Any]], mapping: dict[str, str]) -> list[dict[str, Any]]:
    """Move namespaced objects into the test's namespaces (names in specs are left alone)."""
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        meta = doc.setdefault("metadata", {})
        if doc["kind"] == "Namespace":
            meta["name"] = mapping.get(meta["name"], meta["name"])
        elif meta.get("namespace") in mapping:
            meta["namespace"] = mapping[meta["namespace"]]
        out.append(doc)
    return out


def example_files() -> list[Path]:
    return sorted(p for p in EXAMPLES.glob("*.y*ml")) if EXAMPLES.is_dir() else []


@pytest.fixture
def crds(cluster: DevCluster) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(ROOT / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(ROOT / "crds"))


@pytest.fixture
def second_namespace(cluster: DevCluster, namespace: str) -> Iterator[str]:
    name = f"{namespace}-b"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def namespaces_in(files: list[Path]) -> list[str]:
    found: list[str] = []
    for path in files:
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            ns = doc["metadata"]["name"] if doc["kind"] == "Namespace" else doc["metadata"].get("namespace")
            if ns and ns not in found:
                found.append(ns)
    return found


def test_examples_pass_server_side_strict_validation(
    cluster: DevCluster, crds: None, namespace: str, second_namespace: str
) -> None:
    files = example_files()
    assert files, "manifests/examples/ is empty"
    used = namespaces_in(files)
    assert len(used) <= 2, f"examples use more namespaces than the test maps: {used}"
    mapping = dict(zip(used, [namespace, second_namespace], strict=False))
    for path in files:
        docs = localize([d for d in yaml.safe_load_all(path.read_text()) if d], mapping)
        assert docs, f"{path.name} is empty"
        # Namespaces exist already (the fixtures); validate them too, then everything else.
        text = yaml.safe_dump_all(docs)
        r = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", "-", input=text, check=False)
        assert r.returncode == 0, f"{path.name}:\n{r.stdout}{r.stderr}"
        warnings = [
            line
            for line in r.stderr.splitlines()
            if line.startswith("Warning") and "last-applied-configuration" not in line
        ]
        assert not warnings, f"{path.name}: {warnings}"


def test_manual_request_is_invisible_to_a_gitops_diff(
    cluster: DevCluster, crds: None, namespace: str, second_namespace: str
) -> None:
    """What the plugin and the Argo CD actions do (a status request) leaves nothing for Argo CD to diff."""
    files = [p for p in example_files() if "StrategyRollout" in p.read_text()]
    assert files, "no StrategyRollout example in manifests/examples/"
    mapping = dict(zip(namespaces_in(example_files()), [namespace, second_namespace], strict=False))
    docs = [
        d
        for d in localize([d for d in yaml.safe_load_all(files[0].read_text()) if d], mapping)
        if d["kind"] == "StrategyRollout"
    ]
    text = yaml.safe_dump_all(docs)
    cluster.kubectl("apply", "-f", "-", input=text)
    name, ns = docs[0]["metadata"]["name"], docs[0]["metadata"]["namespace"]
    before = get(cluster, "strategyrollout", name, "-n", ns)
    me = cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    request = {"status": {"requests": {"e2e-1": {"action": "pause", "by": me, "reason": "e2e", "at": at}}}}
    patched = cluster.kubectl(
        "patch", "strategyrollout", name, "-n", ns, "--subresource=status", "--type=merge",
        "-p", json.dumps(request), "-o", "json",
    )  # fmt: skip
    # (An operator running against this cluster may consume the request right after: check the patch.)
    assert json.loads(patched.stdout)["status"]["requests"]["e2e-1"]["by"] == me
    after = get(cluster, "strategyrollout", name, "-n", ns)
    assert after["metadata"]["generation"] == before["metadata"]["generation"]
    assert after["spec"] == before["spec"]
    diff = cluster.kubectl("diff", "-f", "-", input=text, check=False)
    assert diff.returncode == 0, diff.stdout + diff.stderr
