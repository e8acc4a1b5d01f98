"""`make bench`: engine microbenchmarks, then step latency, detection to rollback and scale on the local
control plane with the real operator process and the real Prometheus. Results: bench/results/*.json,
bench/README.md (table), bench/cost_curve.png.

    python -m bench.run [--quick]
                        [--only engine,judge,step,keys,peer-step,rollback,peer-rollback,scale,peer-scale,dashboard]
                        [--scale 10,100,300,1000]

Environment overrides: BENCH_SCALE (e.g. "10,100"), BENCH_STEP_ROLLOUTS, BENCH_ROLLBACK_ROLLOUTS,
BENCH_ROLLBACK_INTERVAL, BENCH_STEADY_S, BENCH_REST_S, BENCH_REPEAT, BENCH_DASHBOARD_N; the peer: BENCH_PEER_SCALE
(e.g. "100,300"), BENCH_PEER_QPS (e.g. "default,400": Argo Rollouts at its client defaults, then at
--qps 400 --burst 800).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = Path(os.environ.get("BENCH_RESULTS") or BENCH / "results").resolve()  # BENCH_RESULTS: e.g. a quick run
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


FULL = "engine,judge,step,keys,peer-step,rollback,peer-rollback,write-cost,scale,peer-scale,peer-memory,dashboard"
# under 10 minutes: ours-only step, rollback and scale are left to the full run (the side-by-side ones
# measure ours too)
QUICK = "engine,judge,keys,peer-step,peer-rollback,peer-scale"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def write_result(name: str, payload: dict[str, Any], machine: dict[str, Any], args: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    doc = {"benchmark": name, "recorded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine}
    doc["config"] = args
    doc.update(payload)
    path.write_text(json.dumps(doc, indent=1, default=float) + "\n")
    print(f"[bench] wrote {path.relative_to(REPO)}", flush=True)
    return path


def run_engine(machine: dict[str, Any], repeat: int) -> None:
    from bench import analysis, engine

    rec = engine.bench_reconcile(repeat)
    per_state = rec["per_state_seconds"]
    rout = engine.bench_routing(1000, max(repeat, 9))
    payload = {
        "reconcile": {
            "states_sampled": len(per_state),
            "per_state_us": analysis.summary([s * 1e6 for s in per_state]),
            "mean_over_whole_rollout_us": analysis.summary([s * 1e6 for s in rec["mean_over_rollout_seconds"]]),
            "target_us": 100,
            "raw_per_state_seconds": per_state,
            "raw_mean_over_rollout_seconds": rec["mean_over_rollout_seconds"],
        },
        "routing_1000_keys": {
            name.removesuffix("_seconds") + "_ms": analysis.summary([s * 1e3 for s in values])
            for name, values in rout.items()
            if name.endswith("_seconds")
        }
        | {"target_ms": 2, "raw": rout},
    }
    profile = engine.profile_reconcile(str(RESULTS / "engine_reconcile_profile.txt"))
    payload["profile_file"] = "bench/results/engine_reconcile_profile.txt" if profile else None
    write_result("engine", payload, machine, {"repeat": repeat})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, short windows: a few minutes")
    parser.add_argument("--only", default=None, help=f"default: {FULL}; with --quick: {QUICK}")
    parser.add_argument("--scale", default=None, help="comma-separated N values")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    quick = args.quick
    if quick:  # the side-by-side scale in a few minutes: checks every 10 s, pauses of 5-10 s
        os.environ.setdefault("BENCH_PEER_INTERVAL", "10s")
        os.environ.setdefault("BENCH_PEER_PAUSES", "5-10")
    only = set((args.only or (QUICK if quick else FULL)).split(","))
    scale_ns = [
        int(x)
        for x in (args.scale or os.environ.get("BENCH_SCALE") or ("10,50" if quick else "10,100,300,1000")).split(",")
    ]
    cfg = {
        "quick": quick,
        "repeat": _env_int("BENCH_REPEAT", 3 if quick else 7),
        "step_rollouts": _env_int("BENCH_STEP_ROLLOUTS", 3 if quick else 12),
        "rollback_rollouts": _env_int("BENCH_ROLLBACK_ROLLOUTS", 3 if quick else 12),
        "rollback_interval": os.environ.get("BENCH_ROLLBACK_INTERVAL", "5s"),
        "steady_s": _env_int("BENCH_STEADY_S", 25 if quick else 65),
        "rest_s": _env_int("BENCH_REST_S", 20 if quick else 60),
        "scale": scale_ns,
        "dashboard_n": _env_int("BENCH_DASHBOARD_N", 100 if quick else 1000),
        "peer_interval": os.environ.get("BENCH_PEER_INTERVAL", "30s"),
        "peer_pauses": os.environ.get("BENCH_PEER_PAUSES", "15-30"),
        # the peer side by side: N values, and its client limits (None = its defaults, 40 QPS / burst 80)
        "peer_scale": [
            int(x) for x in os.environ.get("BENCH_PEER_SCALE", "10,50" if quick else "100,300,1000").split(",")
        ],
        # memory side by side (steady only: created, paused with checks running): N values, the peer's client
        "peer_memory": [int(x) for x in os.environ.get("BENCH_PEER_MEMORY", "50" if quick else "500,1000").split(",")],
        "peer_memory_qps": [
            None if q == "default" else float(q) for q in os.environ.get("BENCH_PEER_MEMORY_QPS", "400").split(",")
        ],
        "peer_qps": [
            None if q == "default" else float(q)
            for q in os.environ.get("BENCH_PEER_QPS", "default" if quick else "default,400").split(",")
        ],
    }
    from bench.harness import machine_info

    machine = machine_info()
    print(f"[bench] {json.dumps(cfg)}; machine {json.dumps(machine)}", flush=True)
    started = time.time()
    failures = 0
    if "engine" in only:
        run_engine(machine, cfg["repeat"])
    if "judge" in only:  # offline: operating characteristics of both judge tests (bench/judge.py)
        from bench import judge

        judge.run(_env_int("BENCH_JUDGE_RUNS", 1000), machine)
    if only & {
        "step",
        "keys",
        "peer-step",
        "rollback",
        "peer-rollback",
        "write-cost",
        "scale",
        "peer-scale",
        "peer-memory",
        "dashboard",
    }:
        from bench import scenarios
        from bench.harness import Env

        env = Env(Path(tempfile.mkdtemp(prefix="bench-work-")))
        machine["cluster_controller_qps"] = env.cluster.controller_qps  # None: the controllers' defaults
        print(f"[bench] work dir (operator logs) {env.work}", flush=True)
        try:
            if "step" in only:
                res = scenarios.step_latency(env, cfg["step_rollouts"])
                write_result("step_latency", res, machine, cfg)
                env.drop_namespaces()
            if "keys" in only:  # issue 33: 1,000 / 10,000 / 100,000 listed keys; a per-key gate over 500 symbols
                from bench import keys

                write_result("keys", keys.run(env, quick), machine, cfg)
                env.drop_namespaces()
            if "peer-step" in only:
                from bench import peer, side_by_side

                peer_dir = peer.build()
                peer.install_crds(env, peer_dir)
                res = side_by_side.step_latency(env, peer_dir, cfg["step_rollouts"], rounds=2)
                write_result("peer_step_latency", res, machine, cfg)
                env.drop_namespaces()
            if "peer-rollback" in only:
                from bench import peer, peer_scenarios

                peer_dir = peer.build()
                peer.install_crds(env, peer_dir)
                res = peer_scenarios.rollback(env, peer_dir, cfg["rollback_rollouts"], cfg["rollback_interval"])
                write_result("peer_rollback", res, machine, cfg)
                env.drop_namespaces()
            if "write-cost" in only:
                from bench import write_cost

                write_result("write_cost", write_cost.run(env), machine, cfg)
                env.drop_namespaces()
            if "rollback" in only:
                res = scenarios.rollback(env, cfg["rollback_rollouts"], cfg["rollback_interval"])
                write_result("rollback", res, machine, cfg)
                env.drop_namespaces()
            if "scale" in only:
                levels = []
                stopped = None
                for n in scale_ns:
                    try:
                        levels.append(scenarios.scale_level(env, n, cfg["steady_s"], cfg["rest_s"]))
                        env.drop_namespaces()
                        # written after every level, so a run stopped during a large N keeps the smaller ones
                        write_result("scale", {"levels": levels, "stopped_at": None}, machine, cfg)
                    except Exception as exc:  # the largest N the machine sustains: say where and why it stopped
                        traceback.print_exc()
                        stopped = {"n": n, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                        failures += 1
                        break
                write_result("scale", {"levels": levels, "stopped_at": stopped}, machine, cfg)
            if "peer-scale" in only:
                from bench import peer, peer_scenarios

                peer_dir = peer.build()
                peer.install_crds(env, peer_dir)
                res = peer_scenarios.scale(
                    env, peer_dir, cfg["peer_scale"], cfg["steady_s"], cfg["rest_s"], cfg["peer_qps"]
                )
                write_result("peer_scale", res, machine, cfg)
            if "peer-memory" in only:
                from bench import peer, peer_scenarios

                peer_dir = peer.build()
                peer.install_crds(env, peer_dir)
                res = peer_scenarios.memory(env, peer_dir, cfg["peer_memory"], cfg["steady_s"], cfg["peer_memory_qps"])
                write_result("peer_memory", res, machine, cfg)
            if "dashboard" in only:
                from bench import dashboard

                write_result("dashboard", dashboard.run(env, cfg["dashboard_n"]), machine, cfg)
        finally:
            for ns in env.namespaces:
                try:
                    scenarios._release(env, ns)
                except Exception:
                    traceback.print_exc()
            env.cleanup()
    if not args.no_report:
        from bench import report

        report.write()
    print(f"[bench] done in {(time.time() - started) / 60:.1f} min", flush=True)
    _ = statistics  # keep the import for interactive use
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
