"""The three cluster benchmarks: step latency, detection to rollback, and scale."""

from __future__ import annotations

import json
import math
import random
import time
import urllib.parse
import urllib.request
from typing import Any

from bench.analysis import delta, parse_metrics, rollback_latency, step_latencies, summary, writes
from bench.harness import GROUP, KEYS, VERSION, Env, Recorder, Sampler, proc_cpu_seconds, proc_rss_mb, rollout
from bench.kube import ns_path, wait_until


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _strategy(env: Env, name: str) -> str:
    return f"b{env.run_id}-{name}"


def _prepare(env: Env, ns: str, names: list[str], timeout: float) -> None:
    env.create_workloads(ns, names)
    for name in names:
        env.exporter.add(_strategy(env, name))
    wait_until(f"{len(names)} stable deployments Ready in {ns}", lambda: env.ready_stable(ns) >= len(names), timeout, 1)
    time.sleep(2.5)  # at least two scrapes of the new series before any gate asks for them


def _wait_phase(rec: Recorder, phase: str, n: int, timeout: float) -> None:
    def done() -> bool:
        return rec.count(lambda st: st.get("phase") == phase) >= n

    try:
        wait_until(f"{n} rollouts {phase}", done, timeout, 0.5)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; phases: {rec.phases()}") from None


# ---- 1. step latency -------------------------------------------------------------------------------


def step_latency(env: Env, rollouts: int = 12, seed: int = 1) -> dict[str, Any]:
    """Rollouts stepping 10 -> 20 -> ... -> 100 with 2-3 s pauses (handoff 0s); every pause end is a sample."""
    rng = random.Random(seed)
    ns = env.namespace("step")
    names = [f"s{i:03d}" for i in range(rollouts)]
    _prepare(env, ns, names, 120)
    rec = Recorder(env.api, ns)
    objs = []
    for name in names:
        steps: list[dict[str, Any]] = []
        for weight in range(10, 101, 10):
            steps.append({"setWeight": weight})
            if weight < 100:
                steps.append({"pause": {"duration": f"{rng.randint(2000, 3000)}ms"}})
        rec.track(name, steps)
        objs.append(rollout(name, ns, _strategy(env, name), steps, handoff="0s"))
    with env.operator("step", (ns,), via_proxy=False):
        env.create_rollouts(ns, objs)
        _wait_phase(rec, "Succeeded", rollouts, 300)
    rec.stop()
    samples = [s for name in names for s in step_latencies(rec.traces[name], len(KEYS))]
    return {
        "rollouts": rollouts,
        "operator_code": env.operator_code.get("step"),
        "samples": samples,
        "weight_published_s": summary([s["latency"] for s in samples]),
        "fully_assigned_s": summary([s["assigned"] for s in samples if not math.isnan(s["assigned"])]),
    }


# ---- 2. detection to rollback -----------------------------------------------------------------------


def _first_failing_sample(env: Env, strategy: str, after: float) -> float | None:
    query = f'bench_gate_value{{strategy="{strategy}",gate="errors"}}[5m]'
    url = f"{env.cluster.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as r:
        result = json.loads(r.read())["data"]["result"]
    points = [(float(ts), float(v)) for series in result for ts, v in series["values"]]
    return min((ts for ts, v in points if v >= 1 and ts >= after - 0.001), default=None)


def rollback(env: Env, rollouts: int = 10, interval: str = "5s", seed: int = 2) -> dict[str, Any]:
    """Rollouts held at weight 50 in a long pause; each gate input flips to failing at a random moment."""
    rng = random.Random(seed)
    ns = env.namespace("rollback")
    names = [f"f{i:03d}" for i in range(rollouts)]
    _prepare(env, ns, names, 120)
    rec = Recorder(env.api, ns)
    steps = [{"setWeight": 50}, {"pause": {"duration": "1h"}}]
    objs = []
    for name in names:
        rec.track(name, steps)
        objs.append(rollout(name, ns, _strategy(env, name), steps, interval=interval, handoff="0s"))
    flips: dict[str, float] = {}
    with env.operator("rollback", (ns,), via_proxy=False):
        env.create_rollouts(ns, objs)
        wait_until(
            "every rollout in its pause at weight 50",
            lambda: rec.count(lambda st: st.get("stepIndex") == 1 and st.get("phase") == "Progressing") >= rollouts,
            240,
        )
        period = float(interval.removesuffix("s"))
        for name in names:
            time.sleep(rng.uniform(0.2, period))
            flips[name] = time.time()
            env.exporter.set(_strategy(env, name), "errors", 5.0)
        _wait_phase(rec, "RolledBack", rollouts, 120)
        wait_until(
            "every key back on stable",
            lambda: all(rec.traces[n].routing and rec.traces[n].routing[-1].stable == len(KEYS) for n in names),
            60,
        )
    rec.stop()
    time.sleep(1.5)
    samples = []
    for name in names:
        ts = _first_failing_sample(env, _strategy(env, name), flips[name])
        if ts is None:
            continue
        got = rollback_latency(rec.traces[name], ts, len(KEYS))
        if got is not None:
            samples.append({"rollout": name, "flip": flips[name], "sample_ts": ts, **got})
    return {
        "rollouts": rollouts,
        "operator_code": env.operator_code.get("rollback"),
        "gate_interval": interval,
        "samples": samples,
        "sample_to_all_stable_s": summary([s["to_stable"] for s in samples]),
        "sample_to_drain_s": summary([s["to_drain"] for s in samples]),
        "flip_to_sample_s": summary([s["sample_ts"] - s["flip"] for s in samples]),
        "sample_to_failing_evaluation_s": summary(
            [s["to_failing_evaluation"] for s in samples if not math.isnan(s["to_failing_evaluation"])]
        ),
        "failing_evaluation_to_all_stable_s": summary(
            [s["evaluation_to_stable"] for s in samples if not math.isnan(s["evaluation_to_stable"])]
        ),
    }


# ---- 3. scale ---------------------------------------------------------------------------------------


class Snapshot:
    def __init__(self, env: Env, pid: int) -> None:
        self.t = time.time()
        self.cpu = proc_cpu_seconds(pid)
        self.proxy_cpu = proc_cpu_seconds(env.proxy["proc"].pid)  # the harness's own cost, for honesty
        self.rss = proc_rss_mb(pid)[0]
        proxy = env.proxy_counts()
        self.kube = proxy["kube"]
        self.prom = proxy["prometheus"]
        self.kube_s = proxy["kube_seconds"]
        self.prom_s = proxy["prometheus_seconds"]
        self.apiserver = env.apiserver_counts()
        self.prom_server = env.prometheus_counts()


def _rates(a: Snapshot, b: Snapshot) -> dict[str, Any]:
    minutes = (b.t - a.t) / 60
    per_min = lambda d: {k: round(v / minutes, 2) for k, v in sorted(d.items())}  # noqa: E731
    kube = delta(b.kube, a.kube)
    by_verb: dict[str, float] = {}
    for key, value in kube.items():
        verb = key.split(" ")[0]
        by_verb[verb] = by_verb.get(verb, 0) + value
    cluster = delta(b.apiserver, a.apiserver)
    cluster_by_verb: dict[str, float] = {}
    for key, value in cluster.items():
        verb = key.split(" ")[0]
        cluster_by_verb[verb] = cluster_by_verb.get(verb, 0) + value
    ours = {"strategyrollouts", "configmaps", "deployments", "events"}
    cluster_ours = {k: v for k, v in cluster.items() if k.split(" ")[1:2] and k.split(" ")[1] in ours}
    kube_s, prom_s = delta(b.kube_s, a.kube_s), delta(b.prom_s, a.prom_s)
    prom = delta(b.prom, a.prom)
    mean_ms = {k: round(1000 * v / kube[k], 1) for k, v in kube_s.items() if kube.get(k)}
    mean_ms |= {k: round(1000 * v / prom[k], 1) for k, v in prom_s.items() if prom.get(k)}
    return {
        "window_s": round(b.t - a.t, 1),
        "operator_request_mean_ms": mean_ms,
        "cpu_cores": round((b.cpu - a.cpu) / (b.t - a.t), 3),
        "cpu_s_per_min": round((b.cpu - a.cpu) / minutes, 2),
        "counting_proxy_cpu_cores": round((b.proxy_cpu - a.proxy_cpu) / (b.t - a.t), 3),
        "rss_mb_end": round(b.rss, 1),
        "operator_requests_per_min_by_verb": per_min(by_verb),
        "operator_requests_per_min": per_min(kube),
        "operator_writes_per_min": round(writes(kube) / minutes, 2),
        "operator_prometheus_queries_per_min": round(
            sum(v for k, v in delta(b.prom, a.prom).items() if "/api/v1/query" in k) / minutes, 2
        ),
        "apiserver_requests_per_min_by_verb_clusterwide": per_min(cluster_by_verb),
        "apiserver_writes_per_min_rollout_resources_clusterwide": round(writes(cluster_ours) / minutes, 2),
        "prometheus_queries_per_min_clusterwide": round(sum(delta(b.prom_server, a.prom_server).values()) / minutes, 2),
    }


def _reconcile_stats(metrics_url: str) -> dict[str, float]:
    try:
        with urllib.request.urlopen(metrics_url, timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    samples = parse_metrics(
        text, ["strategy_reconcile_duration_seconds_sum", "strategy_reconcile_duration_seconds_count"]
    )
    got = {name: v for name, labels, v in samples if labels.get("kind") == "StrategyRollout"}
    count = got.get("strategy_reconcile_duration_seconds_count", 0)
    return {
        "reconciles": count,
        "mean_s": got.get("strategy_reconcile_duration_seconds_sum", 0) / count if count else 0,
    }


def scale_level(env: Env, n: int, steady_s: float = 60, rest_s: float = 60, timeout: float = 900) -> dict[str, Any]:
    """N rollouts: created paused (gates every 30 s: the steady state), then unpaused together to step
    10 -> 50 -> 100 with pauses of 15-30 s (spread so pause ends do not all coincide), then at rest."""
    ns = env.namespace(f"scale{n}")
    names = [f"r{i:04d}" for i in range(n)]
    result: dict[str, Any] = {"n": n}
    t0 = time.time()
    _prepare(env, ns, names, max(120, n * 0.6))
    result["setup_s"] = round(time.time() - t0, 1)
    log(f"N={n}: {2 * n} deployments ready in {result['setup_s']} s")
    rec = Recorder(env.api, ns)
    objs = []
    for i, name in enumerate(names):
        pause = f"{15 + (i % 16)}s"
        steps = [
            {"setWeight": 10},
            {"pause": {"duration": pause}},
            {"setWeight": 50},
            {"pause": {"duration": pause}},
            {"setWeight": 100},
        ]
        rec.track(name, steps)
        objs.append(rollout(name, ns, _strategy(env, name), steps, paused=True))
    with env.operator(f"scale{n}", (ns,), via_proxy=True) as op:
        assert op.proc is not None
        pid = op.proc.pid
        sampler = Sampler(pid)
        sampler.start()
        t1 = time.time()
        env.create_rollouts(ns, objs)
        wait_until(
            f"{n} rollouts Paused with both gates measured",
            lambda: rec.count(lambda st: st.get("phase") == "Paused" and len(st.get("gates") or []) == 2) >= n,
            timeout,
            1,
        )
        result["ramp_s"] = round(time.time() - t1, 1)
        log(f"N={n}: all paused with gates in {result['ramp_s']} s; steady window {steady_s} s")
        a = Snapshot(env, pid)
        time.sleep(steady_s)
        b = Snapshot(env, pid)
        result["steady"] = _rates(a, b)
        log(f"N={n}: steady {result['steady']['cpu_cores']} cores; unpausing")
        t2 = time.time()
        env.api.parallel(
            lambda name: env.api.merge_patch(
                ns_path(ns, "strategyrollouts", GROUP, VERSION) + f"/{name}", {"spec": {"paused": False}}
            ),
            names,
        )
        _wait_phase(rec, "Succeeded", n, timeout)
        c = Snapshot(env, pid)
        result["active"] = _rates(b, c)
        result["active_s"] = round(time.time() - t2, 1)
        log(f"N={n}: all Succeeded in {result['active_s']} s; waiting for scale-downs")
        wait_until("stable deployments scaled to 0", lambda: env.stable_replicas(ns) == 0, max(180, n * 0.5), 2)
        time.sleep(5)
        d = Snapshot(env, pid)
        time.sleep(rest_s)
        e = Snapshot(env, pid)
        result["rest"] = _rates(d, e)
        result["peak_rss_mb"] = round(proc_rss_mb(pid)[1], 1)
        result["reconcile"] = _reconcile_stats(op.metrics_url)
        sampler.stop()
        result["rss_series"] = [(round(t - t1, 1), round(r, 1)) for t, _, r in sampler.samples[::5]]
        result["cpu_series"] = [(round(t - t1, 1), round(c, 2)) for t, c, _ in sampler.samples[::5]]
    rec.stop()
    samples = [s for name in names for s in step_latencies(rec.traces[name], len(KEYS))]
    result["operator_code"] = env.operator_code.get(f"scale{n}")
    result["step_samples"] = len(samples)
    result["step_weight_published_s"] = summary([s["latency"] for s in samples])
    result["step_fully_assigned_s"] = summary([s["assigned"] for s in samples if not math.isnan(s["assigned"])])
    result["step_latencies"] = [round(s["latency"], 4) for s in samples]
    log(
        f"N={n}: step p99 {result['step_weight_published_s']['p99']}, rest writes/min "
        f"{result['rest']['operator_writes_per_min']}, peak RSS {result['peak_rss_mb']} MB"
    )
    _release(env, ns)
    return result


def _release(env: Env, ns: str) -> None:
    """Drop any finalizer the operator left, so the namespace can go while no operator watches it."""
    doc = env.api.get(ns_path(ns, "strategyrollouts", GROUP, VERSION)) or {}
    held = [o["metadata"]["name"] for o in doc.get("items", []) if o["metadata"].get("finalizers")]
    if held:
        env.api.parallel(
            lambda name: env.api.merge_patch(
                ns_path(ns, "strategyrollouts", GROUP, VERSION) + f"/{name}", {"metadata": {"finalizers": None}}
            ),
            held,
        )
