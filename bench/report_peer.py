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
    lines += _glance(step, rollback, scale)
    lines += _memory(_load("peer_memory"))
    lines += _write_cost(_load("write_cost"))
    return "\n".join(lines)


def _glance(step: dict[str, Any] | None, rollback: dict[str, Any] | None, scale: dict[str, Any] | None) -> list[str]:
    """The headline figures of the tables above in one table: ours, Argo at its defaults, Argo `--qps 400`."""
    rows: list[tuple[str, float | None, float | None, float | None, str]] = []
    if step:
        a, b = step["ours_s"], step["peer_s"]
        rows += [(f"step, 10 replicas, {q} (n={a['n']} / {b['n']})", a[q], b[q], None, "ms") for q in ("median", "p99")]
    if rollback and rollback.get("ours_s") and rollback.get("peer_s"):
        a, b = rollback["ours_s"], rollback["peer_s"]
        what = "rollback: failing sample -> canary 0, stable 10 (spec)"
        rows += [(f"{what}, {q} (n={a['n']} / {b['n']})", a[q], b[q], None, "s") for q in ("median", "p99")]
    for lv in (scale or {}).get("levels", []):
        o, d, f = lv["ours"], lv["peer"].get("default"), lv["peer"].get("qps400")

        def get(r: dict[str, Any] | None, fn: Any) -> float | None:
            return None if r is None else fn(r)

        for what, fn, unit in (
            ("peak RSS (MB)", lambda r: r["peak_rss_mb"], "count"),
            ("CPU cores, active", lambda r: r["active"]["cpu_cores"], "cores"),
            ("API requests/min, steady", lambda r: _total(r["steady"]["operator_requests_per_min_by_verb"]), "count"),
            ("API requests/min, active", lambda r: _total(r["active"]["operator_requests_per_min_by_verb"]), "count"),
            ("API requests/min, rest", lambda r: _total(r["rest"]["operator_requests_per_min_by_verb"]), "count"),
            ("step p99", lambda r: r["step_index_s"]["p99"], "s"),
            ("step median", lambda r: r["step_index_s"]["median"], "s"),
            ("all done after release", lambda r: r["active_s"], "s"),
        ):
            rows.append((f"N={lv['n']} {what}", get(o, fn), get(d, fn), get(f, fn), unit))
    if not rows:
        return []

    def fmt(v: float | None, unit: str) -> str:
        if v is None:
            return "-"
        if unit in ("ms", "s"):
            return _ms(v) if unit == "ms" else _s(v)
        return f"{v:.3f}" if unit == "cores" else f"{v:,.0f}"

    out = [
        "",
        "At a glance (the figures above; ratio = ours / theirs, below 1 is ours better):",
        "",
        "| figure | ours | Argo defaults | ratio | Argo `--qps 400` | ratio |",
        "|---|---|---|---|---|---|",
    ]
    for what, a, b, c, unit in rows:
        out.append(f"| {what} | {fmt(a, unit)} | {fmt(b, unit)} | {_ratio(a, b)} | {fmt(c, unit)} | {_ratio(a, c)} |")
    return out


def _memory(doc: dict[str, Any] | None) -> list[str]:
    """peer_memory.json: N rollouts created and held paused with their checks running, ours then the peer."""
    if not doc or not doc.get("levels"):
        return []
    out = [
        "",
        f"Memory side by side, steady only ({_machine(doc)}): N rollouts of 1 replica, 2 checks every 30 s, "
        "created, ramped, held paused with the checks running; RSS = `VmRSS` at the end of the steady window, "
        "peak = `VmHWM`; per rollout = the RSS difference between consecutive N over the difference in N.",
        "",
        "| N | controller | RSS / peak | ratio ours / theirs, RSS / peak | RSS per extra rollout "
        "| API requests/min steady | CPU cores steady | setup + ramp |",
        "|---|---|---|---|---|---|---|---|",
    ]
    prev: dict[str, tuple[int, float]] = {}
    for lv in doc["levels"]:
        sides = [("ours", lv["ours"])] + [(f"Argo {k}", v) for k, v in lv["peer"].items()]
        ours = lv["ours"]
        for label, r in sides:
            per = "-"
            if label in prev:
                n0, rss0 = prev[label]
                per = f"{(r['rss_mb'] - rss0) / (lv['n'] - n0):.3f} MB"
            prev[label] = (lv["n"], r["rss_mb"])
            ratio = (
                "-"
                if r is ours
                else f"{_ratio(ours['rss_mb'], r['rss_mb'])} / {_ratio(ours['peak_rss_mb'], r['peak_rss_mb'])}"
            )
            st = r["steady"]
            out.append(
                f"| {lv['n']} | {label} | {r['rss_mb']:.0f} / {r['peak_rss_mb']:.0f} MB | {ratio} | {per} "
                f"| {_total(st['operator_requests_per_min_by_verb']):,.0f} | {st['cpu_cores']:.3f} "
                f"| {r['setup_s']:.0f} + {r['ramp_s']:.0f} s |"
            )
    return out


def _write_cost(doc: dict[str, Any] | None) -> list[str]:
    """write_cost.json: the API server's cost of one status write, ours against Argo's, no controller running."""
    if not doc or not doc.get("variants"):
        return []
    variants = doc["variants"]
    base = variants.get("argo-patch", {})
    out = [
        "",
        f"Cost of one status write on the same API server ({_machine(doc).rsplit(', peer', 1)[0]}; "
        f"{doc['rounds']} rounds x "
        f"{doc['writes_per_round']} writes per variant over {doc['n_objects']} objects, interleaved; status "
        f"bytes ours {doc['status_bytes']['ours']}, Argo {doc['status_bytes']['argo']}):",
        "",
        "| write | 1 in flight: median / p99, writes/s | 8 in flight: median / p99, writes/s "
        "| median ratio to `argo-patch` (1 / 8) |",
        "|---|---|---|---|",
    ]
    for name, by in variants.items():
        cells = []
        for k in ("1", "8"):
            lat = by[k]["latency_ms"]
            cells.append(f"{lat['median']:.1f} / {lat['p99']:.1f} ms, {by[k]['requests_per_s']:.0f}")
        ratios = " / ".join(
            _ratio(by[k]["latency_ms"]["median"], base.get(k, {}).get("latency_ms", {}).get("median"))
            for k in ("1", "8")
        )
        out.append(f"| {name} | {cells[0]} | {cells[1]} | {ratios} |")
    return out


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
