"""The safety core on the real control plane: requests racing a stop, two people at once, a status the
operator cannot trust.

The operator is the session's real process. "At the same moment" is made exact by freezing it
(SIGSTOP) while the requests are written and thawing it (SIGCONT) afterwards: every request is then
pending in the same pass, whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from strategy_rollouts.api.common import rfc3339
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.workloads import (
    allow_rollouts_from,
    apply,
    deployment,
    replicas,
    routing,
    service_account_writer,
    status,
)

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

KEYS = [f"K{i}" for i in range(10)]


def rollout(name: str, namespace: str) -> dict[str, Any]:
    """No gates: it moves on its own to 20% and then waits for a person's promote."""
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "strategy": name.replace("-", "_"),
            "stable": {"deployment": "legacy", "version": "v1.0.0"},
            "canary": {"deployment": "pipeline", "version": "v2.0.0", "replicas": 2},
            "routing": {"keys": KEYS, "handoff": "1s"},
            "stages": [{"name": "prod", "steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 100}]}],
            "scaleDownDelay": "2s",
        },
    }


def admin_name(cluster: DevCluster) -> str:
    return cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()


def request_patch(rid: str, action: str, by: str, **extra: str) -> str:
    req = {"action": action, "by": by, "at": rfc3339(datetime.now(UTC)), **extra}
    return json.dumps({"status": {"requests": {rid: req}}})


def patch(cluster: DevCluster, name: str, ns: str, body: str) -> None:
    cluster.kubectl("patch", "srl", name, "-n", ns, "--subresource=status", "--type=merge", "-p", body)


@contextmanager
def frozen(op: OperatorProcess) -> Iterator[None]:
    """The operator process stopped (not killed) for the duration: it handles nothing until thawed."""
    assert op.proc is not None
    os.kill(op.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(op.proc.pid, signal.SIGCONT)


def handled(cluster: DevCluster, name: str, ns: str) -> dict[str, dict[str, Any]]:
    return {h["id"]: h for h in status(cluster, name, ns).get("handledRequests", [])}


@pytest.fixture
def awaiting_promote(cluster: DevCluster, namespace: str, live_operator: OperatorProcess) -> str:
    apply(cluster, deployment("legacy", namespace, 3, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))
    apply(cluster, rollout("race", namespace))
    wait_for(
        lambda: status(cluster, "race", namespace).get("reason") == "AwaitingPromotion",
        90,
        what="rollout at its pause waiting for promote",
    )
    return "race"


def test_a_stop_racing_a_promote_and_a_resume_wins_and_both_are_rejected_with_why(
    cluster: DevCluster, namespace: str, awaiting_promote: str, live_operator: OperatorProcess
) -> None:
    me = admin_name(cluster)
    name = awaiting_promote
    before = replicas(cluster, "legacy", namespace)[0], replicas(cluster, "pipeline", namespace)[0]
    with frozen(live_operator):  # the three arrive within the same second, before any is handled
        patch(cluster, name, namespace, request_patch("h-promote", "promote", me, reason="looks good"))
        patch(cluster, name, namespace, request_patch("h-resume", "resume", me))
        patch(
            cluster,
            name,
            namespace,
            request_patch("pck-parity-1-stopTrading", "stopTrading", me, source="paritycheck/parity", reason="TE"),
        )
    wait_for(lambda: status(cluster, name, namespace).get("reason") == "TradingStopped", 60, what="stop landed")
    st = status(cluster, name, namespace)
    assert st["phase"] == "RolledBack" and not st.get("requests")
    by_id = handled(cluster, name, namespace)
    assert by_id["pck-parity-1-stopTrading"]["outcome"] == "Applied"
    for rid in ("h-promote", "h-resume"):
        assert by_id[rid]["outcome"] == "Rejected", by_id[rid]
        assert "stopped" in by_id[rid]["message"], by_id[rid]
    doc = wait_for(
        lambda: (
            (d := routing(cluster, f"{name}-routing", namespace)) and set(d["assignments"].values()) == {"none"} and d
        ),
        30,
        what="every key to none",
    )
    assert doc["entriesEnabled"] is False
    # Both sides keep their pods (they can still cancel working orders).
    time.sleep(3)
    assert (replicas(cluster, "legacy", namespace)[0], replicas(cluster, "pipeline", namespace)[0]) == before
    # A later promote is rejected too; only a person's retry moves it again.
    patch(cluster, name, namespace, request_patch("h-promote-2", "promote", me))
    wait_for(lambda: "h-promote-2" in handled(cluster, name, namespace), 30, what="late promote handled")
    assert handled(cluster, name, namespace)["h-promote-2"]["outcome"] == "Rejected"
    assert status(cluster, name, namespace)["reason"] == "TradingStopped"


def test_two_peoples_requests_written_at_once_are_both_handled_in_order(
    cluster: DevCluster,
    namespace: str,
    awaiting_promote: str,
    live_operator: OperatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    name = awaiting_promote
    alice, alice_user = service_account_writer(cluster, namespace, "alice", tmp_path_factory.mktemp("alice"))
    me = admin_name(cluster)
    results: list[int] = []

    def write(argv: list[str]) -> None:
        results.append(subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False).returncode)

    first = request_patch("a-pause", "pause", alice_user, reason="news at 14:00")
    time.sleep(0.01)  # `at` orders them: alice's pause first, then the admin's promote
    second = request_patch("b-promote", "promote", me)
    kubectl = str(cluster.bin_dir / "kubectl")
    argv = ["patch", "srl", name, "-n", namespace, "--subresource=status", "--type=merge", "-p"]
    with frozen(live_operator):
        threads = [
            threading.Thread(target=write, args=(alice.argv(*argv, first),)),
            threading.Thread(target=write, args=([kubectl, f"--kubeconfig={cluster.kubeconfig}", *argv, second],)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == [0, 0]
        pending = status(cluster, name, namespace).get("requests") or {}
        assert set(pending) == {"a-pause", "b-promote"}, "a merge patch never replaces another writer's request"
    wait_for(lambda: len(handled(cluster, name, namespace)) >= 2, 60, what="both handled")
    entries = status(cluster, name, namespace)["handledRequests"]
    assert [(h["id"], h["by"]) for h in entries] == [("a-pause", alice_user), ("b-promote", me)]
    # The pause is the stronger of the two and is applied; the promote of the same pass is superseded.
    assert [h["outcome"] for h in entries] == ["Applied", "Superseded"]
    assert status(cluster, name, namespace)["phase"] == "Paused"


def test_a_hand_edited_status_the_model_rejects_holds_the_rollout_and_keys_stay(
    cluster: DevCluster, namespace: str, awaiting_promote: str, live_operator: OperatorProcess
) -> None:
    name = awaiting_promote
    st = status(cluster, name, namespace)
    target = st["targets"][0]
    stable_key = next(k for k, v in target["assignments"].items() if v == "v1.0.0")
    published = routing(cluster, f"{name}-routing", namespace)
    assert published is not None
    # Valid for the CRD schema, not for the model: a key draining with no recorded next owner.
    edited = [dict(target, assignments={**target["assignments"], stable_key: "draining"})]
    patch(cluster, name, namespace, json.dumps({"status": {"targets": edited}}))
    held = wait_for(
        lambda: next(
            (c for c in status(cluster, name, namespace).get("conditions", []) if c["type"] == "InvalidStatus"), None
        ),
        60,
        what="InvalidStatus",
    )
    assert held["status"] == "True" and "status.targets[0]" in held["message"] and "kubectl patch" in held["message"]
    # Nothing moves while held: a promote is not handled, the ConfigMap keeps its revision.
    me = admin_name(cluster)
    patch(cluster, name, namespace, request_patch("while-held", "promote", me))
    time.sleep(4)
    assert routing(cluster, f"{name}-routing", namespace) == published
    assert "while-held" in (status(cluster, name, namespace).get("requests") or {})
    assert replicas(cluster, "pipeline", namespace)[0] == 2
    # Recover as the message says (restore the field): it goes on and handles the pending promote.
    patch(cluster, name, namespace, json.dumps({"status": {"targets": [target]}}))
    wait_for(lambda: "while-held" in handled(cluster, name, namespace), 60, what="promote handled after recovery")
    cond = next(c for c in status(cluster, name, namespace)["conditions"] if c["type"] == "InvalidStatus")
    assert cond["status"] == "False"
    wait_for(lambda: status(cluster, name, namespace).get("phase") == "Succeeded", 90, what="Succeeded")


@pytest.fixture
def stage_namespace(cluster: DevCluster, namespace: str) -> Iterator[str]:
    """A second namespace of this session (the operator watches it) for a stage of its own; it lets
    `namespace`'s rollouts in (docs/safety.md "Tenancy")."""
    name = f"{namespace}-stg"
    cluster.kubectl("create", "namespace", name)
    allow_rollouts_from(cluster, name, namespace)
    try:
        yield name
    finally:
        cluster.kubectl("delete", "namespace", name, "--wait=false", "--ignore-not-found", check=False)


def config_map_exists(cluster: DevCluster, name: str, ns: str) -> bool:
    return cluster.kubectl("get", "configmap", name, "-n", ns, check=False).returncode == 0


def test_a_stage_namespaces_routing_config_map_goes_with_its_rollout_also_when_deleted_while_down(
    cluster: DevCluster, namespace: str, stage_namespace: str, live_operator: OperatorProcess
) -> None:
    for ns in (namespace, stage_namespace):
        for name in ("gone-live", "gone-down"):  # one rollout per Deployment
            apply(cluster, deployment(f"{name}-a", ns, 2, "v1.0.0"), deployment(f"{name}-b", ns, 0, "v2.0.0"))
    for name in ("gone-live", "gone-down"):
        body = rollout(name, namespace)
        body["spec"]["stable"]["deployment"], body["spec"]["canary"]["deployment"] = f"{name}-a", f"{name}-b"
        body["spec"]["stages"] = [
            {"name": "staging", "namespace": stage_namespace, "steps": [{"setWeight": 20}, {"pause": {}}]},
            {"name": "prod", "steps": [{"setWeight": 20}]},
        ]
        apply(cluster, body)
    for name in ("gone-live", "gone-down"):
        wait_for(lambda n=name: config_map_exists(cluster, f"{n}-routing", stage_namespace), 60, what="stage CM")
    labels = json.loads(
        cluster.kubectl("get", "configmap", "gone-live-routing", "-n", stage_namespace, "-o", "json").stdout
    )["metadata"]["labels"]
    assert labels["strategyrollouts.io/owner-name"] == "gone-live"
    # Deleted while the operator runs: its DELETED event removes the ConfigMap of the other namespace.
    cluster.kubectl("delete", "srl", "gone-live", "-n", namespace)
    wait_for(lambda: not config_map_exists(cluster, "gone-live-routing", stage_namespace), 30, what="removed")
    # Deleted while it is down: the sweep at startup removes it.
    live_operator.kill()
    try:
        cluster.kubectl("delete", "srl", "gone-down", "-n", namespace)
        assert config_map_exists(cluster, "gone-down-routing", stage_namespace)
    finally:
        live_operator.start()
    wait_for(lambda: not config_map_exists(cluster, "gone-down-routing", stage_namespace), 60, what="swept")
