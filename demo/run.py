"""`make demo`: a healthy canary goes staging -> prod 10 -> 50 -> 100 and succeeds, then a sick one is
rolled back by its gate. Everything real: local control plane, Prometheus, Redis, the operator
process, and one reference strategy process (examples/quoter) per version.

The cluster is left running afterwards (`make dev-cluster-down` stops it); the operator and the
quoters started here are stopped at the end.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "examples" / "quoter")]

from quoter.testing import QuoterProcess, start_quoter  # noqa: E402

from devcluster.cluster import DevCluster, up  # noqa: E402
from devcluster.realnode import KWOK_NODE_SELECTOR, KWOK_TOLERATION  # noqa: E402
from strategy_rollouts.testing.operator_process import OperatorProcess  # noqa: E402

KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]
P95 = (
    "histogram_quantile(0.95, sum by (le) (rate(tick_duration_seconds_bucket"
    '{strategy="{{strategy}}",version="{{canary.version}}"}[10s]))) * 1000'
)


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


def deployment(name: str, namespace: str, replicas: int, version: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": {**labels, "version": version}},
                "spec": {
                    # a fake strategy pod: kwok's nodes only (tainted); everything else runs on the real node
                    "nodeSelector": dict(KWOK_NODE_SELECTOR),
                    "tolerations": [dict(KWOK_TOLERATION)],
                    "containers": [{"name": "strategy", "image": f"example.invalid/quoter:{version}"}],
                },
            },
        },
    }


def rollout(namespace: str, canary_version: str) -> dict[str, Any]:
    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "StrategyRollout",
        "metadata": {"name": "fib-rsi", "namespace": namespace},
        "spec": {
            "strategy": f"fib_rsi_{namespace.replace('-', '_')}",
            "stable": {"deployment": "fib-rsi-legacy", "version": "v1.0.0"},
            "canary": {"deployment": "fib-rsi-pipeline", "version": canary_version, "replicas": 2},
            "routing": {"keys": KEYS, "handoff": "2s"},
            "stages": [
                {"name": "staging", "steps": [{"setWeight": 10}, {"pause": {"duration": "15s"}}]},
                {
                    "name": "prod",
                    "steps": [
                        {"setWeight": 10},
                        {"pause": {"duration": "15s"}},
                        {"setWeight": 50},
                        {"pause": {"duration": "15s"}},
                        {"setWeight": 100},
                    ],
                },
            ],
            "gates": [
                {"name": "tick-p95-ms", "query": P95, "condition": "< 200", "interval": "2s", "inconclusiveLimit": 10}
            ],
            "scaleDownDelay": "10s",
        },
    }


def apply(cluster: DevCluster, *objects: dict[str, Any]) -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(list(objects)))


def watch_until_done(
    cluster: DevCluster, namespace: str, at_10_percent: Callable[[], None] | None = None, timeout: float = 240
) -> dict[str, Any]:
    """The plugin's live table (`kubectl strategy get -w`) until the rollout ends."""
    env = cluster.env()
    plugin = subprocess.Popen([str(REPO / ".venv" / "bin" / "kubectl-strategy"), "get", "-n", namespace, "-w"], env=env)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            out = cluster.kubectl("get", "srl", "fib-rsi", "-n", namespace, "-o", "json", check=False)
            if out.returncode == 0:
                status = json.loads(out.stdout).get("status") or {}
                if at_10_percent is not None and (status.get("canaryWeight") or 0) >= 10:
                    at_10_percent()
                    at_10_percent = None
                if status.get("phase") in ("Succeeded", "RolledBack", "Invalid"):
                    time.sleep(2)
                    return dict(status)
            time.sleep(1)
        raise TimeoutError(f"rollout in {namespace} did not finish in {timeout}s")
    finally:
        plugin.terminate()
        plugin.wait(10)


def scenario(cluster: DevCluster, namespace: str, canary_version: str, sick: bool) -> dict[str, Any]:
    cluster.kubectl("create", "namespace", namespace, check=False)
    cluster.kubectl("delete", "srl", "fib-rsi", "-n", namespace, "--ignore-not-found")
    apply(
        cluster,
        deployment("fib-rsi-legacy", namespace, 4, "v1.0.0"),
        deployment("fib-rsi-pipeline", namespace, 0, canary_version),
    )
    cluster.kubectl(
        "scale", "deployment/fib-rsi-legacy", "deployment/fib-rsi-pipeline", "-n", namespace, "--replicas=0"
    )
    cluster.kubectl("scale", "deployment/fib-rsi-legacy", "-n", namespace, "--replicas=4")
    cluster.kubectl("delete", "configmap", "fib-rsi-routing", "-n", namespace, "--ignore-not-found")
    strategy = f"fib_rsi_{namespace.replace('-', '_')}"
    quoters: list[QuoterProcess] = []
    try:
        for version in ("v1.0.0", canary_version):
            q = start_quoter(
                strategy,
                version,
                namespace=namespace,
                routing_configmap="fib-rsi-routing",
                symbols=KEYS,
                kubeconfig=cluster.kubeconfig,
                redis_url=cluster.redis_url,
            )
            quoters.append(q)
            cluster.add_scrape_target(f"demo-{namespace}-{version}", q.metrics_target)
            print(f"    quoter {version}: {q}")
        apply(cluster, rollout(namespace, canary_version))

        def sicken() -> None:
            print(f"\n    >>> canary at 10%: making {canary_version} sick (450 ms ticks)\n", flush=True)
            quoters[-1].set_knobs(latency_ms=450.0)

        return watch_until_done(cluster, namespace, sicken if sick else None)
    finally:
        for q in quoters:
            q.stop()
        for version in ("v1.0.0", canary_version):
            cluster.remove_scrape_target(f"demo-{namespace}-{version}")


def main() -> int:
    say("Starting (or reusing) the local control plane, Prometheus and Redis")
    cluster, _reused = up()
    print(cluster.export_lines())
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    cluster.kubectl("wait", "--for=condition=Established", "-f", str(REPO / "crds"))
    log = REPO / ".devcluster" / "demo-operator.log"
    say(f"Starting the operator (log: {log})")
    with OperatorProcess(cluster.kubeconfig, cluster.prometheus_url, log):
        say("1/2 A healthy canary v2.0.0: staging 10% -> prod 10% -> 50% -> 100%")
        healthy = scenario(cluster, "demo", "v2.0.0", sick=False)
        print(f"    phase={healthy.get('phase')} reason={healthy.get('reason')} history={healthy.get('history')}")
        say("2/2 A sick canary v3.0.0 (tick p95 ~450 ms, gate: < 200 ms)")
        sick = scenario(cluster, "demo-sick", "v3.0.0", sick=True)
        print(f"    phase={sick.get('phase')} reason={sick.get('reason')}\n    message={sick.get('message')}")
    ok = healthy.get("phase") == "Succeeded" and sick.get("phase") == "RolledBack"
    say("Demo " + ("finished as expected" if ok else "did NOT finish as expected"))
    print(
        "    The cluster is still running: `source .devcluster/env` to poke at it, `make dev-cluster-down` to stop it."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
