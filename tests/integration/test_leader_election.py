"""Two real operator processes with --leader-elect on the real control plane (docs/high-availability.md).

- SIGKILL the leader mid-rollout: the standby acts within 20 s; no step repeated or skipped, no
  double scale, routing exclusive throughout (the chaos observers and invariants).
- SIGSTOP the leader: the standby takes over; SIGCONT: the old leader acts on nothing (read from the
  API: with --leader-elect each process writes under its own field manager,
  `strategy-rollouts.<identity>`, so managedFields say who wrote every object and when) and is a
  standby from the instant it thaws.

And the fencing of each write, with the operator's own Kube adapter and Elector in this process:
- every kind of write the operator makes is conditional, and the API server honours it (409);
- a write delayed on its way (a TCP proxy on loopback holding what the client sends) is answered within
  its request timeout or given up, never re-sent; held past that it lands only if nobody wrote the
  object since (measured from the API server's audit log);
- an old leader whose write is held past its lease loss: the new leader takes the Lease and scales;
  the old write reaches the API server after that and is refused with 409.

The namespaces do not match the session operator's pattern (`t<session>-*`): nothing else acts there.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pytest
from kubernetes import client, config

from strategy_rollouts.operator.clients.kube import Conflict, Kube, Unanswered, configured
from strategy_rollouts.operator.context import Context
from strategy_rollouts.operator.runtime import objects as runtime
from strategy_rollouts.operator.runtime.leader import Elector, Leadership, Timing
from strategy_rollouts.testing import invariants as inv
from strategy_rollouts.testing.chaos import Record, Watcher, listers, replica_counts, routing_docs, statuses
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.delaying_proxy import DelayingProxy
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


# ---- fencing of each write (docs/high-availability.md "Fencing") ---------------------------------------

TIMING = Timing(lease_s=3.0, renew_deadline_s=2.0, retry_s=0.5)
T = TIMING.request_timeout_s  # min(renew deadline / 2, lease - renew deadline) = 1 s
OLD_LEADER = "old-leader"  # the ServiceAccount of the delayed client: the audit log records its calls
SLACK_S = 0.3  # thread scheduling on a shared 2-core machine


class Fence:
    """Leadership.check, recording when each check passed (the instant the write may leave)."""

    def __init__(self, leadership: Leadership) -> None:
        self.leadership = leadership
        self.passed: list[float] = []

    def __call__(self) -> None:
        self.leadership.check()
        self.passed.append(time.monotonic())


@dataclass
class Fencing:
    cluster: DevCluster
    ns: str
    token: str
    api: client.ApiClient  # admin, direct: the test's own reads
    clients: list[client.ApiClient] = field(default_factory=list)

    def kube(self, host: str | None = None, old_leader: bool = False) -> Kube:
        """The operator's adapter on the operator's transport (configured: one attempt per request)."""
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
        if host is not None:
            cfg.host = host
        if old_leader:
            cfg.cert_file = cfg.key_file = None
            cfg.api_key = {"BearerToken": f"Bearer {self.token}"}
        api = client.ApiClient(configured(cfg))
        self.clients.append(api)
        kube = Kube(api)
        kube.write_timeout_s = T
        return kube

    def upstream(self) -> tuple[str, int]:
        url = urlparse(self.api.configuration.host)
        assert url.hostname is not None and url.port is not None
        return url.hostname, url.port

    def scale(self) -> tuple[int, str]:
        s = client.AppsV1Api(self.api).read_namespaced_deployment_scale("web", self.ns)
        return int(s.spec.replicas or 0), str(s.metadata.resource_version)

    def generation(self) -> int:
        """web's metadata.generation: it counts writes of the spec (a scale is one), not the status
        updates of the Deployment controller, which change the resourceVersion all the time."""
        return int(client.AppsV1Api(self.api).read_namespaced_deployment("web", self.ns).metadata.generation)

    def settled(self) -> bool:
        """The Deployment controller is done with web (no status update of its own under way)."""
        d = client.AppsV1Api(self.api).read_namespaced_deployment("web", self.ns)
        st = d.status
        wanted = d.spec.replicas or 0
        return bool(st) and st.observed_generation == d.metadata.generation and (st.ready_replicas or 0) == wanted

    async def settle(self) -> None:
        await until(self.settled, 30, "web to settle")
        await asyncio.sleep(0.5)  # its last status update has reached every watch

    def audit(self) -> Path | None:
        """The API server's audit log (the local control plane's; None for another cluster)."""
        try:
            path = self.cluster.audit_log_path
        except (KeyError, TypeError, AttributeError):
            return None
        return path if path.exists() else None

    def scale_updates(self, since: float) -> list[tuple[float, int]]:
        """The old leader's updates of web's scale received since `since` (wall clock), as the audit log
        has them: (received at, response code)."""
        path = self.audit()
        assert path is not None
        user = f"system:serviceaccount:{self.ns}:{OLD_LEADER}"
        out = []
        with path.open() as lines:
            for line in lines:
                if user not in line:
                    continue
                ev = json.loads(line)
                ref = ev.get("objectRef") or {}
                if ev["user"]["username"] != user or (ev["verb"], ref.get("subresource")) != ("update", "scale"):
                    continue
                at = datetime.fromisoformat(ev["requestReceivedTimestamp"]).timestamp()
                if at >= since:
                    out.append((at, int((ev.get("responseStatus") or {}).get("code") or 0)))
        return out


@pytest.fixture
def fencing(cluster: DevCluster, crds: None) -> Iterator[Fencing]:
    ns = f"fence{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", ns)
    meta = {"name": OLD_LEADER, "namespace": ns}
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "update"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
    ]
    apply(
        cluster,
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OLD_LEADER},
            "subjects": [{"kind": "ServiceAccount", "name": OLD_LEADER, "namespace": ns}],
        },
        deployment("web", ns, 1, STABLE),
    )
    token = cluster.kubectl("create", "token", OLD_LEADER, "-n", ns, "--duration=1h").stdout.strip()
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=cfg)  # type: ignore[no-untyped-call]
    f = Fencing(cluster, ns, token, client.ApiClient(cfg))
    try:
        yield f
    finally:
        for api in [f.api, *f.clients]:
            api.close()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> float:
    """Poll `predicate` on the event loop (other tasks run meanwhile); the monotonic time it held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic()


async def passes(write: Callable[[], Any], attempts: int = 40) -> int:
    """What the per-object loop does with a Conflict: the next pass, 50 ms later, reads afresh and tries
    again. The Deployment's resourceVersion also moves with the controller's status updates, so a scale
    right after another may need a second pass. Returns how many it took."""
    for n in range(1, attempts + 1):
        try:
            await write()
            return n
        except Conflict:
            await asyncio.sleep(0.05)
    raise AssertionError(f"still a Conflict after {attempts} passes")


async def test_every_write_the_operator_makes_is_refused_once_the_object_changed(fencing: Fencing) -> None:
    """Two adapters, two leaders: the old one read the object, the new one wrote it; the old one's write
    carries what it read, and the API server refuses it with 409 for every kind of write the operator makes."""
    f = fencing
    old, new = f.kube(), f.kube()
    # Deployment scale: a PUT of the scale subresource carrying the Deployment's resourceVersion.
    await f.settle()
    replicas, seen = f.scale()
    assert replicas == 1
    await passes(lambda: new.scale(f.ns, "web", 2, None))  # no version known: reads the scale subresource's
    with pytest.raises(Conflict):
        await old.scale(f.ns, "web", 5, seen)
    assert f.scale()[0] == 2
    # The version the watch cache holds: a stale one is a Conflict that drops the entry; the next pass
    # (nothing cached) reads the version, and its write lands and is cached with its own version.
    ctx = Context(kube=old)
    ctx.watched.offer_deployment({"metadata": {"namespace": f.ns, "name": "web", "resourceVersion": seen}})
    with pytest.raises(Conflict):
        await runtime.scale(ctx, f.ns, "web", 5)
    assert ctx.watched.deployment(f.ns, "web") is None
    n = await passes(lambda: runtime.scale(ctx, f.ns, "web", 3))
    assert f.scale()[0] == 3 and ctx.watched.deployment_version(f.ns, "web") is not None
    print(f"\n[fencing] a scale right after another, from a fresh read, landed at pass {n}")

    # A status merge patch carrying metadata.resourceVersion (a ParityCheck's request to a rollout).
    apply(f.cluster, rollout("r", f.ns, f"s_{f.ns}", gates=[]))
    obj = await old.get("strategyrollouts", f.ns, "r")
    assert obj is not None
    await new.merge_status("strategyrollouts", f.ns, "r", {"message": "the new leader's"})
    with pytest.raises(Conflict):
        await old.merge_status(
            "strategyrollouts",
            f.ns,
            "r",
            {"message": "the old one's"},
            resource_version=obj["metadata"]["resourceVersion"],
        )
    fresh = await old.get("strategyrollouts", f.ns, "r")
    assert fresh is not None and fresh["status"]["message"] == "the new leader's"
    await old.merge_status(  # the same patch from a fresh read lands
        "strategyrollouts", f.ns, "r", {"message": "re-read"}, resource_version=fresh["metadata"]["resourceVersion"]
    )

    # ConfigMaps (routing, reports): a create of one that exists, a replace with the version read.
    body = new.body(await new.write_config_map(f.ns, "r-routing", {"routing.json": '{"revision":1}'}))
    with pytest.raises(Conflict):
        await old.write_config_map(f.ns, "r-routing", {"routing.json": '{"revision":1}'})
    await new.replace_config_map({**body, "data": {"routing.json": '{"revision":2}'}})
    with pytest.raises(Conflict):
        await old.replace_config_map({**body, "data": {"routing.json": '{"revision":9}'}})
    with pytest.raises(ValueError, match="unconditional"):
        await old.replace_config_map({**body, "metadata": {**body["metadata"], "resourceVersion": None}})

    # Deletes (NetworkPolicies, orphaned ConfigMaps): the version read as a precondition.
    current = await new.config_map_body(f.ns, "r-routing")
    assert current is not None
    delete = old.core.delete_namespaced_config_map
    with pytest.raises(Conflict):
        await old.delete(delete, f.ns, "r-routing", body["metadata"]["resourceVersion"])
    assert await old.delete(delete, f.ns, "r-routing", current["metadata"]["resourceVersion"])
    assert not await old.delete(delete, f.ns, "r-routing", current["metadata"]["resourceVersion"])  # gone


async def test_a_delayed_write_is_answered_within_its_timeout_or_given_up_and_never_resent(fencing: Fencing) -> None:
    """The write leaves through a proxy that holds what the client sends (a slow path). Held less than
    the request timeout T: answered, so landed, within T of its fence check. Held longer: the client
    gives up at T (Unanswered) on the one connection it used; a proxy that drops what its client gave up
    on delivers nothing; one that delivers it anyway lands it later, and only because nobody wrote the
    object since (its resourceVersion still matched): the bound in time is T, the bound in order is the
    precondition."""
    f = fencing
    proxy = DelayingProxy(f.upstream())
    old = f.kube(proxy.url, old_leader=True)
    fence = Fence(Leadership())  # no election here: the check passes, and is timed
    old.fence = fence
    audit = f.audit() is not None

    async def warm() -> None:  # a pooled connection with TLS set up, so the hold delays the request itself
        proxy.hold_s = 0.0
        await old.call(old.apps.read_namespaced_deployment_scale, "web", f.ns)

    try:
        # (a) held 0.4 s < T
        await f.settle()  # no status update of the controller's moves the version under the held write
        await warm()
        proxy.hold_s = 0.4
        await old.scale(f.ns, "web", 2, f.scale()[1])
        answered = time.monotonic() - fence.passed[-1]
        assert 0.4 <= answered < T + SLACK_S and f.scale()[0] == 2

        # (b) held 3 s > T, dropped when the client hangs up
        await f.settle()
        await warm()
        proxy.hold_s, proxy.deliver_after_close = 3.0, False
        connections, (_, seen), generation, sent = proxy.connections, f.scale(), f.generation(), time.time()
        with pytest.raises(Unanswered):
            await old.scale(f.ns, "web", 5, seen)
        gave_up = time.monotonic() - fence.passed[-1]
        assert T - 0.05 <= gave_up < T + SLACK_S
        await until(lambda: proxy.held() == 0, 10, "the held bytes to be dropped")
        await asyncio.sleep(1.0)
        assert proxy.connections == connections, "the transport opened a new connection: a re-send"
        assert (f.scale()[0], f.generation()) == (2, generation), "nothing landed"
        if audit:
            assert f.scale_updates(sent) == []

        # (c) held 3 s > T, delivered after the client hung up; nobody wrote web since
        await f.settle()
        await warm()
        proxy.hold_s, proxy.deliver_after_close = 3.0, True
        connections, (_, seen), sent = proxy.connections, f.scale(), time.time()
        with pytest.raises(Unanswered):
            await old.scale(f.ns, "web", 4, seen)
        checked, gave_up = fence.passed[-1], time.monotonic() - fence.passed[-1]
        assert T - 0.05 <= gave_up < T + SLACK_S
        landed = await until(lambda: f.scale()[0] == 4, 10, "the held write to land") - checked
        assert proxy.connections == connections
        line = f"held 0.4 s: answered {answered:.2f}s after the fence check; held 3 s: given up after {gave_up:.2f}s"
        line += f", landed {landed:.1f}s after the check (proxy delivering after the client hung up)"
        if audit:
            updates = f.scale_updates(sent)
            assert len(updates) == 1 and updates[0][1] == 200, updates  # sent once, received once
            line += f"; the API server received it {updates[0][0] - sent:.2f}s after it was sent"
        print(f"\n[fencing] T = {T:g}s; {line}")
        assert landed >= 2.5
    finally:
        proxy.close()


async def test_an_old_leaders_delayed_write_does_not_land_after_the_new_leader_acted(fencing: Fencing) -> None:
    """Two Electors on one Lease (lease 3 s, renew deadline 2 s, retry 0.5 s, so T = 1 s). The leader's
    path to the API server turns slow (everything it sends held 8 s) right as it sends a scale-up read
    from the Deployment at R: its renewals stall, it stops acting, the standby takes the Lease and
    scales the Deployment down. The old scale-up reaches the API server after that and is refused (409):
    the Deployment stays at the new leader's write."""
    f = fencing
    proxy = DelayingProxy(f.upstream())
    old, new = f.kube(proxy.url, old_leader=True), f.kube()
    old_lead = Leadership(enabled=True, identity="old", timing=TIMING)
    new_lead = Leadership(enabled=True, identity="new", timing=TIMING)
    fence = Fence(old_lead)
    old.fence, new.fence = fence, new_lead.check
    electors = [
        Elector(old_lead, client.CoordinationV1Api(old.api), "fence", f.ns),
        Elector(new_lead, client.CoordinationV1Api(new.api), "fence", f.ns),
    ]
    tasks: list[asyncio.Task[None]] = []
    try:
        tasks.append(asyncio.create_task(electors[0].run()))
        await until(old_lead.acting, 15, "the first elector to lead")
        tasks.append(asyncio.create_task(electors[1].run()))
        await asyncio.sleep(1.0)  # the standby has seen the leader renew
        await f.settle()
        assert old_lead.acting() and not new_lead.acting()
        _, seen = await asyncio.to_thread(f.scale)  # what the old leader's decision was made from
        proxy.hold_s = 8.0
        sent = time.time()
        with pytest.raises(Unanswered):
            await old.scale(f.ns, "web", 5, seen)  # the canary scale-up, sent while it leads
        checked = fence.passed[-1]
        gave_up = time.monotonic()
        lost = await until(lambda: not old_lead.acting(), 5, "the old leader to stop acting")
        took = await until(new_lead.acting, 10, "the standby to take the lease")
        await new.scale(f.ns, "web", 0, None)  # the new leader's rollback (reads R' first)
        acted, acted_wall = time.monotonic(), time.time()
        generation = await asyncio.to_thread(f.generation)
        proxy.hold_s = 0.0  # the path recovers; what it already holds still arrives 8 s after it was sent
        await until(lambda: proxy.held() == 0, 20, "the old leader's held bytes to reach the API server")
        delivered = max(d.delivered or 0.0 for d in proxy.deliveries)
        await asyncio.sleep(1.0)
        replicas, _ = await asyncio.to_thread(f.scale)
        assert (replicas, await asyncio.to_thread(f.generation)) == (0, generation), "a write landed after it"
        assert not old_lead.acting() and new_lead.acting()
        assert gave_up - checked < T + SLACK_S
        assert checked < lost < took < acted < delivered
        line = (
            f"fence check passed at 0; the old leader gave up at {gave_up - checked:.2f}s and stopped acting at "
            f"{lost - checked:.2f}s; the new leader took the lease at {took - checked:.2f}s and scaled at "
            f"{acted - checked:.2f}s"
        )
        if f.audit() is not None:
            updates = f.scale_updates(sent)
            assert len(updates) == 1, updates  # sent once: no transport retry
            (received, code) = updates[0]
            assert code == 409 and received > acted_wall, updates
            line += (
                f"; the held scale-up reached the API server {received - sent:.2f}s after it was sent, "
                f"{received - acted_wall:.2f}s after the new leader's write, and was answered {code} (audit log)"
            )
        else:
            line += f"; the proxy delivered what it held by {delivered - checked:.2f}s"
        print(f"\n[fencing] {line}")
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        proxy.close()
