"""Run the dashboard: local mode (`kubectl strategy dashboard`) or in-cluster mode (the chart's Deployment).

    python -m strategy_rollouts.dashboard --in-cluster --address 0.0.0.0 --port 8080 --prometheus-url URL \
        [--allowed-prometheus URL_PREFIX]... [--allow-cluster-services]

In-cluster mode connects with the pod's ServiceAccount (or --kubeconfig, to run it beside a cluster)
and authenticates every viewer by their bearer token; it is read-only. The charts query --prometheus-url,
and an object's own credential-less spec.prometheus.address only within the allow-list (the chart passes
the operator's): the dashboard has no unrestricted mode.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
from collections.abc import Callable

import uvicorn
from kubernetes.client.exceptions import ApiException

from strategy_rollouts.api.common import GROUP, VERSION
from strategy_rollouts.dashboard.app import Dashboard, create_app
from strategy_rollouts.dashboard.auth import RECHECK_S, REVIEWS_PER_S, ClusterAuth, LocalAuth
from strategy_rollouts.dashboard.store import Store
from strategy_rollouts.engine.allowlist import AllowList
from strategy_rollouts.read.allow_options import allow_list, allow_options
from strategy_rollouts.read.cluster import Cluster, Target
from strategy_rollouts.read.prometheus import Connection

DEFAULT_PROMETHEUS = "http://127.0.0.1:9090"


def prometheus_url(given: str | None) -> str:
    return given or os.environ.get("PROMETHEUS_URL") or DEFAULT_PROMETHEUS


def watch_scope(cluster: Cluster) -> str | None:
    """None when these credentials may list our kinds in every namespace, else the context's namespace."""
    try:
        cluster.custom.list_cluster_custom_object(GROUP, VERSION, "strategyrollouts", limit=1, _request_timeout=15)
    except ApiException as exc:
        if exc.status == 403:
            return cluster.namespace
        raise
    return None


def bind(address: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(128)
    return sock


def serve(dash: Dashboard, sock: socket.socket, log_level: str = "warning") -> None:
    config = uvicorn.Config(create_app(dash), log_level=log_level, access_log=False, timeout_graceful_shutdown=2)
    asyncio.run(uvicorn.Server(config).serve(sockets=[sock]))


def local(
    cluster: Cluster,
    port: int,
    prometheus: str | None,
    read_only: bool,
    announce: Callable[[str], None],
    allow: AllowList | None = None,
) -> int:
    """`kubectl strategy dashboard`: 127.0.0.1 only, the kubeconfig's user, a random token."""
    user = cluster.user_name()
    scope = watch_scope(cluster)
    auth = LocalAuth(user, read_only=read_only)
    dash = Dashboard(
        Store(cluster.api, scope),
        auth,
        Connection(prometheus_url(prometheus)),
        cluster=None if read_only else cluster,
        user_name=user,
        allow=allow or AllowList(),
    )
    sock = bind("127.0.0.1", port)
    where = "every namespace" if scope is None else f"namespace {scope}"
    announce(f"Dashboard for {user} ({where}); open:\nhttp://127.0.0.1:{sock.getsockname()[1]}/?token={auth.token}")
    with contextlib.suppress(KeyboardInterrupt):
        serve(dash, sock)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m strategy_rollouts.dashboard", description=__doc__)
    p.add_argument("--in-cluster", action="store_true", required=True, help="bearer tokens, TokenReview + SAR")
    p.add_argument("--address", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--prometheus-url")
    allow_options(p)
    p.add_argument(
        "--recheck-interval",
        type=float,
        default=RECHECK_S,
        metavar="SECONDS",
        help="an open event stream's token is reviewed again this often (and at its expiry)",
    )
    p.add_argument(
        "--token-reviews-per-second",
        type=float,
        default=REVIEWS_PER_S,
        help="TokenReviews for tokens not in the cache, sustained (twice as many at once); beyond: 429",
    )
    p.add_argument("--kubeconfig", help="the dashboard's own identity (default: in-cluster ServiceAccount)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    # the app's own log (sign-ins by user name, watch errors); uvicorn keeps its own handlers
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
    cluster = Cluster(Target(kubeconfig=args.kubeconfig))
    dash = Dashboard(
        Store(cluster.api),
        ClusterAuth(cluster.api, args.recheck_interval, args.token_reviews_per_second),
        Connection(prometheus_url(args.prometheus_url)),
        allow=allow_list(args),
    )
    sock = bind(args.address, args.port)
    print(f"dashboard (in-cluster, read-only) on {args.address}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    serve(dash, sock, args.log_level)
    return 0
