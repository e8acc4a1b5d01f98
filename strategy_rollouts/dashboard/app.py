"""The dashboard's web app (Starlette): pages, JSON for them, live updates as server-sent events.

Every request but the probes (and in-cluster, the sign-in page: signin.py) passes the Guard (auth.py):
401 without valid credentials (a browser's page load in-cluster is sent to /login instead). Namespaces are
authorised per request (403 for an object page, rows filtered in lists and live updates). Writes exist
only in local mode, where they are the CLI's requests made with the user's own kubeconfig.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.api.requests import RolloutAction
from strategy_rollouts.dashboard import series, signin, views
from strategy_rollouts.dashboard.auth import (
    Auth,
    Busy,
    ClusterAuth,
    LocalAuth,
    Revalidation,
    Unauthorized,
    User,
    bearer,
    cookie_name,
)
from strategy_rollouts.dashboard.store import Change, Store
from strategy_rollouts.engine import allowlist
from strategy_rollouts.engine.allowlist import AllowList
from strategy_rollouts.read.cluster import MERGE_PATCH, Cluster, ClusterError
from strategy_rollouts.read.prometheus import Connection
from strategy_rollouts.read.requests import new_id, rollout_request

STATIC = resources.files("strategy_rollouts.dashboard") / "static"
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
LOCAL_SHELL = OPEN_PATHS | {"/"}  # and /static/: no data, and no credential a page load could carry
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
ACTIONS: tuple[RolloutAction, ...] = ("promote", "promoteFull", "abort", "pause", "resume", "approve", "retry")


@dataclass
class Dashboard:
    store: Store
    auth: Auth
    prometheus: Connection
    cluster: Cluster | None = None  # local mode: writes requests with the user's kubeconfig
    user_name: str | None = None  # local mode: `by` of those requests (SelfSubjectReview)
    # Where the charts may query: the dashboard's own Prometheus always; an object's own address only
    # within this list (the chart's security.* values, as the operator's).
    allow: AllowList = field(default_factory=AllowList)

    def __post_init__(self) -> None:
        if not allowlist.allowed(self.prometheus.address, self.allow):
            self.allow = replace(self.allow, prefixes=(self.prometheus.address, *self.allow.prefixes))

    @property
    def read_only(self) -> bool:
        return self.cluster is None or self.auth.read_only


class Guard:
    """ASGI middleware: refuse cross-origin writes, authenticate every request (probes aside) and keep
    the user in scope.state."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app, self.auth = app, auth
        self.open = OPEN_PATHS | (signin.PATHS if isinstance(auth, ClusterAuth) else LOCAL_SHELL)

    def _open(self, path: str) -> bool:
        # local mode: the page shell carries no data; it reads the token from its URL (auth.py)
        return path in self.open or (isinstance(self.auth, LocalAuth) and path.startswith("/static/"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        if scope["method"] not in SAFE_METHODS:
            refused = cross_origin(conn)
            if refused is not None:  # before any TokenReview: another site's post costs nothing
                await PlainTextResponse(f"403 Forbidden: {refused}\n", 403)(scope, receive, send)
                return
        if not self._open(scope["path"]):
            try:
                user = await self.auth.user(conn)
            except Busy as exc:
                await PlainTextResponse(f"429 {exc}\n", 429, headers={"Retry-After": "1"})(scope, receive, send)
                return
            except Unauthorized as exc:
                if isinstance(self.auth, ClusterAuth) and _page_load(scope, conn):
                    await RedirectResponse("/login", 303)(scope, receive, send)
                    return
                headers = {"WWW-Authenticate": "Bearer"}
                if isinstance(self.auth, ClusterAuth):
                    headers["X-Sign-In"] = "/login"  # where the page sends its browser (app.js)
                await PlainTextResponse(f"401 Unauthorized: {exc}\n", 401, headers=headers)(scope, receive, send)
                return
            scope.setdefault("state", {})["user"] = user
        await self.app(scope, receive, send)


def cross_origin(conn: HTTPConnection) -> str | None:
    """Why a write is refused as another site's, or None. A browser names the page that makes a request
    in `Origin` (every POST since 2020) or at least in `Sec-Fetch-Site`; a script sends neither, and
    carries its credentials itself."""
    origin = conn.headers.get("origin")
    if origin is not None:
        hosts = {conn.headers.get(h, "").split(",")[0].strip().lower() for h in ("host", "x-forwarded-host")}
        if origin == "null" or urlsplit(origin).netloc.lower() not in hosts - {""}:
            return f"a write from another origin ({origin}) is refused; use this dashboard's own page"
        return None
    site = conn.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return f"a write from another site (Sec-Fetch-Site: {site}) is refused; use this dashboard's own page"
    return None


def _page_load(scope: Scope, conn: HTTPConnection) -> bool:
    """A browser opening a page (not a script, not the page's own fetches)."""
    return scope["method"] == "GET" and scope["path"] == "/" and "text/html" in conn.headers.get("accept", "")


def _user(request: Request) -> User:
    return request.state.user  # type: ignore[no-any-return]


async def _visible(dash: Dashboard, user: User, kind: str, objs: list[views.JSON]) -> list[views.JSON]:
    namespaces = sorted({o["metadata"]["namespace"] for o in objs})
    allowed = await asyncio.gather(*(dash.auth.allowed(user, ns, kind, "list") for ns in namespaces))
    ok = {ns for ns, yes in zip(namespaces, allowed, strict=True) if yes}
    return [o for o in objs if o["metadata"]["namespace"] in ok]


def create_app(dash: Dashboard) -> ASGIApp:
    async def index(request: Request) -> Response:
        # Local mode: app.js moves `?token=` from the URL into its tab's sessionStorage (never a cookie).
        return FileResponse(
            str(STATIC / "index.html"), headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
        )

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def ready(request: Request) -> Response:
        if dash.store.ready:
            return PlainTextResponse("ready\n")
        return PlainTextResponse(f"watches not synced: {dash.store.errors or 'starting'}\n", 503)

    async def overview(request: Request) -> Response:
        user = _user(request)
        out: dict[str, Any] = {"user": user.name, "readOnly": dash.read_only, "errors": dash.store.errors}
        # signed in by the form (not by a proxy's header): the page offers to sign out
        by_cookie = bearer(request) is None and cookie_name(request) in request.cookies
        out["signOut"] = isinstance(dash.auth, ClusterAuth) and by_cookie
        for kind in views.KINDS:
            objs = await _visible(dash, user, kind, dash.store.items(kind))
            out[kind] = [views.row(kind, o) for o in objs]
        return JSONResponse(out)

    async def _object(request: Request) -> tuple[str, views.JSON] | Response:
        kind, ns, name = (request.path_params[k] for k in ("kind", "namespace", "name"))
        if kind not in views.KINDS:
            return PlainTextResponse("404 unknown kind\n", 404)
        if not await dash.auth.allowed(_user(request), ns, kind, "get"):
            return PlainTextResponse(f"403 Forbidden: {_user(request).name} may not get {kind} in {ns}\n", 403)
        obj = dash.store.get(kind, ns, name)
        if obj is None:
            return PlainTextResponse(f"404 {kind} {ns}/{name} not found\n", 404)
        return kind, obj

    async def detail(request: Request) -> Response:
        found = await _object(request)
        if isinstance(found, Response):
            return found
        kind, obj = found
        body = views.DETAILS[kind](obj)
        body["readOnly"] = dash.read_only
        if kind == "shadowruns":
            meta = obj["metadata"]
            body["watchedMatchRate"] = list(dash.store.match_rates.get((meta["namespace"], meta["name"]), ()))
        return JSONResponse(body)

    async def chart_series(request: Request) -> Response:
        found = await _object(request)
        if isinstance(found, Response):
            return found
        kind, obj = found
        now = series.now_utc()
        if kind == "strategyrollouts":
            meta = obj["metadata"]
            results = dash.store.gate_results.get((meta["namespace"], meta["name"]), {})
            charts = await series.rollout_gates(
                dash.prometheus, dash.allow, obj, now, dash.store.template, results, dash.store.template_errors
            )
            return JSONResponse(charts)
        if kind == "shadowruns":
            return JSONResponse(await series.shadow_match_rate(dash.prometheus, dash.allow, obj, now))
        return JSONResponse({})

    async def events(request: Request) -> Response:
        user = _user(request)
        token = dash.auth.token(request) if isinstance(dash.auth, ClusterAuth) else None
        # In the cluster the token is reviewed again while the stream is open: revoked or expired, it ends.
        check = Revalidation(dash.auth, token) if isinstance(dash.auth, ClusterAuth) and token else None

        async def stream() -> AsyncIterator[dict[str, str]]:
            with dash.store.subscribe() as sub:
                yield {"event": "hello", "data": "{}"}
                pending = asyncio.ensure_future(sub.changes())
                try:
                    while True:
                        done, _ = await asyncio.wait({pending}, timeout=check.wait() if check else None)
                        if check is not None and check.wait() <= 0:
                            ended = await check.run()
                            if ended is not None:
                                yield {"event": "signedOut", "data": json.dumps({"reason": ended})}
                                return
                        if not done:
                            continue
                        changes, pending = pending.result(), asyncio.ensure_future(sub.changes())
                        for change in changes:
                            if not await dash.auth.allowed(user, change.namespace, change.kind, "list"):
                                continue
                            yield {"event": "change", "data": json.dumps(_change(change))}
                finally:
                    pending.cancel()

        def _change(change: Change) -> dict[str, Any]:
            obj = dash.store.get(change.kind, change.namespace, change.name)
            data: dict[str, Any] = {
                "kind": change.kind,
                "namespace": change.namespace,
                "name": change.name,
                "deleted": obj is None,
            }
            if obj is not None:
                data["row"] = views.row(change.kind, obj)
            return data

        return EventSourceResponse(stream(), ping=15)

    async def make_request(request: Request) -> Response:
        if dash.read_only or dash.cluster is None or dash.user_name is None:
            return PlainTextResponse("405 the dashboard is read-only here\n", 405)
        if request.headers.get("x-dashboard") != "1":
            return PlainTextResponse("403 missing X-Dashboard header\n", 403)  # no cross-site form posts
        found = await _object(request)
        if isinstance(found, Response):
            return found
        kind, _ = found
        if kind != "strategyrollouts":
            return PlainTextResponse("404 requests are made to StrategyRollouts\n", 404)
        try:
            body = await request.json()
        except ValueError:
            return PlainTextResponse("400 body must be JSON\n", 400)
        action, reason = body.get("action"), (body.get("reason") or "").strip() or None
        if action not in ACTIONS:
            return PlainTextResponse(f"400 action must be one of {', '.join(ACTIONS)}\n", 400)
        if action in ("abort", "approve") and not reason:
            return PlainTextResponse(f"400 {action} needs a reason\n", 400)
        ns, name = request.path_params["namespace"], request.path_params["name"]
        id_ = new_id()
        try:
            patch = rollout_request(action, dash.user_name, reason, series.now_utc(), id_)
        except ValidationError as exc:
            return PlainTextResponse(f"400 {exc.errors()[0]['msg']}\n", 400)
        cluster = dash.cluster
        try:
            await asyncio.to_thread(
                cluster.call,
                f"strategyrollout {ns}/{name}",
                cluster.custom.patch_namespaced_custom_object_status,
                GROUP,
                VERSION,
                ns,
                "strategyrollouts",
                name,
                patch,
                _content_type=MERGE_PATCH,
            )
        except ClusterError as exc:
            return PlainTextResponse(f"502 {exc}\n", 502)
        return JSONResponse({"id": id_, "action": action, "by": dash.user_name})

    obj_path = "/api/{kind}/{namespace}/{name}"
    routes = [
        Route("/", index),
        Route("/healthz", health),
        Route("/readyz", ready),
        Route("/api/overview", overview),
        Route("/api/events", events),
        Route(obj_path, detail),
        Route(obj_path + "/series", chart_series),
        Route(obj_path + "/requests", make_request, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(STATIC)), name="static"),
    ]
    if isinstance(dash.auth, ClusterAuth):
        cluster_auth = dash.auth

        async def login(request: Request) -> Response:
            return await signin.login(request, cluster_auth)

        routes[1:1] = [
            Route("/login", signin.login_form, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", signin.logout, methods=["GET"]),
        ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dash.store.start(asyncio.get_running_loop())
        try:
            yield
        finally:
            dash.store.stop()

    return Guard(Starlette(routes=routes, lifespan=lifespan), dash.auth)
