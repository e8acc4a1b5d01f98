"""Keys at scale (issue 33, item 5): listed universes of 1,000, 10,000 and 100,000 keys on the real
operator, API server and Prometheus, and a per-key gate over 500 symbols.

- `universes`: per N, a keysFrom ConfigMap of N keys and 3 rollouts on it, stepping 10 -> pause 3 s -> 30
  -> pause 3 s -> 50, then aborted. Samples: step latency (a pause's due time -> the routing revision with
  the next weight, as benchmark 1), the largest status and routing.json written in any phase (abort
  included), the operator's writes per step and the engine's own pass time at that N (offline, the same
  status the operator wrote).
- `per_key_gate`: 500 symbols x 2 versions on the exporter, scraped by the real Prometheus; the operator's
  per-key measurement (`read/prometheus.py per_key`, the query and its parsing), and the engine's judging
  of 500 keys in a pass (`engine.rollout.reconcile` with and without the per-key gate due).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.analysis import step_latencies, summary
from bench.harness import Env, Recorder, rollout
from bench.kube import Watcher, ns_path, wait_until
from bench.scenarios import _prepare, _strategy, _wait_phase, log
from strategy_rollouts.engine.gates import Measurement
from strategy_rollouts.engine.rollout import reconcile
from strategy_rollouts.read import prometheus
from tests.unit.rollout_sim import World, spec_from

PLUGIN = Path(sys.executable).parent / "kubectl-strategy"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 10},
    {"pause": {"duration": "3s"}},
    {"setWeight": 30},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {}},
]
WRITES = ("create", "update", "patch")


class Sizes:
    """The largest routing.json each routing ConfigMap of a namespace showed, from a watch."""

    def __init__(self, env: Env, ns: str) -> None:
        self.lock = threading.Lock()
        self.routing: dict[str, int] = {}
        self.watcher = Watcher(
            env.api, ns_path(ns, "configmaps") + "?labelSelector=strategyrollouts.io%2Frouting", self._on_cm
        )
        self.watcher.start()
        self.watcher.synced.wait(30)

    def _on_cm(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        text = (obj.get("data") or {}).get("routing.json") or ""
        with self.lock:
            name = obj["metadata"]["name"]
            self.routing[name] = max(self.routing.get(name, 0), len(text.encode()))

    def stop(self) -> None:
        self.watcher.stop()


def _universe(env: Env, ns: str, keys: int) -> None:
    listing = "\n".join(f"K{i:06d}" for i in range(keys))
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "universe"}, "data": {"keys": listing}}
    env.api.create(ns_path(ns, "configmaps"), body)


def _engine_pass(keys: int, repeat: int = 5) -> dict[str, Any]:
    """The engine's own pass at this N, a rollout at 50 % settled (offline: the decision alone, in the unit
    tests' simulated world)."""
    spec = spec_from()
    routing = {"keys": [], "keysFrom": {"configMapKeyRef": {"name": "universe", "key": "keys"}}, "handoff": "1s"}
    data = spec.model_dump(by_alias=True, exclude_none=True) | {"routing": routing}
    world = World(type(spec).model_validate(data))
    world.listed_keys = tuple(f"K{i:06d}" for i in range(keys))
    world.run(200, tick=5)  # to 50 %, settled
    obs, st = world.observe(), world.status
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        reconcile(world.spec, st, obs, world.now)
        times.append(time.perf_counter() - t0)
    return {"weight": st.canary_weight, "pass_s": summary(times)}


def universes(env: Env, sizes: tuple[int, ...] = (1_000, 10_000, 100_000), rollouts: int = 3) -> dict[str, Any]:
    levels = []
    for keys in sizes:
        levels.append(_level(env, keys, rollouts))
        log(
            f"keys {keys}: step p50 {levels[-1]['step_latency_s'].get('median')} s,"
            f" status {levels[-1]['largest_status_bytes']:,} B, routing.json"
            f" {levels[-1]['largest_routing_json_bytes']:,} B, writes/step {levels[-1]['writes_per_step']:.1f}"
        )
    return {"levels": levels}


def _at_half(rec: Recorder, rollouts: int) -> bool:
    return rec.count(lambda st: st.get("canaryWeight") == 50 and st.get("phase") == "Paused") >= rollouts


def _level(env: Env, keys: int, rollouts: int) -> dict[str, Any]:
    ns = env.namespace(f"keys{keys}")
    names = [f"k{i}" for i in range(rollouts)]
    _prepare(env, ns, names, 120)
    _universe(env, ns, keys)
    rec, seen = Recorder(env.api, ns), Sizes(env, ns)
    objs = []
    for name in names:
        obj = rollout(name, ns, _strategy(env, name), STEPS, handoff="1s")
        obj["spec"]["routing"] = {
            "mode": "symbols",
            "keysFrom": {"configMapKeyRef": {"name": "universe", "key": "keys"}},
            "handoff": "1s",
        }
        rec.track(name, STEPS)
        objs.append(obj)
    with env.operator(f"keys{keys}", (ns,), via_proxy=True) as op:
        before = env.proxy_counts()["kube"]
        started = time.time()
        env.create_rollouts(ns, objs)
        wait_until(f"{rollouts} rollouts at 50 % with {keys} keys", lambda: _at_half(rec, rollouts), 600, 1)
        time.sleep(3)  # the last drain
        stepped = env.proxy_counts()["kube"]
        for name in names:
            abort = [str(PLUGIN), "abort", name, "-n", ns, "--reason", "bench", "--no-wait"]
            subprocess.run(abort, check=True, capture_output=True, env=env.cluster.env())
        _wait_phase(rec, "RolledBack", rollouts, 300)
        time.sleep(3)
        elapsed = time.time() - started
        after = env.proxy_counts()["kube"]
        log(f"keys {keys}: operator log {op.log_path}")
    rec.stop()
    seen.stop()
    samples = [x for name in names for x in step_latencies(rec.traces[name], keys)]
    statuses = [st for name in names for _, st in rec.traces[name].statuses]
    largest = max(statuses, key=lambda st: len(json.dumps(st)))
    steps_taken = rollouts * 3  # 10, 30, 50: the weights each rollout published
    env.drop_namespace(ns)
    return {
        "keys": keys,
        "rollouts": rollouts,
        "seconds": elapsed,
        "step_latency_s": summary([x["latency"] for x in samples]),
        "fully_assigned_s": summary([x["assigned"] for x in samples if x["assigned"] == x["assigned"]]),
        "samples": samples,
        "largest_status_bytes": len(json.dumps(largest, separators=(",", ":"))),
        "largest_status_phase": f"{largest.get('phase')}/{largest.get('reason')}",
        "largest_routing_json_bytes": max(seen.routing.values(), default=0),
        "writes_by_verb_stepping": _writes(before, stepped),
        "writes_by_verb_abort": _writes(stepped, after),
        "writes_per_step": sum(_writes(before, stepped).values()) / steps_taken,
        "engine": _engine_pass(keys),
    }


def _writes(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Writes between two counts of the proxy ("VERB resource" -> n) by verb and resource."""
    return {k: b[k] - a.get(k, 0) for k in b if k.split(" ")[0].lower() in WRITES and b[k] - a.get(k, 0) > 0}


# ---- per-key gate at 500 symbols ---------------------------------------------------------------------


def per_key_gate(env: Env, symbols: int = 500, samples: int = 30) -> dict[str, Any]:
    strategy = f"b{env.run_id}-perkey"
    names = [f"S{i:04d}" for i in range(symbols)]
    for version in ("v1.0.0", "v2.0.0"):
        for name in names:
            env.exporter.gauge("bench_symbol_net_bps", 1.0, strategy=strategy, version=version, symbol=name)
    query = f'max by (symbol) (bench_symbol_net_bps{{strategy="{strategy}",version="v2.0.0"}})'
    conn = prometheus.Connection(env.cluster.prometheus_url)

    async def measured() -> dict[str, Measurement]:
        return await prometheus.per_key(conn, query, "symbol")

    wait_until(f"{symbols} series scraped", lambda: len(asyncio.run(measured())) >= symbols, 60, 1)
    times = []
    for _ in range(samples):
        t0 = time.perf_counter()
        got = asyncio.run(measured())
        times.append(time.perf_counter() - t0)
        assert len(got) == symbols, len(got)
    # The engine's part: one pass with the per-key gate due over 500 keys, against the same pass without it.
    gate = {"name": "net-bps", "query": "q", "condition": "> -5", "interval": "10s", "perKey": {"label": "symbol"}}
    spec = spec_from()
    data = spec.model_dump(by_alias=True, exclude_none=True)
    data["routing"] = {**data["routing"], "keys": names}
    keyed = type(spec).model_validate(data | {"gates": [*data["gates"], gate]})
    world = World(keyed)
    world.run(200, tick=5)
    judged = _pass_times(world, with_per_key=True)
    plain = _pass_times(world, with_per_key=False)
    return {
        "symbols": symbols,
        "measure_s": summary(times),
        "engine_pass_with_per_key_s": summary(judged),
        "engine_pass_without_s": summary(plain),
    }


def _pass_times(world: World, with_per_key: bool, repeat: int = 15) -> list[float]:
    import dataclasses

    obs = world.observe()
    keys = world.spec.routing.keys
    if with_per_key:
        obs = dataclasses.replace(obs, per_key={"net-bps": {k: Measurement(1.0) for k in keys}})
    else:
        obs = dataclasses.replace(obs, per_key={})
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        reconcile(world.spec, world.status, obs, world.now)
        times.append(time.perf_counter() - t0)
    return times


def run(env: Env, quick: bool) -> dict[str, Any]:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    return {"universes": universes(env, sizes), "per_key_gate": per_key_gate(env)}
