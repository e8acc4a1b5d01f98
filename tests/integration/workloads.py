"""Objects the integration tests create on the real API server: deployments, rollouts, routing reads."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster


def deployment(
    name: str, namespace: str, replicas: int, version: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
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
                    "containers": [
                        {
                            "name": "strategy",
                            "image": f"example.invalid/quoter:{version}",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ]
                },
            },
        },
    }


def apply(cluster: DevCluster, *objects: dict[str, Any], check: bool = True) -> Any:
    text = yaml.safe_dump_all(list(objects))
    return cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=text, check=check)


def get(cluster: DevCluster, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    return dict(json.loads(out.stdout))


def status(cluster: DevCluster, name: str, namespace: str, kind: str = "strategyrollout") -> dict[str, Any]:
    obj = get(cluster, kind, name, namespace) or {}
    return dict(obj.get("status") or {})


def routing(cluster: DevCluster, configmap: str, namespace: str) -> dict[str, Any] | None:
    cm = get(cluster, "configmap", configmap, namespace)
    if cm is None:
        return None
    return dict(json.loads(cm["data"]["routing.json"]))


def replicas(cluster: DevCluster, name: str, namespace: str) -> tuple[int, int]:
    dep = get(cluster, "deployment", name, namespace) or {}
    return int(dep.get("spec", {}).get("replicas", 0)), int(dep.get("status", {}).get("readyReplicas", 0) or 0)


def patch_status(cluster: DevCluster, kind: str, name: str, namespace: str, status: dict[str, Any]) -> None:
    cluster.kubectl(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )
