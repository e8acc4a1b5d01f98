"""Objects the integration tests create on the real API server: deployments, rollouts, routing reads."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from devcluster.realnode import KWOK_NODE_SELECTOR, KWOK_TOLERATION

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
                    # a fake strategy pod: kwok's nodes only (tainted); everything else runs on the real node
                    "nodeSelector": dict(KWOK_NODE_SELECTOR),
                    "tolerations": [dict(KWOK_TOLERATION)],
                    "containers": [
                        {
                            "name": "strategy",
                            "image": f"example.invalid/quoter:{version}",
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
                        }
                    ],
                },
            },
        },
    }


ALLOW_FROM = "strategyrollouts.io/allow-rollouts-from"  # on a Namespace: whose rollouts may act there


def allow_rollouts_from(cluster: DevCluster, namespace: str, *sources: str) -> None:
    """Let rollouts of `sources` act in `namespace` (docs/safety.md "Tenancy")."""
    cluster.kubectl("annotate", "--overwrite", "namespace", namespace, f"{ALLOW_FROM}={','.join(sources)}")


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


class Writer:
    """kubectl as one identity: its own kubeconfig (a token, no client certificate)."""

    def __init__(self, cluster: DevCluster, kubeconfig: Path) -> None:
        self.cluster = cluster
        self.kubeconfig = kubeconfig

    def argv(self, *args: str) -> list[str]:
        return [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.kubeconfig}", *args]

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), input=input, capture_output=True, text=True, timeout=60, check=False)

    def apply(self, *objects: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(list(objects)))


# Every request verb (docs/rbac.md): each action is its own verb on <kind>/actions.
ROLLOUT_VERBS = (
    "promote", "promoteFull", "abort", "retry", "pause", "resume", "approve", "stopTrading", "revert", "releaseKey",
    "liftStop",
)  # fmt: skip


def role_writer(
    cluster: DevCluster, ns: str, name: str, rules: list[dict[str, Any]], tmp_dir: Path
) -> tuple[Writer, str]:
    """A ServiceAccount `name` of `ns` with a Role of `rules` in `ns` only, as kubectl (a token), and its user name."""
    cluster.kubectl("create", "serviceaccount", name, "-n", ns)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": ns},
        "rules": rules,
    }
    cluster.kubectl("apply", "-f", "-", input=json.dumps(role))
    cluster.kubectl("create", "rolebinding", name, "-n", ns, f"--role={name}", f"--serviceaccount={ns}:{name}")
    writer = Writer(cluster, token_kubeconfig(cluster, ns, name, tmp_dir))
    user = writer.run("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()
    assert user == f"system:serviceaccount:{ns}:{name}"
    return writer, user


def self_signed(tmp: Path, name: str = "server", cn: str = "127.0.0.1") -> tuple[Path, Path]:
    """A one-day self-signed certificate for 127.0.0.1 and its key (PEM files in `tmp`)."""
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def token_kubeconfig(cluster: DevCluster, ns: str, name: str, tmp_dir: Path) -> Path:
    """A kubeconfig for the cluster as ServiceAccount `ns`/`name` (a one-hour token, no client certificate)."""
    token = cluster.kubectl("create", "token", name, "-n", ns, "--duration=1h").stdout.strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["users"] = [{"name": name, "user": {"token": token}}]
    context["context"]["user"] = name
    config["contexts"] = [context]
    path = tmp_dir / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def service_account_writer(
    cluster: DevCluster,
    ns: str,
    name: str,
    tmp_dir: Path,
    verbs: tuple[str, ...] = ROLLOUT_VERBS,
    parity_verbs: tuple[str, ...] = ("run",),
) -> tuple[Writer, str]:
    """A ServiceAccount `name` allowed to read objects and patch their status in `ns` (with the action verbs
    `verbs` on strategyrollouts/actions, `parity_verbs` on paritychecks/actions), as kubectl, and its user name."""
    actions = [
        {"apiGroups": ["strategyrollouts.io"], "resources": [resource], "verbs": list(granted)}
        for resource, granted in (("strategyrollouts/actions", verbs), ("paritychecks/actions", parity_verbs))
        if granted
    ]
    rules = [
        {
            "apiGroups": ["strategyrollouts.io"],
            "resources": ["strategyrollouts", "paritychecks", "shadowruns"],
            "verbs": ["get"],
        },
        {
            "apiGroups": ["strategyrollouts.io"],
            "resources": ["strategyrollouts/status", "paritychecks/status", "shadowruns/status"],
            "verbs": ["get", "patch"],
        },
        *actions,
    ]
    return role_writer(cluster, ns, name, rules, tmp_dir)


# What a team member may do with rollouts in their own namespace, and nothing anywhere else.
ROLLOUT_AUTHOR_RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["strategyrollouts.io"],
        "resources": ["strategyrollouts"],
        "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
    },
]
