"""Keys as first-class (docs/keys.md), on the real operator, API server, Prometheus and quoter processes:
a per-key gate quarantines the symbol the canary trades badly (its own metric in the quoter), the rest
reach 100 %, `kubectl strategy release-key` returns it; beyond maxQuarantined the whole rollout rolls back."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import sync_playwright

from strategy_rollouts.api import keyhash
from strategy_rollouts.api.keyhash import digest, owns
from strategy_rollouts.testing.dashboard_process import DashboardProcess
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration.conftest import wait_for
from tests.integration.gate_world import scraped
from tests.integration.workloads import apply, deployment, routing, status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))
from quoter.testing import QuoterProcess, start_quoter

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT"]
NAME, CM = "keys", "keys-routing"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "20s"}}, {"setWeight": 100}]
PLUGIN = Path(sys.executable).parent / "kubectl-strategy"


def keyed_rollout(
    namespace: str, strategy: str, routing: dict[str, Any], steps: list[dict[str, Any]], **spec: Any
) -> dict[str, Any]:
    """The rollout every test here starts: legacy v1.0.0 to pipeline v2.0.0, handoff 1 s, one stage."""
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "stable": {"deployment": "legacy", "version": "v1.0.0"},
            "canary": {"deployment": "pipeline", "version": "v2.0.0", "replicas": 2},
            "routing": {"handoff": "1s", **routing},
            "stages": [{"name": "prod", "steps": steps}],
            "scaleDownDelay": "1s",
            **spec,
        },
    }


def deployments(cluster: DevCluster, namespace: str) -> None:
    apply(cluster, deployment("legacy", namespace, 2, "v1.0.0"), deployment("pipeline", namespace, 0, "v2.0.0"))


@dataclass
class World:
    cluster: DevCluster
    namespace: str
    strategy: str
    tmp: Path
    quoters: dict[str, QuoterProcess] = field(default_factory=dict)

    def ranked(self) -> list[str]:
        """The hash order the canary takes keys in (no tiers): sha256(strategy:key) ascending."""
        return sorted(KEYS, key=lambda k: digest(self.strategy, k))

    def start(self, bad: list[str], max_quarantined: int) -> None:
        for version in ("v1.0.0", "v2.0.0"):
            q = start_quoter(
                self.strategy,
                version,
                namespace=self.namespace,
                routing_configmap=CM,
                symbols=KEYS,
                kubeconfig=self.cluster.kubeconfig,
                tick_interval=0.2,
                extra_args=["--bad-symbols", ",".join(bad)] if version == "v2.0.0" else [],
            )
            self.quoters[version] = q
            self.cluster.add_scrape_target(f"keys-{self.namespace}-{version}", q.metrics_target)
        deployments(self.cluster, self.namespace)
        query = 'strategy_symbol_net_bps{strategy="{{strategy}}",version="{{canary.version}}"}'
        gate = {"name": "net-bps", "query": query, "condition": "> -5", "interval": "2s", "perKey": {"label": "symbol"}}
        routing = {"keys": KEYS, "maxQuarantined": max_quarantined}
        apply(self.cluster, keyed_rollout(self.namespace, self.strategy, routing, STEPS, gates=[gate]))

    def status(self) -> dict[str, Any]:
        return status(self.cluster, NAME, self.namespace)

    def assignments(self) -> dict[str, str]:
        return dict((routing(self.cluster, CM, self.namespace) or {}).get("assignments") or {})

    def quarantined(self) -> list[str]:
        return [q["key"] for q in (self.status().get("keys") or {}).get("quarantined", [])]


@pytest.fixture
def world(cluster: DevCluster, namespace: str, live_operator: OperatorProcess, tmp_path: Path) -> Iterator[World]:
    w = World(cluster, namespace, f"k_{namespace.replace('-', '_')}", tmp_path)
    try:
        yield w
    finally:
        for version, q in w.quoters.items():
            q.stop()
            cluster.remove_scrape_target(f"keys-{namespace}-{version}")


def test_a_bad_symbol_is_quarantined_the_rest_reach_100_and_release_key_returns_it(world: World) -> None:
    w = world
    bad = w.ranked()[0]  # the canary's first key at 50 %
    w.start([bad], max_quarantined=1)
    wait_for(lambda: w.quarantined() == [bad], 60, what=f"{bad} quarantined")
    entry = w.status()["keys"]["quarantined"][0]
    assert entry["gate"] == "net-bps" and entry["value"] == -20.0, entry
    # The rest reach 100 %; the bad key trades on stable, and the rollout waits for it (stable still trades it).
    others = {k: "v2.0.0" for k in KEYS if k != bad}
    wait_for(lambda: w.assignments() == {**others, bad: "v1.0.0"}, 90, what="others on the canary, bad on stable")
    st = wait_for(lambda: (s := w.status()).get("reason") == "KeysQuarantined" and s, 60, what="waits for the key")
    assert st["phase"] == "Paused", st
    shown = subprocess.run(
        [str(PLUGIN), "status", NAME, "-n", w.namespace], capture_output=True, text=True, env=w.cluster.env()
    )
    assert "Quarantined keys" in shown.stdout and bad in shown.stdout, shown.stdout + shown.stderr
    assert "Keys of gate net-bps" in shown.stdout, shown.stdout
    # The scoreboard: the keys the canary trades now, each with its value (the quarantined one is not judged).
    board = next(g for g in w.status()["gates"] if g["name"] == "net-bps")["keys"]
    assert {s["key"] for s in board} == set(others) and all(s["canary"] == 2.0 for s in board), board
    # The dashboard shows the same, in a real browser: the scoreboard and the quarantined key.
    log = w.tmp / "dashboard.log"
    with DashboardProcess(w.cluster.kubeconfig, w.cluster.prometheus_url, log) as dash, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(dash.url)
            row = f'tr[data-key="strategyrollouts/{w.namespace}/{NAME}"]'
            page.wait_for_selector(row, timeout=30_000)
            page.click(f"{row} a")
            page.wait_for_selector("#keys", timeout=30_000)
            keys = page.inner_text("#keys")
            assert "Keys of gate net-bps" in keys and "Quarantined keys" in keys and bad in keys, keys
            assert all(k in keys for k in others), keys
            assert not errors, errors
        finally:
            browser.close()
    # Fixed in the canary, then released by a person: it goes back through a drain, and the run completes.
    w.quoters["v2.0.0"].set_knobs(bad_symbol_net_bps=3.0)
    released = subprocess.run(
        [str(PLUGIN), "release-key", NAME, bad, "-n", w.namespace, "--reason", "fixed", "--timeout", "60s"],
        capture_output=True,
        text=True,
        env=w.cluster.env(),
        timeout=90,
    )
    assert released.returncode == 0, released.stdout + released.stderr
    assert "Applied" in released.stdout, released.stdout
    st = wait_for(lambda: (s := w.status()).get("phase") == "Succeeded" and s, 90, what="Succeeded")
    assert not (st.get("keys") or {}).get("quarantined")
    wait_for(lambda: set(w.assignments().values()) == {"v2.0.0"}, 30, what="every key on the new version")


def test_more_bad_keys_than_max_quarantined_roll_the_whole_rollout_back(world: World) -> None:
    w = world
    bad = w.ranked()[:2]  # both the canary's at 50 %
    w.start(bad, max_quarantined=1)
    st = wait_for(lambda: (s := w.status()).get("phase") == "RolledBack" and s, 90, what="RolledBack")
    assert st["reason"] == "KeysQuarantined", st
    wait_for(lambda: set(w.assignments().values()) == {"v1.0.0"}, 30, what="every key back on stable")


def test_a_bad_max_quarantined_is_refused_naming_the_field(cluster: DevCluster, namespace: str, crds: None) -> None:
    obj = keyed_rollout(namespace, "s", {"keys": KEYS, "maxQuarantined": "150%"}, STEPS)
    result = apply(cluster, obj, check=False)
    assert result.returncode != 0
    assert "spec.routing.maxQuarantined" in result.stderr, result.stderr
    assert "a count >= 0 or a percent" in result.stderr, result.stderr
    obj["spec"]["routing"]["maxQuarantined"] = "10%"
    assert apply(cluster, obj, check=False).returncode == 0


def test_a_bucket_rollout_at_half_a_percent_routes_the_expected_users_in_constant_status_size(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    """An open universe of 10,000 users routed by bucket (never listed): at 0.5 % the canary owns exactly
    the users an independent sha256 computation puts in buckets 0..49, and status stays the same size."""
    deployments(cluster, namespace)
    steps: list[dict[str, Any]] = [{"setWeight": 0.5}, {"pause": {}}, {"setWeight": 100}]
    obj = keyed_rollout(namespace, "copy_trading", {"buckets": 10000, "salt": "copy"}, steps)
    apply(cluster, obj)

    def doc() -> dict[str, Any]:
        return routing(cluster, CM, namespace) or {}

    wait_for(lambda: doc().get("canaryBuckets") == 50 and "drainingBuckets" not in doc(), 60, what="50 buckets")
    at_half = doc()
    assert at_half["weight"] == 0.5 and at_half["buckets"] == 10000 and at_half["salt"] == "copy"
    assert not at_half.get("assignments"), "no user is listed"
    users = [f"user-{i}" for i in range(10_000)]
    expected = {u for u in users if int(hashlib.sha256(f"copy:{u}".encode()).hexdigest(), 16) % 10_000 < 50}
    assert {u for u in users if owns(at_half, u, "v2.0.0")} == expected
    assert {u for u in users if owns(at_half, u, "v1.0.0")} == set(users) - expected
    assert 20 < len(expected) < 90  # about 50 of 10,000
    paused = wait_for(lambda: (s := status(cluster, NAME, namespace)).get("phase") == "Paused" and s, 30, what="paused")
    size_half = len(json.dumps(paused))
    result = subprocess.run(
        [str(PLUGIN), "promote", NAME, "-n", namespace, "--timeout", "60s"],
        capture_output=True, text=True, env=cluster.env(), timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    done = wait_for(lambda: (s := status(cluster, NAME, namespace)).get("phase") == "Succeeded" and s, 60, what="done")
    wait_for(lambda: doc().get("canaryBuckets") == 10000, 30, what="every bucket on the canary")
    assert all(owns(doc(), u, "v2.0.0") for u in users[:500])
    assert abs(len(json.dumps(done)) - size_half) < 2048, (size_half, len(json.dumps(done)))  # O(1) in the users


def test_keys_from_a_config_map_go_to_the_canary_tier_by_tier(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    """200 keys listed in a ConfigMap (keysFrom), the ten low-volume ones named as the first tier: at 5 %
    the canary owns exactly those ten. A tier naming a key the list lacks is InvalidSpec naming the field."""
    keys = [f"K{i:03d}" for i in range(200)]
    first = keys[150:160]
    cluster.kubectl("create", "configmap", "universe", "-n", namespace, f"--from-literal=keys={chr(10).join(keys)}")
    deployments(cluster, namespace)
    universe = {"keysFrom": {"configMapKeyRef": {"name": "universe", "key": "keys"}}, "order": {"tiers": [first]}}
    obj = keyed_rollout(namespace, "tiers", universe, [{"setWeight": 5}, {"pause": {}}])
    apply(cluster, obj)

    def canary() -> set[str]:
        doc = routing(cluster, CM, namespace) or {}
        return {k for k, v in (doc.get("assignments") or {}).items() if v == "v2.0.0"}

    wait_for(lambda: canary() == set(first), 60, what="the first tier on the canary")
    assert len((routing(cluster, CM, namespace) or {})["assignments"]) == 200
    obj["spec"]["routing"]["order"] = {"tiers": [[*first, "NOPE"]]}
    apply(cluster, obj)
    st = wait_for(lambda: (s := status(cluster, NAME, namespace)).get("phase") == "Invalid" and s, 30, what="Invalid")
    assert "spec.routing.order.tiers[0][10]" in st["message"] and "NOPE" in st["message"], st["message"]


def test_a_volume_rank_gives_the_low_volume_keys_first_and_no_rank_holds_the_start(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess
) -> None:
    """order.query ranks the keys by traded volume (ascending) at the run's start: with no series yet the
    start holds (RankUnmeasured, nothing routed); once Prometheus has them, the lowest volumes go first."""
    strategy = f"v_{namespace.replace('-', '_')}"
    deployments(cluster, namespace)
    order = {"query": 'max by (symbol) (keys_volume{strategy="{{strategy}}"})', "label": "symbol"}
    obj = keyed_rollout(namespace, strategy, {"keys": KEYS, "order": order}, [{"setWeight": 34}, {"pause": {}}])
    with scraped(cluster, f"keys-{namespace}") as exporter:
        apply(cluster, obj)
        st = wait_for(lambda: (s := status(cluster, NAME, namespace)).get("reason") == "RankUnmeasured" and s, 30,
                      what="held: no rank")  # fmt: skip
        assert st["phase"] == "Pending" and "spec.routing.order.query ranks no key" in st["message"]
        assert not routing(cluster, CM, namespace), "nothing routed while the rank is unknown"
        volumes = {k: 1000.0 * (i + 1) for i, k in enumerate(KEYS)}  # BTCUSDT the lowest
        for key, volume in volumes.items():
            exporter.gauge("keys_volume", volume, strategy=strategy, symbol=key)

        def canary() -> set[str]:
            doc = routing(cluster, CM, namespace) or {}
            return {k for k, v in (doc.get("assignments") or {}).items() if v == "v2.0.0"}

        wait_for(lambda: canary() == set(KEYS[:3]), 60, what="the three lowest volumes on the canary (34 % of 6)")
        order = status(cluster, NAME, namespace)["keys"]["order"]
        assert order == [[k] for k in KEYS], order


def test_a_100000_key_rollout_aborts_and_the_abort_is_recorded_in_a_few_kilobytes(
    cluster: DevCluster, namespace: str, live_operator: OperatorProcess, tmp_path: Path
) -> None:
    """100,000 keys listed in a ConfigMap: status and routing.json hold segments of the hash order. At 10 %
    the canary owns exactly the first 10,000 keys by sha256(strategy:key) (an independent computation,
    through api/keyhash.py as an app holding the list reads routing.json); an abort drains them all back
    and is recorded, every document a few kilobytes."""
    keys = [f"K{i:05d}" for i in range(100_000)]
    listing = tmp_path / "keys"
    listing.write_text("\n".join(keys))
    cluster.kubectl("create", "configmap", "universe", "-n", namespace, f"--from-file=keys={listing}")
    deployments(cluster, namespace)
    universe = {"keysFrom": {"configMapKeyRef": {"name": "universe", "key": "keys"}}}
    apply(cluster, keyed_rollout(namespace, "big", universe, [{"setWeight": 10}, {"pause": {}}]))
    first = set(sorted(keys, key=lambda k: hashlib.sha256(f"big:{k}".encode()).hexdigest())[:10_000])
    mine = keyhash.universe_digest(keys)

    def owned(version: str) -> set[str]:
        doc = routing(cluster, CM, namespace) or {}
        return {k for k in keys if keyhash.owner(doc, k, mine) == version}

    wait_for(lambda: owned("v2.0.0") == first, 90, interval=2, what="the first 10,000 keys on the canary")
    doc = routing(cluster, CM, namespace) or {}
    assert doc["universe"] == {"keys": 100_000, "sha256": mine} and doc["assignments"] == {}, doc["universe"]
    assert keyhash.owner(doc, "K00001", keyhash.universe_digest(keys[1:])) is None  # another list: nothing
    r = subprocess.run(
        [str(PLUGIN), "abort", NAME, "-n", namespace, "--reason", "too many keys", "--no-wait"],
        capture_output=True, text=True, env=cluster.env(),
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    st = wait_for(lambda: (s := status(cluster, NAME, namespace)).get("phase") == "RolledBack" and s, 60, what="abort")
    assert st["reason"] == "Aborted" and st["history"][-1]["outcome"] == "Aborted", st["history"]
    assert len(json.dumps(st)) < 16 * 1024, len(json.dumps(st))
    wait_for(lambda: owned("v1.0.0") == set(keys), 60, interval=2, what="every key back on stable")
    assert len(json.dumps(routing(cluster, CM, namespace))) < 4 * 1024
