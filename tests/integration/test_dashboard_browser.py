"""The web dashboard in a real browser (Debian's chromium, headless, driven by Playwright) against the
real session cluster, the real operator, Prometheus and quoters.

Local mode: `kubectl strategy dashboard` with the session's kubeconfig. Pages load without a console
error, the symbol map changes colour live when the rollout steps, the gate's line appears, the abort
button ends the rollout RolledBack in the user's name. Screenshots land in docs/images/.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

from strategy_rollouts.testing.dashboard_process import DashboardProcess
from strategy_rollouts.testing.operator_process import OperatorProcess
from tests.integration import gate_world
from tests.integration.conftest import wait_for
from tests.integration.test_gate_templates import template
from tests.integration.workloads import apply, deployment, patch_status, status

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples" / "quoter"))
from quoter.testing import QuoterProcess, start_quoter

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "images"
CHROMIUM = "/usr/bin/chromium"
CANARY_RGB = "rgb(232, 137, 27)"  # --canary in app.css
STABLE_RGB = "rgb(59, 111, 216)"  # --stable
PARITY_VERSION = "v1.0.0-parity"
TPL = "dash_tpl_ms"  # the templateRef gate's metric  # the exporter's return series, apart from the quoters' own


@pytest.fixture(scope="module")
def admin(cluster: DevCluster) -> str:
    return cluster.kubectl("auth", "whoami", "-o", "jsonpath={.status.userInfo.username}").stdout.strip()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def local_dashboard(
    cluster: DevCluster, operator: OperatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardProcess]:
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    with DashboardProcess(cluster.kubeconfig, cluster.prometheus_url, log) as dash:
        yield dash


class Console:
    """Every console error and uncaught exception of a page."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error":
            self.errors.append(f"{msg.text} at {msg.location}")


def open_page(browser: Browser, dash: DashboardProcess, width: int = 1400) -> tuple[Page, Console]:
    page = browser.new_context(viewport={"width": width, "height": 1000}).new_page()
    console = Console(page)
    page.goto(dash.url)  # the token URL: the page moves the token into its tab's sessionStorage
    page.wait_for_selector("#table-strategyrollouts")
    assert "token=" not in page.url
    assert page.context.cookies() == [], "no cookie: other ports of 127.0.0.1 would receive it"
    return page, console


def shot(page: Page, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / name), full_page=True)


def key_colours(page: Page) -> dict[str, str]:
    return dict(
        page.evaluate(
            "() => [...document.querySelectorAll('#symbols .key')]"
            ".map(k => [k.dataset.key, getComputedStyle(k).backgroundColor])"
        )
    )


def gate_rollout(name: str, namespace: str) -> dict[str, Any]:
    gate = {
        "name": "tick-p95-ms",
        "query": f'max(dash_tick_p95_ms{{rollout="{name}",ns="{namespace}"}})',
        "condition": "< 200",
        "interval": "1s",
        "inconclusiveLimit": 20,
    }
    # A judge (dry-run: drawn, never acting) whose chart shows both versions' lines.
    judge = {
        "name": "fill-ms",
        "judge": {
            "query": f'max(dash_fill_ms{{rollout="{name}",ns="{namespace}",version="{{{{version}}}}"}})',
            "worseWhen": "higher",
            "window": "2m",
            "step": "1s",
            "minSamples": 3,
        },
        "interval": "2s",
        "dryRun": True,
    }
    # A sequential judge (dry-run; the canary fills 15 ms slower): its confidence sequence over the step, zero,
    # the margin and the Fail marked.
    sequential = {
        "name": "fill-seq",
        "judge": {**judge["judge"], "test": "sequential", "margin": 5.0, "window": "30m"},  # type: ignore[dict-item]
        "interval": "2s",
        "dryRun": True,
    }
    # A templateRef gate: its chart is the threshold gate the template resolves to.
    templated = {"name": "tpl-ms", "templateRef": {"kind": "GateTemplate", "name": "dash-tpl"}, "args": {"metric": TPL}}
    obj = gate_world.rollout(name, namespace, [gate, judge, sequential, templated])
    # Long enough at weight 0 for the page to be open before the first step; then a pause until promoted.
    obj["spec"]["stages"] = [
        {"name": "staging", "steps": [{"pause": {"duration": "12s"}}, {"setWeight": 50}, {"pause": {}}]},
        {"name": "prod", "steps": [{"setWeight": 100}]},
    ]
    return obj


def test_rollout_page_is_live_and_its_abort_button_rolls_back_in_the_users_name(
    cluster: DevCluster,
    namespace: str,
    live_operator: OperatorProcess,
    local_dashboard: DashboardProcess,
    browser: Browser,
    admin: str,
) -> None:
    name = "fib-rsi"
    with gate_world.scraped(cluster, f"dash-{namespace}") as exporter:
        exporter.gauge("dash_tick_p95_ms", 120.0, noise=8.0, rollout=name, ns=namespace)
        for version, fill_ms in (("v1.0.0", 40.0), ("v2.0.0", 55.0)):
            exporter.gauge("dash_fill_ms", fill_ms, noise=3.0, rollout=name, ns=namespace, version=version)
        exporter.gauge(TPL, 20.0, noise=2.0, strategy="fib_rsi", version="v2.0.0")
        apply(cluster, template("dash-tpl", kind="GateTemplate", ns=namespace))
        page, console = open_page(browser, local_dashboard)
        gate_world.start(cluster, gate_rollout(name, namespace))
        row = f'tr[data-key="strategyrollouts/{namespace}/{name}"]'
        page.wait_for_selector(row, timeout=30_000)  # a live update: the list was drawn before it existed
        page.click(f"{row} a")
        page.wait_for_selector("#symbols .key", timeout=30_000)
        page.evaluate("() => { window.__sameDocument = true; }")
        before = key_colours(page)
        assert set(before.values()) == {STABLE_RGB}, before  # weight 0: every key on the stable version
        page.wait_for_function(
            f"() => [...document.querySelectorAll('#symbols .key')].some(k => getComputedStyle(k).backgroundColor"
            f" === '{CANARY_RGB}')",
            timeout=60_000,
        )
        assert page.evaluate("() => window.__sameDocument") is True, "the page reloaded instead of updating live"
        after = key_colours(page)
        assert list(after.values()).count(CANARY_RGB) == 3, after  # 50% of 6 keys
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-gate=\"tick-p95-ms\"]');"
            " return el && Number(el.dataset.points) > 0 && el.querySelector('canvas'); }",
            timeout=60_000,
        )
        # the judge gate's chart: both versions' series over its window, two lines besides time
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-gate=\"fill-ms\"]');"
            " return el && el.dataset.kind === 'judge' && Number(el.dataset.points) > 0"
            " && el.querySelector('canvas'); }",
            timeout=60_000,
        )
        legend = page.inner_text('[data-gate="fill-ms"]')
        assert "stable v1.0.0" in legend and "canary v2.0.0" in legend, legend
        # the sequential judge: its interval narrowing over the step, 0 and the margin, the decision marked
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-gate=\"fill-seq\"]');"
            " return el && el.dataset.kind === 'judge' && Number(el.dataset.sequence) > 0"
            " && el.dataset.decision === 'Fail' && el.querySelector('canvas'); }",
            timeout=60_000,
        )
        drawn = page.inner_text('[data-gate="fill-seq"]')
        for label in ("upper bound", "lower bound", "canary - stable", "margin 5", "sequential judge", "Fail at"):
            assert label in drawn, drawn
        page.wait_for_function(
            "() => { const el = document.querySelector('[data-gate=\"tpl-ms\"]');"
            " return el && el.dataset.kind === 'threshold' && Number(el.dataset.points) > 0; }",
            timeout=60_000,
        )
        assert "tpl-ms (GateTemplate dash-tpl)" in page.inner_text('[data-gate="tpl-ms"]')
        gate_world.wait_phase(cluster, name, namespace, "Paused", timeout=60)
        page.wait_for_selector("#phase:text('Paused')", timeout=30_000)
        page.wait_for_timeout(500)
        shot(page, "dashboard-rollout.png")
        page.goto(f"{local_dashboard.base}/#/strategyrollouts/{namespace}/{name}")
        page.click("button[data-action=abort]")
        page.fill("#confirm-reason", "bad fills seen on the dashboard")
        page.click("#confirm-ok")
        page.wait_for_selector("#phase:text('RolledBack')", timeout=60_000)
        assert console.errors == []
    st = status(cluster, name, namespace)
    assert st["phase"] == "RolledBack"
    assert any(
        h.get("by") == admin and "bad fills seen on the dashboard" in (h.get("reason") or "") for h in st["history"]
    ), dump(st["history"])
    handled = [h for h in st.get("handledRequests", []) if h["action"] == "abort"]
    assert handled and handled[-1]["by"] == admin and handled[-1]["outcome"] == "Applied"


def test_requests_without_the_token_get_401_and_writes_need_the_dashboard_header(
    local_dashboard: DashboardProcess,
) -> None:
    import urllib.error
    import urllib.request

    def code(req: str | urllib.request.Request) -> int:
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            err.close()
            return err.code

    for path in ("/api/overview", "/api/events", "/api/overview?token=wrong", "/api/strategyrollouts/default/x"):
        assert code(local_dashboard.base + path) == 401, path
    for path in ("/", "/static/app.js"):  # the page shell: no data, and no cookie a page load could carry
        assert code(local_dashboard.base + path) == 200, path
    auth = {"Authorization": f"Bearer {local_dashboard.token}", "Content-Type": "application/json"}
    path = local_dashboard.base + "/api/strategyrollouts/default/x/requests"
    req = urllib.request.Request(path, b'{"action":"abort"}', auth, method="POST")
    assert code(req) == 403  # no X-Dashboard header: a cross-site form cannot make it
    assert code(urllib.request.Request(local_dashboard.base + "/api/overview", headers=auth)) == 200
    # another origin's write (a page on another port of 127.0.0.1 included) is refused, token or not
    for headers in ({"Origin": "http://127.0.0.1:1"}, {"Origin": "null"}, {"Sec-Fetch-Site": "same-site"}):
        write = {**auth, "X-Dashboard": "1", **headers}
        req = urllib.request.Request(path, b'{"action":"abort","reason":"x"}', write, method="POST")
        assert code(req) == 403, headers
    same = {**auth, "X-Dashboard": "1", "Origin": local_dashboard.base, "Sec-Fetch-Site": "same-origin"}
    req = urllib.request.Request(path, b'{"action":"abort","reason":"x"}', same, method="POST")
    assert code(req) == 404, "its own page's write passes the check (and finds no rollout default/x)"


# ---- a shadow run and a parity check, both run by the real operator ------------------------------


@pytest.fixture
def quoters(cluster: DevCluster, namespace: str) -> Iterator[dict[str, QuoterProcess]]:
    from tests.integration.test_shadowrun_operator import LIVE, SHADOW

    strategy = f"s_{namespace.replace('-', '_')}"
    apply(
        cluster,
        deployment("live", namespace, 1, LIVE),
        deployment("shadow", namespace, 0, SHADOW, env={"SHADOW_MODE": "true"}),
    )
    started: dict[str, QuoterProcess] = {}
    try:
        for version, shadow, knobs in ((LIVE, False, None), (SHADOW, True, {"drop_rate": 0.04})):
            started[version] = start_quoter(
                strategy,
                version,
                namespace=namespace,
                kubeconfig=cluster.kubeconfig,
                redis_url=cluster.redis_url,
                tick_interval=0.2,
                shadow=shadow,
                knobs=knobs,
            )
            cluster.add_scrape_target(f"quoter-{namespace}-{version}", started[version].metrics_target)
        yield started
    finally:
        for version, q in started.items():
            q.stop()
            cluster.remove_scrape_target(f"quoter-{namespace}-{version}")


def test_shadow_run_and_parity_check_pages(
    cluster: DevCluster,
    namespace: str,
    live_operator: OperatorProcess,
    local_dashboard: DashboardProcess,
    browser: Browser,
    admin: str,
    quoters: dict[str, QuoterProcess],
) -> None:
    from tests.integration.test_shadowrun_operator import STAGES, shadowrun

    strategy = f"s_{namespace.replace('-', '_')}"
    budgets = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "budgets", "namespace": namespace}}
    apply(cluster, {**budgets, "data": dict.fromkeys(STAGES, "60")})
    run = shadowrun(
        "v2-shadow",
        namespace,
        strategy,
        cluster.redis_url,
        duration="12s",
        latencyProfile={
            "histogram": "strategy_stage_duration_seconds",
            "budgets": {"configMap": "budgets"},
            "maxRegressionPercent": 50,
        },
    )
    page, console = open_page(browser, local_dashboard)
    gate_world.start(cluster, gate_world.rollout("fib-rsi", namespace, [], pause="2m"))  # for the list's picture
    apply(cluster, run)
    page.goto(f"{local_dashboard.base}/#/shadowruns/{namespace}/v2-shadow")
    page.wait_for_selector("#verdict", timeout=30_000)
    wait_for(lambda: status(cluster, "v2-shadow", namespace, kind="shadowrun").get("phase") == "Completed", 60)
    page.wait_for_function("() => document.querySelector('#verdict').textContent !== '-'", timeout=30_000)
    page.wait_for_function("() => Number(document.querySelector('#match-chart').dataset.points) > 0", timeout=30_000)
    page.wait_for_timeout(500)
    shot(page, "dashboard-shadowrun.png")

    with gate_world.scraped(cluster, f"parity-{namespace}") as exporter:
        for source, noise in (("live", 0.003), ("backtest", 0.0)):
            labels = {"strategy": strategy, "version": PARITY_VERSION, "source": source}
            exporter.gauge("strategy_return", 0.0001, noise=noise, **labels)
            exporter.gauge("strategy_cost_bps", 2.0 if source == "live" else 1.0, component="fees", **labels)
        check = parity_check("parity", namespace, strategy)
        apply(cluster, check)
        page.goto(f"{local_dashboard.base}/#/paritychecks/{namespace}/parity")
        page.wait_for_selector("#te-chart", timeout=30_000)
        time.sleep(12)  # enough scraped points in the 30 s window
        for _ in range(3):
            run_parity(cluster, namespace, admin)
        st = status(cluster, "parity", namespace, kind="paritycheck")
        runs = [r for r in st.get("history", []) if r.get("trackingErrorBps") is not None]
        assert len(runs) >= 3, dump({k: v for k, v in st.items() if k != "handledRequests"})
        page.wait_for_function("() => Number(document.querySelector('#te-chart').dataset.points) >= 3", timeout=30_000)
        page.wait_for_timeout(500)
        shot(page, "dashboard-paritycheck.png")
        page.goto(local_dashboard.base + "/")
        for kind, name in (("strategyrollouts", "fib-rsi"), ("shadowruns", "v2-shadow"), ("paritychecks", "parity")):
            page.wait_for_selector(f'tr[data-key="{kind}/{namespace}/{name}"]')
        shot(page, "dashboard-list.png")
    assert console.errors == []


def parity_check(name: str, namespace: str, strategy: str) -> dict[str, Any]:
    def pair(metric: str, extra: str = "") -> dict[str, str]:
        return {
            side: f'{metric}{{strategy="{{{{strategy}}}}",version="{PARITY_VERSION}",source="{side}"{extra}}}'
            for side in ("live", "backtest")
        }

    return {
        "apiVersion": "strategyrollouts.io/v1alpha1",
        "kind": "ParityCheck",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "strategy": strategy,
            "target": {"deployment": "live"},
            "schedule": "0 0 1 1 *",
            "window": "30s",
            "step": "1s",
            "periodsPerYear": 1,
            "minSamples": 8,
            "live": {"query": pair("strategy_return")["live"]},
            "backtest": {"query": pair("strategy_return")["backtest"]},
            "attribution": {"fees": pair("strategy_cost_bps", ',component="fees"')},
            "thresholdsBps": {"warning": 20, "critical": 60, "emergency": 120},
        },
    }


def run_parity(cluster: DevCluster, namespace: str, admin: str) -> None:
    rid = f"r-{uuid.uuid4().hex[:8]}"
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    patch_status(
        cluster, "paritycheck", "parity", namespace, {"requests": {rid: {"action": "run", "by": admin, "at": at}}}
    )

    def handled() -> bool:
        st = status(cluster, "parity", namespace, kind="paritycheck")
        return rid in {h["id"] for h in st.get("handledRequests", [])}

    wait_for(handled, 30, what=f"parity run {rid}")
    time.sleep(1.1)  # runs are ordered by time; one a second


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1)[:2000]
