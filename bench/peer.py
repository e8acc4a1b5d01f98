"""The peer: Argo Rollouts' controller, built from the Go module proxy (bench/peer/build.sh), run out of
cluster against the same dev cluster as ours, on the same work, so that each figure has its twin.

Its objects: a Rollout with the canary strategy and no traffic router (replica-based: the canary
ReplicaSet is scaled to weight% of `replicas`), pod templates on the bench's tainted kwok nodes.
"""

from __future__ import annotations

import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.harness import CANARY, NODE_LABEL, STABLE, Env
from bench.kube import ns_path, wait_until

BENCH = Path(__file__).resolve().parent
ARGO_GROUP, ARGO_VERSION = "argoproj.io", "v1alpha1"


def build() -> Path:
    """Build (or reuse) the controller; the directory holding `rollouts-controller` and `crds/`."""
    done = subprocess.run(["bash", str(BENCH / "peer" / "build.sh")], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building Argo Rollouts failed:\n{done.stderr[-4000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def version(peer: Path) -> str:
    out = subprocess.run([str(peer / "rollouts-controller"), "--version"], capture_output=True, text=True)
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def install_crds(env: Env, peer: Path) -> None:
    files = [a for f in sorted((peer / "crds").glob("*-crd.yaml")) for a in ("-f", str(f))]  # not its kustomization
    env.cluster.kubectl("apply", "--server-side", "--force-conflicts", *files)
    env.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", *files)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def controller(
    env: Env, peer: Path, label: str, namespace: str, *, via_proxy: bool, qps: float | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    """The controller in namespaced mode, watching `namespace` only (as ours is run by the bench).

    `qps`: None keeps its client's defaults (40 QPS, burst 80); else `--qps qps --burst 2*qps`.
    """
    kubeconfig = env.proxy["kubeconfig"] if via_proxy else str(env.cluster.kubeconfig)
    healthz, metrics = _free_port(), _free_port()
    args = [
        str(peer / "rollouts-controller"),
        "--kubeconfig",
        kubeconfig,
        "--namespaced",
        "--namespace",
        namespace,
        "--leader-elect=false",
        "--healthzPort",
        str(healthz),
        "--metricsport",
        str(metrics),
        "--loglevel",
        "warn",
    ]
    if qps is not None:
        args += ["--qps", str(qps), "--burst", str(int(2 * qps))]
    log = open(env.work / f"argo-rollouts-{label}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"Argo Rollouts exited with {proc.returncode}; see {env.work}/argo-rollouts-{label}.log")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{healthz}/healthz", timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_until("Argo Rollouts healthy", healthy, 60, 0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _template(name: str, version: str) -> dict[str, Any]:
    labels = {"app": name, "version": version}
    return {
        "metadata": {"labels": labels},
        "spec": {
            "nodeSelector": {NODE_LABEL: "true"},
            "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "strategy", "image": f"example.invalid/quoter:{version}"}],
        },
    }


def rollout(name: str, namespace: str, replicas: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """An Argo Rollout at the stable version; `start_canary` then moves its template to the canary."""
    return {
        "apiVersion": f"{ARGO_GROUP}/{ARGO_VERSION}",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": _template(name, STABLE),
            "strategy": {"canary": {"steps": steps}},
        },
    }


def argo_steps(weights: list[int], pause_s: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for w in weights:
        out.append({"setWeight": w})
        if w < 100:
            out.append({"pause": {"duration": f"{pause_s}s"}})
    return out


def rollouts_path(namespace: str) -> str:
    return ns_path(namespace, "rollouts", ARGO_GROUP, ARGO_VERSION)


def start_canary(env: Env, namespace: str, name: str) -> None:
    env.api.merge_patch(f"{rollouts_path(namespace)}/{name}", {"spec": {"template": _template(name, CANARY)}})


def healthy_count(env: Env, namespace: str) -> int:
    doc = env.api.get(rollouts_path(namespace)) or {}
    return sum(1 for r in doc.get("items", []) if (r.get("status") or {}).get("phase") == "Healthy")


def is_canary(rs: dict[str, Any]) -> bool:
    containers = ((rs.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return str(containers[0].get("image", "")).endswith(f":{CANARY}")


def owner(obj: dict[str, Any]) -> str | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return str(refs[0]["name"]) if refs else None


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pause_due(status: dict[str, Any], pause_s: float) -> float | None:
    """When Argo itself considers the current pause over: its recorded start (whole seconds) + duration."""
    for cond in status.get("pauseConditions") or []:
        if cond.get("reason") == "CanaryPauseStep" and cond.get("startTime"):
            return parse_time(cond["startTime"]) + pause_s
    return None


def wait_healthy(env: Env, namespace: str, n: int, timeout: float) -> None:
    wait_until(f"{n} Argo Rollouts Healthy in {namespace}", lambda: healthy_count(env, namespace) >= n, timeout, 1)
