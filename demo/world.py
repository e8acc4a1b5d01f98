"""The demo's world: one namespace on a real cluster, the strategy's fake Deployments, and one reference
quoter per version that reads its routing from the API and is scraped by the real Prometheus.

Quoters run as host processes (kwok pods run no processes). `World.start_quoter` is the one place that
starts them and `World.stop_quoter` the one that stops them; the story only uses the handle's `metric()`,
`state()` and `set_knobs()` (HTTP on the quoter's metrics and control ports). Running them as pods on a
real node later means: these two functions, and a handle with those three methods that reaches the pod.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from rich.console import Console

REPO = Path(__file__).resolve().parents[1]
for path in (str(REPO), str(REPO / "examples" / "quoter")):
    if path not in sys.path:
        sys.path.insert(0, path)

from quoter.pods import QuoterPod, start_quoter_pod  # noqa: E402
from quoter.testing import QuoterProcess, start_quoter  # noqa: E402

from tests.integration import workloads  # noqa: E402

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

T = TypeVar("T")
Quoter: TypeAlias = QuoterProcess | QuoterPod  # the same handle either way
ROUTING = "fib-rsi-routing"  # the rollout `fib-rsi` publishes here; the quoters read it
KEYS = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "ADAUSDT", "XRPUSDT", "DOGEUSDT", "AVAXUSDT", "DOTUSDT", "LINKUSDT"]


def wait(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll until `predicate` returns something truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


@dataclass
class World:
    cluster: DevCluster
    namespace: str
    strategy: str
    console: Console
    log_dir: Path
    quoters: dict[str, Quoter] = field(default_factory=dict)
    images_loaded: bool = False

    # -- the API ------------------------------------------------------------------------------
    def apply(self, *objects: dict[str, Any]) -> None:
        """Server-side apply into this namespace."""
        for obj in objects:
            obj["metadata"].setdefault("namespace", self.namespace)
        workloads.apply(self.cluster, *objects)

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        return workloads.get(self.cluster, kind, name, self.namespace)

    def status(self, kind: str, name: str) -> dict[str, Any]:
        return workloads.status(self.cluster, name, self.namespace, kind=kind)

    def deployment(self, name: str, replicas: int, version: str, env: dict[str, str] | None = None) -> None:
        self.apply(workloads.deployment(name, self.namespace, replicas, version, env=env))

    def routing(self) -> dict[str, Any]:
        return workloads.routing(self.cluster, ROUTING, self.namespace) or {}

    @functools.cached_property
    def me(self) -> str:
        """The admin's user name (requests carry their writer's name)."""
        out = self.cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
        return out.stdout.strip()

    def plugin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`kubectl strategy ARGS -n NAMESPACE` (the plugin of this tree), its output captured."""
        argv = [sys.executable, "-m", "strategy_rollouts.cli.main", *args, "-n", self.namespace]
        env = {**self.cluster.env(), "COLUMNS": "160"}
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)

    # -- Prometheus ---------------------------------------------------------------------------
    def query(self, promql: str) -> float | None:
        """One instant value (the first series), None when empty or unreachable."""
        url = f"{self.cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                result = json.load(resp)["data"]["result"]
        except OSError:
            return None
        return float(result[0]["value"][1]) if result else None

    def wait_scraped(self, metric: str, version: str, samples: int = 5, timeout: float = 60) -> None:
        """Until Prometheus holds `samples` scrapes of `metric` of this strategy's `version`."""
        selector = f'{metric}{{strategy="{self.strategy}",version="{version}"}}'
        wait(
            lambda: (self.query(f"max(count_over_time({selector}[1m]))") or 0) >= samples,
            timeout,
            f"{samples} scrapes of {selector}",
        )

    # -- the strategy's processes -------------------------------------------------------------
    def start_quoter(
        self, name: str, version: str, *, shadow: bool = False, knobs: Mapping[str, float] | None = None
    ) -> Quoter:
        """The reference quoter of `version`: routed by the rollout's ConfigMap (a shadow one trades every
        routing key with side effects disabled), publishing decisions to Redis, scraped by Prometheus.
        A real pod (image quoter:dev, its own ServiceAccount) when the cluster has a real node, else a process."""
        common = {"symbols": KEYS, "tick_interval": 0.2, "shadow": shadow, "knobs": knobs}
        q: Quoter
        if self.cluster.real_node is not None:
            self.load_images()
            q = start_quoter_pod(
                self.cluster.kubectl, f"quoter-{name}", namespace=self.namespace, strategy=self.strategy,
                version=version, routing_configmap=ROUTING, redis_addr=self.redis_for_pods, **common,
            )  # fmt: skip
        else:
            q = start_quoter(
                self.strategy, version, namespace=self.namespace, routing_configmap=ROUTING,
                kubeconfig=self.cluster.kubeconfig, redis_url=self.cluster.redis_url, log_dir=self.log_dir, **common,
            )  # fmt: skip
        self.quoters[name] = q
        self.cluster.add_scrape_target(self.job(name), q.metrics_target)
        flags = ["--shadow"] if shadow else []
        flags += [f"--{k.replace('_', '-')} {v:g}" for k, v in (knobs or {}).items()]
        where = f"pid {q.pid}" if isinstance(q, QuoterProcess) else f"pod {q.pod_name} on node {q.node_name}"
        self.console.print(f"    quoter [bold]{name}[/]: {' '.join([version, *flags])} ({where})")
        return q

    def load_images(self) -> None:
        """quoter:dev built from its Dockerfile and imported into the real node, once per demo."""
        if self.images_loaded:
            return
        started = time.monotonic()
        self.console.print("    building quoter:dev (cached after the first time) and loading it into the real node")
        self.cluster.load_images(["quoter"])
        self.console.print(f"    images ready in {time.monotonic() - started:.0f}s")
        self.images_loaded = True

    @functools.cached_property
    def redis_for_pods(self) -> str:
        """The cluster's Redis as the node's pods reach it ("10.244.0.1:PORT"), bridged once."""
        port = int(self.cluster.redis_url.rsplit(":", 1)[1].split("/")[0])
        return self.cluster.expose_to_pods(port)

    def stop_quoter(self, name: str) -> None:
        q = self.quoters.pop(name, None)
        if q is not None:
            q.stop()
            self.cluster.remove_scrape_target(self.job(name))

    def job(self, name: str) -> str:
        return f"demo-{self.namespace}-{name}"

    def close(self) -> None:
        for name in list(self.quoters):
            self.stop_quoter(name)
