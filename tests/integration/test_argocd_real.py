"""A real Argo CD (built from its Go module) against the dev cluster, driving manifests/examples/ (issue 17).

Argo CD's repo server, application controller and API server run out of cluster as in Argo CD's local
development (devcluster/argocd_local.py), with our argocd-cm patch, Redis on loopback and the examples
in a Git repository served by `git daemon`. The examples' namespaces `trading`/`trading-staging` are
renamed into this session's prefix (the session operator watches only those); nothing else changes.
The Application syncs, shows each kind's health from our Lua, stays Synced while the operator writes
status and scales the Deployments (ignoreDifferences + RespectIgnoreDifferences, as docs/argocd.md
says), and the `promote` and `abort` actions, run through Argo CD's API (`argocd app actions run`),
move the rollout with Argo CD's API server user in handledRequests and history.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devcluster.argocd_local import LocalArgoCD, wait_for
from devcluster.cluster import DevCluster
from devcluster.realnode import KWOK_NODE_SELECTOR, KWOK_TOLERATION
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.conftest import SESSION_NAMESPACE_PREFIX

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(2400)]  # cold: builds the argocd binary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "manifests" / "examples"
APP = "fib-rsi"  # the StrategyRollout
APPLICATION = f"{SESSION_NAMESPACE_PREFIX}strategies"  # the Argo CD Application: its own tracking ids
TRADING = f"{SESSION_NAMESPACE_PREFIX}argo-trading"
GROUP = "strategyrollouts.io"
KNOWN_HEALTH = {"Healthy", "Progressing", "Suspended", "Degraded"}


def renamed(text: str, trading: str) -> str:
    """The examples with namespace trading(-staging) renamed to this session's, and the rollout not
    waiting for its ShadowRun's verdict (an hour of shadow decisions; the ShadowRun is still synced)."""
    text = re.sub(r"\btrading(-staging)?\b(?![.\w])", lambda m: trading + (m.group(1) or ""), text)
    text = re.sub(r"(?m)^  shadowRun: .*\n", "", text)
    # the examples' strategy pods are fake here (their images are not on this machine): kwok's nodes
    docs = [d for d in yaml.safe_load_all(text) if d]
    for d in docs:
        if d["kind"] == "Deployment":
            d["spec"]["template"]["spec"].update(nodeSelector=KWOK_NODE_SELECTOR, tolerations=[KWOK_TOLERATION])
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.fixture
def argocd(cluster: DevCluster, operator: OperatorProcess, tmp_path: Path) -> Iterator[LocalArgoCD]:
    namespace = f"{SESSION_NAMESPACE_PREFIX}argocd"
    instance = LocalArgoCD(cluster, namespace, tmp_path / "argocd")
    try:
        with instance:
            yield instance
    finally:
        for name in ("redis", "git-daemon", *("argocd-repo-server", "argocd-application-controller", "argocd-server")):
            print(f"--- {name} log (tail) ---\n{instance.log(name)[-3000:]}")
        # while the session's operator still runs, so that it releases its finalizers
        for ns in (namespace, TRADING, f"{TRADING}-staging"):
            cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        for role in ("argocd-server", "argocd-application-controller"):
            cluster.kubectl("delete", "clusterrolebinding", f"{namespace}-{role}", "--ignore-not-found", check=False)


def application(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "applications.argoproj.io", APPLICATION, "-n", namespace, "-o", "json").stdout
    app: dict[str, Any] = json.loads(out)
    return app


def resource_health(tree: dict[str, Any], kind: str) -> dict[str, str] | None:
    """A kind's health in the Application's resource tree (Argo CD 3 keeps it there, not in the CR)."""
    for node in tree.get("nodes") or []:
        if node.get("kind") == kind and node.get("group") == GROUP:
            health: dict[str, str] | None = node.get("health")
            return health
    return None


def rollout(cluster: DevCluster, namespace: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "strategyrollouts", APP, "-n", namespace, "-o", "json").stdout
    obj: dict[str, Any] = json.loads(out)
    return obj


def test_argocd_syncs_examples_shows_health_and_runs_actions(cluster: DevCluster, argocd: LocalArgoCD) -> None:
    trading = TRADING
    files = {f"examples/{p.name}": renamed(p.read_text(), trading) for p in sorted(EXAMPLES.glob("*.yaml"))}
    url = argocd.git_repo("strategies", files)
    ignore = [
        {"group": "apps", "kind": "Deployment", "name": name, "jsonPointers": ["/spec/replicas"]}
        for name in ("fib-rsi-legacy", "fib-rsi-pipeline")
    ]
    app_manifest = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": APPLICATION, "namespace": argocd.namespace},
        "spec": {
            "project": "default",
            "source": {"repoURL": url, "path": "examples", "targetRevision": "main"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": trading},
            "ignoreDifferences": ignore,
            "syncPolicy": {
                "automated": {"prune": True, "selfHeal": True},
                "syncOptions": ["RespectIgnoreDifferences=true"],
            },
        },
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(app_manifest))

    # (sync status, the rollout's health, the canary Deployment's live replicas) over the whole test
    samples: list[tuple[str, str | None, str]] = []

    def sample() -> dict[str, Any]:
        """The resource tree, after recording a sample."""
        app = application(cluster, argocd.namespace)
        tree: dict[str, Any] = argocd.api(
            f"/api/v1/applications/{APPLICATION}/resource-tree?appNamespace={argocd.namespace}"
        )
        health = resource_health(tree, "StrategyRollout")
        sync = app.get("status", {}).get("sync", {}).get("status", "")
        replicas = cluster.kubectl(
            "get", "deployment", "fib-rsi-pipeline", "-n", trading, "-o", "jsonpath={.spec.replicas}", check=False
        ).stdout  # fmt: skip
        now = (sync, health["status"] if health else None, replicas)
        if not samples or samples[-1] != now:
            samples.append(now)
        return tree

    def synced_with_health() -> dict[str, Any] | None:
        tree = sample()
        healths = {k: resource_health(tree, k) for k in ("StrategyRollout", "ShadowRun", "ParityCheck")}
        return tree if samples[-1][0] == "Synced" and all(healths.values()) else None

    tree = wait_for("the Application to sync with every kind's health", synced_with_health, timeout=300)
    for kind in ("StrategyRollout", "ShadowRun", "ParityCheck"):
        health = resource_health(tree, kind)
        assert health is not None and health["status"] in KNOWN_HEALTH, (kind, health)
        assert "attempt to index" not in health.get("message", ""), (kind, health)

    # The operator takes the rollout over: Argo CD shows it Progressing (or Suspended at a pause).
    def moving() -> dict[str, str] | None:
        health = resource_health(sample(), "StrategyRollout")
        return health if health and health["status"] in {"Progressing", "Suspended"} else None

    wait_for("the rollout's health from the operator's status", moving, timeout=120)

    def past_pending() -> dict[str, Any] | None:
        status: dict[str, Any] = rollout(cluster, trading).get("status", {})
        return status if status.get("phase") in {"Progressing", "Paused"} else None

    try:
        wait_for("the rollout past Pending", past_pending, timeout=90)
    except AssertionError as e:
        raise AssertionError(f"{e}: {json.dumps(rollout(cluster, trading).get('status'))[:3000]}") from None

    listed = argocd.argocd(
        "app", "actions", "list", f"{argocd.namespace}/{APPLICATION}", "--kind", "StrategyRollout", "--group", GROUP,
        "--namespace", trading, "-o", "json",
    ).stdout  # fmt: skip
    actions = {a["Action"]: a["Disabled"] for a in json.loads(listed)}
    assert set(actions) == {"promote", "promote-full", "pause", "resume", "approve", "abort", "retry"}
    assert actions["promote"] is False and actions["abort"] is False and actions["retry"] is True, actions

    def run_action(name: str) -> dict[str, Any]:
        before = rollout(cluster, trading)
        request_id = f"argocd-{before['metadata']['resourceVersion']}-{name}"
        argocd.argocd(
            "app", "actions", "run", f"{argocd.namespace}/{APPLICATION}", name, "--kind", "StrategyRollout",
            "--group", GROUP, "--resource-name", APP, "--namespace", trading,
        )  # fmt: skip

        def handled() -> dict[str, Any] | None:
            sample()
            status = rollout(cluster, trading).get("status", {})
            for h in status.get("handledRequests", []):
                if h["id"] == request_id:
                    return dict(h)
            return None

        entry = wait_for(f"the operator to handle {request_id}", handled, timeout=120)
        assert entry["by"] == argocd.user, entry
        assert entry["outcome"] == "Applied", entry
        return entry

    before = rollout(cluster, trading)["status"]
    run_action("promote")
    after = rollout(cluster, trading)["status"]
    assert (after.get("stageIndex"), after.get("stepIndex")) != (before.get("stageIndex"), before.get("stepIndex"))

    run_action("abort")

    def degraded() -> dict[str, str] | None:
        health = resource_health(sample(), "StrategyRollout")
        return health if health and health["status"] == "Degraded" else None

    wait_for("Argo CD to show the aborted rollout Degraded", degraded, timeout=120)
    status = rollout(cluster, trading)["status"]
    assert status["phase"] == "RolledBack", status.get("phase")
    assert status["history"][-1]["by"] == argocd.user, status["history"]

    # Argo CD's own record of who ran the actions: its user (admin), in the Application's Events.
    events = cluster.kubectl("get", "events", "-n", argocd.namespace, "-o", "json").stdout
    messages = [e.get("message", "") for e in json.loads(events)["items"]]
    assert any("admin" in m and "ran action promote" in m for m in messages), messages
    assert any("admin" in m and "ran action abort" in m for m in messages), messages

    # Synced all along once synced, while the operator wrote status and scaled the Deployments.
    time.sleep(2)
    sample()
    print(f"samples (sync, rollout health, canary replicas): {samples}")
    first_synced = next(i for i, (sync, _, _) in enumerate(samples) if sync == "Synced")
    assert all(sync == "Synced" for sync, _, _ in samples[first_synced:]), samples
    healths = [h for _, h, _ in samples if h]
    assert healths[-1] == "Degraded" and {"Progressing", "Suspended"} & set(healths), samples
    # Git says 0 canary replicas; the operator scaled it up during the rollout, and Argo CD did not mind.
    assert any(replicas not in ("", "0") for _, _, replicas in samples[first_synced:]), samples
