"""The dashboard's in-cluster mode against the real API server: the chart's ServiceAccount and RBAC,
real ServiceAccount tokens (`kubectl create token`), TokenReview and SubjectAccessReview, no mocks.

The app runs on the host in `--in-cluster` mode with the chart's ServiceAccount as its identity.
alice may read our kinds in one namespace only; bob may read nothing.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from playwright.sync_api import sync_playwright

from strategy_rollouts.testing.dashboard_process import DashboardProcess
from tests.integration import gate_world
from tests.integration.conftest import wait_for
from tests.integration.test_dashboard_browser import CHROMIUM, Console, shot
from tests.integration.workloads import apply

if TYPE_CHECKING:
    from devcluster.cluster import DevCluster

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
KINDS = ["strategyrollouts", "shadowruns", "paritychecks"]


def token(cluster: DevCluster, namespace: str, sa: str) -> str:
    return cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").stdout.strip()


def sa_kubeconfig(cluster: DevCluster, bearer: str, path: Path) -> Path:
    """The session's cluster entry with a ServiceAccount token as the user."""
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    entry = next(c for c in admin["clusters"] if c["name"] == current["cluster"])
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [entry],
        "users": [{"name": "dashboard", "user": {"token": bearer}}],
        "contexts": [{"name": "dashboard", "context": {"cluster": entry["name"], "user": "dashboard"}}],
        "current-context": "dashboard",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def world(
    cluster: DevCluster, crds: None, namespace: str, other_namespace: str, tmp_path: Path
) -> Iterator[dict[str, Any]]:
    release = f"d{uuid.uuid4().hex[:6]}"
    rendered = cluster.helm(
        "template",
        release,
        str(REPO / "charts" / "strategy-rollouts"),
        "-n",
        namespace,
        "--set",
        "dashboard.enabled=true",
    ).stdout
    rbac = [
        d
        for d in yaml.safe_load_all(rendered)
        if d
        and d["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
        and "dashboard" in d["metadata"]["name"]
    ]
    assert len(rbac) == 3
    apply(cluster, *rbac)
    sa = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    # alice reads our kinds in `namespace`; bob has no rights at all
    for name in ("alice", "bob"):
        cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "rollout-viewer", "namespace": namespace},
        "rules": [{"apiGroups": ["strategyrollouts.io"], "resources": KINDS, "verbs": ["get", "list", "watch"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "alice-views", "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-viewer"},
        "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": namespace}],
    }
    apply(cluster, role, binding)
    for ns in (namespace, other_namespace):
        apply(cluster, gate_world.rollout("fib-rsi", ns, []))
    kubeconfig = sa_kubeconfig(cluster, token(cluster, namespace, sa), tmp_path / "dashboard.kubeconfig")
    dash = DashboardProcess(kubeconfig, cluster.prometheus_url, tmp_path / "dashboard.log", in_cluster=True)
    try:
        dash.start()
        yield {
            "dash": dash,
            "alice": token(cluster, namespace, "alice"),
            "bob": token(cluster, namespace, "bob"),
            "mine": namespace,
            "theirs": other_namespace,
        }
    finally:
        dash.stop()
        for d in rbac:
            if d["kind"] != "ServiceAccount":
                cluster.kubectl("delete", d["kind"], d["metadata"]["name"], "--ignore-not-found", check=False)


def get(dash: DashboardProcess, path: str, bearer: str | None = None, method: str = "GET") -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    body = b"{}" if method == "POST" else None
    req = urllib.request.Request(dash.base + path, body, headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            text = resp.read().decode()
            return resp.status, json.loads(text) if resp.headers.get_content_type() == "application/json" else text
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.read().decode()


def names(overview: dict[str, Any]) -> set[str]:
    return {r["namespace"] for kind in KINDS for r in overview[kind]}


def test_no_token_or_a_bad_one_is_401_and_probes_stay_open(world: dict[str, Any]) -> None:
    dash = world["dash"]
    for path in (
        "/",
        "/api/overview",
        "/api/events",
        "/static/app.js",
        f"/api/strategyrollouts/{world['mine']}/fib-rsi",
    ):
        assert get(dash, path)[0] == 401, path
        assert get(dash, path, "not-a-token")[0] == 401, path
    assert get(dash, "/healthz")[0] == 200 and get(dash, "/readyz")[0] == 200


def test_lists_are_filtered_and_object_pages_are_403_without_rights(world: dict[str, Any]) -> None:
    dash, mine, theirs = world["dash"], world["mine"], world["theirs"]
    code, overview = get(dash, "/api/overview", world["alice"])
    assert code == 200 and overview["readOnly"] is True
    assert overview["user"] == f"system:serviceaccount:{mine}:alice"
    assert mine in names(overview) and theirs not in names(overview)
    assert get(dash, f"/api/strategyrollouts/{mine}/fib-rsi", world["alice"])[0] == 200
    code, text = get(dash, f"/api/strategyrollouts/{theirs}/fib-rsi", world["alice"])
    assert code == 403 and "may not get strategyrollouts" in text
    code, overview = get(dash, "/api/overview", world["bob"])
    assert code == 200 and not names(overview) & {mine, theirs}
    assert get(dash, f"/api/strategyrollouts/{mine}/fib-rsi", world["bob"])[0] == 403
    # read-only: no request can be made through it, whoever asks
    assert get(dash, f"/api/strategyrollouts/{mine}/fib-rsi/requests", world["alice"], "POST")[0] == 405


def test_live_updates_carry_only_namespaces_the_viewer_may_list(cluster: DevCluster, world: dict[str, Any]) -> None:
    dash, mine, theirs = world["dash"], world["mine"], world["theirs"]
    seen: list[dict[str, Any]] = []
    req = urllib.request.Request(dash.base + "/api/events", headers={"Authorization": f"Bearer {world['alice']}"})
    stream = urllib.request.urlopen(req, timeout=30)

    def read() -> None:
        event = ""
        try:
            for raw in stream:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:") and event == "change":
                    seen.append(json.loads(line.split(":", 1)[1]))
        except (AttributeError, OSError, ValueError):
            return  # closed under us at the end of the test

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    try:
        for ns in (theirs, mine):  # theirs first: by the time mine arrives, theirs would have too
            cluster.kubectl(
                "label", "strategyrollout", "fib-rsi", "-n", ns, f"seen={uuid.uuid4().hex[:6]}", "--overwrite"
            )
        wait_for(lambda: any(e["namespace"] == mine for e in seen), 20, what="alice's live update")
        assert all(e["namespace"] != theirs for e in seen), seen
    finally:
        stream.close()
        thread.join(5)


def test_the_in_cluster_page_is_read_only_in_a_browser(world: dict[str, Any]) -> None:
    dash, mine, theirs = world["dash"], world["mine"], world["theirs"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(extra_http_headers={"Authorization": f"Bearer {world['alice']}"})
            page = context.new_page()
            console = Console(page)
            page.goto(dash.base + "/")
            page.wait_for_selector(f'tr[data-key="strategyrollouts/{mine}/fib-rsi"]')
            assert page.query_selector(f'tr[data-key="strategyrollouts/{theirs}/fib-rsi"]') is None
            assert "read-only" in page.inner_text("#who")
            page.goto(f"{dash.base}/#/strategyrollouts/{mine}/fib-rsi")
            page.wait_for_selector("#symbols")
            assert page.query_selector("button[data-action]") is None
            assert console.errors == []
        finally:
            browser.close()


def sign_in_page(dash: DashboardProcess, headers: dict[str, str] | None = None) -> tuple[str, str]:
    """GET /login as a script would: its nonce field and cookie."""
    req = urllib.request.Request(dash.base + "/login", headers=headers or {})
    with urllib.request.urlopen(req, timeout=15) as resp:
        text, cookie = resp.read().decode(), resp.headers.get("Set-Cookie", "")
    nonce = text.split('name="nonce" value="', 1)[1].split('"', 1)[0]
    return nonce, cookie.split(";", 1)[0]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def post_login(dash: DashboardProcess, bearer: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    nonce, cookie = sign_in_page(dash, headers)
    body = urllib.parse.urlencode({"nonce": nonce, "token": bearer}).encode()
    all_headers = {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", **(headers or {})}
    req = urllib.request.Request(dash.base + "/login", body, all_headers, method="POST")
    try:
        resp = urllib.request.build_opener(NoRedirect).open(req, timeout=15)
        return resp.status, resp.headers
    except urllib.error.HTTPError as err:
        with err:
            return err.code, err.headers


def test_the_sign_in_form_in_a_browser(world: dict[str, Any]) -> None:
    """No proxy: a browser signs in with a real `kubectl create token` token pasted into the form."""
    dash, mine, theirs = world["dash"], world["mine"], world["theirs"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context()
            page = context.new_page()
            page.goto(dash.base + "/")  # not signed in: sent to the form
            assert page.url == dash.base + "/login"
            page.fill("#token", "garbage-" + uuid.uuid4().hex)
            with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as bad:
                page.click("#sign-in")
            assert bad.value.status == 401
            assert "did not accept this token" in page.inner_text("#message")
            shot(page, "dashboard-signin.png")
            assert context.request.get(dash.base + "/api/overview").status == 401
            console = Console(page)
            page.fill("#token", world["alice"])
            page.click("#sign-in")
            page.wait_for_selector(f'tr[data-key="strategyrollouts/{mine}/fib-rsi"]')
            assert page.url == dash.base + "/"
            assert page.query_selector(f'tr[data-key="strategyrollouts/{theirs}/fib-rsi"]') is None
            assert "read-only" in page.inner_text("#who")
            (cookie,) = [c for c in context.cookies() if c["name"] == "strategy_dashboard_bearer"]
            assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and not cookie["secure"]  # plain http
            page.goto(f"{dash.base}/#/strategyrollouts/{mine}/fib-rsi")
            page.wait_for_selector("#symbols")
            assert page.query_selector("button[data-action]") is None
            assert console.errors == []
            assert context.request.get(f"{dash.base}/api/strategyrollouts/{theirs}/fib-rsi").status == 403
            page.goto(f"{dash.base}/#/strategyrollouts/{theirs}/fib-rsi")
            page.wait_for_selector("#main .error")
            assert "403" in page.inner_text("#main .error")
            page.goto(dash.base + "/")
            page.click("#sign-out")
            page.wait_for_url(dash.base + "/login")
            assert context.request.get(dash.base + "/api/overview").status == 401
            page.goto(dash.base + "/")
            assert page.url == dash.base + "/login"
        finally:
            browser.close()
    assert world["alice"] not in dash.log()  # the token is never logged
    assert f"signed in: system:serviceaccount:{mine}:alice" in dash.log()


def test_sign_in_cookie_is_secure_behind_https_and_other_posts_are_405(world: dict[str, Any]) -> None:
    dash, mine = world["dash"], world["mine"]
    code, headers = post_login(dash, world["alice"], {"X-Forwarded-Proto": "https"})
    assert code == 303 and headers["Location"] == "/"
    cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith("strategy_dashboard_bearer="))
    assert all(attr in cookie for attr in ("HttpOnly", "SameSite=strict", "Secure")), cookie
    code, headers = post_login(dash, world["alice"])
    cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith("strategy_dashboard_bearer="))
    assert code == 303 and "Secure" not in cookie
    assert post_login(dash, "not-a-token")[0] == 401
    # the cookie alone authenticates, as the header does, and still only where SAR allows
    jar = {"Cookie": cookie.split(";", 1)[0]}
    req = urllib.request.Request(dash.base + "/api/overview", headers=jar)
    with urllib.request.urlopen(req, timeout=15) as resp:
        overview = json.loads(resp.read())
    assert overview["signOut"] is True and mine in names(overview) and world["theirs"] not in names(overview)
    # a form posted without the page's nonce (another site's) is refused before any TokenReview
    body = urllib.parse.urlencode({"token": world["alice"]}).encode()
    req = urllib.request.Request(dash.base + "/login", body, method="POST")
    try:
        urllib.request.urlopen(req, timeout=15)
        raise AssertionError("a nonce-less sign-in was accepted")
    except urllib.error.HTTPError as err:
        err.close()
        assert err.code == 403
    for path in ("/", "/api/overview", f"/api/strategyrollouts/{mine}/fib-rsi/requests", "/logout"):
        assert get(dash, path, world["alice"], "POST")[0] == 405, path
