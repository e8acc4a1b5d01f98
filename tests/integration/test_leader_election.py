"""Two real operator processes with --leader-elect on the real control plane (docs/high-availability.md).

- SIGKILL the leader mid-rollout: the standby acts within 20 s; no step repeated or skipped, no
  double scale, routing exclusive throughout (the chaos observers and invariants).
- SIGSTOP the leader: the standby takes over; SIGCONT: the old leader acts on nothing (read from the
  API: with --leader-elect each process writes under its own field manager,
  `strategy-rollouts.<identity>`, so managedFields say who wrote every object and when) and is a
  standby from the instant it thaws.

The namespace does not match the session operator's pattern (`t<session>-*`): only these two act here.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from kubernetes import client, config

from strategy_rollouts.testing import invariants as inv
from strategy_rollouts.testing.chaos import Record, Watcher, listers, replica_counts, routing_docs, statuses
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.test_rollout_operator import rollout
from tests.integration.workloads import apply, deployment

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

LEASE = "strategy-rollouts"
STABLE, CANARY = "v1.0.0", "v2.0.0"
FAILOVER_LIMIT_S = 20.0


@dataclass
class Pair:
    cluster: DevCluster
    ns: str
    api: client.ApiClient
    operators: list[OperatorProcess]
    record: Record = field(default_factory=Record)

    def holder(self) -> str:
        try:
            lease = client.CoordinationV1Api(self.api).read_namespaced_lease(LEASE, self.ns)
        except client.ApiException:
            return ""
        return str(lease.spec.holder_identity or "")

    def by_identity(self, identity: str) -> OperatorProcess | None:
        return next((op for op in self.operators if identity == f"{socket.gethostname()}_{op.pid}"), None)

    def leader(self) -> tuple[OperatorProcess, OperatorProcess]:
        """(leader, standby), once the Lease names one of the two."""
        found = wait_for(lambda: self.by_identity(self.holder()), 30, 0.1, "a leader")
        return found, next(op for op in self.operators if op is not found)

    def position(self, name: str) -> tuple[int, int] | None:
        seen = statuses(self.record, "strategyrollouts", self.ns, name)
        st = seen[-1][1] if seen else {}
        return None if st.get("stageIndex") is None else (int(st["stageIndex"]), int(st.get("stepIndex") or 0))

    def phase(self, name: str) -> str:
        seen = statuses(self.record, "strategyrollouts", self.ns, name)
        return str(seen[-1][1].get("phase") or "") if seen else ""

    def writes_after(self, name: str) -> float:
        """Monotonic time of the first status change seen after now (polls the recorded versions)."""
        before = len(self.record.of("strategyrollouts", self.ns, name))
        wait_for(lambda: len(self.record.of("strategyrollouts", self.ns, name)) > before, 40, 0.05, "a status write")
        return self.record.of("strategyrollouts", self.ns, name)[before].t


def manager(op: OperatorProcess) -> str:
    return f"strategy-rollouts.{socket.gethostname()}_{op.pid}"


@pytest.fixture
def pair(cluster: DevCluster, crds: None, tmp_path: Path) -> Iterator[Pair]:
    ns = f"ha{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", ns)
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    api = client.ApiClient(cfg)
    args = ("--leader-elect", "--leader-elect-namespace", ns, "--leader-elect-lease-name", LEASE)
    ops = [
        OperatorProcess(cluster.kubeconfig, cluster.prometheus_url, tmp_path / f"op{i}.log", (ns,), args)
        for i in range(2)
    ]
    p = Pair(cluster, ns, api, ops)
    stop = threading.Event()
    watchers = [Watcher(r, ns, lister, p.record, stop) for r, lister in listers(api, ns, ("strategyrollouts",)).items()]
    for w in watchers:
        w.start()
    try:
        for w in watchers:
            assert w.ready.wait(30)
        for op in ops:
            op.start()
        yield p
    finally:
        stop.set()
        for op in ops:
            if op.proc is not None and op.proc.poll() is None:
                op.signal(signal.SIGCONT)  # a stopped process ignores SIGTERM until thawed
            op.stop()
        for w in watchers:
            w.join(10)
        api.close()  # its pooled TLS connections (a ResourceWarning in whichever test runs when it is collected)
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


def start_rollout(p: Pair, name: str, prod_pause: str) -> None:
    apply(p.cluster, deployment("legacy", p.ns, 2, STABLE), deployment("pipeline", p.ns, 0, CANARY))
    stages = [
        {"name": "staging", "steps": [{"setWeight": 20}, {"pause": {"duration": "3s"}}]},
        {"name": "prod", "steps": [{"setWeight": 50}, {"pause": {"duration": prod_pause}}, {"setWeight": 100}]},
    ]
    apply(p.cluster, rollout(name, p.ns, f"s_{p.ns}", gates=[], stages=stages, scaleDownDelay="2s"))


def check_invariants(p: Pair, name: str) -> None:
    seen = statuses(p.record, "strategyrollouts", p.ns, name)
    final = seen[-1][1]
    assert final["phase"] == "Succeeded", final
    gaps = [t for t, *_ in p.record.gaps]
    violations = inv.step_violations(name, seen, [2, 3])
    violations += inv.outcome_violations(name, final, CANARY, {"Succeeded": 1, "RolledBack": 0})
    violations += inv.handled_violations(name, final)
    docs = routing_docs(p.record, p.ns, f"{name}-routing")
    violations += inv.exclusivity_violations(name, docs, (STABLE, CANARY), contiguous=True, relisted=gaps)
    violations += inv.drain_violations(name, docs, (STABLE, CANARY), minimum=0.5)  # handoff 1s, watch jitter
    for dep, expected in (("legacy", [2, 0]), ("pipeline", [0, 2])):
        violations += inv.replica_violations(dep, replica_counts(p.record, p.ns, dep), expected)
    assert not violations, "\n".join(violations)


def test_sigkill_of_the_leader_mid_rollout_the_standby_finishes_it(pair: Pair) -> None:
    p = pair
    leader, standby = p.leader()
    assert leader.readiness() == (200, "leader") and standby.readiness() == (200, "standby")
    assert leader.metric_samples("strategy_rollouts_leader") == [1.0]
    assert standby.metric_samples("strategy_rollouts_leader") == [0.0]
    start_rollout(p, "ha-kill", prod_pause="5s")
    wait_for(lambda: p.position("ha-kill") == (1, 1), 60, 0.05, "prod's pause")
    killed_at = time.monotonic()
    leader.kill()
    holder = wait_for(lambda: p.by_identity(p.holder()) is standby, 30, 0.05, "the standby to take the lease")
    took = time.monotonic() - killed_at
    acted = p.writes_after("ha-kill") - killed_at
    print(f"failover after SIGKILL: lease taken {took:.1f}s, first write {acted:.1f}s after the kill")
    assert holder and acted < FAILOVER_LIMIT_S, f"the standby acted {acted:.1f}s after the kill"
    wait_for(lambda: p.phase("ha-kill") == "Succeeded", 60, 0.2, "Succeeded")
    wait_for(lambda: replica_counts(p.record, p.ns, "legacy")[-1][1] == 0, 30, 0.2, "stable scaled down")
    assert standby.readiness() == (200, "leader")
    check_invariants(p, "ha-kill")


Entries = dict[tuple[str, str, str], datetime | None]  # (kind, name, subresource) -> last write


def entries(p: Pair, who: str) -> Entries:
    """`who`'s managedFields entries on every object of the namespace, with the time of its last write
    (a scale entry carries none). Another manager taking fields over shrinks an entry, never dates it."""
    out = p.cluster.kubectl(
        "get", "configmaps,deployments,strategyrollouts", "-n", p.ns, "-o", "json", "--show-managed-fields"
    ).stdout
    found: Entries = {}
    for o in json.loads(out)["items"]:
        for e in o["metadata"].get("managedFields") or []:
            if e["manager"] == who:
                stamp = e.get("time")
                at = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
                found[(o["kind"], o["metadata"]["name"], e.get("subresource") or "")] = at
    return found


def written_since(found: Entries, before: Entries) -> list[str]:
    """Entries that are new since the snapshot `before`, or dated differently (a later write)."""
    return [
        f"{kind} {name} {sub} at {at}"
        for (kind, name, sub), at in found.items()
        if before.get((kind, name, sub), 0) != at
    ]


def managers(p: Pair) -> list[tuple[str, str, str]]:
    out = p.cluster.kubectl(
        "get", "configmaps,deployments,strategyrollouts", "-n", p.ns, "-o", "json", "--show-managed-fields"
    ).stdout
    return [
        (o["kind"], o["metadata"]["name"], e["manager"])
        for o in json.loads(out)["items"]
        for e in o["metadata"].get("managedFields") or []
    ]


def test_sigstop_the_standby_takes_over_and_the_thawed_leader_acts_on_nothing(pair: Pair) -> None:
    p = pair
    old, new = p.leader()
    start_rollout(p, "ha-freeze", prod_pause="25s")
    wait_for(lambda: p.position("ha-freeze") == (1, 1), 60, 0.05, "prod's pause")
    old.signal(signal.SIGSTOP)
    frozen_at = time.monotonic()
    time.sleep(0.5)  # a request it sent just before the freeze has landed
    before = entries(p, manager(old))
    assert before, managers(p)  # it wrote before (under its own manager name): the check below is not vacuous
    wait_for(lambda: p.by_identity(p.holder()) is new, 30, 0.05, "the standby to take the lease")
    took = time.monotonic() - frozen_at
    print(f"failover after SIGSTOP: lease taken {took:.1f}s after the freeze")
    assert took < FAILOVER_LIMIT_S
    assert new.readiness() == (200, "leader")
    # Thaw while the rollout still moves: the old leader's timers are due, its caches stale.
    old.signal(signal.SIGCONT)
    assert old.readiness() == (200, "standby"), "fenced from the instant it thaws, before its campaign runs"
    wait_for(lambda: p.phase("ha-freeze") == "Succeeded", 60, 0.2, "Succeeded")
    wait_for(lambda: replica_counts(p.record, p.ns, "legacy")[-1][1] == 0, 30, 0.2, "stable scaled down")
    assert old.proc is not None and old.proc.poll() is None, "the thawed process is alive"
    assert old.readiness() == (200, "standby") and old.metric_samples("strategy_rollouts_leader") == [0.0]
    assert written_since(entries(p, manager(old)), before) == [], "the thawed old leader wrote after its freeze"
    assert written_since(entries(p, manager(new)), {}), "the new leader's writes show the same way"
    assert "is now standby" in old.log()
    check_invariants(p, "ha-freeze")
