"""`make bench-soak`: the leak check. N rollouts (default 1,000) paused with both gates every 30 s for
a long time (default 1 h), the operator's RSS sampled every 10 s; results/soak.json holds the series,
the RSS after the ramp and at the end, and the slope (MB/h) of a least-squares line over the second
half (the first minutes include the ramp's allocations).

    python -m bench.soak [--n 1000] [--seconds 3600] [--tracemalloc]

`--tracemalloc` starts the operator with bench/tracemalloc_site on its PYTHONPATH (10 frames per
allocation, ~5x slower) and writes the top allocation sites after the ramp and at the end, with what grew in
between, to soak_tracemalloc.txt beside soak.json (tracing adds memory of its own: RSS figures of such a run
are not comparable).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
END_OF_SNAPSHOT = "=== end of snapshot"  # the last line bench/tracemalloc_site writes per snapshot
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def slope_mb_per_hour(samples: list[tuple[float, float]]) -> float | None:
    if len(samples) < 3:
        return None
    xs, ys = [t for t, _ in samples], [r for _, r in samples]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var if var else None


def dump_snapshot(pid: int, out: Path, nth: int) -> None:
    """Signal the traced operator and wait until its nth snapshot is written (seconds at N = 1,000)."""
    from bench.kube import wait_until

    os.kill(pid, signal.SIGUSR2)
    wait_until(
        f"snapshot {nth} in {out}",
        lambda: out.exists() and out.read_text().count(END_OF_SNAPSHOT) >= nth,
        timeout=600,
        interval=1,
    )


def soak(n: int, seconds: float, trace: bool) -> dict[str, Any]:
    from bench import scenarios
    from bench.harness import Env, Recorder, proc_cpu_seconds, proc_rss_mb, rollout
    from bench.run import RESULTS

    env = Env(Path(tempfile.mkdtemp(prefix="bench-soak-")))
    out_trace = RESULTS / "soak_tracemalloc.txt"
    extra: dict[str, str] = {}
    if trace:
        out_trace.parent.mkdir(parents=True, exist_ok=True)  # the operator appends to it, it creates no directory
        out_trace.unlink(missing_ok=True)
        base = os.environ.get("BENCH_OPERATOR_PYTHONPATH") or str(REPO)
        extra = {
            "PYTHONPATH": f"{BENCH / 'tracemalloc_site'}:{base}",
            "BENCH_TRACEMALLOC": str(out_trace),
            "BENCH_TRACEMALLOC_FRAMES": "10",
        }
    ns = env.namespace(f"soak{n}")
    names = [f"k{i:04d}" for i in range(n)]
    try:
        t0 = time.time()
        scenarios._prepare(env, ns, names, max(120, n * 0.6))
        setup_s = time.time() - t0
        rec = Recorder(env.api, ns)
        steps = [{"setWeight": 10}, {"pause": {"duration": "1h"}}, {"setWeight": 100}]
        objs = [rollout(m, ns, scenarios._strategy(env, m), steps, paused=True) for m in names]
        for m in names:
            rec.track(m, steps)
        # tracing every allocation with its 10 frames makes the start ~5x slower (import alone 15 s)
        with env.operator(
            f"soak{n}", (ns,), via_proxy=False, extra_env=extra, start_timeout=600 if trace else 120
        ) as op:
            assert op.proc is not None
            pid = op.proc.pid
            env.create_rollouts(ns, objs)
            scenarios.wait_until(
                f"{n} rollouts Paused with both gates measured",
                lambda: rec.count(lambda st: st.get("phase") == "Paused" and len(st.get("gates") or []) == 2) >= n,
                max(600, n * 1.5),
                1,
            )
            if trace:  # the baseline the end's snapshot is compared with
                dump_snapshot(pid, out_trace, 1)
            start, cpu0 = time.time(), proc_cpu_seconds(pid)
            series: list[tuple[float, float]] = []
            while time.time() - start < seconds:
                series.append((round(time.time() - start, 1), round(proc_rss_mb(pid)[0], 1)))
                time.sleep(min(10.0, max(1.0, seconds / 30)))
            series.append((round(time.time() - start, 1), round(proc_rss_mb(pid)[0], 1)))
            cpu = (proc_cpu_seconds(pid) - cpu0) / (time.time() - start)
            peak = proc_rss_mb(pid)[1]
            if trace:
                dump_snapshot(pid, out_trace, 2)
        rec.stop()
        half = [s for s in series if s[0] >= seconds / 2]
        return {
            "n": n,
            "seconds": seconds,
            "setup_s": round(setup_s, 1),
            "tracemalloc": trace,
            "rss_mb_after_ramp": series[0][1],
            "rss_mb_end": series[-1][1],
            "peak_rss_mb": round(peak, 1),
            "rss_mb_per_rollout_end": round(series[-1][1] / n, 4),
            "slope_mb_per_hour_second_half": slope_mb_per_hour(half),
            "cpu_cores": round(cpu, 3),
            "cluster_controller_qps": env.cluster.controller_qps,
            "series": series,
            "tracemalloc_file": os.path.relpath(out_trace, REPO) if trace else None,
        }
    finally:
        scenarios._release(env, ns)
        env.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=int(os.environ.get("BENCH_SOAK_N", 1000)))
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SOAK_S", 3600)))
    parser.add_argument("--tracemalloc", action="store_true")
    args = parser.parse_args(argv)
    from bench.harness import machine_info
    from bench.run import write_result

    machine = machine_info()
    res = soak(args.n, args.seconds, args.tracemalloc)
    write_result("soak", res, machine, vars(args))
    print(
        f"[soak] N={res['n']} {res['seconds']:.0f}s: RSS {res['rss_mb_after_ramp']} -> {res['rss_mb_end']} MB, "
        f"slope (second half) {res['slope_mb_per_hour_second_half']} MB/h",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
