"""Ours beside the peer (Argo Rollouts) on the same cluster, the same work, interleaved A, B, A, B.

Step latency, replica-based on both sides (no traffic router; 10 replicas; setWeight 10 / pause 3s /
50 / pause 3s / 100; no gates). Sample = from the moment the controller itself records the pause as
due (ours: `status.stepStartedAt` + duration; Argo: `pauseConditions[].startTime` + duration — Argo
stores whole seconds and acts on that stored time, so its due time is the one it acts on) to the
receive time, on a watch, of the first change of the canary's `spec.replicas` after the pause began
(ours: the canary Deployment; Argo: the canary ReplicaSet). Both watches run in this process.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import peer
from bench.analysis import summary
from bench.harness import CANARY, GROUP, STABLE, VERSION, Env, deployment
from bench.kube import Watcher, ns_path, wait_until

REPLICAS = 10
WEIGHTS = [10, 50, 100]
PAUSE_S = 3


class Trace:
    """One rollout's controller statuses and its canary's spec.replicas over time (receive times)."""

    def __init__(self) -> None:
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.canary: list[tuple[float, int]] = []


def side_watchers(
    env: Env,
    namespace: str,
    side: str,
    on_object: Callable[[float, str, dict[str, Any]], None],
    on_workload: Callable[[float, str, dict[str, Any]], None],
) -> list[Watcher]:
    """Started and synced watches of one side's objects (ours: StrategyRollouts, the peer: Rollouts) and
    workloads (ours: Deployments, the peer: ReplicaSets) in `namespace`."""
    if side == "ours":
        objects = ns_path(namespace, "strategyrollouts", GROUP, VERSION)
        workloads = ns_path(namespace, "deployments", "apps")
    else:
        objects = peer.rollouts_path(namespace)
        workloads = ns_path(namespace, "replicasets", "apps")
    watchers = [Watcher(env.api, objects, on_object), Watcher(env.api, workloads, on_workload)]
    for w in watchers:
        w.start()
    for w in watchers:
        w.synced.wait(30)
    return watchers


class ReplicaRecorder:
    """Watches one namespace: the controller's objects and the canary workloads (Deployments or ReplicaSets)."""

    def __init__(self, env: Env, namespace: str, side: str) -> None:
        self.lock = threading.Lock()
        self.traces: dict[str, Trace] = defaultdict(Trace)
        self.side = side
        self.watchers = side_watchers(env, namespace, side, self._on_object, self._on_workload)

    def _on_object(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        with self.lock:
            self.traces[obj["metadata"]["name"]].statuses.append((t, obj.get("status") or {}))

    def _on_workload(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        if self.side == "ours":
            name = obj["metadata"]["name"]
            if not name.endswith("-canary"):
                return
            rollout = name.removesuffix("-canary")
        else:
            if not peer.is_canary(obj):
                return
            rollout = peer.owner(obj) or ""
        replicas = int((obj.get("spec") or {}).get("replicas", 0))
        with self.lock:
            trace = self.traces[rollout]
            if not trace.canary or trace.canary[-1][1] != replicas:
                trace.canary.append((t, replicas))

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()


def _pauses_ours(trace: Trace) -> list[tuple[float, float]]:
    """(seen, due) per timed pause: first status at a pause step, and stepStartedAt + its duration."""
    from bench.peer import parse_time

    pause_steps = {1, 3}  # setWeight 10, pause, setWeight 50, pause, setWeight 100
    out: dict[int, tuple[float, float]] = {}
    for t, st in trace.statuses:
        index = st.get("stepIndex")
        if index in pause_steps and index not in out and st.get("stepStartedAt"):
            out[index] = (t, parse_time(st["stepStartedAt"]) + PAUSE_S)
    return [out[i] for i in sorted(out)]


def _pauses_argo(trace: Trace) -> list[tuple[float, float]]:
    out: dict[int, tuple[float, float]] = {}
    for t, st in trace.statuses:
        index = st.get("currentStepIndex")
        due = peer.pause_due(st, PAUSE_S)
        if index is not None and due is not None and index not in out:
            out[index] = (t, due)
    return [out[i] for i in sorted(out)]


def latencies(trace: Trace, side: str) -> list[float]:
    """Per pause: seconds from its due time to the first canary replicas change seen after it began."""
    pauses = _pauses_ours(trace) if side == "ours" else _pauses_argo(trace)
    out = []
    for seen, due in pauses:
        change = next((t for t, _ in trace.canary if t > seen), None)
        if change is not None:
            out.append(change - due)
    return out


def _ours_rollout(name: str, namespace: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = []
    for w in WEIGHTS:
        steps.append({"setWeight": w})
        if w < 100:
            steps.append({"pause": {"duration": f"{PAUSE_S}s"}})
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "StrategyRollout",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "strategy": name,
            "stable": {"deployment": f"{name}-stable", "version": STABLE},
            "canary": {"deployment": f"{name}-canary", "version": CANARY},
            "replicas": REPLICAS,
            "routing": {"mode": "replicas", "handoff": "0s"},
            "stages": [{"name": "prod", "steps": steps}],
            "gates": [],
            "scaleDownDelay": "5s",
        },
    }


def run_ours(env: Env, label: str, rollouts: int) -> list[float]:
    ns = env.namespace(label)
    names = [f"o{i:03d}" for i in range(rollouts)]
    objs = []
    for name in names:
        objs.append(deployment(f"{name}-stable", ns, REPLICAS, STABLE))
        objs.append(deployment(f"{name}-canary", ns, 0, CANARY))
    env.api.parallel(lambda o: env.api.create(ns_path(ns, "deployments", "apps"), o), objs, 8)
    wait_until(f"{rollouts} stable deployments Ready", lambda: env.ready_stable(ns) >= rollouts, 180, 1)
    rec = ReplicaRecorder(env, ns, "ours")
    with env.operator(label, (ns,), via_proxy=False):
        env.create_rollouts(ns, [_ours_rollout(n, ns) for n in names])
        wait_until(
            f"{rollouts} rollouts Succeeded",
            lambda: (
                sum(1 for n in names if (rec.traces[n].statuses or [(0, {})])[-1][1].get("phase") == "Succeeded")
                >= rollouts
            ),
            300,
        )
    rec.stop()
    return [s for n in names for s in latencies(rec.traces[n], "ours")]


def run_peer(env: Env, peer_dir: Path, label: str, rollouts: int, qps: float | None) -> list[float]:
    ns = env.namespace(label)
    names = [f"a{i:03d}" for i in range(rollouts)]
    steps = peer.argo_steps(WEIGHTS, PAUSE_S)
    rec = ReplicaRecorder(env, ns, "peer")
    with peer.controller(env, peer_dir, label, ns, via_proxy=False, qps=qps):
        env.api.parallel(
            lambda o: env.api.create(peer.rollouts_path(ns), o),
            [peer.rollout(n, ns, REPLICAS, steps) for n in names],
            8,
        )
        peer.wait_healthy(env, ns, rollouts, 240)
        env.api.parallel(lambda n: peer.start_canary(env, ns, n), names, 8)

        def finished() -> bool:
            done = 0
            for n in names:  # the first template's rollout is Healthy at once: wait for the canary's
                trace = rec.traces[n]
                st = (trace.statuses or [(0, {})])[-1][1]
                full = bool(trace.canary) and trace.canary[-1][1] == REPLICAS
                done += full and st.get("phase") == "Healthy" and st.get("currentStepIndex") == len(steps)
            return done >= rollouts

        wait_until(f"{rollouts} Argo Rollouts done", finished, 300)
    rec.stop()
    return [s for n in names for s in latencies(rec.traces[n], "peer")]


def step_latency(env: Env, peer_dir: Path, rollouts: int = 12, rounds: int = 2) -> dict[str, Any]:
    """A, B, A, B: ours (replicas mode) then the peer at its defaults, `rounds` times."""
    ours: list[float] = []
    theirs: list[float] = []
    for r in range(rounds):
        ours += run_ours(env, f"sbs-ours-{r}", rollouts)
        theirs += run_peer(env, peer_dir, f"sbs-argo-{r}", rollouts, qps=None)
    a, b = summary(ours), summary(theirs)
    return {
        "rollouts_per_round": rollouts,
        "rounds": rounds,
        "replicas": REPLICAS,
        "weights": WEIGHTS,
        "pause_s": PAUSE_S,
        "peer_version": peer.version(peer_dir),
        "ours_s": a,
        "peer_s": b,
        "ratio_median": (a["median"] / b["median"]) if a["median"] and b["median"] else None,
        "ratio_p99": (a["p99"] / b["p99"]) if a["p99"] and b["p99"] else None,
        "raw": {"ours": ours, "peer": theirs},
    }
