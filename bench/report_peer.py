"""bench/results/peer_*.json -> the side-by-side tables (ours, Argo Rollouts, ratio ours / theirs) and
bench/cost_curve_side_by_side.png. Called from bench/report.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
PLOT = BENCH / "cost_curve_side_by_side.png"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else "-"


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v * 1e3:.0f} ms" if v < 10 else f"{v:.1f} s")


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine", {})
    return (
        f"recorded {doc.get('recorded_at', '?')}, commit `{str(m.get('git_commit', ''))[:10]}`, "
        f"{m.get('cpus', '?')} CPUs, load average at start {' '.join(m.get('loadavg_at_start', []))}, "
        f"peer {doc.get('peer_version', '?')}"
    )


def _total(d: dict[str, float]) -> float:
    return sum(d.values())


def _verbs(d: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f}" for k, v in sorted(d.items(), key=lambda kv: -kv[1])) or "0"


def tables() -> str:
    lines: list[str] = []
    step, rollback, scale = _load("peer_step_latency"), _load("peer_rollback"), _load("peer_scale")
    if step or rollback:
        lines += [
            "",
            "**Side by side with Argo Rollouts** (same cluster, same run, interleaved ours, Argo, ours, Argo).",
            "",
        ]
        lines.append("| figure | ours | Argo Rollouts | ratio ours / theirs | n (each) | recorded |")
        lines.append("|---|---|---|---|---|---|")
    if step:
        a, b = step["ours_s"], step["peer_s"]
        for q in ("median", "p99"):
            lines.append(
                f"| step: pause due -> canary's next replicas (10 replicas), {q} | {_ms(a[q])} | {_ms(b[q])} "
                f"| {_ratio(a[q], b[q])} | {a['n']} / {b['n']} | {_machine(step)} |"
            )
    if rollback:
        for key, what in (
            ("s", "canary spec 0 and stable spec 10"),
            ("stable_ready_s", "stable 10 Ready, canary 0"),
        ):
            a, b = rollback.get(f"ours_{key}"), rollback.get(f"peer_{key}")
            if not a or not b:
                continue
            for q in ("median", "p99"):
                lines.append(
                    f"| rollback (check every {rollback['interval']}): first failing sample -> {what}, {q} "
                    f"| {_s(a[q])} | {_s(b[q])} | {_ratio(a[q], b[q])} | {a['n']} / {b['n']} | {_machine(rollback)} |"
                )
    if scale and scale.get("levels"):
        cfg = scale.get("config") or {}
        lines += [
            "",
            f"Scale side by side ({_machine(scale)}). Replica-based on both sides, 1 replica, 2 Prometheus checks "
            f"every {cfg.get('peer_interval', '30s')} per rollout (ours: gates; Argo: background analysis, 2 "
            "metrics), both through the counting proxy. *steady*: all paused with checks running; *active*: "
            f"released together, pause {cfg.get('peer_pauses', '15-30')} s, 50 %, pause, 100 %; *rest*: all "
            "done. Step = pause due -> status past the pause "
            "(the same signal on both sides). Argo `default` = its client's 40 QPS / burst 80; `qps400` = "
            "`--qps 400 --burst 800`.",
            "",
            "| N | controller | CPU cores steady / active / rest | peak RSS | API req/min steady "
            "| API req/min active | API req/min rest | Prom q/min steady | step p99 (median) | active window |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for lv in scale["levels"]:
            rows = [("ours", lv["ours"])] + [(f"Argo {k}", v) for k, v in lv["peer"].items()]
            for label, r in rows:
                st, ac, rs = r["steady"], r["active"], r["rest"]
                sp = r["step_index_s"]
                lines.append(
                    f"| {lv['n']} | {label} | {st['cpu_cores']:.3f} / {ac['cpu_cores']:.3f} / {rs['cpu_cores']:.3f} "
                    f"| {r['peak_rss_mb']:.0f} MB | {_verbs(st['operator_requests_per_min_by_verb'])} "
                    f"| {_verbs(ac['operator_requests_per_min_by_verb'])} "
                    f"| {_verbs(rs['operator_requests_per_min_by_verb'])} "
                    f"| {st['operator_prometheus_queries_per_min']:.0f} | {_s(sp['p99'])} ({_s(sp['median'])}) "
                    f"| {r['active_s']:.0f} s |"
                )
            ours = lv["ours"]
            for k, v in lv["peer"].items():
                lines.append(
                    f"| {lv['n']} | ratio ours / Argo {k} "
                    f"| {_ratio(ours['steady']['cpu_cores'], v['steady']['cpu_cores'])} / "
                    f"{_ratio(ours['active']['cpu_cores'], v['active']['cpu_cores'])} / - "
                    f"| {_ratio(ours['peak_rss_mb'], v['peak_rss_mb'])} "
                    f"| {_ratio(_total(ours['steady']['operator_requests_per_min_by_verb']), _total(v['steady']['operator_requests_per_min_by_verb']))} "  # noqa: E501
                    f"| {_ratio(_total(ours['active']['operator_requests_per_min_by_verb']), _total(v['active']['operator_requests_per_min_by_verb']))} "  # noqa: E501
                    f"| - | {_ratio(ours['steady']['operator_prometheus_queries_per_min'], v['steady']['operator_prometheus_queries_per_min'])} "  # noqa: E501
                    f"| {_ratio(ours['step_index_s']['p99'], v['step_index_s']['p99'])} "
                    f"| {_ratio(ours['active_s'], v['active_s'])} |"
                )
        lines += ["", "![cost curve, side by side](cost_curve_side_by_side.png)"]
    return "\n".join(lines)


def plot() -> None:
    scale = _load("peer_scale")
    if not scale or not scale.get("levels"):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = scale["levels"]
    ns = [lv["n"] for lv in levels]
    series: dict[str, list[dict[str, Any]]] = {"ours": [lv["ours"] for lv in levels]}
    for key in levels[0]["peer"]:
        series[f"Argo Rollouts ({key})"] = [lv["peer"].get(key) for lv in levels]
    panels = [
        ("CPU while all step (cores)", lambda r: r["active"]["cpu_cores"]),
        ("peak RSS (MB)", lambda r: r["peak_rss_mb"]),
        (
            "API requests/min, steady (paused, checks running)",
            lambda r: _total(r["steady"]["operator_requests_per_min_by_verb"]),
        ),
        ("API requests/min, active", lambda r: _total(r["active"]["operator_requests_per_min_by_verb"])),
        ("step p99 (s)", lambda r: r["step_index_s"]["p99"]),
        ("time for all to finish (s)", lambda r: r["active_s"]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(14, 8))
    for ax, (title, fn) in zip([a for row in axes for a in row], panels, strict=True):
        for label, rows in series.items():
            ax.plot(
                [n for n, r in zip(ns, rows, strict=True) if r], [fn(r) for r in rows if r], marker="o", label=label
            )
        ax.set_title(title, fontsize=10)
        ax.set_xscale("log")
        ax.set_xlabel("rollouts (N)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"cost curve: strategy-rollouts vs Argo Rollouts {scale.get('peer_version', '')}")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=80)
    plt.close(fig)
