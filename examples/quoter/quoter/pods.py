"""Run the quoter as real pods (image `quoter:dev`) from tests and demos, with the same handle as a process.

    from quoter.pods import start_quoter_pod

    q = start_quoter_pod(cluster.kubectl, "v2", namespace=ns, strategy="fib_rsi", version="v2.0.0",
                         routing_configmap="fib-rsi-routing", redis_addr=cluster.expose_to_pods(redis_port))
    cluster.add_scrape_target(f"quoter-{ns}-v2", q.metrics_target)   # the pod IP, scraped directly
    q.set_knobs(latency_ms=300)                                       # its control port, on the pod IP
    q.stop()

Each quoter gets its own ServiceAccount, allowed to read its one routing ConfigMap and nothing else (the
app's least privilege, as a user would deploy it), and a restricted pod. `kubectl` is any callable
running kubectl against the cluster and returning the CompletedProcess (raising on failure); standard
library only, like quoter.testing.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from quoter.testing import QuoterEndpoints, wait_until

Kubectl = Callable[..., "subprocess.CompletedProcess[str]"]
IMAGE = "quoter:dev"
METRICS_PORT, CONTROL_PORT = 8000, 8001


def quoter_pod_objects(
    name: str,
    *,
    namespace: str,
    strategy: str,
    version: str,
    routing_configmap: str | None,
    symbols: Iterable[str] | None = None,
    redis_addr: str | None = None,
    tick_interval: float = 0.2,
    shadow: bool = False,
    knobs: Mapping[str, float] | None = None,
    image: str = IMAGE,
) -> list[dict[str, Any]]:
    """ServiceAccount, Role (get/list/watch of the one routing ConfigMap), RoleBinding and Deployment, all `name`."""
    labels = {"app.kubernetes.io/name": "quoter", "app.kubernetes.io/instance": name, "version": version}
    env = {"QUOTER_STRATEGY": strategy, "QUOTER_VERSION": version, "QUOTER_TICK_INTERVAL": f"{tick_interval:g}s"}
    if routing_configmap:
        env["QUOTER_ROUTING_CONFIGMAP"] = routing_configmap
    if symbols is not None:
        env["QUOTER_SYMBOLS"] = ",".join(symbols)
    if redis_addr:
        env["QUOTER_REDIS_URL"] = f"redis://{redis_addr}/0"
    if shadow:
        env["QUOTER_SHADOW"] = env["SHADOW_MODE"] = "true"
    for knob, value in (knobs or {}).items():
        env["QUOTER_" + knob.upper()] = repr(float(value))
    meta = {"name": name, "namespace": namespace, "labels": labels}
    # list/watch are allowed by resourceNames too: the quoter's watch names its ConfigMap (metadata.name=).
    verbs = ["get", "list", "watch"]
    cm_rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": [routing_configmap], "verbs": verbs}
    rules = [cm_rule] if routing_configmap else []
    restricted = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]}}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app.kubernetes.io/instance": name}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": name,
                        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                        "terminationGracePeriodSeconds": 5,
                        "containers": [
                            {
                                "name": "quoter",
                                "image": image,
                                "imagePullPolicy": "Never",
                                "env": [{"name": k, "value": v} for k, v in env.items()],
                                "securityContext": restricted,
                                "ports": [
                                    {"name": "metrics", "containerPort": METRICS_PORT},
                                    {"name": "control", "containerPort": CONTROL_PORT},
                                ],
                                "readinessProbe": {
                                    "httpGet": {"path": "/metrics", "port": "metrics"},
                                    "periodSeconds": 2,
                                },
                            }
                        ],
                    },
                },
            },
        },
    ]


class QuoterPod(QuoterEndpoints):
    """A quoter Deployment's one pod: metrics and control on its pod IP (the host reaches the node's pods)."""

    def __init__(self, kubectl: Kubectl, name: str, namespace: str, strategy: str, version: str, pod: dict[str, Any]):
        self.kubectl, self.name, self.namespace = kubectl, name, namespace
        self.strategy, self.version = strategy, version
        self.pod_name: str = pod["metadata"]["name"]
        self.node_name: str = pod["spec"].get("nodeName", "")
        self.host: str = pod["status"]["podIP"]
        self.metrics_port, self.control_port = METRICS_PORT, CONTROL_PORT

    def __repr__(self) -> str:
        return f"QuoterPod({self.strategy} {self.version} {self.namespace}/{self.pod_name} on {self.node_name})"

    def alive(self) -> bool:
        r = self.kubectl(
            "get", "pod", self.pod_name, "-n", self.namespace, "-o", "jsonpath={.status.phase}", check=False
        )  # fmt: skip
        return r.returncode == 0 and r.stdout == "Running"

    def log(self) -> str:
        return str(self.kubectl("logs", self.pod_name, "-n", self.namespace, "--tail=2000", check=False).stdout)

    def stop(self, timeout: float = 30.0) -> None:
        """Delete the Deployment and its RBAC, waiting for the pod to go. Safe to call twice."""
        kinds = "deployment,rolebinding,role,serviceaccount"
        self.kubectl("delete", kinds, self.name, "-n", self.namespace, "--ignore-not-found", f"--timeout={timeout:g}s")


def start_quoter_pod(
    kubectl: Kubectl,
    name: str,
    *,
    namespace: str,
    strategy: str,
    version: str,
    routing_configmap: str | None,
    ready_timeout: float = 180.0,
    **options: Any,
) -> QuoterPod:
    """Apply quoter_pod_objects() and return once its pod is Ready and its control endpoint answers.
    TimeoutError (with the pod's log) otherwise; `options` are quoter_pod_objects()'s."""
    objects = quoter_pod_objects(
        name, namespace=namespace, strategy=strategy, version=version, routing_configmap=routing_configmap, **options
    )
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
    try:
        kubectl("rollout", "status", f"deployment/{name}", "-n", namespace, f"--timeout={ready_timeout:g}s")
        selector = f"app.kubernetes.io/instance={name}"
        pods = json.loads(kubectl("get", "pods", "-n", namespace, "-l", selector, "-o", "json").stdout)["items"]
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp") and p["status"].get("podIP")]
        q = QuoterPod(kubectl, name, namespace, strategy, version, live[0])
        wait_until(q.state, timeout=30, what=f"{q!r} answering on its control port")
        return q
    except (subprocess.CalledProcessError, IndexError, TimeoutError) as exc:
        events = kubectl(
            "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}", check=False
        )
        raise TimeoutError(f"quoter pod {namespace}/{name} not ready: {exc}\n{events.stdout[-3000:]}") from exc
