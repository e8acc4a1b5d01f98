"""Two-person rule on the real control plane: two ServiceAccounts, each with its own token, approve with
`kubectl strategy approve`; the API server pins each request's `by` to the token's user.

The same user twice counts once (the rollout keeps waiting); two distinct users promote it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.workloads import Writer, apply, deployment, service_account_writer, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

PLUGIN = Path(sys.executable).parent / "kubectl-strategy"


def rollout(name: str, namespace: str) -> dict[str, Any]:
    """No gates: 30% at once, then the stage waits for two approvals before completion."""
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "strategy": "two_person",
            "stable": {"deployment": "legacy", "version": "v1.0.0"},
            "canary": {"deployment": "pipeline", "version": "v2.0.0", "replicas": 1},
            "routing": {"keys": [f"K{i}" for i in range(10)], "handoff": "1s"},
            "stages": [
                {"name": "prod", "steps": [{"setWeight": 30}], "approvals": {"count": 2, "message": "risk + owner"}}
            ],
            "scaleDownDelay": "2s",
        },
    }


def approve(writer: Writer, name: str, namespace: str, reason: str) -> str:
    """`kubectl strategy approve` with the writer's own kubeconfig; returns what it printed."""
    done = subprocess.run(
        [str(PLUGIN), f"--kubeconfig={writer.kubeconfig}", "-n", namespace, "approve", name, "--reason", reason],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    return f"rc={done.returncode}\n{done.stdout}\n{done.stderr}"


def test_two_distinct_users_promote_and_the_same_user_twice_counts_once(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> None:
    alice, alice_user = service_account_writer(cluster, namespace, "alice", tmp_path_factory.mktemp("alice"))
    bob, bob_user = service_account_writer(cluster, namespace, "bob", tmp_path_factory.mktemp("bob"))
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout("signoff", namespace))
    st = wait_for(
        lambda: (s := status(cluster, "signoff", namespace)).get("reason") == "AwaitingApproval" and s,
        90,
        what="the stage waiting for approvals",
    )
    assert st["phase"] == "Paused" and st["canaryWeight"] == 30
    assert st["message"] == "0 of 2 approvals for stage prod: risk + owner"

    out = approve(alice, "signoff", namespace, "risk desk ok")
    assert out.startswith("rc=0") and "Applied" in out, out
    st = status(cluster, "signoff", namespace)
    assert st["message"] == f"1 of 2 approvals ({alice_user}) for stage prod: risk + owner"
    assert [(a["by"], a["reason"]) for a in st["approvals"]] == [(alice_user, "risk desk ok")]

    # The same user again: Rejected with why, still one approval, still waiting.
    out = approve(alice, "signoff", namespace, "really ok")
    assert not out.startswith("rc=0") and "already approved" in out, out
    st = status(cluster, "signoff", namespace)
    assert (st["phase"], st["reason"]) == ("Paused", "AwaitingApproval")
    assert [a["by"] for a in st["approvals"]] == [alice_user]

    out = approve(bob, "signoff", namespace, "strategy owner ok")
    assert out.startswith("rc=0") and "Applied" in out, out
    st = wait_for(
        lambda: (s := status(cluster, "signoff", namespace)).get("phase") == "Succeeded" and s,
        90,
        what="the rollout promoted to completion",
    )
    approved = [(h["by"], h["reason"]) for h in st["history"] if h["outcome"] == "Approved"]
    assert approved == [(alice_user, "risk desk ok"), (bob_user, "strategy owner ok")]
    assert not st.get("approvals")  # completion is a stage change: reset
