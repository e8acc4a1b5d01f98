"""The local control plane, Prometheus and Redis are real."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from devcluster.cluster import DEFAULT_STATE_DIR, CommandError, DevCluster, versions

pytestmark = pytest.mark.integration


def eventually(pred: Callable[[], Any], timeout: float = 60.0, interval: float = 0.25) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def test_version_is_pinned(cluster: DevCluster) -> None:
    info = json.loads(cluster.kubectl("get", "--raw", "/version").stdout)
    want = versions()["KUBERNETES_VERSION"]
    if not cluster.kubeconfig.is_relative_to(cluster.state_dir):
        pytest.skip("external cluster (E2E_KUBECONFIG): its version is its own")
    assert info["gitVersion"] == want
    assert info["major"] == "1"
    assert info["minor"] == want.split(".")[1]
    client = json.loads(cluster.kubectl("version", "--client", "-o", "json").stdout)
    assert client["clientVersion"]["gitVersion"] == want


def test_nodes_ready(cluster: DevCluster) -> None:
    out = cluster.kubectl(
        "get",
        "nodes",
        "-o",
        'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\\n"}{end}',
    ).stdout.split()
    assert len(out) >= 3 and all(s == "True" for s in out)


CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: {plural}.devcluster.test
spec:
  group: devcluster.test
  scope: Namespaced
  names: {{plural: {plural}, singular: {singular}, kind: {kind}, listKind: {kind}List}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [replicas, symbol]
            properties:
              replicas: {{type: integer, minimum: 0, maximum: 10}}
              symbol: {{type: string, pattern: "^[A-Z]+$"}}
"""


def test_crd_roundtrip_and_validation(cluster: DevCluster, namespace: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    plural, singular, kind = f"widgets{suffix}", f"widget{suffix}", f"Widget{suffix}"
    cluster.kubectl("apply", "-f", "-", input=CRD.format(plural=plural, singular=singular, kind=kind))
    try:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.devcluster.test", "--timeout=60s")

        def obj(name: str, spec: str) -> str:
            return (
                f"apiVersion: devcluster.test/v1\nkind: {kind}\n"
                f"metadata: {{name: {name}, namespace: {namespace}}}\nspec: {spec}\n"
            )

        # discovery may lag Established by a moment
        eventually(
            lambda: (
                cluster.kubectl(
                    "apply",
                    "--validate=strict",
                    "-f",
                    "-",
                    input=obj("good", "{replicas: 3, symbol: AAPL}"),
                    check=False,
                ).returncode
                == 0
            ),
            timeout=30,
        )
        got = json.loads(cluster.kubectl("get", plural, "good", "-n", namespace, "-o", "json").stdout)
        assert got["spec"] == {"replicas": 3, "symbol": "AAPL"}

        bad = cluster.kubectl(
            "apply",
            "--validate=strict",
            "-f",
            "-",
            input=obj("bad", "{replicas: 99, symbol: aapl}"),
            check=False,
        )
        assert bad.returncode != 0
        assert "replicas" in bad.stderr and "symbol" in bad.stderr, bad.stderr
        unknown = cluster.kubectl(
            "apply",
            "--validate=strict",
            "-f",
            "-",
            input=obj("unknown", "{replicas: 1, symbol: X, bogus: 1}"),
            check=False,
        )
        assert unknown.returncode != 0 and "bogus" in unknown.stderr, unknown.stderr
        # and without client-side help: the server rejects the schema violation on its own
        with pytest.raises(CommandError, match="replicas"):
            cluster.kubectl("apply", "--validate=false", "-f", "-", input=obj("bad2", "{replicas: -1, symbol: X}"))
        absent = cluster.kubectl("get", plural, "bad", "-n", namespace, check=False)
        assert absent.returncode != 0
    finally:
        cluster.kubectl("delete", "crd", f"{plural}.devcluster.test", "--wait=false", check=False)


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web, namespace: {ns}}}
spec:
  replicas: 3
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      # fake pods: kwok's (tainted) nodes, not the real node
      nodeSelector: {{type: kwok}}
      tolerations: [{{key: kwok.x-k8s.io/node, operator: Exists, effect: NoSchedule}}]
      containers:
      - {{name: web, image: example.invalid/web:1}}
"""


def test_deployment_scales_and_ready_replicas_follow(cluster: DevCluster, namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", input=DEPLOYMENT.format(ns=namespace))

    def ready(n: int) -> Callable[[], bool]:
        def check() -> bool:
            st = json.loads(cluster.kubectl("get", "deploy", "web", "-n", namespace, "-o", "json").stdout)
            return (
                st["status"].get("readyReplicas", 0) == n
                and st["status"].get("replicas", 0) == n
                and st["status"].get("observedGeneration") == st["metadata"]["generation"]
            )

        return check

    eventually(ready(3), timeout=90)
    phases = cluster.kubectl("get", "pods", "-n", namespace, "-o", "jsonpath={.items[*].status.phase}").stdout.split()
    assert phases == ["Running"] * 3
    cluster.kubectl("scale", "deploy/web", "-n", namespace, "--replicas=5")
    eventually(ready(5), timeout=90)
    cluster.kubectl("scale", "deploy/web", "-n", namespace, "--replicas=0")
    eventually(ready(0), timeout=90)
    eventually(
        lambda: cluster.kubectl("get", "pods", "-n", namespace, "-o", "name").stdout.strip() == "",
        timeout=90,
    )


def test_prometheus_scrapes_a_test_exporter(cluster: DevCluster) -> None:
    registry = CollectorRegistry()
    g = Gauge("devcluster_test_value", "a value set by the test", ["kind"], registry=registry)
    g.labels(kind="probe").set(42.5)
    port = DevCluster.free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    job = f"devcluster-test-{uuid.uuid4().hex[:6]}"
    try:
        cluster.add_scrape_target(job, f"127.0.0.1:{port}", labels={"team": "platform"})

        def sample() -> list[Any]:
            res = cluster.prometheus_api("query", query=f'devcluster_test_value{{job="{job}"}}')
            return list(res["result"])

        result = eventually(sample, timeout=30)
        assert result[0]["metric"]["kind"] == "probe"
        assert result[0]["metric"]["team"] == "platform"
        assert float(result[0]["value"][1]) == 42.5
        g.labels(kind="probe").set(7)
        eventually(lambda: float(sample()[0]["value"][1]) == 7.0, timeout=30)
    finally:
        cluster.remove_scrape_target(job)
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_redis_stream_roundtrip(cluster: DevCluster) -> None:
    r = redis.Redis.from_url(cluster.redis_url, decode_responses=True)
    try:
        stream = f"devcluster-test-{uuid.uuid4().hex[:6]}"
        ids = [r.xadd(stream, {"seq": str(i), "symbol": "AAPL"}) for i in range(3)]
        got = r.xrange(stream)
        assert [i for i, _ in got] == ids
        assert [f["seq"] for _, f in got] == ["0", "1", "2"]
        r.delete(stream)
    finally:
        r.close()


def test_kubectl_and_helm_on_path(cluster: DevCluster) -> None:
    env = cluster.env()
    assert env["PATH"].split(":")[0] == str(cluster.bin_dir)
    assert env["KUBECONFIG"] == str(cluster.kubeconfig)
    out = subprocess.run(["kubectl", "get", "ns", "default", "-o", "name"], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "namespace/default", out.stderr
    assert versions()["HELM_VERSION"] in cluster.helm("version", "--short").stdout


def test_prometheus_restart_keeps_port_and_data(cluster: DevCluster) -> None:
    if cluster.state_dir == DEFAULT_STATE_DIR or "prometheus" not in cluster.pids():
        pytest.skip("not on a shared `make dev-cluster` (others use its Prometheus) or an external one")
    query = 'up{job="prometheus"}'
    eventually(lambda: cluster.prometheus_api("query", query=query)["result"], timeout=30)
    t_before = f"{time.time():.3f}"
    url = cluster.prometheus_url
    cluster.stop_prometheus()
    assert not cluster.prometheus_ready()
    cluster.start_prometheus()
    assert cluster.prometheus_url == url and cluster.prometheus_ready()
    # samples from before the restart are still there
    assert cluster.prometheus_api("query", query=query, time=t_before)["result"]
