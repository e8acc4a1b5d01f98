"""The cluster side of the benchmarks: one gauge exporter, bench nodes, workloads, rollouts, recorders,
the counting proxy and the operator process, with CPU/RSS sampling from /proc."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.analysis import RolloutTrace, cm_event, parse_metrics, sum_by
from bench.kube import Api, Watcher, load_creds, ns_path, wait_until
from devcluster.realnode import KWOK_NODE_SELECTOR, KWOK_TOLERATION
from strategy_rollouts.testing.exporter import Exporter
from strategy_rollouts.testing.operator_process import OperatorProcess

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "strategyrollouts.io", "v1alpha1"
KEYS = [f"SYM{i:02d}USDT" for i in range(10)]
STABLE, CANARY = "v1.0.0", "v2.0.0"
NODE_LABEL = "bench.strategyrollouts.io/node"
NODES = 4
PODS_PER_NODE = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")


class GateExporter(Exporter):
    """Every strategy's gate series on one exporter (far cheaper than one quoter per strategy)."""

    GOOD = {"errors": 0.0, "latency_ms": 50.0}

    def add(self, strategy: str) -> None:
        for gate, value in self.GOOD.items():
            self.set(strategy, gate, value)

    def set(self, strategy: str, gate: str, value: float) -> None:
        self.gauge("bench_gate_value", value, strategy=strategy, gate=gate)


def gates(interval: str, failure_limit: int = 0) -> list[dict[str, Any]]:
    q = 'max(bench_gate_value{{strategy="{{{{strategy}}}}",gate="{gate}"}})'
    return [
        {
            "name": "errors",
            "query": q.format(gate="errors"),
            "condition": "< 1",
            "interval": interval,
            "failureLimit": failure_limit,
            "inconclusiveLimit": 3,
        },
        {
            "name": "latency-ms",
            "query": q.format(gate="latency_ms"),
            "condition": "< 200",
            "interval": interval,
            "failureLimit": failure_limit,
            "inconclusiveLimit": 3,
        },
    ]


def rollout(
    name: str,
    namespace: str,
    strategy: str,
    steps: list[dict[str, Any]],
    *,
    interval: str = "30s",
    handoff: str = "1s",
    paused: bool = False,
    scale_down_delay: str = "5s",
) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "stable": {"deployment": f"{name}-stable", "version": STABLE},
            "canary": {"deployment": f"{name}-canary", "version": CANARY, "replicas": 1},
            "routing": {"mode": "symbols", "keys": KEYS, "handoff": handoff},
            "stages": [{"name": "prod", "steps": steps}],
            "gates": gates(interval),
            "scaleDownDelay": scale_down_delay,
            "paused": paused,
        },
    }


def deployment(name: str, namespace: str, replicas: int, version: str) -> dict[str, Any]:
    labels = {"app": name, "version": version}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    # the bench's own kwok nodes (type: kwok too); never the real node
                    "nodeSelector": {**KWOK_NODE_SELECTOR, NODE_LABEL: "true"},
                    "tolerations": [
                        {"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"},
                        dict(KWOK_TOLERATION),
                    ],
                    "containers": [{"name": "strategy", "image": f"example.invalid/quoter:{version}"}],
                },
            },
        },
    }


def node(name: str) -> dict[str, Any]:
    """A kwok fake node only bench pods go to (tainted), with room for 1,000 pods."""
    cap = {"cpu": "64", "memory": "512Gi", "pods": str(PODS_PER_NODE)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {"kwok.x-k8s.io/node": "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {NODE_LABEL: "true", "type": "kwok", "kubernetes.io/hostname": name},
        },
        "spec": {"taints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}]},
        "status": {"allocatable": cap, "capacity": cap},
    }


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB."""
    rss = hwm = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
        elif line.startswith("VmHWM:"):
            hwm = int(line.split()[1]) / 1024
    return rss, hwm


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    try:
        model = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
        info["cpu_model"] = model
    except (OSError, StopIteration):
        pass
    try:
        info["mem_total_mb"] = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        info["loadavg_at_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    info.update(code_state())
    return info


def code_state() -> dict[str, Any]:
    """The commit, and the operator files that differ from it (the tree is shared with other editors)."""
    out: dict[str, Any] = {}
    with contextlib.suppress(OSError):
        git = ["git", "-C", str(REPO)]
        out["git_commit"] = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run([*git, "status", "--porcelain", "strategy_rollouts"], capture_output=True, text=True)
        out["operator_files_modified"] = dirty.stdout.split("\n")[:-1]
    return out


class Recorder:
    """Watches one namespace's StrategyRollouts and routing ConfigMaps; every event with its receive time."""

    def __init__(self, api: Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.lock = threading.Lock()
        self.traces: dict[str, RolloutTrace] = {}
        self.latest: dict[str, dict[str, Any]] = {}
        self.cm_events = 0
        self.watchers = [
            Watcher(api, ns_path(namespace, "strategyrollouts", GROUP, VERSION), self._on_rollout),
            Watcher(
                api, ns_path(namespace, "configmaps") + "?labelSelector=strategyrollouts.io%2Frouting", self._on_cm
            ),
        ]
        # the label selector goes in the query string for both list and watch
        for w in self.watchers:
            w.start()
        for w in self.watchers:
            w.synced.wait(30)

    def track(self, name: str, steps: list[dict[str, Any]]) -> None:
        with self.lock:
            self.traces.setdefault(name, RolloutTrace(steps=steps))

    def _on_rollout(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        st = obj.get("status") or {}
        with self.lock:
            self.latest[name] = st
            trace = self.traces.get(name)
            if trace is not None:
                trace.statuses.append((t, st))

    def _on_cm(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"].removesuffix("-routing")
        event = cm_event(t, obj, STABLE, CANARY)
        with self.lock:
            self.cm_events += 1
            trace = self.traces.get(name)
            if (
                trace is not None
                and event is not None
                and (not trace.routing or trace.routing[-1].revision != event.revision)
            ):
                trace.routing.append(event)

    def phases(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        with self.lock:
            for name in self.traces:
                out[(self.latest.get(name) or {}).get("phase") or "None"] += 1
        return dict(out)

    def count(self, predicate: Any) -> int:
        with self.lock:
            return sum(1 for name in self.traces if predicate(self.latest.get(name) or {}))

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()


class Env:
    """Everything the cluster benchmarks share: the cluster, a JSON API client, the exporter, the proxy."""

    def __init__(self, work: Path) -> None:
        from devcluster.cluster import controller_qps, up

        self.cluster, self.reused = up()
        wanted = controller_qps()
        if self.cluster.controller_qps != wanted:  # a reused cluster keeps the settings it started with
            got = self.cluster.controller_qps or "default"
            print(
                f"[bench] warning: the reused dev cluster's controllers run at {got} QPS, not"
                f" DEVCLUSTER_CONTROLLER_QPS={wanted} (make dev-cluster-down for a fresh one)",
                flush=True,
            )
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.api = Api(load_creds(self.cluster.kubeconfig))
        self.run_id = uuid.uuid4().hex[:5]
        self.namespaces: list[str] = []
        self.operator_code: dict[str, dict[str, Any]] = {}  # label -> code the operator was started from
        self.exporter = GateExporter()
        self.job = f"bench-gates-{self.run_id}"
        self.cluster.add_scrape_target(self.job, f"127.0.0.1:{self.exporter.port}")
        self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", str(REPO / "crds"))
        self._nodes()
        self.proxy = self._start_proxy()

    def _nodes(self) -> None:
        for i in range(NODES):
            self.api.create("/api/v1/nodes", node(f"bench-node-{i}"))

        def ready() -> bool:
            doc = self.api.get(f"/api/v1/nodes?labelSelector={NODE_LABEL}%3Dtrue")
            conds = [
                c
                for n in (doc or {}).get("items", [])
                for c in (n.get("status") or {}).get("conditions", [])
                if c["type"] == "Ready"
            ]
            return len(conds) >= NODES and all(c["status"] == "True" for c in conds)

        wait_until("bench nodes Ready", ready, 90)

    def _start_proxy(self) -> dict[str, Any]:
        out = self.work / "proxy"
        (out / "ports.json").unlink(missing_ok=True)  # never read a previous run's ports
        log = open(self.work / "proxy.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.proxy",
                "--kubeconfig",
                str(self.cluster.kubeconfig),
                "--prometheus",
                self.cluster.prometheus_url,
                "--out",
                str(out),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            start_new_session=True,
        )
        log.close()
        wait_until("proxy ready", lambda: (out / "ports.json").exists() or proc.poll() is not None, 30, 0.1)
        if proc.poll() is not None:
            raise RuntimeError(f"proxy exited; see {self.work / 'proxy.log'}")
        ports = json.loads((out / "ports.json").read_text())
        return {"proc": proc, "kubeconfig": str(out / "kubeconfig"), **ports}

    def proxy_counts(self) -> dict[str, dict[str, float]]:
        import urllib.request

        out = {}
        proc = self.proxy["proc"]
        if proc.poll() is not None:
            raise RuntimeError(f"the counting proxy exited with {proc.returncode}; see {self.work / 'proxy.log'}")
        for label in ("kube", "prometheus"):
            for what in ("counts", "seconds"):
                url = f"http://127.0.0.1:{self.proxy[label]}/__{what}"
                with urllib.request.urlopen(url, timeout=10) as r:
                    out[label if what == "counts" else f"{label}_seconds"] = json.loads(r.read())
        return out

    def apiserver_counts(self) -> dict[str, float]:
        """Cluster-wide apiserver_request_total by "verb resource" (every client of the shared cluster)."""
        samples = parse_metrics(self.api.raw("/metrics"), ["apiserver_request_total"])
        return sum_by(samples, "verb", "resource")

    def prometheus_counts(self) -> dict[str, float]:
        """Prometheus's own count of /api/v1/query requests (every client of the shared Prometheus)."""
        import urllib.request

        with urllib.request.urlopen(f"{self.cluster.prometheus_url}/metrics", timeout=10) as r:
            samples = parse_metrics(r.read().decode(), ["prometheus_http_requests_total"])
        return {k: v for k, v in sum_by(samples, "handler").items() if k in ("/api/v1/query", "/api/v1/query_range")}

    def namespace(self, label: str) -> str:
        ns = f"bench-{self.run_id}-{label}"
        self.api.create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        self.namespaces.append(ns)
        wait_until(
            f"default ServiceAccount in {ns}",
            lambda: self.api.get(f"/api/v1/namespaces/{ns}/serviceaccounts/default") is not None,
            30,
            0.2,
        )
        return ns

    def create_workloads(self, ns: str, names: list[str], workers: int = 8) -> None:
        objs = []
        for name in names:
            objs.append(deployment(f"{name}-stable", ns, 1, STABLE))
            objs.append(deployment(f"{name}-canary", ns, 0, CANARY))
        self.api.parallel(lambda o: self.api.create(ns_path(ns, "deployments", "apps"), o), objs, workers)

    def create_rollouts(self, ns: str, objs: list[dict[str, Any]], workers: int = 8) -> None:
        self.api.parallel(lambda o: self.api.create(ns_path(ns, "strategyrollouts", GROUP, VERSION), o), objs, workers)

    def ready_stable(self, ns: str) -> int:
        doc = self.api.get(ns_path(ns, "deployments", "apps")) or {}
        return sum(
            1
            for d in doc.get("items", [])
            if d["metadata"]["name"].endswith("-stable") and (d.get("status") or {}).get("readyReplicas", 0) >= 1
        )

    def stable_replicas(self, ns: str) -> int:
        doc = self.api.get(ns_path(ns, "deployments", "apps")) or {}
        # spec and status: the rest window starts only once the old pods are gone, since the rollouts'
        # status.replicas legitimately follows the Deployments while they drain
        return sum(
            int(d["spec"].get("replicas", 0)) + int((d.get("status") or {}).get("replicas", 0))
            for d in doc.get("items", [])
            if d["metadata"]["name"].endswith("-stable")
        )

    @contextmanager
    def operator(
        self,
        label: str,
        namespaces: tuple[str, ...],
        via_proxy: bool,
        extra_env: dict[str, str] | None = None,
        start_timeout: float = 120,
    ) -> Iterator[OperatorProcess]:
        kubeconfig = self.proxy["kubeconfig"] if via_proxy else str(self.cluster.kubeconfig)
        prom = f"http://127.0.0.1:{self.proxy['prometheus']}" if via_proxy else self.cluster.prometheus_url
        # BENCH_OPERATOR_PYTHONPATH: run a locally patched copy of the operator (before/after comparisons).
        patched = os.environ.get("BENCH_OPERATOR_PYTHONPATH")
        op = OperatorProcess(
            kubeconfig,
            prom,
            self.work / f"operator-{label}.log",
            namespaces=namespaces,
            env=({"PYTHONPATH": patched} if patched else {}) | (extra_env or {}),
        )
        # `python -m` puts the working directory first on sys.path: start a patched copy from its own root.
        here = os.getcwd()
        if patched:
            os.chdir(patched)
        try:
            self.operator_code[label] = {**code_state(), "patched_copy": patched}
            op.start(timeout=start_timeout)
        finally:
            os.chdir(here)
        try:
            yield op
        finally:
            op.stop()

    def drop_namespace(self, ns: str, timeout: float = 600) -> None:
        """Delete one namespace and wait until it is gone: its pods free the bench nodes' capacity
        (4 x 1,000 pods) before the next level, and their deletion does not load the next measurement."""
        self.cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        wait_until(f"namespace {ns} gone", lambda: self.api.get(f"/api/v1/namespaces/{ns}") is None, timeout, 2)
        if ns in self.namespaces:
            self.namespaces.remove(ns)

    def drop_namespaces(self, timeout: float = 600) -> None:
        """Every namespace made so far, deleted together and waited for: run between scenarios and scale
        levels, or the earlier ones' pods fill the bench nodes and the next level's stay Pending."""
        for ns in self.namespaces:
            self.cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        for ns in list(self.namespaces):
            self.drop_namespace(ns, timeout)

    def cleanup(self) -> None:
        for ns in self.namespaces:
            self.cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
        self.cluster.remove_scrape_target(self.job)
        proc = self.proxy.get("proc")
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(10)


class Sampler(threading.Thread):
    """RSS and CPU of one process every `period` seconds."""

    def __init__(self, pid: int, period: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.samples: list[tuple[float, float, float]] = []  # (t, cpu_s, rss_mb)
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.samples.append((time.time(), proc_cpu_seconds(self.pid), proc_rss_mb(self.pid)[0]))
            except (OSError, IndexError):
                return
            self.stopped.wait(self.period)

    def stop(self) -> None:
        self.stopped.set()
