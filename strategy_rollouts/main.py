"""`strategy-rollouts run`: the operator process."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from concurrent.futures import ThreadPoolExecutor

import kopf
from prometheus_client import start_http_server

from strategy_rollouts import __version__
from strategy_rollouts.operator import handlers  # noqa: F401  (registers the kopf handlers)
from strategy_rollouts.operator.context import Context, Settings
from strategy_rollouts.operator.kube import Kube


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="strategy-rollouts", description="Operator for safe trading-strategy rollouts.")
    p.add_argument("--version", action="version", version=__version__)
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the current KUBECONFIG (or in-cluster)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument("-n", "--namespace", action="append", default=[], help="watch these namespaces (repeatable)")
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch every namespace (default)")
    run.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="default Prometheus address")
    run.add_argument("--prometheus-timeout", type=float, default=10.0, help="seconds per query")
    run.add_argument("--metrics-port", type=int, default=9102, help="/metrics port (0 disables)")
    run.add_argument("--liveness-port", type=int, default=8080, help="/healthz port (0 disables)")
    run.add_argument("--kubeconfig", default=None)
    run.add_argument("--idle-recheck", type=float, default=300.0, help="seconds between checks of objects at rest")
    run.add_argument(
        "--gate-status-refresh",
        type=float,
        default=300.0,
        help="seconds: gate values reach status.gates at least this often (results and counters at once)",
    )
    run.add_argument(
        "--notify-retry-window",
        type=float,
        default=600.0,
        help="seconds a notification is retried before a NotificationFailed Event drops it",
    )
    run.add_argument(
        "--allowed-prometheus",
        action="append",
        default=[],
        metavar="URL_PREFIX",
        help="only these Prometheus addresses may be named in specs (repeatable; default any)",
    )
    run.add_argument(
        "--allowed-webhook",
        action="append",
        default=[],
        metavar="URL_PREFIX",
        help="only these webhook gate URLs may be named in specs (repeatable; default any)",
    )
    run.add_argument(
        "--peering", default=None, help="kopf peering name (needs kopf's peering CRDs); default standalone"
    )
    run.add_argument("-v", "--verbose", action="store_true")
    return p


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("kubernetes", "urllib3", "aiohttp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not args.verbose:
        # kopf logs every wake-up handler's success at INFO; our own loggers say what matters.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    ctx = Context(
        kube=Kube.from_environment(args.kubeconfig),
        settings=Settings(
            prometheus_url=args.prometheus_url,
            prometheus_timeout_s=args.prometheus_timeout,
            idle_recheck_s=args.idle_recheck,
            gate_status_refresh_s=args.gate_status_refresh,
            notify_retry_window_s=args.notify_retry_window,
            allowed_prometheus=tuple(args.allowed_prometheus),
            allowed_webhooks=tuple(args.allowed_webhook),
            namespaces=tuple(args.namespace),
        ),
    )
    if args.metrics_port:
        start_http_server(args.metrics_port)
    liveness = f"http://0.0.0.0:{args.liveness_port}/healthz" if args.liveness_port else None
    asyncio.run(operate(args, liveness, ctx))
    return 0


async def operate(args: argparse.Namespace, liveness: str | None, ctx: Context) -> None:
    # Every Kubernetes and Prometheus call runs in the default executor: size it for the bounded
    # concurrency the adapters allow (the default is cpus + 4 threads).
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=48, thread_name_prefix="io"))
    await kopf.operator(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=liveness,
        standalone=args.peering is None,
        peering_name=args.peering,
        memo=kopf.Memo(ctx=ctx),  # the one Context every handler gets (handlers.context)
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "run":
        return run(args)
    return 2


if __name__ == "__main__":
    sys.exit(main())
