"""Where a status write's time goes on the API server: the same write with and without what is on its path.

The side-by-side scale run measured our requests at 0.6-0.95 s against 130-285 ms for Argo Rollouts'
on the same API server minutes apart, and could only suspect why. This isolates it. No controller runs;
the benchmark writes itself, on the same API server, variants interleaved round by round (A, B, C, ...):

- `ours-put`: our StrategyRollout CRD (its CEL rules) with the requests ValidatingAdmissionPolicy bound,
  a resourceVersion-guarded PUT of the whole status (what `runtime.write_status` sends), ~2 KB of a
  real mid-rollout status from the engine (`tests/unit/rollout_sim.py`);
- `ours-patch`: the same objects, a JSON merge patch of only the fields a step changes;
- `twin-put`: the same CRD schema under another API group (no admission policy matches it), PUT;
- `twin-nocel-put`: that twin without its `x-kubernetes-validations`, PUT;
- `argo-patch`: Argo Rollouts' own Rollout CRD (from the peer's module), a merge patch of the status
  fields its controller patches at a step.

Every write changes the object (an unchanged one is not written to etcd). Sample = one request's
client-side latency; per variant and concurrency: median, p99 and requests/s.
"""

from __future__ import annotations

import copy
import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from bench.analysis import summary
from bench.harness import REPO, Env
from bench.kube import ns_path
from bench.scenarios import log

GROUP, VERSION = "strategyrollouts.io", "v1alpha1"
TWINS = {"twin-put": "cel.twin.bench.strategyrollouts.test", "twin-nocel-put": "nocel.twin.bench.strategyrollouts.test"}
VARIANTS = ("ours-put", "ours-patch", "twin-put", "twin-nocel-put", "argo-patch")


def _strip_cel(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_cel(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_strip_cel(v) for v in node]
    return node


def twin_crd(group: str, cel: bool) -> dict[str, Any]:
    """Our StrategyRollout CRD under another group (the admission policy matches strategyrollouts.io only)."""
    crd: dict[str, Any] = yaml.safe_load((REPO / "crds" / "strategyrollouts.yaml").read_text())
    crd["metadata"] = {"name": f"{crd['spec']['names']['plural']}.{group}"}
    crd["spec"]["group"] = group
    crd["spec"]["names"].pop("categories", None)
    crd["spec"]["names"].pop("shortNames", None)
    stripped: dict[str, Any] = _strip_cel(crd)
    return crd if cel else stripped


def sample_objects() -> tuple[dict[str, Any], dict[str, Any]]:
    """A spec and a mid-rollout status as our operator writes them (JSON, by alias)."""
    from bench.engine import reconcile_inputs

    inputs = reconcile_inputs()
    spec, status, _, _ = inputs[len(inputs) // 2]
    return (
        spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        status.model_dump(by_alias=True, mode="json", exclude_none=True),
    )


def argo_rollout(name: str, ns: str) -> dict[str, Any]:
    labels = {"app": name}
    container = {"name": "app", "image": "bench/app:v1"}
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Rollout",
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "replicas": 10,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
            "strategy": {"canary": {"steps": [{"setWeight": 10}, {"pause": {"duration": "3s"}}, {"setWeight": 50}]}},
        },
    }


def argo_status(i: int) -> dict[str, Any]:
    """The status fields Argo's controller patches when a step advances (rollout/sync.go persistRolloutStatus)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return {
        "currentStepIndex": i % 3,
        "currentStepHash": "5f8d7b9c4",
        "stableRS": "6c9d8f7b5",
        "currentPodHash": "5f8d7b9c4",
        "observedGeneration": str(i),
        "replicas": 10,
        "updatedReplicas": i % 10,
        "readyReplicas": 10,
        "availableReplicas": 10,
        "message": f"step {i}",
        "pauseConditions": [{"reason": "CanaryPauseStep", "startTime": now}],
        "canary": {"weights": {"canary": {"weight": 10 * (i % 10)}, "stable": {"weight": 100 - 10 * (i % 10)}}},
        "conditions": [
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated", "message": f"step {i}",
             "lastUpdateTime": now, "lastTransitionTime": now},
            {"type": "Available", "status": "True", "reason": "AvailableReason", "message": "ok",
             "lastUpdateTime": now, "lastTransitionTime": now},
        ],
    }  # fmt: skip


class Variant:
    """N objects of one kind and a way to write one of them (a changed status each time)."""

    def __init__(self, env: Env, name: str, ns: str, n: int, spec: dict[str, Any], status: dict[str, Any]):
        self.env, self.name, self.ns = env, name, ns
        self.group = TWINS.get(name, GROUP) if name != "argo-patch" else "argoproj.io"
        plural = "rollouts" if name == "argo-patch" else "strategyrollouts"
        self.base = ns_path(ns, plural, self.group, VERSION)
        self.status = status
        self.objects: dict[str, dict[str, Any]] = {}
        counter = itertools.count()
        self.seq = lambda: next(counter)
        names = [f"w{i:04d}" for i in range(n)]
        for obj_name in names:
            if name == "argo-patch":
                body = argo_rollout(obj_name, ns)
            else:
                meta = {"name": obj_name, "namespace": ns}
                body = {"apiVersion": f"{self.group}/{VERSION}", "kind": "StrategyRollout", "metadata": meta}
                body["spec"] = copy.deepcopy(spec)
            created = env.api.request("POST", self.base, body)
            if name != "argo-patch":  # the first status write creates .status (an unchanged status is not written)
                created["status"] = copy.deepcopy(status)
                created = env.api.request("PUT", f"{self.base}/{obj_name}/status", created)
            self.objects[obj_name] = created

    def write(self, obj_name: str) -> float:
        i = self.seq()
        path = f"{self.base}/{obj_name}/status"
        started = time.perf_counter()
        if self.name == "argo-patch":
            self.env.api.merge_patch(path, {"status": argo_status(i)})
        elif self.name == "ours-patch":
            change = {"message": f"write {i}", "stepIndex": i % 3, "canaryWeight": 10 * (i % 10)}
            self.env.api.merge_patch(path, {"status": change})
        else:
            obj = self.objects[obj_name]
            obj["status"] = dict(obj["status"], message=f"write {i}", stepIndex=i % 3, canaryWeight=10 * (i % 10))
            self.objects[obj_name] = self.env.api.request("PUT", path, obj)
        return time.perf_counter() - started


def run(
    env: Env, n: int = 100, rounds: int = 3, writes: int = 300, concurrency: tuple[int, ...] = (1, 8)
) -> dict[str, Any]:
    """Each round: every variant in turn at every concurrency (`writes` requests over its `n` objects)."""
    from bench import peer

    peer_dir = peer.build()
    peer.install_crds(env, peer_dir)
    for variant, group in TWINS.items():
        crd = twin_crd(group, cel=variant == "twin-put")
        env.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(crd))
        env.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", f"crd/{crd['metadata']['name']}")
    spec, status = sample_objects()
    variants = {name: Variant(env, name, env.namespace(f"wc-{name}"), n, spec, status) for name in VARIANTS}
    samples: dict[str, dict[int, list[float]]] = {v: {c: [] for c in concurrency} for v in VARIANTS}
    elapsed: dict[str, dict[int, float]] = {v: dict.fromkeys(concurrency, 0.0) for v in VARIANTS}
    for r in range(rounds):
        for c in concurrency:
            for name, v in variants.items():
                targets = [list(v.objects)[k % n] for k in range(writes)]
                # each worker owns distinct objects: no write conflicts with another in flight
                lanes = [targets[k::c] for k in range(c)]
                started = time.perf_counter()
                with ThreadPoolExecutor(c) as pool:
                    for lane in pool.map(lambda lane, v=v: [v.write(o) for o in lane], lanes):
                        samples[name][c].extend(lane)
                elapsed[name][c] += time.perf_counter() - started
            log(f"write cost round {r + 1}/{rounds}, concurrency {c}: done")
    result: dict[str, Any] = {"n_objects": n, "rounds": rounds, "writes_per_round": writes, "variants": {}}
    result["status_bytes"] = {"ours": len(json.dumps(status)), "argo": len(json.dumps(argo_status(1)))}
    for name in VARIANTS:
        result["variants"][name] = {
            str(c): {
                "latency_ms": summary([s * 1e3 for s in samples[name][c]]),
                "requests_per_s": round(len(samples[name][c]) / elapsed[name][c], 1),
            }
            for c in concurrency
        }
    for group in TWINS.values():
        env.cluster.kubectl("delete", "crd", f"strategyrollouts.{group}", "--ignore-not-found", "--wait=false")
    return result


def report(doc: dict[str, Any]) -> str:
    """A markdown table: one row per variant, latency at each concurrency, ratio to argo-patch."""
    conc = list(next(iter(doc["variants"].values())))
    head = "| write | " + " | ".join(f"c={c}: median / p99, req/s" for c in conc) + " | median ratio to argo-patch |"
    lines = [head, "|---|" + "---|" * len(conc) + "---|"]
    argo = doc["variants"]["argo-patch"]
    for name, by_c in doc["variants"].items():
        cells = [
            f"{v['latency_ms']['median']:.1f} / {v['latency_ms']['p99']:.1f} ms, {v['requests_per_s']:.0f}"
            for v in by_c.values()
        ]
        ratio = " / ".join(f"{by_c[c]['latency_ms']['median'] / argo[c]['latency_ms']['median']:.2f}" for c in conc)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(report(json.loads(Path(sys.argv[1]).read_text())))
