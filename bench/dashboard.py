"""The web dashboard under N rollouts (default 1,000): list page first paint, live update latency, the
server's CPU and RSS, and the API requests it makes as browsers come and go (they must not grow).

The dashboard (local mode) reaches the API server and Prometheus only through bench/proxy.py, which
counts its requests. No operator runs: the benchmark writes status itself (the status subresource), so
what is measured is the dashboard alone. Browsers: Debian's chromium, headless, through Playwright.
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench.analysis import summary
from bench.harness import GROUP, VERSION, Env, Sampler, proc_rss_mb, rollout
from bench.kube import ns_path, wait_until
from strategy_rollouts.testing.dashboard_process import DashboardProcess

CHROMIUM = "/usr/bin/chromium"
STEPS = [{"setWeight": 10}, {"pause": {}}, {"setWeight": 100}]


def log(msg: str) -> None:
    print(f"[bench dashboard] {msg}", flush=True)


def _paint(page: Any) -> dict[str, float | None]:
    """ms since navigation start: first contentful paint, and the list drawn (the page's own mark)."""
    return dict(
        page.evaluate(
            """() => {
              const fcp = performance.getEntriesByName("first-contentful-paint")[0];
              const list = performance.getEntriesByName("dash:list")[0];
              return {fcp_ms: fcp ? fcp.startTime : null, list_ms: list ? list.startTime : null};
            }"""
        )
    )


def _kube_requests(env: Env) -> dict[str, float]:
    return dict(env.proxy_counts()["kube"])


def _total(counts: dict[str, float]) -> float:
    return float(sum(counts.values()))


def _update(env: Env, ns: str, name: str, seq: int) -> float:
    """One status change (what the operator would write; never the same twice, or no event would follow);
    the wall time it was sent."""
    sent = time.time()
    body = {
        "status": {
            "phase": "Progressing",
            "stage": "prod",
            "stageIndex": 0,
            "stepIndex": 0,
            "canaryWeight": 10,
            "message": f"bench update {seq} at {time.time_ns()}",
        }
    }
    env.api.merge_patch(ns_path(ns, "strategyrollouts", GROUP, VERSION) + f"/{name}/status", body)
    return sent


def _live_latencies(env: Env, ns: str, names: list[str], pages: list[Any], updates: int) -> list[float]:
    """Status change -> row redrawn, in every open page (ms), one change at a time."""
    out: list[float] = []
    rng = random.Random(7)
    for seq in range(updates):
        name = rng.choice(names)
        key = f"strategyrollouts/{ns}/{name}"
        before = [p.evaluate("k => (window.__dash.shown[k] || {}).at || 0", key) for p in pages]
        sent = _update(env, ns, name, seq)
        for page, prev in zip(pages, before, strict=True):
            page.wait_for_function(
                "([k, prev]) => ((window.__dash.shown[k] || {}).at || 0) > prev", arg=[key, prev], timeout=30_000
            )
            shown = page.evaluate("k => window.__dash.shown[k].at", key) / 1000.0
            out.append((shown - sent) * 1000.0)
    return out


def run(env: Env, n: int, browsers: tuple[int, ...] = (1, 5), updates: int = 20) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    ns = env.namespace(f"dash{n}")
    names = [f"r{i:04d}" for i in range(n)]
    t0 = time.time()
    env.create_rollouts(ns, [rollout(name, ns, f"s_{name}", STEPS, paused=True) for name in names])
    log(f"{n} rollouts created in {time.time() - t0:.1f} s")
    result: dict[str, Any] = {"n": n, "updates_per_level": updates}
    prom = f"http://127.0.0.1:{env.proxy['prometheus']}"
    before_start = _kube_requests(env)
    with DashboardProcess(env.proxy["kubeconfig"], prom, env.work / "dashboard.log") as dash:
        assert dash.proc is not None
        pid = dash.proc.pid
        wait_until("dashboard holds every rollout", lambda: _listed(dash) >= n, 120, 0.5)
        started = _kube_requests(env)
        result["startup_kube_requests"] = {
            k: v - before_start.get(k, 0) for k, v in started.items() if v - before_start.get(k, 0)
        }
        result["rss_idle_mb"] = proc_rss_mb(pid)[0]
        sampler = Sampler(pid, 0.5)
        sampler.start()
        levels = []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            try:
                pages: list[Any] = []
                for count in browsers:
                    level: dict[str, Any] = {"browsers": count}
                    kube0, cpu0, t_level = (
                        _kube_requests(env),
                        sampler.samples[-1][1] if sampler.samples else 0.0,
                        time.time(),
                    )
                    paints = []
                    while len(pages) < count:
                        page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()
                        page.goto(dash.url)
                        page.wait_for_selector(f'tr[data-key="strategyrollouts/{ns}/{names[-1]}"]', timeout=120_000)
                        page.wait_for_selector("#live.on", timeout=30_000)  # its EventSource is open
                        paints.append(_paint(page))
                        pages.append(page)
                    level["first_paint_ms"] = summary([p["fcp_ms"] for p in paints if p["fcp_ms"] is not None])
                    level["list_drawn_ms"] = summary([p["list_ms"] for p in paints if p["list_ms"] is not None])
                    level["live_update_ms"] = summary(_live_latencies(env, ns, names, pages, updates))
                    time.sleep(1)
                    kube1 = _kube_requests(env)
                    level["kube_requests_during_level"] = {
                        k: v - kube0.get(k, 0) for k, v in kube1.items() if v - kube0.get(k, 0)
                    }
                    cpu1 = sampler.samples[-1][1]
                    level["server_cpu_s"] = round(cpu1 - cpu0, 3)
                    level["server_cpu_percent"] = round(100 * (cpu1 - cpu0) / max(1e-9, time.time() - t_level), 1)
                    level["server_rss_mb"] = max(s[2] for s in sampler.samples)
                    log(f"{count} browser(s): {level}")
                    levels.append(level)
            finally:
                browser.close()
        sampler.stop()
        result["levels"] = levels
        result["rss_max_mb"] = max(s[2] for s in sampler.samples)
        total = [_total(lv["kube_requests_during_level"]) for lv in levels]
        # The point of one shared watch per kind: browsers add no API requests at all.
        result["api_requests_grow_with_browsers"] = any(t > 0 for t in total)
    return result


def _listed(dash: DashboardProcess) -> int:
    import json
    import urllib.request

    req = urllib.request.Request(dash.base + "/api/overview", headers={"Authorization": f"Bearer {dash.token}"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return len(json.loads(resp.read())["strategyrollouts"])
