"""bench/results/*.json -> the generated part of bench/README.md and bench/cost_curve.png.

The README's text outside the `<!-- results:begin -->` / `<!-- results:end -->` markers is kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
README = BENCH / "README.md"
PLOT = BENCH / "cost_curve.png"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _f(value: Any, digits: int = 3, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return f"{value}{unit}"


def _ok(passed: bool | None) -> str:
    return "-" if passed is None else ("met" if passed else "**missed**")


def _verbs(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "0"


def tables() -> str:
    lines: list[str] = []
    engine, step, rollback, scale = _load("engine"), _load("step_latency"), _load("rollback"), _load("scale")
    machine = next((d["machine"] for d in (scale, step, rollback, engine) if d), {})
    lines.append(
        f"Recorded on {machine.get('cpus', '?')} CPUs ({machine.get('cpu_model', '?')}), "
        f"load average at start {' '.join(machine.get('loadavg_at_start', []))}, "
        f"commit `{str(machine.get('git_commit', ''))[:10]}`. Percentiles are nearest-rank "
        "(p99 of fewer than 100 samples is the maximum)."
    )
    lines.append("")
    lines.append("| benchmark | median | p99 | target | verdict |")
    lines.append("|---|---|---|---|---|")
    if step:
        s = step["weight_published_s"]
        a = step["fully_assigned_s"]
        lines.append(
            f"| 1. step latency: pause due -> routing revision with the next weight (n={s['n']}) "
            f"| {_f(s['median'] * 1e3, 0, ' ms')} | {_f(s['p99'] * 1e3, 0, ' ms')} | p99 < 250 ms | "
            f"{_ok(s['p99'] < 0.25)} |"
        )
        lines.append(
            f"| 1b. ... -> revision where the canary owns its share, nothing draining (handoff 0s) "
            f"| {_f(a['median'] * 1e3, 0, ' ms')} | {_f(a['p99'] * 1e3, 0, ' ms')} | (info) | - |"
        )
    if rollback:
        r = rollback["sample_to_all_stable_s"]
        interval = float(str(rollback["gate_interval"]).removesuffix("s"))
        lines.append(
            f"| 2. failing Prometheus sample -> routing revision with every key on stable "
            f"(gate interval {rollback['gate_interval']}, handoff 0s, n={r['n']}) "
            f"| {_f(r['median'], 2, ' s')} | {_f(r['p99'], 2, ' s')} | < {interval + 1:g} s | "
            f"{_ok(r['p99'] < interval + 1)} |"
        )
    if engine:
        rc = engine["reconcile"]["per_state_us"]
        lines.append(
            f"| 4a. one `engine.rollout.reconcile` decision ({engine['reconcile']['states_sampled']} states) "
            f"| {_f(rc['median'], 0, ' µs')} | {_f(rc['p99'], 0, ' µs')} | < 100 µs | {_ok(rc['p99'] < 100)} |"
        )
        full = engine["routing_1000_keys"]["full_ms"]
        lines.append(
            f"| 4b. routing for 1,000 keys (rank + assign + handoff step) "
            f"| {_f(full['median'], 2, ' ms')} | {_f(full['p99'], 2, ' ms')} | < 2 ms | {_ok(full['p99'] < 2)} |"
        )
        parts = {
            k: v
            for k, v in engine["routing_1000_keys"].items()
            if k.endswith("_ms") and k != "full_ms" and isinstance(v, dict)
        }
        detail = ", ".join(f"{k.removesuffix('_ms')} {v['median']:.3f} ms" for k, v in parts.items())
        lines.append(f"| 4b'. of which (medians) | {detail} | | | |")
    if scale:
        lines.append("")
        lines.append(
            "Scale (symbols mode, 10 keys, 2 gates at 30 s, shared Prometheus; stable 1 + canary 1 kwok pods each). "
            "*steady*: every rollout Paused with gates running; *active*: unpaused together, stepping "
            "10 -> 50 -> 100 with 15-30 s pauses until all Succeeded; *rest*: all Succeeded and scaled down. "
            "Requests are the operator's own, counted by a proxy in front of the API server and Prometheus."
        )
        lines.append("")
        lines.append(
            "| N | CPU cores steady / active / rest | peak RSS | API req/min steady | API req/min active "
            "| Prom queries/min steady | step p99 (median) | writes/min at rest | mean reconcile |"
        )
        lines.append("|---|---|---|---|---|---|---|---|---|")
        for lv in scale["levels"]:
            st, ac, rs = lv["steady"], lv["active"], lv["rest"]
            sp = lv["step_weight_published_s"]
            lines.append(
                f"| {lv['n']} | {st['cpu_cores']:.3f} / {ac['cpu_cores']:.3f} / {rs['cpu_cores']:.3f} "
                f"| {lv['peak_rss_mb']:.0f} MB | {_verbs(st['operator_requests_per_min_by_verb'])} "
                f"| {_verbs(ac['operator_requests_per_min_by_verb'])} "
                f"| {st['operator_prometheus_queries_per_min']:.0f} "
                f"| {_f(sp['p99'], 2, ' s')} ({_f(sp['median'], 2, ' s')}) "
                f"| {rs['operator_writes_per_min']:.0f} | {lv['reconcile'].get('mean_s', 0) * 1e3:.0f} ms |"
            )
        if scale.get("stopped_at"):
            lines.append("")
            lines.append(f"Stopped at N={scale['stopped_at']['n']}: `{scale['stopped_at']['error'][:300]}`")
        top = scale["levels"][-1] if scale["levels"] else None
        if top:
            lines.append("")
            lines.append(
                f"Targets at the largest N run ({top['n']}): CPU < 1 core average: steady "
                f"{top['steady']['cpu_cores']:.2f}, active {top['active']['cpu_cores']:.2f} -> "
                f"{_ok(max(top['steady']['cpu_cores'], top['active']['cpu_cores']) < 1)}; RSS < 300 MB: "
                f"{top['peak_rss_mb']:.0f} MB -> {_ok(top['peak_rss_mb'] < 300)}; step p99 < 1 s: "
                f"{_f(top['step_weight_published_s']['p99'], 2, ' s')} -> "
                f"{_ok((top['step_weight_published_s']['p99'] or 99) < 1)}; zero writes at rest: "
                f"{top['rest']['operator_writes_per_min']:.0f}/min -> "
                f"{_ok(top['rest']['operator_writes_per_min'] == 0)}."
            )
    lines.append("")
    lines.append("![cost curve](cost_curve.png)")
    from bench import report_peer

    lines.append(report_peer.tables())
    lines += _dashboard(_load("dashboard"))
    return "\n".join(lines)


def _dashboard(doc: dict[str, Any] | None) -> list[str]:
    """dashboard.json: `kubectl strategy dashboard` in headless chromium over N rollouts."""
    if not doc or not doc.get("levels"):
        return []
    m = doc.get("machine", {})
    out = [
        "",
        f"Dashboard over {doc['n']:,} rollouts (recorded {doc.get('recorded_at', '?')}, commit "
        f"`{str(m.get('git_commit', ''))[:10]}`, load average at start {' '.join(m.get('loadavg_at_start', []))}):",
        "",
        "| browsers open | list drawn (N rows), median / max | first contentful paint, median "
        "| live update, median / p99 | server CPU | API requests during the level |",
        "|---|---|---|---|---|---|",
    ]
    for lv in doc["levels"]:
        drawn, fcp, live = lv["list_drawn_ms"], lv["first_paint_ms"], lv["live_update_ms"]
        out.append(
            f"| {lv['browsers']} | {drawn['median']:.0f} / {drawn['max']:.0f} ms | {fcp['median']:.0f} ms "
            f"| {live['median']:.0f} / {live['p99']:.0f} ms (n={live['n']}) | {lv['server_cpu_percent']}% of a core "
            f"| {sum(lv['kube_requests_during_level'].values())} |"
        )
    out += [
        "",
        f"Server RSS {doc['rss_idle_mb']:.0f} MB idle with the rollouts held, {doc['rss_max_mb']:.0f} MB peak; its "
        f"API requests, all at startup: {_verbs(doc['startup_kube_requests'])}.",
    ]
    return out


def plot() -> None:
    scale = _load("scale")
    if not scale or not scale["levels"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = scale["levels"]
    ns = [lv["n"] for lv in levels]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for phase in ("steady", "active", "rest"):
        ax.plot(ns, [lv[phase]["cpu_cores"] for lv in levels], marker="o", label=phase)
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="target (1 core)")
    ax.set_title("operator CPU (cores)")
    ax.legend()
    ax = axes[0][1]
    ax.plot(ns, [lv["peak_rss_mb"] for lv in levels], marker="o", label="peak RSS")
    ax.axhline(300, color="red", linestyle="--", linewidth=1, label="target (300 MB)")
    ax.set_title("operator memory (MB)")
    ax.legend()
    ax = axes[1][0]
    for phase in ("steady", "active"):
        ax.plot(
            ns,
            [sum(lv[phase]["operator_requests_per_min_by_verb"].values()) for lv in levels],
            marker="o",
            label=f"API requests/min ({phase})",
        )
        ax.plot(
            ns,
            [lv[phase]["operator_prometheus_queries_per_min"] for lv in levels],
            marker="s",
            linestyle=":",
            label=f"Prometheus queries/min ({phase})",
        )
    ax.set_yscale("log")
    ax.set_title("requests per minute")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    ax.plot(ns, [lv["step_weight_published_s"]["p99"] for lv in levels], marker="o", label="step p99")
    ax.plot(ns, [lv["step_weight_published_s"]["median"] for lv in levels], marker="o", label="step median")
    ax.axhline(1.0, color="red", linestyle="--", linewidth=1, label="target p99 (1 s)")
    ax.set_title("step latency (s)")
    ax.legend()
    for row in axes:
        for a in row:
            a.set_xscale("log")
            a.set_xlabel("concurrent StrategyRollouts (N)")
            a.grid(True, which="both", alpha=0.3)
    fig.suptitle("strategy-rollouts operator: cost curve")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=90)
    plt.close(fig)


SKELETON = f"""# Benchmarks

`make bench` (not part of `make test`) runs everything below; see `python -m bench.run --help`.

{BEGIN}
{END}
"""


def write() -> None:
    text = README.read_text() if README.exists() else SKELETON
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{BEGIN}\n{tables()}\n{END}{tail}")
    plot()
    from bench import report_peer

    report_peer.plot()
    print(f"[bench] wrote {README} and {PLOT}", flush=True)


if __name__ == "__main__":
    write()
