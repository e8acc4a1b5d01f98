"""The dashboard's in-cluster mode against the real API server: the chart's ServiceAccount and RBAC,
real ServiceAccount tokens (`kubectl create token`), TokenReview and SubjectAccessReview, no mocks.

The app runs on the host in `--in-cluster` mode with the chart's ServiceAccount as its identity.
alice may read our kinds in one namespace only; bob may read nothing.
"""

from __future__ import annotations

import json
import socket
import threading
import time
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
RECHECK_S = 2  # an open event stream's token is reviewed again this often (30 s in production)


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
    dash = DashboardProcess(
        kubeconfig,
        cluster.prometheus_url,
        tmp_path / "dashboard.log",
        in_cluster=True,
        extra_args=("--recheck-interval", str(RECHECK_S)),
    )
    try:
        dash.start()
        yield {
            "dash": dash,
            "alice": token(cluster, namespace, "alice"),
            "bob": token(cluster, namespace, "bob"),
            "mine": namespace,
            "theirs": other_namespace,
            "sa_kubeconfig": kubeconfig,
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


def bearer_cookie(dash: DashboardProcess) -> str:
    """The sign-in cookie's name: per server (the Host the browser asked for), as browsers share cookies
    between the ports of a host."""
    return f"strategy_dashboard_bearer_127-0-0-1-{dash.port}"


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
            (cookie,) = [c for c in context.cookies() if c["name"] == bearer_cookie(dash)]
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
    cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith(bearer_cookie(dash) + "="))
    assert all(attr in cookie for attr in ("HttpOnly", "SameSite=strict", "Secure")), cookie
    code, headers = post_login(dash, world["alice"])
    cookie = next(c for c in headers.get_all("Set-Cookie") if c.startswith(bearer_cookie(dash) + "="))
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


# ---- safety, second round (issue 28): streams re-reviewed, reviews bounded, per-server cookie, Origin ----


class Stream:
    """/api/events read on a thread: every (event, data) received, and whether the server ended it."""

    def __init__(self, dash: DashboardProcess, bearer: str) -> None:
        req = urllib.request.Request(dash.base + "/api/events", headers={"Authorization": f"Bearer {bearer}"})
        self.resp = urllib.request.urlopen(req, timeout=60)  # pings every 15 s keep it reading
        self.events: list[tuple[str, str]] = []
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        event = ""
        try:
            for raw in self.resp:
                line = raw.decode().strip()
                if line.startswith("event:"):
                    event = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    self.events.append((event, line.split(":", 1)[1].strip()))
        except (AttributeError, OSError, ValueError):
            pass  # closed by the test
        finally:
            self.ended.set()

    def names(self) -> list[str]:
        return [e for e, _ in self.events]

    def close(self) -> None:
        self.resp.close()
        self.thread.join(5)


def test_an_open_stream_ends_when_its_token_is_revoked(cluster: DevCluster, world: dict[str, Any]) -> None:
    """carol's ServiceAccount is deleted while her event stream is open: the next review (every RECHECK_S
    here) fails and the server ends her stream with `signedOut`; alice's stream stays open."""
    dash, mine = world["dash"], world["mine"]
    cluster.kubectl("create", "serviceaccount", "carol", "-n", mine)
    cluster.kubectl(
        "create", "rolebinding", "carol-views", "--role=rollout-viewer", f"--serviceaccount={mine}:carol", "-n", mine
    )
    carol_token = token(cluster, mine, "carol")
    carol, alice = Stream(dash, carol_token), Stream(dash, world["alice"])
    try:
        wait_for(lambda: "hello" in carol.names() and "hello" in alice.names(), 20, what="both streams open")
        time.sleep(RECHECK_S * 2)  # reviewed again at least once: a valid token keeps its stream
        assert not carol.ended.is_set() and not alice.ended.is_set()
        cluster.kubectl("delete", "serviceaccount", "carol", "-n", mine)
        revoked = time.monotonic()
        assert carol.ended.wait(RECHECK_S + 15), f"carol's stream still open: {carol.events}"
        assert time.monotonic() - revoked < RECHECK_S + 15
        (reason,) = [json.loads(d)["reason"] for e, d in carol.events if e == "signedOut"]
        assert "no longer valid" in reason
        time.sleep(RECHECK_S + 1)
        assert not alice.ended.is_set() and "signedOut" not in alice.names()
        assert get(dash, "/api/overview", carol_token)[0] == 401
    finally:
        carol.close()
        alice.close()


def test_token_reviews_are_bounded_per_second_and_cached_answers_are_not(world: dict[str, Any], tmp_path: Path) -> None:
    """A flood of made-up tokens costs the API server at most the configured reviews per second (then 429);
    a viewer whose token was reviewed moments ago is answered from the cache meanwhile."""
    limited = DashboardProcess(
        world["sa_kubeconfig"],
        "http://127.0.0.1:9",
        tmp_path / "limited.log",
        in_cluster=True,
        extra_args=("--token-reviews-per-second", "1"),  # a burst of 2
    )
    with limited:
        assert get(limited, "/api/overview", world["alice"])[0] == 200  # reviewed: cached for 30 s
        codes = [get(limited, "/api/overview", f"made-up-{i}-{uuid.uuid4().hex}")[0] for i in range(12)]
        assert set(codes) <= {401, 429} and codes.count(429) >= 6, codes
        assert get(limited, "/api/overview", world["alice"])[0] == 200, "a cached answer needs no review"
        req = urllib.request.Request(limited.base + "/api/overview", headers={"Authorization": "Bearer made-up"})
        for _ in range(4):
            try:
                urllib.request.urlopen(req, timeout=15).close()
            except urllib.error.HTTPError as err:
                err.close()
                if err.code == 429:
                    assert err.headers["Retry-After"] == "1"
                    break
        else:
            raise AssertionError("no 429 in a burst beyond the rate")
        time.sleep(2.5)  # the bucket refills: a real token is reviewed again
        assert post_login(limited, world["bob"])[0] == 303


def test_the_sign_in_cookie_is_read_only_under_this_servers_name(world: dict[str, Any]) -> None:
    """Browsers send the cookies of 127.0.0.1 to all its ports: a token signed in on another port's dashboard
    (another cluster's, port-forwarded) is neither read nor overwritten here."""
    dash = world["dash"]
    code, headers = post_login(dash, world["alice"])
    assert code == 303
    value = next(c for c in headers.get_all("Set-Cookie") if c.startswith(bearer_cookie(dash) + "=")).split(";")[0]
    token_value = value.split("=", 1)[1]
    for name, expected in (
        (bearer_cookie(dash), 200),
        ("strategy_dashboard_bearer_127-0-0-1-1", 401),  # the same token under another port's name
        ("strategy_dashboard_bearer", 401),  # the name every port shared before
    ):
        req = urllib.request.Request(dash.base + "/api/overview", headers={"Cookie": f"{name}={token_value}"})
        try:
            with urllib.request.urlopen(req, timeout=15) as resp:
                assert resp.status == expected, name
        except urllib.error.HTTPError as err:
            err.close()
            assert err.code == expected, name


def test_writes_from_another_origin_are_refused_with_a_clear_403(world: dict[str, Any]) -> None:
    dash = world["dash"]
    others = ({"Origin": "http://evil.example"}, {"Origin": "http://127.0.0.1:1"}, {"Sec-Fetch-Site": "cross-site"})
    for headers in others:
        code, answer = post_login(dash, world["alice"], headers)
        assert code == 403 and "Set-Cookie" not in answer, headers
    nonce, cookie = sign_in_page(dash)
    body = urllib.parse.urlencode({"nonce": nonce, "token": world["alice"]}).encode()
    req = urllib.request.Request(
        dash.base + "/login", body, {"Cookie": cookie, "Origin": "http://evil.example"}, method="POST"
    )
    try:
        urllib.request.urlopen(req, timeout=15)
        raise AssertionError("a cross-origin sign-in was accepted")
    except urllib.error.HTTPError as err:
        with err:
            assert err.code == 403 and "another origin (http://evil.example) is refused" in err.read().decode()
    assert post_login(dash, world["alice"], {"Origin": dash.base, "Sec-Fetch-Site": "same-origin"})[0] == 303
    assert get(dash, f"/api/strategyrollouts/{world['mine']}/fib-rsi/requests", world["alice"], "POST")[0] == 405


class Listener:
    """A TCP socket on loopback that records every connection made to it (and answers nothing)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def test_an_address_outside_the_allow_list_is_never_contacted(
    cluster: DevCluster, world: dict[str, Any], tmp_path: Path
) -> None:
    """A rollout names a credential-less Prometheus on loopback, outside the dashboard's allow-list (the
    chart's: its prometheus.url and in-cluster Service names): its charts say so and no connection is made.
    The same dashboard with that address listed does connect (the listener can see one)."""
    listener = Listener()
    ns = f"dash-out-{uuid.uuid4().hex[:6]}"  # outside the session's prefix: no operator of the session measures it
    cluster.kubectl("create", "namespace", ns)
    try:
        role = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "rollout-viewer", "namespace": ns},
            "rules": [{"apiGroups": ["strategyrollouts.io"], "resources": KINDS, "verbs": ["get", "list", "watch"]}],
        }
        binding = {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "alice-views", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "rollout-viewer"},
            "subjects": [{"kind": "ServiceAccount", "name": "alice", "namespace": world["mine"]}],
        }
        address = f"http://127.0.0.1:{listener.port}"
        gate = {"name": "p95", "query": "max(tick_p95_ms)", "condition": "< 200", "interval": "1s"}
        apply(cluster, role, binding, gate_world.rollout("outside", ns, [gate], prometheus={"address": address}))
        path = f"/api/strategyrollouts/{ns}/outside/series"

        def charted(dash: DashboardProcess) -> dict[str, Any]:
            wait_for(lambda: get(dash, f"/api/strategyrollouts/{ns}/outside", world["alice"])[0] == 200, 20)
            code, body = get(dash, path, world["alice"])
            assert code == 200, body
            return body["gates"]["p95"]["value"]  # type: ignore[no-any-return]

        value = charted(world["dash"])
        assert value["points"] == [] and value["error"].startswith(f"not queried: {address} is outside")
        time.sleep(1)
        assert listener.connections == 0
        listed = DashboardProcess(
            world["sa_kubeconfig"],
            cluster.prometheus_url,
            tmp_path / "listed.log",
            in_cluster=True,
            extra_args=("--allowed-prometheus", address),
        )
        with listed:
            value = charted(listed)
        assert not value["error"].startswith("not queried"), value
        assert listener.connections >= 1
    finally:
        listener.close()
        cluster.kubectl("delete", "namespace", ns, "--wait=false", "--ignore-not-found", check=False)
