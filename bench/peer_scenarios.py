"""Ours beside the peer (Argo Rollouts), interleaved A, B: detection -> rollback and scale.

Detection -> rollback, replica-based on both sides (10 replicas, setWeight 50 then a 1 h pause):
ours with an `errors` gate, Argo with background analysis of an AnalysisTemplate whose Prometheus
metric runs the same query at the same interval (failureLimit 0 on both). At a random moment each
rollout's gate input flips to failing. Sample = from the first failing sample in Prometheus (queried
back) to the receive time, on a watch, of the state where stable owns everything (ours: the canary
Deployment's spec.replicas 0 and the stable's at 10; Argo: its canary ReplicaSet at 0 and the stable
ReplicaSet at 10).

Scale: N of each on their own namespace, one controller at a time, both through the counting proxy
(API server and Prometheus), CPU and RSS from /proc. Steady = every rollout paused with both gates
(ours) / both analysis metrics (Argo) measured every 30 s; active = all released together, a timed
pause of 15-30 s, weight 50, another pause, weight 100; rest = all done. Step latency sample (the same
signal on both sides) = from a timed pause's due time as the controller records it to the receive
time of the status that moves past the pause (ours `stepIndex`, Argo `currentStepIndex`).
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import peer
from bench.analysis import parse_time, summary
from bench.harness import CANARY, GROUP, STABLE, VERSION, Env, Sampler, deployment, gates, proc_rss_mb
from bench.kube import ns_path, wait_until
from bench.scenarios import Snapshot, _first_failing_sample, _rates, log
from bench.side_by_side import side_watchers

REPLICAS = 10
ANALYSIS = "bench-gates"


# ---- the peer's objects ----------------------------------------------------------------------------


def analysis_template(namespace: str, prometheus: str, interval: str, failure_limit: int = 0) -> dict[str, Any]:
    """Our two bench gates as Argo metrics: same queries, conditions, interval and limits."""
    q = 'max(bench_gate_value{{strategy="{{{{args.strategy}}}}",gate="{gate}"}})'
    metrics = [
        ("errors", "errors", "result[0] < 1"),
        ("latency-ms", "latency_ms", "result[0] < 200"),
    ]
    return {
        "apiVersion": f"{peer.ARGO_GROUP}/{peer.ARGO_VERSION}",
        "kind": "AnalysisTemplate",
        "metadata": {"name": ANALYSIS, "namespace": namespace},
        "spec": {
            "args": [{"name": "strategy"}],
            "metrics": [
                {
                    "name": name,
                    "interval": interval,
                    "successCondition": cond,
                    "failureLimit": failure_limit,
                    "inconclusiveLimit": 3,
                    "provider": {"prometheus": {"address": prometheus, "query": q.format(gate=gate)}},
                }
                for name, gate, cond in metrics
            ],
        },
    }


def with_analysis(obj: dict[str, Any], strategy: str) -> dict[str, Any]:
    obj["spec"]["strategy"]["canary"]["analysis"] = {
        "templates": [{"templateName": ANALYSIS}],
        "args": [{"name": "strategy", "value": strategy}],
    }
    return obj


def _argo_path(ns: str, plural: str) -> str:
    return ns_path(ns, plural, peer.ARGO_GROUP, peer.ARGO_VERSION)


def promote(env: Env, namespace: str, name: str) -> None:
    """What `kubectl argo rollouts promote` does for an indefinite pause step: clear the pause."""
    env.api.merge_patch(f"{peer.rollouts_path(namespace)}/{name}/status", {"status": {"pauseConditions": None}})


# ---- recorders -------------------------------------------------------------------------------------


class Trace:
    def __init__(self) -> None:
        self.statuses: list[tuple[float, dict[str, Any]]] = []
        self.stable: list[tuple[float, int]] = []
        self.canary: list[tuple[float, int]] = []
        self.stable_ready: list[tuple[float, int]] = []


class Recorder:
    """One namespace: the controller's objects' statuses and the workloads' spec.replicas, receive times."""

    def __init__(self, env: Env, namespace: str, side: str) -> None:
        self.side = side
        self.lock = threading.Lock()
        self.traces: dict[str, Trace] = defaultdict(Trace)
        self.latest: dict[str, dict[str, Any]] = {}
        self.watchers = side_watchers(env, namespace, side, self._on_object, self._on_workload)

    def _on_object(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        st = obj.get("status") or {}
        with self.lock:
            name = obj["metadata"]["name"]
            self.latest[name] = st
            self.traces[name].statuses.append((t, st))

    def _on_workload(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if self.side == "ours":
            rollout, role = name.rsplit("-", 1)
        else:
            rollout, role = peer.owner(obj) or "", ("canary" if peer.is_canary(obj) else "stable")
        replicas = 0 if kind == "DELETED" else int((obj.get("spec") or {}).get("replicas", 0))
        ready = 0 if kind == "DELETED" else int((obj.get("status") or {}).get("readyReplicas", 0))
        with self.lock:
            trace = self.traces[rollout]
            series = getattr(trace, role, None)
            if series is not None and (not series or series[-1][1] != replicas):
                series.append((t, replicas))
            if role == "stable" and (not trace.stable_ready or trace.stable_ready[-1][1] != ready):
                trace.stable_ready.append((t, ready))

    def count(self, predicate: Any) -> int:
        with self.lock:
            return sum(1 for st in self.latest.values() if predicate(st))

    def stop(self) -> None:
        for w in self.watchers:
            w.stop()


def all_stable_at(trace: Trace, after: float, replicas: int, ready: bool = False) -> float | None:
    """First receive time >= after when the canary's spec.replicas is 0 and the stable's at `replicas`
    (`ready`: the stable's readyReplicas at `replicas`, i.e. the stable pods are serving again)."""
    stable = trace.stable_ready if ready else trace.stable
    events = sorted([(t, "c", r) for t, r in trace.canary] + [(t, "s", r) for t, r in stable])
    canary = stable = None
    for t, role, r in events:
        if role == "c":
            canary = r
        else:
            stable = r
        if t >= after and canary == 0 and stable == replicas:
            return t
    return None


# ---- 2'. detection -> rollback, side by side ---------------------------------------------------------


def _workloads(env: Env, ns: str, names: list[str], replicas: int) -> None:
    objs = [
        deployment(f"{n}-{role}", ns, replicas if role == "stable" else 0, v)
        for n in names
        for role, v in (("stable", STABLE), ("canary", CANARY))
    ]
    env.api.parallel(lambda o: env.api.create(ns_path(ns, "deployments", "apps"), o), objs, 8)


def _flip(env: Env, rng: random.Random, strategies: dict[str, str], period: float) -> dict[str, float]:
    flips = {}
    for name, strategy in strategies.items():
        time.sleep(rng.uniform(0.2, period))
        flips[name] = time.time()
        env.exporter.set(strategy, "errors", 5.0)
    return flips


def _samples(env: Env, rec: Recorder, strategies: dict[str, str], flips: dict[str, float]) -> list[dict[str, Any]]:
    time.sleep(1.5)
    out = []
    for name, strategy in strategies.items():
        ts = _first_failing_sample(env, strategy, flips[name])
        if ts is None:
            continue
        trace = rec.traces[name]
        done = all_stable_at(trace, ts, REPLICAS)
        ready = all_stable_at(trace, ts, REPLICAS, ready=True)
        zero = next((t for t, r in trace.canary if t >= ts and r == 0), None)
        if done is not None:
            out.append(
                {
                    "rollout": name,
                    "sample_ts": ts,
                    "to_stable": done - ts,
                    "to_stable_ready": (ready - ts) if ready is not None else None,
                    "to_canary_zero": (zero - ts) if zero is not None else None,
                    "stable_series": [(round(t - ts, 3), r) for t, r in trace.stable if t >= ts - 30],
                }
            )
    return out


def rollback_ours(env: Env, label: str, rollouts: int, interval: str, rng: random.Random) -> list[dict[str, Any]]:
    ns = env.namespace(label)
    names = [f"o{i:03d}" for i in range(rollouts)]
    strategies = {n: f"b{env.run_id}-{label}-{n}" for n in names}
    _workloads(env, ns, names, REPLICAS)
    for s in strategies.values():
        env.exporter.add(s)
    wait_until(f"{rollouts} stable deployments Ready", lambda: env.ready_stable(ns) >= rollouts, 180, 1)
    time.sleep(2.5)
    rec = Recorder(env, ns, "ours")
    steps = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
    with env.operator(label, (ns,), via_proxy=False):
        env.create_rollouts(
            ns,
            [
                {
                    "apiVersion": f"{GROUP}/{VERSION}",
                    "kind": "StrategyRollout",
                    "metadata": {"name": n, "namespace": ns},
                    "spec": {
                        "strategy": strategies[n],
                        "stable": {"deployment": f"{n}-stable", "version": STABLE},
                        "canary": {"deployment": f"{n}-canary", "version": CANARY},
                        "replicas": REPLICAS,
                        "routing": {"mode": "replicas", "handoff": "0s"},
                        "stages": [{"name": "prod", "steps": steps}],
                        "gates": gates(interval),
                        # Argo's basic canary scales its canary down at once on abort (no delay without
                        # a traffic router): the same here, else the 5 s delay is most of the figure
                        "scaleDownDelay": "0s",
                    },
                }
                for n in names
            ],
        )
        wait_until(
            "every rollout paused at weight 50",
            lambda: rec.count(lambda st: st.get("stepIndex") == 1 and st.get("phase") == "Progressing") >= rollouts,
            240,
        )
        flips = _flip(env, rng, strategies, float(interval.removesuffix("s")))
        wait_until(
            "every rollout back on stable",
            lambda: all(all_stable_at(rec.traces[n], flips[n], REPLICAS) for n in names),
            120,
        )
    rec.stop()
    return _samples(env, rec, strategies, flips)


def rollback_peer(
    env: Env, peer_dir: Path, label: str, rollouts: int, interval: str, rng: random.Random
) -> list[dict[str, Any]]:
    ns = env.namespace(label)
    names = [f"a{i:03d}" for i in range(rollouts)]
    strategies = {n: f"b{env.run_id}-{label}-{n}" for n in names}
    for s in strategies.values():
        env.exporter.add(s)
    env.api.create(_argo_path(ns, "analysistemplates"), analysis_template(ns, env.cluster.prometheus_url, interval))
    rec = Recorder(env, ns, "peer")
    steps = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
    with peer.controller(env, peer_dir, label, ns, via_proxy=False):
        env.api.parallel(
            lambda n: env.api.create(
                peer.rollouts_path(ns), with_analysis(peer.rollout(n, ns, REPLICAS, steps), strategies[n])
            ),
            names,
            8,
        )
        peer.wait_healthy(env, ns, rollouts, 240)
        time.sleep(2.5)
        env.api.parallel(lambda n: peer.start_canary(env, ns, n), names, 8)

        def paused() -> bool:
            ok = 0
            for n in names:
                st = (rec.traces[n].statuses or [(0, {})])[-1][1]
                canary = rec.traces[n].canary
                ok += bool(peer.pause_due(st, 3600)) and bool(canary) and canary[-1][1] == REPLICAS // 2
            return ok >= rollouts

        wait_until("every Argo Rollout paused at weight 50", paused, 240)
        flips = _flip(env, rng, strategies, float(interval.removesuffix("s")))
        wait_until(
            "every Argo Rollout back on stable",
            lambda: all(all_stable_at(rec.traces[n], flips[n], REPLICAS) for n in names),
            120,
        )
    rec.stop()
    return _samples(env, rec, strategies, flips)


def rollback(env: Env, peer_dir: Path, rollouts: int, interval: str = "5s", rounds: int = 2) -> dict[str, Any]:
    rng = random.Random(3)
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    for r in range(rounds):
        ours += rollback_ours(env, f"rb-ours-{r}", rollouts, interval, rng)
        theirs += rollback_peer(env, peer_dir, f"rb-argo-{r}", rollouts, interval, rng)
    a, b = summary([s["to_stable"] for s in ours]), summary([s["to_stable"] for s in theirs])

    def of(samples: list[dict[str, Any]], key: str) -> dict[str, Any]:
        return summary([s[key] for s in samples if s.get(key) is not None])

    return {
        "ours_stable_ready_s": of(ours, "to_stable_ready"),
        "peer_stable_ready_s": of(theirs, "to_stable_ready"),
        "ours_canary_zero_s": of(ours, "to_canary_zero"),
        "peer_canary_zero_s": of(theirs, "to_canary_zero"),
        "rollouts_per_round": rollouts,
        "rounds": rounds,
        "replicas": REPLICAS,
        "interval": interval,
        "peer_version": peer.version(peer_dir),
        "ours_s": a,
        "peer_s": b,
        "ratio_median": (a["median"] / b["median"]) if a["median"] and b["median"] else None,
        "ratio_p99": (a["p99"] / b["p99"]) if a["p99"] and b["p99"] else None,
        "raw": {"ours": ours, "peer": theirs},
    }


# ---- 3'. scale, side by side ------------------------------------------------------------------------


def _pause_durations(i: int) -> str:
    """15-30 s, spread (BENCH_PEER_PAUSES="5-10" for a quick run)."""
    low, high = (int(x) for x in os.environ.get("BENCH_PEER_PAUSES", "15-30").split("-"))
    return f"{low + (i % (high - low + 1))}s"


def _check_interval() -> str:
    """Both sides' Prometheus checks (BENCH_PEER_INTERVAL, default 30s; a quick run uses 10s)."""
    return os.environ.get("BENCH_PEER_INTERVAL", "30s")


def index_latencies(trace: Trace, side: str, timed: dict[int, float]) -> list[float]:
    """Per timed pause (step index -> seconds): due (as the controller records it) -> index moved past it."""
    out = []
    index_key = "stepIndex" if side == "ours" else "currentStepIndex"
    for index, seconds in timed.items():
        due = None
        for t, st in trace.statuses:
            if st.get(index_key) == index and due is None:
                if side == "ours" and st.get("stepStartedAt"):
                    due = parse_time(st["stepStartedAt"]) + seconds
                elif side == "peer":
                    due = peer.pause_due(st, seconds)
            elif due is not None and ((st.get(index_key) or 0) > index or st.get("phase") == "Succeeded"):
                # ours resets stepIndex when it succeeds (the last pause's end can be that very write)
                out.append(t - due)
                break
    return out


def _metrics_snapshot(env: Env, pid: int) -> Snapshot:
    return Snapshot(env, pid)


def scale_ours(
    env: Env, n: int, steady_s: float, rest_s: float, timeout: float, steady_only: bool = False
) -> dict[str, Any]:
    """Our side of the scale comparison (replicas mode like the peer, 1 replica, 2 gates at 30 s).
    `steady_only`: created, ramped and held paused with gates running, then stopped (the memory comparison)."""
    from bench.scenarios import _reconcile_stats

    ns = env.namespace(f"sx-ours-{n}")
    names = [f"r{i:04d}" for i in range(n)]
    result: dict[str, Any] = {"side": "ours", "n": n, "namespace": ns}
    strategies = {name: f"b{env.run_id}-o{n}-{name}" for name in names}
    t0 = time.time()
    _workloads(env, ns, names, 1)
    for s in strategies.values():
        env.exporter.add(s)
    wait_until(f"{n} stable deployments Ready", lambda: env.ready_stable(ns) >= n, max(180, n * 0.8), 1)
    result["setup_s"] = round(time.time() - t0, 1)
    time.sleep(2.5)
    rec = Recorder(env, ns, "ours")
    timed = {1: 0.0, 3: 0.0}
    rollouts = []
    pauses = {}
    for i, name in enumerate(names):
        pause = _pause_durations(i)
        pauses[name] = float(pause.removesuffix("s"))
        steps = [
            {"setWeight": 10},
            {"pause": {"duration": pause}},
            {"setWeight": 50},
            {"pause": {"duration": pause}},
            {"setWeight": 100},
        ]
        rollouts.append(
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "StrategyRollout",
                "metadata": {"name": name, "namespace": ns},
                "spec": {
                    "strategy": strategies[name],
                    "stable": {"deployment": f"{name}-stable", "version": STABLE},
                    "canary": {"deployment": f"{name}-canary", "version": CANARY},
                    "replicas": 1,
                    "routing": {"mode": "replicas", "handoff": "0s"},
                    "stages": [{"name": "prod", "steps": steps}],
                    "gates": gates(_check_interval()),
                    "scaleDownDelay": "5s",
                    "paused": True,
                },
            }
        )
    with env.operator(f"sx-ours-{n}", (ns,), via_proxy=True) as op:
        assert op.proc is not None
        pid = op.proc.pid
        sampler = Sampler(pid)
        sampler.start()
        t1 = time.time()
        env.create_rollouts(ns, rollouts)
        wait_until(
            f"{n} rollouts Paused with both gates measured",
            lambda: rec.count(lambda st: st.get("phase") == "Paused" and len(st.get("gates") or []) == 2) >= n,
            timeout,
            1,
        )
        result["ramp_s"] = round(time.time() - t1, 1)
        a = _metrics_snapshot(env, pid)
        time.sleep(steady_s)
        b = _metrics_snapshot(env, pid)
        result["steady"] = _rates(a, b)
        if steady_only:
            return _memory_result(result, pid, sampler, t1, rec)
        t2 = time.time()
        env.api.parallel(
            lambda name: env.api.merge_patch(
                ns_path(ns, "strategyrollouts", GROUP, VERSION) + f"/{name}", {"spec": {"paused": False}}
            ),
            names,
        )
        wait_until(
            f"{n} rollouts Succeeded", lambda: rec.count(lambda st: st.get("phase") == "Succeeded") >= n, timeout, 1
        )
        c = _metrics_snapshot(env, pid)
        result["active"] = _rates(b, c)
        result["active_s"] = round(time.time() - t2, 1)
        wait_until("stable deployments scaled to 0", lambda: env.stable_replicas(ns) == 0, max(180, n * 0.5), 2)
        time.sleep(5)
        d = _metrics_snapshot(env, pid)
        before = _reconcile_stats(op.metrics_url).get("reconciles", 0)
        time.sleep(rest_s)
        e = _metrics_snapshot(env, pid)
        result["rest"] = _rates(d, e)
        result["rest"]["reconciles_in_window"] = _reconcile_stats(op.metrics_url).get("reconciles", 0) - before
        result["peak_rss_mb"] = round(proc_rss_mb(pid)[1], 1)
        sampler.stop()
        result["rss_series"] = [(round(t - t1, 1), round(r, 1)) for t, _, r in sampler.samples[::5]]
    rec.stop()
    lat = [s for name in names for s in index_latencies(rec.traces[name], "ours", {i: pauses[name] for i in timed})]
    result["step_index_s"] = summary(lat)
    result["step_samples"] = len(lat)
    log(f"ours N={n}: step p99 {result['step_index_s']['p99']}, peak RSS {result['peak_rss_mb']} MB")
    return result


def scale_peer(
    env: Env,
    peer_dir: Path,
    n: int,
    steady_s: float,
    rest_s: float,
    timeout: float,
    qps: float | None,
    steady_only: bool = False,
) -> dict[str, Any]:
    """Argo's side: 1 replica, background analysis (2 metrics at 30 s) through the counting proxy."""
    tag = "default" if qps is None else f"qps{int(qps)}"
    ns = env.namespace(f"sx-argo-{tag}-{n}")
    names = [f"a{i:04d}" for i in range(n)]
    result: dict[str, Any] = {"side": "peer", "n": n, "qps": qps, "label": tag, "namespace": ns}
    strategies = {name: f"b{env.run_id}-a{tag}{n}-{name}" for name in names}
    for s in strategies.values():
        env.exporter.add(s)
    prom = f"http://127.0.0.1:{env.proxy['prometheus']}"
    env.api.create(_argo_path(ns, "analysistemplates"), analysis_template(ns, prom, _check_interval()))
    rec = Recorder(env, ns, "peer")
    pauses = {name: float(_pause_durations(i).removesuffix("s")) for i, name in enumerate(names)}
    with peer.controller(env, peer_dir, f"sx-{tag}-{n}", ns, via_proxy=True, qps=qps) as proc:
        pid = proc.pid
        sampler = Sampler(pid)
        sampler.start()
        t0 = time.time()
        first = [{"setWeight": 10}]
        env.api.parallel(
            lambda name: env.api.create(
                peer.rollouts_path(ns), with_analysis(peer.rollout(name, ns, 1, first), strategies[name])
            ),
            names,
            8,
        )
        peer.wait_healthy(env, ns, n, max(240, n * 0.8))
        result["setup_s"] = round(time.time() - t0, 1)
        t1 = time.time()

        def to_canary(name: str) -> None:
            pause = f"{int(pauses[name])}s"
            steps = [
                {"setWeight": 10},
                {"pause": {}},
                {"pause": {"duration": pause}},
                {"setWeight": 50},
                {"pause": {"duration": pause}},
                {"setWeight": 100},
            ]
            body = {"spec": {"template": peer._template(name, CANARY), "strategy": {"canary": {"steps": steps}}}}
            env.api.merge_patch(f"{peer.rollouts_path(ns)}/{name}", body)

        env.api.parallel(to_canary, names, 8)

        def steady() -> bool:  # at the indefinite pause, with its AnalysisRun's both metrics measured
            runs = env.api.get(_argo_path(ns, "analysisruns")) or {}
            measured = sum(
                1
                for r in runs.get("items", [])
                if len([m for m in (r.get("status") or {}).get("metricResults") or [] if m.get("count")]) == 2
            )
            at_pause = rec.count(lambda st: st.get("currentStepIndex") == 1 and bool(st.get("pauseConditions")))
            return measured >= n and at_pause >= n

        wait_until(f"{n} Argo Rollouts paused with both metrics measured", steady, timeout, 2)
        result["ramp_s"] = round(time.time() - t1, 1)
        a = _metrics_snapshot(env, pid)
        time.sleep(steady_s)
        b = _metrics_snapshot(env, pid)
        result["steady"] = _rates(a, b)
        if steady_only:
            return _memory_result(result, pid, sampler, t0, rec)
        t2 = time.time()
        env.api.parallel(lambda name: promote(env, ns, name), names, 8)
        done = lambda: rec.count(  # noqa: E731
            lambda st: st.get("phase") == "Healthy" and st.get("currentStepIndex") == 6
        )
        wait_until(f"{n} Argo Rollouts done", lambda: done() >= n, timeout, 1)
        c = _metrics_snapshot(env, pid)
        result["active"] = _rates(b, c)
        result["active_s"] = round(time.time() - t2, 1)

        def stable_gone() -> bool:
            doc = env.api.get(ns_path(ns, "replicasets", "apps")) or {}
            return not any(
                not peer.is_canary(rs) and int((rs.get("spec") or {}).get("replicas", 0)) for rs in doc.get("items", [])
            )

        wait_until("the peer's old ReplicaSets scaled to 0", stable_gone, max(180, n * 0.5), 2)
        time.sleep(5)
        d = _metrics_snapshot(env, pid)
        time.sleep(rest_s)
        e = _metrics_snapshot(env, pid)
        result["rest"] = _rates(d, e)
        result["peak_rss_mb"] = round(proc_rss_mb(pid)[1], 1)
        sampler.stop()
        result["rss_series"] = [(round(t - t0, 1), round(r, 1)) for t, _, r in sampler.samples[::5]]
    rec.stop()
    lat = [s for name in names for s in index_latencies(rec.traces[name], "peer", {2: pauses[name], 4: pauses[name]})]
    result["step_index_s"] = summary(lat)
    result["step_samples"] = len(lat)
    log(f"Argo ({tag}) N={n}: step p99 {result['step_index_s']['p99']}, peak RSS {result['peak_rss_mb']} MB")
    return result


def _memory_result(result: dict[str, Any], pid: int, sampler: Sampler, t0: float, rec: Recorder) -> dict[str, Any]:
    """RSS now and at peak (VmHWM) after the steady window; the controller is stopped by the caller's `with`."""
    rss, peak = proc_rss_mb(pid)
    result["rss_mb"], result["peak_rss_mb"] = round(rss, 1), round(peak, 1)
    sampler.stop()
    rec.stop()
    result["rss_series"] = [(round(t - t0, 1), round(r, 1)) for t, _, r in sampler.samples[::5]]
    log(f"{result['side']} N={result['n']}: RSS {result['rss_mb']} MB, peak {result['peak_rss_mb']} MB (steady only)")
    return result


def memory(
    env: Env, peer_dir: Path, ns_: list[int], steady_s: float, qps_variants: list[float | None]
) -> dict[str, Any]:
    """Per N: ours, then the peer, created and held paused with both checks running (no stepping): the RSS
    each needs to hold N rollouts. Cheaper than `scale` at N >= 500, where the active window takes long."""
    levels = []
    for n in ns_:
        timeout = max(600, n * 1.5)
        level: dict[str, Any] = {"n": n, "ours": scale_ours(env, n, steady_s, 0, timeout, steady_only=True)}
        env.drop_namespace(level["ours"]["namespace"])
        level["peer"] = {}
        for qps in qps_variants:
            got = scale_peer(env, peer_dir, n, steady_s, 0, timeout, qps, steady_only=True)
            env.drop_namespace(got["namespace"])
            level["peer"][got["label"]] = got
        levels.append(level)
    return {"levels": levels, "peer_version": peer.version(peer_dir)}


def scale(
    env: Env, peer_dir: Path, ns_: list[int], steady_s: float, rest_s: float, qps_variants: list[float | None]
) -> dict[str, Any]:
    """Per N: ours, then each peer variant (its defaults, then `--qps 400 --burst 800`): A, B, B'."""
    levels = []
    for n in ns_:
        timeout = max(600, n * 1.5)
        level: dict[str, Any] = {"n": n, "ours": scale_ours(env, n, steady_s, rest_s, timeout), "peer": {}}
        env.drop_namespace(level["ours"]["namespace"])
        for qps in qps_variants:
            got = scale_peer(env, peer_dir, n, steady_s, rest_s, timeout, qps)
            env.drop_namespace(got["namespace"])
            level["peer"][got["label"]] = got
        levels.append(level)
    return {"levels": levels, "peer_version": peer.version(peer_dir)}
