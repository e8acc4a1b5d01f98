"""The real node beside the kwok nodes: placement, and a teardown that leaves the machine as it was.

The teardown test stops the session's real node, compares the machine with the record taken before the
node started (sysctls, iptables rules, interfaces, netns, mounts, cgroups, files, processes), crashes a new
node (SIGKILL, no cleanup) and checks that the next start restores the machine first; it leaves a running
node behind for the rest of the session.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

from devcluster import machine_state, realnode
from devcluster.cluster import DevCluster
from tests.integration.workloads import apply, deployment

pytestmark = pytest.mark.timeout(600)


def eventually(pred: Callable[[], Any], timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if got := pred():
            return got
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s")


def pods(cluster: DevCluster, namespace: str) -> list[dict[str, Any]]:
    return list(json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"])


def node_of(cluster: DevCluster) -> realnode.RealNode:
    node = cluster.real_node
    assert node is not None, "the session cluster has no real node (DEVCLUSTER_REAL_NODE=0?)"
    return node


def test_fake_workloads_go_to_kwok_and_everything_else_to_the_real_node(cluster: DevCluster, namespace: str) -> None:
    node_of(cluster)
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json").stdout)["items"]
    real = [n for n in nodes if n["metadata"]["name"] == realnode.NODE_NAME]
    kwok = [n for n in nodes if n["metadata"]["labels"].get("type") == "kwok"]
    assert real and kwok
    # the kubelet reports the node (kwok does not manage it), and only kwok's nodes are tainted
    assert real[0]["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert real[0]["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert not real[0]["spec"].get("taints")
    assert all(realnode.KWOK_TAINT in n["spec"]["taints"] for n in kwok)

    apply(cluster, deployment("fake", namespace, 2, "v1"))
    plain = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "real", "namespace": namespace},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65535, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": realnode.PAUSE_IMAGE,
                    "imagePullPolicy": "Never",
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                }
            ],
        },
    }
    apply(cluster, plain)
    cluster.kubectl("wait", "--for=condition=Ready", "pod/real", "-n", namespace, "--timeout=60s")

    def placed() -> dict[str, str] | None:
        got = {p["metadata"]["name"]: p["spec"].get("nodeName", "") for p in pods(cluster, namespace)}
        return got if len(got) == 3 and all(got.values()) else None

    where = eventually(placed)
    assert where.pop("real") == realnode.NODE_NAME
    assert all(n.startswith("node-") for n in where.values()), where  # the kwok nodes
    real_pod = next(p for p in pods(cluster, namespace) if p["metadata"]["name"] == "real")
    assert real_pod["status"]["podIP"].startswith("10.244.0.")


def own_processes(node: realnode.RealNode) -> list[str]:
    return [p for p in machine_state.processes(node.needles()) if str(os.getpid()) != p.split()[0]]


def test_teardown_restores_the_machine_also_after_a_crash(cluster: DevCluster) -> None:
    node = node_of(cluster)
    before = json.loads(node.record_path.read_text())
    changed = machine_state.snapshot(realnode.CGROUP_NAME)
    # the running node did change the machine (else this test would prove nothing)
    assert "cni0" in changed["links"] and changed["cgroups"]
    assert any("KUBE-" in rule for rule in changed["iptables"]["iptables"])
    assert own_processes(node)

    cluster.stop_real_node()
    assert machine_state.differences(before, machine_state.snapshot(realnode.CGROUP_NAME)) == {}
    assert own_processes(node) == []
    assert not node.record_path.exists()
    cluster.stop_real_node()  # twice: a no-op

    # a crash: every process of the node killed, nothing cleaned up
    cluster.start_real_node()
    before = json.loads(node.record_path.read_text())
    assert "cni0" in machine_state.links()
    for line in own_processes(node):
        os.kill(int(line.split()[0]), signal.SIGKILL)
    eventually(lambda: not own_processes(node), timeout=20)
    assert "cni0" in machine_state.links() and node.record_path.exists()

    # the next start finds the record and restores the machine before it changes anything again
    cluster.start_real_node()
    assert machine_state.differences(before, json.loads(node.record_path.read_text())) == {}
    cluster.stop_real_node()
    assert machine_state.differences(before, machine_state.snapshot(realnode.CGROUP_NAME)) == {}
    assert own_processes(node) == []

    # leave the session a running node
    cluster.start_real_node()
    cluster.kubectl("wait", "--for=condition=Ready", f"node/{realnode.NODE_NAME}", "--timeout=60s")


def test_only_one_real_node_per_machine(cluster: DevCluster, tmp_path: Any) -> None:
    node_of(cluster)
    other = realnode.RealNode(tmp_path / "node", cluster.bin_dir, lambda _msg: None)
    with pytest.raises(realnode.RealNodeUnavailable, match="another real-node cluster runs on this machine"):
        other.lock.acquire(other.w)
