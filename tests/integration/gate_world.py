"""What the gate tests share: a rollout on kwok deployments, and a test exporter Prometheus scrapes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from strategy_rollouts.testing.exporter import Exporter
from tests.integration.conftest import wait_for
from tests.integration.workloads import apply, deployment, routing, status

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT"]


def rollout(name: str, namespace: str, gates: list[dict[str, Any]], pause: str = "2s", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "strategy": name.replace("-", "_"),
        "stable": {"deployment": f"{name}-legacy", "version": "v1.0.0"},
        "canary": {"deployment": f"{name}-pipeline", "version": "v2.0.0", "replicas": 1},
        "routing": {"keys": KEYS, "handoff": "1s"},
        "stages": [
            {"name": "staging", "steps": [{"setWeight": 20}, {"pause": {"duration": pause}}]},
            {"name": "prod", "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}, {"setWeight": 100}]},
        ],
        "gates": gates,
        "scaleDownDelay": "1s",
        **spec,
    }
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": body,
    }


def start(cluster: DevCluster, obj: dict[str, Any]) -> None:
    """The rollout's two deployments (kwok makes their pods Ready), then the rollout."""
    name, ns = obj["metadata"]["name"], obj["metadata"]["namespace"]
    apply(cluster, deployment(f"{name}-legacy", ns, 2, "v1.0.0"), deployment(f"{name}-pipeline", ns, 0, "v2.0.0"))
    apply(cluster, obj)


def wait_phase(cluster: DevCluster, name: str, namespace: str, phase: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        st = status(cluster, name, namespace)
        return st if st.get("phase") == phase else None

    try:
        return wait_for(check, timeout, what=f"{name} phase {phase}")  # type: ignore[no-any-return]
    except AssertionError as exc:
        dump = json.dumps(status(cluster, name, namespace), indent=1)[:3000]
        raise AssertionError(f"{exc}\nstatus: {dump}") from None


def wait_routed(cluster: DevCluster, name: str, namespace: str, owners: set[str], timeout: float = 30) -> None:
    """Until every key of the rollout's routing ConfigMap is owned by one of `owners`: status records a
    decision first and the routing follows it (record intent, then act), so a test that has just seen
    the phase waits for the routing too."""

    def check() -> bool:
        doc = routing(cluster, f"{name}-routing", namespace) or {}
        values = set((doc.get("assignments") or {}).values())
        return bool(values) and values <= owners

    wait_for(check, timeout, what=f"{name} routed to {sorted(owners)}")


def gate(st: dict[str, Any], name: str) -> dict[str, Any]:
    return next(g for g in st.get("gates", []) if g["name"] == name)


@contextmanager
def scraped(cluster: DevCluster, job: str, seed: int = 0) -> Iterator[Exporter]:
    """A test exporter Prometheus scrapes every second for the duration of the block."""
    exporter = Exporter(seed=seed)
    cluster.add_scrape_target(job, exporter.target)
    try:
        yield exporter
    finally:
        cluster.remove_scrape_target(job)
        exporter.stop()
